"""`blockmap mount`: a volume as a POSIX file system through FUSE (pyfuse3, trio).

The mount opens the volume's metadata through ltxvfs with group commit (`--sync`, default
`interval:1s`), hydrated into the cache directory in the background so steady-state metadata
reads are local, and keeps a block cache in memory and in the cache directory. The replica is the
only truth: the cache directory is a disposable copy, and any machine can mount the same `--meta`
after this one died.

Lifecycle: `Mount.run()` mounts, answers requests until the file system is unmounted
(`blockmap umount`, `fusermount3 -u`) or SIGINT/SIGTERM arrives, then records every open file's
buffered writes, ships what group commit holds, and unmounts. `-d` forks first: the parent
returns once the mount answers, with the child's error line if it could not mount.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib
import logging
import os
import re
import signal
import stat as statmod
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blockmap.blockcache import DEFAULT_DISK_CACHE, DEFAULT_MEMORY_CACHE, BlockCache
from blockmap.errors import BlockmapError
from blockmap.meta import is_replica_url
from blockmap.volume import Volume

log = logging.getLogger(__name__)

#: Memory for blocks (`--buffer-size`, JuiceFS's default 300 MiB): uploads waiting, all files
#: together, and the in-memory block cache (a quarter, at most DEFAULT_MEMORY_CACHE).
DEFAULT_BUFFER_SIZE = 300 << 20
#: Group commit interval of a mount's metadata (JuiceFS-like: at most this much is lost on a crash).
DEFAULT_MOUNT_SYNC = "interval:1s"
#: Bytes of neighbouring metadata frames a cold miss brings along (ltxvfs `neighbours=`): a file's
#: entry, inode and chunk rows were written in one transaction and sit in pages a few KB apart,
#: so the lookups and the open of a file cold from the store share round trips.
MOUNT_NEIGHBOUR_BYTES = 32 << 10
#: The FUSE file-system type shown in /proc/mounts is `fuse.<SUBTYPE>`.
SUBTYPE = "blockmap"
#: How long `-d` waits for the mount to answer, and `umount` for the mount process to finish.
READY_TIMEOUT = 120.0
UMOUNT_TIMEOUT = 300.0
#: Poll step while waiting for a mount process to exit (it is not our child: no wait(2)).
EXIT_POLL = 0.05
#: Log format of a mount (one line per event, JuiceFS-like).
LOG_FORMAT = "%(asctime)s blockmap[%(process)d] <%(levelname)s>: %(message)s [%(name)s]"
#: The FUSE character device.
FUSE_DEVICE = "/dev/fuse"
#: The kernel's read-ahead for the mount (its backing device's `read_ahead_kb`). Linux gives a FUSE
#: mount 128 KiB, so a sequential read reaches the mount as 128 KiB requests, each one a Python
#: request here; with 4 MiB the kernel asks for up to 1 MiB at once (libfuse 3's max_pages, 256)
#: and several ahead. Raised when the mount may write it (root), as a block device would be tuned.
DEFAULT_KERNEL_READ_AHEAD = 4 << 20
#: Where the kernel shows a backing device's read-ahead (`<major>:<minor>` from mountinfo).
BDI_READ_AHEAD = "/sys/class/bdi/{dev}/read_ahead_kb"
#: The helper that unmounts a FUSE file system (libfuse 3).
FUSERMOUNT = "fusermount3"
#: What serving needs beyond the volume: loaded in a thread while the volume opens (its network
#: waits release the GIL), not after it, when the hydration's work competes for the GIL.
SERVING_MODULES = ("trio", "pyfuse3", "blockmap.fuseops")


class MountError(BlockmapError):
    """A mount or unmount that cannot proceed: `what` names the mountpoint, URL or device."""


@dataclass
class MountConfig:
    """What `blockmap mount` was asked for."""

    meta_url: str
    mountpoint: str
    #: Where the blocks are, when not where the volume says (another endpoint of the same bucket).
    data_url: str | None = None
    cache_dir: str | None = None
    cache_size: int = DEFAULT_DISK_CACHE
    buffer_size: int = DEFAULT_BUFFER_SIZE
    read_only: bool = False
    txid: int = 0
    at: str | None = None
    sync: str = DEFAULT_MOUNT_SYNC
    log_file: str | None = None
    debug: bool = False
    #: Download the metadata database into the cache dir in the background (ltxvfs `hydrate=`).
    hydrate: bool = True
    #: Let other users use the mount (the default when mounted by root, as JuiceFS does).
    allow_other: bool | None = None
    #: The kernel's read-ahead for the mount, in bytes (raised when allowed; 0 leaves Linux's).
    kernel_read_ahead: int = DEFAULT_KERNEL_READ_AHEAD


def preload(modules: tuple[str, ...]) -> threading.Thread:
    """Import `modules` in a background thread; the importing code later finds them loaded, or
    waits for the import under way (a failure is left to that later import to raise)."""

    def load() -> None:
        from blockmap import fusefalloc

        fusefalloc.load()  # before pyfuse3, or its FUSE session has no fallocate (blockmap.fusefalloc)
        for name in modules:
            try:
                importlib.import_module(name)
            except BaseException as exc:  # noqa: BLE001 - the import where the module is used reports it
                log.debug("preloading %s failed: %s", name, exc)
                return

    thread = threading.Thread(target=load, name="blockmap-preload", daemon=True)
    thread.start()
    return thread


def default_cache_dir() -> str:
    """JuiceFS's places: `/var/blockmapCache` for root, `~/.blockmap/cache` for others."""
    if os.geteuid() == 0:
        return "/var/blockmapCache"
    return str(Path.home() / ".blockmap" / "cache")


