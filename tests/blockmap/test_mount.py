"""`blockmap mount` for real: a FUSE mount in a process of its own, used through ordinary system
calls and programs; what it wrote read back through the Python API, a remount, and the binary."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from blockmap.volume import Volume
from tests.blockmap.mounting import blockmap, cleanup, force_unmount, fsynced_write, mount, mounted, require_fuse
from tests.conftest import unique_prefix
from tests.s3server import S3Server

NAME = "mountvol"
#: Block size of the test volumes: small, so test files span several blocks and chunks' slices.
BLOCK = 64 << 10
#: How long a reader waits to see a writer's commit (its poll interval is 1 s).
FOLLOW_DEADLINE = 30.0

pytestmark = pytest.mark.usefixtures("fuse")


@pytest.fixture
def fuse() -> None:
    require_fuse()


@pytest.fixture
def vol_urls(tmp_path: Path) -> tuple[str, str]:
    meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    blockmap("format", "--meta", meta, "--data", data, "--block-size", "64K", NAME)
    return meta, data


@pytest.fixture(params=["file", "s3"])
def any_vol_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """`vol_urls`, and the same volume on the S3 server (where the mount writes blocks back:
    uploaded after close, before the metadata naming them ships)."""
    if request.param == "file":
        return request.getfixturevalue("vol_urls")  # type: ignore[no-any-return]
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = unique_prefix(request)
    meta, data = server.url(f"{prefix}-meta"), server.url("")
    blockmap("format", "--meta", meta, "--data", data, "--block-size", "64K", f"{NAME}-{prefix[-8:]}")
    return meta, data


#: Virtual files `juicefs mount` shows in its root (.accesslog streams forever): never walked.
JUICEFS_VIRTUAL = {".accesslog", ".stats", ".config", ".control", ".trash"}


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry below `root`: type, permissions, and content (file bytes, link target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in JUICEFS_VIRTUAL]
            filenames = [f for f in filenames if f not in JUICEFS_VIRTUAL]
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link {os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"dir {stat.S_IMODE(st.st_mode):o}"
            elif not stat.S_ISREG(st.st_mode):  # fifo, socket, device: never opened
                out[rel] = f"special {st.st_mode:o} {st.st_rdev}"
            else:
                out[rel] = f"file {stat.S_IMODE(st.st_mode):o} {hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


def make_tree(root: Path, rng: random.Random, files: int = 30) -> None:
    """A small tree: nested directories, files of many sizes (empty to several blocks), a hard
    link, symlinks (relative and dangling), odd names."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty").mkdir()
    for i in range(files):
        d = root / (rng.choice(["", "a", "a/b", "a/b/c"]) if i > 2 else "")
        size = rng.choice([0, 1, 100, 4095, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17])
        (d / f"f{i} ü.bin").write_bytes(rng.randbytes(size))
    os.chmod(root / "f0 ü.bin", 0o600)
    os.link(root / "f1 ü.bin", root / "a" / "hard")
    os.symlink("../f2 ü.bin", root / "a" / "rel-link")
    os.symlink("/nowhere/at/all", root / "dangling")


# -- lifecycle and the system calls ----------------------------------------------------------