def runtime_dir() -> Path:
    """Where mounts leave their pid files (found by `blockmap umount`)."""
    if os.geteuid() == 0:
        return Path("/run/blockmap")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"blockmap-{os.geteuid()}"


def pid_file(mountpoint: str) -> Path:
    key = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:16]
    return runtime_dir() / f"{key}.pid"


def mounted_here(mountpoint: str) -> str | None:
    """The file-system type mounted at `mountpoint`, or None."""
    real = os.path.realpath(mountpoint)
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the last mount at a point hides the earlier ones
        parts = line.split()
        if len(parts) >= 3 and parts[1].replace("\\040", " ") == real:
            return parts[2]
    return None


#: mountinfo writes a space, tab, newline or backslash in a path as `\\ooo` (octal).
_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


def mount_device(real: str) -> str | None:
    """The `<major>:<minor>` of what is mounted at the real path `real` (the last mount there),
    from /proc/self/mountinfo. No request reaches the file system (which may not be answering
    yet: even `os.path.realpath` of its mountpoint would wait for this process)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        parts = line.split()
        if len(parts) >= 5 and _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), parts[4]) == real:
            return parts[2]
    return None


def raise_read_ahead(real: str, nbytes: int) -> int | None:
    """Set the kernel's read-ahead of the mount at the real path `real` to at least `nbytes`;
    returns the KiB now in force, or None when it cannot be read or written (not root: Linux's
    default stays)."""
    dev = mount_device(real)
    if dev is None or nbytes <= 0:
        return None
    path = Path(BDI_READ_AHEAD.format(dev=dev))
    want = nbytes >> 10
    try:
        now = int(path.read_text().strip())
        if now < want:
            path.write_text(f"{want}\n")
            now = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        log.info("%s: kernel read-ahead left as it is (%s)", real, exc)
        return None
    return now


def check_fuse() -> None:
    if not os.path.exists(FUSE_DEVICE):
        raise MountError(FUSE_DEVICE, "no FUSE on this machine (install fuse3 and load the fuse module)")


def check_mountpoint(mountpoint: str) -> None:
    """A mountpoint must be an existing, empty directory that nothing is mounted on."""
    kind = mounted_here(mountpoint)
    if kind is not None:
        raise MountError(mountpoint, f"already mounted ({kind}); unmount it first")
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise MountError(mountpoint, "mountpoint does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(mountpoint, f"a dead mount is still there (run {FUSERMOUNT} -u -z "
                                         f"{mountpoint})") from None
        raise MountError(mountpoint, f"cannot use it as a mountpoint: {exc.strerror}") from None
    if not statmod.S_ISDIR(st.st_mode):
        raise MountError(mountpoint, "mountpoint is not a directory")
    if os.listdir(mountpoint):
        raise MountError(mountpoint, "mountpoint is not empty")


def cache_home(cache_dir: str, meta_url: str) -> Path:
    """This volume's part of the cache directory (a hash of its metadata URL)."""
    return Path(cache_dir) / hashlib.sha1(meta_url.encode()).hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(home: Path) -> Iterator[None]:
    """One mount per cache directory and volume: a second one is refused, naming the first."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise MountError(str(home), f"cache directory is in use by another mount of this volume "
                                        f"(pid {holder}); give this one another --cache-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def setup_logging(cfg: MountConfig, *, background: bool) -> None:
    """`--log FILE` (or, in the background, a log in the cache dir); `--debug` for every request."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    target = cfg.log_file
    if target is None and background:
        target = str(Path(cfg.cache_dir or default_cache_dir()) / "blockmap-mount.log")
    handler: logging.Handler
    if target is not None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(target)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if cfg.debug else logging.INFO)
    if not cfg.debug:  # pyfuse3 logs every request at DEBUG only; keep urllib3's chatter down
        logging.getLogger("urllib3").setLevel(logging.WARNING)


class Mount:
    """One mounted volume: open, serve until unmounted or signalled, ship, unmount."""

    def __init__(self, cfg: MountConfig) -> None:
        self.cfg = cfg
        self.volume: Volume | None = None

    def _open_volume(self, home: Path) -> Volume:
        cfg = self.cfg
        read_only = cfg.read_only or bool(cfg.txid) or cfg.at is not None
        params: dict[str, str] = {}
        if is_replica_url(cfg.meta_url):
            params["neighbours"] = str(MOUNT_NEIGHBOUR_BYTES)
        if cfg.hydrate and is_replica_url(cfg.meta_url) and not (cfg.txid or cfg.at):
            params["hydrate"] = str(home / "meta.db")
        memory = min(DEFAULT_MEMORY_CACHE, cfg.buffer_size // 4)
        cache = BlockCache(memory=memory, disk_dir=home / "blocks", disk=cfg.cache_size)
        return Volume.open(
            cfg.meta_url, data_url=cfg.data_url, read_only=read_only, txid=cfg.txid, timestamp=cfg.at,
            sync=None if read_only or not is_replica_url(cfg.meta_url) else cfg.sync,
            meta_params=params or None, block_cache=cache, upload_budget=cfg.buffer_size - memory, exclusive=True,
        )  # fmt: skip

    def options(self, name: str, read_only: bool) -> set[str]:
        import pyfuse3

        opts = set(pyfuse3.default_options)  # default_permissions: the kernel checks access
        opts |= {f"fsname={SUBTYPE}:{name}", f"subtype={SUBTYPE}"}
        allow_other = self.cfg.allow_other if self.cfg.allow_other is not None else os.geteuid() == 0
        if allow_other:
            opts.add("allow_other")
        if read_only:
            opts.add("ro")
        return opts

    def run(self, ready: Callable[[str | None], None] | None = None,
            describe: Callable[[BaseException], str] = str) -> int:
        """Mount and serve; `ready(None)` once the mount answers, `ready(describe(error))` if it
        cannot mount. Returns the exit code."""
        cfg = self.cfg
        announced = False

        def announce(message: str | None) -> None:
            nonlocal announced
            if ready is not None and not announced:
                announced = True
                ready(message)

        try:
            check_fuse()
            check_mountpoint(cfg.mountpoint)
            home = cache_home(cfg.cache_dir or default_cache_dir(), cfg.meta_url)
            preload(SERVING_MODULES)
            with cache_lock(home):
                self.volume = self._open_volume(home)
                try:
                    return self._serve(self.volume, announce)
                finally:
                    volume, self.volume = self.volume, None
                    volume.close()  # ships what group commit holds
                    log.info("%s: unmounted, everything shipped", cfg.mountpoint)
        except BaseException as exc:
            if not announced:
                announce(describe(exc))
            raise

    def _serve(self, volume: Volume, announce: Callable[[str | None], None]) -> int:
        from blockmap import fusefalloc

        falloc = fusefalloc.load()  # before pyfuse3 loads, so its FUSE session gains fallocate
        import pyfuse3
        import trio

        from blockmap.fuseops import FuseOperations

        cfg = self.cfg
        ops = FuseOperations(volume.engine)
        unroute = fusefalloc.route(falloc, ops) if falloc is not None else None
        pidf = pid_file(cfg.mountpoint)  # before the mount: from then on, this process must not touch it
        log.info("mounting %s (metadata %s) at %s", volume.name, volume.meta_url, cfg.mountpoint)
        pyfuse3.init(ops, cfg.mountpoint, self.options(volume.name, volume.read_only))
        try:
            pidf.parent.mkdir(parents=True, exist_ok=True)
            pidf.write_text(f"{os.getpid()}\n")

            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._signals, volume)
                    nursery.start_soon(self._announce, announce)
                    await pyfuse3.main()
                    nursery.cancel_scope.cancel()

            try:
                trio.run(main)
            finally:
                ops.close_all()
                pyfuse3.close(unmount=True)
                if unroute is not None:
                    unroute()
        finally:
            with contextlib.suppress(OSError):
                pidf.unlink()
        return 0

    async def _announce(self, announce: Callable[[str | None], None]) -> None:
        import trio

        await trio.to_thread.run_sync(os.stat, self.cfg.mountpoint)  # answered by this process's loop
        # Only now: the kernel lowers the read-ahead to what the FUSE handshake (answered by the
        # loop, before that stat) offered, 128 KiB, when the handshake's answer arrives.
        ahead = await trio.to_thread.run_sync(raise_read_ahead, os.path.realpath(self.cfg.mountpoint),
                                              self.cfg.kernel_read_ahead)
        if ahead is not None:
            log.info("%s: kernel read-ahead %d KiB", self.cfg.mountpoint, ahead)
        log.info("%s: mounted", self.cfg.mountpoint)
        announce(None)

    async def _signals(self, volume: Volume) -> None:
        import pyfuse3
        import trio

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                log.info("%s: %s: shipping and unmounting", self.cfg.mountpoint, signal.Signals(sig).name)
                pyfuse3.terminate()
                return