def test_mount_serves_system_calls_and_umount_ships_everything(any_vol_urls: tuple[str, str],
                                                               tmp_path: Path) -> None:
    meta, _ = any_vol_urls
    mnt = tmp_path / "mnt"
    rng = random.Random(1)
    big = rng.randbytes(5 * BLOCK + 123)
    with mounted(meta, mnt, tmp_path / "cache") as m:
        assert os.path.ismount(mnt)
        assert os.listdir(mnt) == []
        (mnt / "d").mkdir(mode=0o750)
        assert stat.S_IMODE((mnt / "d").stat().st_mode) == 0o750 & ~current_umask()
        (mnt / "d" / "big").write_bytes(big)
        assert (mnt / "d" / "big").read_bytes() == big
        assert (mnt / "d" / "big").stat().st_size == len(big)
        with open(mnt / "d" / "big", "r+b") as f:  # overwrite in the middle, read back through the same fd
            f.seek(BLOCK - 10)
            f.write(b"X" * 20)
            f.seek(BLOCK - 12)
            assert f.read(24) == big[BLOCK - 12 : BLOCK - 10] + b"X" * 20 + big[BLOCK + 10 : BLOCK + 12]
        big = big[: BLOCK - 10] + b"X" * 20 + big[BLOCK + 10 :]
        os.truncate(mnt / "d" / "big", 2 * BLOCK)
        big = big[: 2 * BLOCK]
        with open(mnt / "d" / "big", "ab") as f:
            f.write(b"tail")
        big += b"tail"
        assert (mnt / "d" / "big").read_bytes() == big
        (mnt / "short").write_bytes(b"a much longer first version")
        (mnt / "short").write_bytes(b"v2")  # O_TRUNC: the kernel leaves the truncation to the mount
        assert (mnt / "short").read_bytes() == b"v2" and (mnt / "short").stat().st_size == 2
        # Names, links, renames.
        os.symlink("big", mnt / "d" / "sym")
        assert os.readlink(mnt / "d" / "sym") == "big"
        assert (mnt / "d" / "sym").read_bytes() == big
        os.link(mnt / "d" / "big", mnt / "hard")
        assert (mnt / "hard").stat().st_nlink == 2 and (mnt / "hard").stat().st_ino == (mnt / "d" / "big").stat().st_ino
        os.rename(mnt / "hard", mnt / "moved")
        assert not (mnt / "hard").exists() and (mnt / "moved").read_bytes() == big
        (mnt / "x").write_text("x")
        (mnt / "y").write_text("y")
        os.replace(mnt / "x", mnt / "y")
        assert (mnt / "y").read_text() == "x" and not (mnt / "x").exists()
        # Attributes.
        os.chmod(mnt / "y", 0o640)
        os.chown(mnt / "y", 1234, 5678)
        os.utime(mnt / "y", ns=(1_000_000_123, 2_000_000_456))
        st = (mnt / "y").stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
        os.setxattr(mnt / "y", "user.k", b"v1")
        os.setxattr(mnt / "y", "user.k", b"v2")
        assert os.getxattr(mnt / "y", "user.k") == b"v2"
        assert "user.k" in os.listxattr(mnt / "y")
        os.removexattr(mnt / "y", "user.k")
        with pytest.raises(OSError) as err:
            os.getxattr(mnt / "y", "user.k")
        assert err.value.errno == errno.ENODATA
        os.mkfifo(mnt / "fifo", 0o600)
        assert stat.S_ISFIFO((mnt / "fifo").lstat().st_mode)
        os.mknod(mnt / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        assert (mnt / "null").lstat().st_rdev == os.makedev(1, 3)
        # Errors carry the right errno.
        for call, code in [
            (lambda: os.mkdir(mnt / "d"), errno.EEXIST),
            (lambda: os.rmdir(mnt / "d"), errno.ENOTEMPTY),
            (lambda: os.unlink(mnt / "d"), errno.EISDIR),
            (lambda: os.listdir(mnt / "y"), errno.ENOTDIR),
            (lambda: os.stat(mnt / "missing"), errno.ENOENT),
            (lambda: os.rename(mnt / "d", mnt / "d" / "inside"), errno.EINVAL),
            (lambda: os.open(mnt / ("n" * 256), os.O_CREAT | os.O_WRONLY), errno.ENAMETOOLONG),
        ]:
            with pytest.raises(OSError) as err:
                call()
            assert err.value.errno == code, (call, err.value)
        sv = os.statvfs(mnt)
        assert sv.f_bsize > 0 and sv.f_blocks > sv.f_bfree - 1 and sv.f_files > 0
        (mnt / "gone").write_text("bye")
        os.unlink(mnt / "gone")
        (mnt / "e").mkdir()
        os.rmdir(mnt / "e")
        expected = tree_digest(mnt)
        assert m.pid > 0
    assert not os.path.ismount(mnt)
    # Everything is in the replica: the Python API and a fresh mount see the same tree.
    with Volume.open(meta) as vol:
        assert vol.read_file("/d/big") == big
        assert vol.readlink("/d/sym") == "big"
        assert vol.stat("/moved").st_nlink == 2
        assert vol.fsck().ok
    with mounted(meta, tmp_path / "mnt2", tmp_path / "cache2"):
        assert tree_digest(tmp_path / "mnt2") == expected


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unlinked_open_file_reads_on_until_closed(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    meta, _ = vol_urls
    mnt = tmp_path / "mnt"
    data = random.Random(2).randbytes(3 * BLOCK)
    with mounted(meta, mnt, tmp_path / "cache"):
        (mnt / "f").write_bytes(data)
        fd = os.open(mnt / "f", os.O_RDWR)
        try:
            os.unlink(mnt / "f")
            assert not (mnt / "f").exists()
            assert os.pread(fd, len(data), 0) == data
            assert os.fstat(fd).st_nlink == 0
        finally:
            os.close(fd)
    with Volume.open(meta) as vol:
        assert vol.listdir("/") == []
        assert vol.usage().total_inodes == 0
        assert vol.fsck().ok and not vol.gc().leaked  # the data went at the last close


# -- real programs ---------------------------------------------------------------------------


def run(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


def test_real_programs_on_the_mount(any_vol_urls: tuple[str, str], tmp_path: Path) -> None:
    meta, _ = any_vol_urls
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, random.Random(3))
    want = tree_digest(src)
    mnt = tmp_path / "mnt"
    with mounted(meta, mnt, tmp_path / "cache"):
        # tar in, tar out.
        run("tar", "-cf", str(tmp_path / "t.tar"), "-C", str(src), ".")
        (mnt / "untar").mkdir()
        run("tar", "-xf", str(tmp_path / "t.tar"), "-C", str(mnt / "untar"))
        assert tree_digest(mnt / "untar") == want
        run("tar", "-cf", str(tmp_path / "back.tar"), "-C", str(mnt / "untar"), ".")
        (tmp_path / "back").mkdir()
        run("tar", "-xf", str(tmp_path / "back.tar"), "-C", str(tmp_path / "back"))
        assert tree_digest(tmp_path / "back") == want
        # cp -a keeps hard links and symlinks.
        run("cp", "-a", str(src), str(mnt / "cpa"))
        assert tree_digest(mnt / "cpa") == want
        assert (mnt / "cpa" / "a" / "hard").stat().st_ino == (mnt / "cpa" / "f1 ü.bin").stat().st_ino
        # rsync, both ways, hard links included.
        run("rsync", "-aH", f"{src}/", f"{mnt / 'rs'}/")
        assert tree_digest(mnt / "rs") == want
        run("rsync", "-aH", f"{mnt / 'rs'}/", f"{tmp_path / 'rsback'}/")
        assert tree_digest(tmp_path / "rsback") == want
        # git.
        repo = mnt / "repo"
        repo.mkdir()
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
        run(*git, "init", "-q", cwd=repo)
        (repo / "README").write_text("hello\n")
        run(*git, "add", "README", cwd=repo)
        run(*git, "commit", "-q", "-m", "first", cwd=repo)
        (repo / "README").write_text("hello again\n")
        run(*git, "commit", "-q", "-am", "second", cwd=repo)
        assert run(*git, "log", "--format=%s", cwd=repo).split() == ["second", "first"]
        assert run(*git, "fsck", "--full", cwd=repo) == ""
        # SQLite: a database created, written in transactions and checked on the mount.
        db = sqlite3.connect(mnt / "app.db")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        rng = random.Random(4)
        rows = {i: rng.randbytes(rng.randrange(1, 3000)) for i in range(2000)}
        with db:
            db.executemany("INSERT INTO t VALUES (?, ?)", rows.items())
        with db:
            db.execute("DELETE FROM t WHERE id % 3 = 0")
        db.close()
        db = sqlite3.connect(mnt / "app.db")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert dict(db.execute("SELECT id, body FROM t")) == {i: b for i, b in rows.items() if i % 3}
        db.close()
        final = tree_digest(mnt)
    with mounted(meta, tmp_path / "mnt2", tmp_path / "cache2"):
        assert tree_digest(tmp_path / "mnt2") == final
    with Volume.open(meta) as vol:
        assert vol.fsck().ok


# -- durability, moving, fencing -------------------------------------------------------------



def test_fsync_survives_sigkill_and_the_volume_moves(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    """SIGKILL the mount: a mount of the same metadata elsewhere, with another cache dir, shows
    every file whose fsync returned, byte for byte; fsck is clean and gc finds only leaks."""
    meta, _ = vol_urls
    rng = random.Random(5)
    first = mount(meta, tmp_path / "mnt", tmp_path / "cache", "--sync", "interval:1h")
    durable: dict[str, bytes] = {}
    try:
        (first.mountpoint / "dir").mkdir()
        dfd = os.open(first.mountpoint / "dir", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        for i in range(8):
            data = rng.randbytes(rng.randrange(0, 4 * BLOCK))
            fsynced_write(first.mountpoint / "dir" / f"s{i}", data)
            durable[f"dir/s{i}"] = data
        (first.mountpoint / "unsynced").write_bytes(b"may be lost")  # an hour's interval: not shipped
        # fsync of a directory syncs the whole mount (syncfs(2) never reaches a FUSE file system):
        # even a file still open, its writes still buffered.
        still_open = rng.randbytes(2 * BLOCK + 5)
        fd = os.open(first.mountpoint / "still-open", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, still_open)
        root = os.open(first.mountpoint, os.O_RDONLY)
        os.fsync(root)
        os.close(root)
        durable["still-open"] = still_open
        first.kill(signal.SIGKILL)
        with contextlib.suppress(OSError):  # its flush meets a dead mount (ECONNABORTED)
            os.close(fd)
    finally:
        cleanup(first)
        force_unmount(first.mountpoint)
    with mounted(meta, tmp_path / "elsewhere", tmp_path / "cache2") as second:
        for rel, data in durable.items():
            assert (second.mountpoint / rel).read_bytes() == data, rel
    with Volume.open(meta) as vol:
        assert vol.fsck().ok
        report = vol.gc()
        assert report.pending == 0 or report.leaked is not None  # leaks allowed, nothing missing
        for rel, data in durable.items():
            assert vol.read_file("/" + rel) == data


@pytest.mark.parametrize("sync", ["commit", "interval:1s"])
def test_a_stalled_mount_cannot_fork_history(vol_urls: tuple[str, str], tmp_path: Path, sync: str) -> None:
    """SIGSTOP the mount, write through a new one, SIGCONT the old: its next commit that reaches
    the store fails with EIO and a log line naming the conflict, and so does every write after it;
    the new mount's files stay. (Under group commit an operation the resumed mount takes before
    its next ship is acknowledged locally and then lost with its interval, like any unshipped
    operation: the fsync is what fails.)"""
    meta, _ = vol_urls
    old = mount(meta, tmp_path / "old", tmp_path / "cache-old", "--sync", sync)
    try:
        fsynced_write(old.mountpoint / "before", b"1")
        old.kill(signal.SIGSTOP)
        with mounted(meta, tmp_path / "new", tmp_path / "cache-new") as new:
            fsynced_write(new.mountpoint / "from-new", b"new")
        old.kill(signal.SIGCONT)
        with pytest.raises(OSError) as err:
            fsynced_write(old.mountpoint / "from-old", b"stale")
        assert err.value.errno == errno.EIO
        assert "another writer committed" in old.log_text()
        with pytest.raises(OSError) as err:  # fenced for good: no later write builds on the stale view
            (old.mountpoint / "later").mkdir()
        assert err.value.errno == errno.EIO
        deadline = time.monotonic() + FOLLOW_DEADLINE  # reads go on, and follow the replica
        while not (old.mountpoint / "from-new").exists():
            assert time.monotonic() < deadline, "the fenced mount stopped following the replica"
            time.sleep(0.1)
        assert (old.mountpoint / "from-new").read_bytes() == b"new"
    finally:
        cleanup(old)
    with Volume.open(meta) as vol:
        assert vol.read_file("/from-new") == b"new"
        assert not vol.exists("/from-old")
        assert vol.fsck().ok


def test_read_only_mount_follows_the_writer(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    meta, _ = vol_urls
    with mounted(meta, tmp_path / "w", tmp_path / "cache-w") as writer, \
            mounted(meta, tmp_path / "r", tmp_path / "cache-r", "--read-only") as reader:
        fsynced_write(writer.mountpoint / "news", b"fresh")
        deadline = time.monotonic() + FOLLOW_DEADLINE
        # The reader polls the replica; it may first see a commit the interval shipped between the
        # create and the write (an empty file), then the fsync'd one.
        while not (reader.mountpoint / "news").exists() or (reader.mountpoint / "news").read_bytes() != b"fresh":
            assert time.monotonic() < deadline, "the read-only mount never saw the writer's commit"
            time.sleep(0.1)
        # The reader's kernel keeps the pages it read; an overwrite of the same length by the
        # writer must still reach it at a later open (the mount drops them when mtime moved).
        fsynced_write(writer.mountpoint / "news", b"FRESH")
        while (reader.mountpoint / "news").read_bytes() != b"FRESH":
            assert time.monotonic() < deadline + FOLLOW_DEADLINE, "the reader kept stale cached pages"
            time.sleep(0.1)
        with pytest.raises(OSError) as err:
            (reader.mountpoint / "nope").write_text("x")
        assert err.value.errno == errno.EROFS


def test_mount_the_past_read_only(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    meta, _ = vol_urls
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache", "--sync", "commit") as m:
        fsynced_write(m.mountpoint / "v", b"one")
        with Volume.open(meta, read_only=True) as vol:
            then = vol.txid
        fsynced_write(m.mountpoint / "w", b"two")
        os.rename(m.mountpoint / "v", m.mountpoint / "v-renamed")
    with mounted(meta, tmp_path / "past", tmp_path / "cache-past", "--txid", f"{then:x}") as past:
        assert sorted(os.listdir(past.mountpoint)) == ["v"]
        assert (past.mountpoint / "v").read_bytes() == b"one"
        with pytest.raises(OSError) as err:
            (past.mountpoint / "v").write_bytes(b"three")
        assert err.value.errno == errno.EROFS


# -- bad input -------------------------------------------------------------------------------


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockmap: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_mount_input_is_one_line(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    meta, _ = vol_urls
    cache = str(tmp_path / "cache")
    one_line(blockmap("mount", "--meta", meta, str(tmp_path / "missing"), "-d", "--cache-dir", cache, check=False),
             "does not exist")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    one_line(blockmap("mount", "--meta", meta, str(full), "-d", "--cache-dir", cache, check=False), "not empty")
    one_line(blockmap("mount", "--meta", f"file://{tmp_path}/nothing", str(tmp_path), "-d", "--cache-dir", cache,
                      check=False))
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(blockmap("mount", "--meta", f"file://{tmp_path}/novolume", str(empty), "-d", "--cache-dir", cache,
                      check=False), "no volume")
    one_line(blockmap("mount", "--meta", "ftp://x/y", str(empty), "-d", "--cache-dir", cache, check=False), "ftp://")
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache1") as m:
        one_line(blockmap("mount", "--meta", meta, str(m.mountpoint), "-d", "--cache-dir", cache, check=False),
                 "already mounted")
    one_line(blockmap("umount", str(tmp_path / "mnt"), check=False), "not mounted")
    assert not os.listdir(empty)


def test_the_kernel_reads_ahead_in_large_requests(vol_urls: tuple[str, str], tmp_path: Path) -> None:
    """Linux gives a FUSE mount 128 KiB of read-ahead, so a sequential read reaches the mount as
    128 KiB requests; the mount raises its backing device's read_ahead_kb (root may), found in
    mountinfo even where the path needs escaping, and sequential reads still return every byte."""
    if os.geteuid() != 0:
        pytest.skip("only root may raise a mount's read-ahead")
    from blockmap.mount import DEFAULT_KERNEL_READ_AHEAD

    meta, _ = vol_urls
    data = random.Random(9).randbytes(3 << 20)
    with mounted(meta, tmp_path / "mount point", tmp_path / "cache") as m:
        dev = os.stat(m.mountpoint).st_dev
        kb = int(Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb").read_text())
        assert kb >= DEFAULT_KERNEL_READ_AHEAD >> 10
        assert f"kernel read-ahead {kb} KiB" in m.log_text()
        (m.mountpoint / "seq").write_bytes(data)
    with mounted(meta, tmp_path / "mount point", tmp_path / "cache") as m:  # no page cached yet
        with open(m.mountpoint / "seq", "rb") as f:
            assert f.read() == data


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("where", ["file", "s3"])
def test_writing_a_big_file_stays_within_the_buffer_size(tmp_path: Path, where: str,
                                                         request: pytest.FixtureRequest) -> None:
    """--buffer-size bounds the blocks a mount holds (uploads waiting and the memory cache): a
    file many times that size goes through without the mount's memory growing past it (24 MiB
    measured with 32; 260 MiB with 1024, the memory cache filling with written blocks). On S3
    the blocks written back (staged until uploaded) count against the same budget."""
    if where == "file":
        meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
        name = "bigvol"
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        prefix = unique_prefix(request)
        meta, data, name = server.url(f"{prefix}-meta"), server.url(""), f"bigvol-{prefix[-8:]}"
    blockmap("format", "--meta", meta, "--data", data, name)  # 4 MiB blocks
    size, buffer_mib = 256 << 20, 32
    chunk = random.Random(6).randbytes(1 << 20)
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache", "--buffer-size", str(buffer_mib)) as m:
        (m.mountpoint / "warm").write_bytes(chunk)  # the first write's one-time costs, before the baseline
        before = peak_rss(m.pid)
        with open(m.mountpoint / "big", "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
        grown = peak_rss(m.pid) - before
        assert (m.mountpoint / "big").stat().st_size == size
        with open(m.mountpoint / "big", "rb") as f:
            f.seek(size - len(chunk) - 12345)
            assert f.read(len(chunk)) == chunk[-12345:] + chunk[:-12345]
    # The budget (32 MiB), a block being filled (4 MiB), and Python's own churn.
    assert grown < (buffer_mib + 48) << 20, f"the mount grew by {grown >> 20} MiB"