def run_background(cfg: MountConfig, describe: Callable[[BaseException], str] = str) -> int:
    """`-d`: fork; the child mounts and serves, the parent returns once the mount answers (0) or
    raises MountError with the child's error line (`describe` makes it: the CLI's)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the mount process
        os.close(read_fd)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        setup_logging(cfg, background=True)

        def ready(message: str | None) -> None:
            with contextlib.suppress(OSError):
                os.write(write_fd, ("OK\n" if message is None else f"ERR {message}\n").encode())
                os.close(write_fd)

        code = 1
        try:
            code = Mount(cfg).run(ready, describe)
        except BaseException as exc:  # noqa: BLE001 - logged; the parent got the line
            log.error("mount failed: %s", describe(exc))
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.readline().decode(errors="replace").strip()
    if answer == "OK":
        return 0
    if answer.startswith("ERR "):
        raise MountError(cfg.mountpoint, answer[4:])
    raise MountError(cfg.mountpoint, "the mount process ended before the mount answered (see its log)")


def run_foreground(cfg: MountConfig) -> int:
    setup_logging(cfg, background=False)
    return Mount(cfg).run()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) has finished
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def umount(mountpoint: str, *, timeout: float = UMOUNT_TIMEOUT, lazy: bool = False) -> None:
    """Unmount a blockmap mount and wait until its process has shipped everything and exited."""
    kind = mounted_here(mountpoint)
    if kind is None:
        raise MountError(mountpoint, "not mounted")
    if kind != f"fuse.{SUBTYPE}":
        raise MountError(mountpoint, f"not a blockmap mount ({kind})")
    pid: int | None = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file(mountpoint).read_text().strip())
    with contextlib.suppress(OSError):  # let the mount record open files first: fsync the root
        fd = os.open(mountpoint, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    cmd = [FUSERMOUNT, "-u", *(["-z"] if lazy else []), mountpoint]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MountError(FUSERMOUNT, "not installed (install fuse3)") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        reason = reason.split(": ", 1)[-1] if reason.startswith(FUSERMOUNT) else reason
        raise MountError(mountpoint, f"cannot unmount: {reason}")
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise MountError(mountpoint, f"unmounted, but the mount process {pid} has not finished shipping "
                                         f"after {timeout:.0f} s")
        time.sleep(EXIT_POLL)
