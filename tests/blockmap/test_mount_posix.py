"""POSIX semantics of `blockmap mount`, through real system calls on a real FUSE mount.

One mount serves the module (it starts in about a second; tests/blockmap/mounting.py runs it);
each test works in a directory of its own. The metadata is checked with `blockmap fsck` once the
mount is gone. pjdfstest itself
runs only when PJDFSTEST names a build of it (a slow test).

What the mount cannot offer is stated here rather than faked: setxattr's XATTR_CREATE /
XATTR_REPLACE flags never reach the file system (pyfuse3 checks them with a getxattr first, so
they hold for one caller but are not atomic against another). fallocate, which pyfuse3 does not
carry either, is added to its session by blockmap.fusefalloc.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blockmap.meta import connect_meta
from blockmap.node import FLAG_APPEND, FLAG_IMMUTABLE
from blockmap.slices import MAX_FILE_SIZE
from blockmap.volume import Volume
from tests.blockmap.mounting import blockmap, mounted, require_fuse

TIMEOUT = 120
#: renameat2 flags (linux/fs.h).
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
#: A file capability as setcap writes it (VFS_CAP_REVISION_2: cap_net_bind_service permitted).
CAP_NET_BIND_SERVICE = struct.pack("<5I", 0x02000000, 1 << 10, 0, 0, 0)
#: A uid and gid that own nothing on the mount (nobody).
OTHER_ID = 65534

_libc = ctypes.CDLL(None, use_errno=True)


def new_volume(home: Path) -> str:
    """Format a volume under `home`; returns its metadata URL."""
    meta = f"file://{home}/meta"
    blockmap("format", "--meta", meta, "--data", f"file://{home}/data", "posixvol")
    return meta


@pytest.fixture(scope="module")
def mnt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One mount for the module; once it is unmounted, fsck checks everything the tests did."""
    require_fuse()
    home = tmp_path_factory.mktemp("posix")
    meta = new_volume(home)
    with mounted(meta, home / "mnt", home / "cache"):
        yield home / "mnt"
    blockmap("fsck", "--meta", meta)


@pytest.fixture
def d(mnt: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the mount for one test."""
    path = mnt / re.sub(r"\W", "_", request.node.name)
    path.mkdir()
    return path


def errno_of(fn: object, *args: object, **kwargs: object) -> int:
    """The errno `fn(*args)` fails with (AssertionError when it succeeds)."""
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except OSError as exc:
        assert exc.errno is not None
        return exc.errno
    raise AssertionError(f"{fn} succeeded")


def renameat2(src: Path, dst: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def old_times(path: Path) -> int:
    """Set a path's atime and mtime to 2001 (so any change is later, with no sleeping); returns it."""
    past = 1_000_000_000 * 10**9
    os.utime(path, ns=(past, past), follow_symlinks=False)
    return past


# -- open(O_TRUNC) -------------------------------------------------------------------------------
def test_open_trunc_empties_the_file_and_marks_its_times(d: Path) -> None:
    f = d / "f"
    f.write_bytes(b"hello")
    dir_mtime = (d).stat().st_mtime_ns
    past = old_times(f)
    ctime = f.stat().st_ctime_ns
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    st = f.stat()
    assert st.st_size == 0 and f.read_bytes() == b""
    assert st.st_mtime_ns > past and st.st_ctime_ns > ctime
    assert d.stat().st_mtime_ns == dir_mtime  # the entry did not change
    past = old_times(f)  # an empty file's times move too (POSIX: the file existed)
    os.close(os.open(f, os.O_RDWR | os.O_TRUNC))
    assert f.stat().st_mtime_ns > past


def test_shell_redirection_replaces_contents(d: Path) -> None:
    f = d / "f"
    subprocess.run(["sh", "-c", f"echo a-long-first-line > {f}; echo b > {f}"], check=True, timeout=TIMEOUT)
    assert f.read_bytes() == b"b\n"


def test_open_trunc_drops_another_handles_buffered_writes(d: Path) -> None:
    f = d / "f"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"buffered", 0)
        os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
        assert os.fstat(fd).st_size == 0 and os.pread(fd, 100, 0) == b""
        os.pwrite(fd, b"new", 0)
    finally:
        os.close(fd)
    assert f.read_bytes() == b"new"


# -- unlinked while open -------------------------------------------------------------------------
def test_unlinked_open_file_keeps_working(d: Path) -> None:
    f = d / "f"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"Hello, World!")  # buffered when the name goes
        os.setxattr(fd, "user.before", b"1")
        os.unlink(f)
        assert not f.exists()
        st = os.fstat(fd)
        assert (st.st_nlink, st.st_size) == (0, 13)
        assert os.pread(fd, 100, 0) == b"Hello, World!"
        os.pwrite(fd, b"; more", 13)
        assert os.fstat(fd).st_size == 19 and os.pread(fd, 100, 0) == b"Hello, World!; more"
        os.ftruncate(fd, 5)
        assert os.fstat(fd).st_size == 5 and os.pread(fd, 100, 0) == b"Hello"
        os.ftruncate(fd, 8)
        assert os.pread(fd, 100, 0) == b"Hello\0\0\0"
        again = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)  # reopened through /proc, as locally
        try:
            assert os.pread(again, 100, 0) == b"Hello\0\0\0"
            os.pwrite(again, b"!", 7)
        finally:
            os.close(again)
        assert os.pread(fd, 100, 0) == b"Hello\0\0!"
        os.fchmod(fd, 0o600)
        os.setxattr(fd, "user.after", b"2")
        assert os.getxattr(fd, "user.before") == b"1" and sorted(os.listxattr(fd)) == ["user.after", "user.before"]
        os.fsync(fd)
        st = os.fstat(fd)
        assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_ISREG(st.st_mode) and st.st_nlink == 0
    finally:
        os.close(fd)
    assert sorted(os.listdir(d)) == []


def test_replaced_by_rename_while_open_reads_the_old_contents(d: Path) -> None:
    (d / "old").write_bytes(b"old contents")
    (d / "new").write_bytes(b"new")
    with open(d / "old", "rb") as held:
        os.rename(d / "new", d / "old")
        assert held.read() == b"old contents"
        assert os.fstat(held.fileno()).st_nlink == 0
    assert (d / "old").read_bytes() == b"new"


def test_unlinked_open_data_is_released_at_last_close(tmp_path: Path) -> None:
    require_fuse()
    meta = new_volume(tmp_path)
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache") as m:
        f = m.mountpoint / "f"
        f.write_bytes(b"x" * 200_000)
        inode = f.stat().st_ino
        os.setxattr(f, "user.a", b"1")
        fd = os.open(f, os.O_RDWR)
        try:
            os.unlink(f)
            os.setxattr(fd, "user.b", b"2")
            os.pwrite(fd, b"y" * 100_000, 200_000)  # written after the unlink: released too
            assert os.pread(fd, 10, 299_990) == b"y" * 10
        finally:
            os.close(fd)
    db = connect_meta(meta, read_only=True)
    try:
        for table in ("jfs_delfile", "jfs_node", "jfs_chunk", "jfs_xattr"):
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE inode = ?", (inode,)).fetchall() == [(0,)]
        assert db.execute("SELECT COUNT(*) FROM jfs_chunk_ref WHERE refs > 0").fetchall() == [(0,)]
    finally:
        db.close()
    blockmap("fsck", "--meta", meta)
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file() and "/chunks/" in str(p)]


def test_juicefs_immutable_and_append_only_flags_are_honoured(tmp_path: Path) -> None:
    """chattr +i / +a set by JuiceFS (jfs_node.flags; blockmap cannot set them: pyfuse3 has no
    ioctl) refuse what Linux refuses on a local disk, with EPERM."""
    require_fuse()
    meta = new_volume(tmp_path)
    with Volume.open(meta) as vol:
        for d in ("immdir", "appdir"):
            vol.mkdir(f"/{d}")
            vol.write_file(f"/{d}/inside", b"in")
        for name in ("imm", "app"):
            vol.write_file(f"/{name}", b"data")
        flags = {"/imm": FLAG_IMMUTABLE, "/immdir": FLAG_IMMUTABLE, "/app": FLAG_APPEND, "/appdir": FLAG_APPEND}
        inodes = {p: vol.stat(p).st_ino for p in flags}
        vol.engine.write(lambda c: [c.execute("UPDATE jfs_node SET flags = ? WHERE inode = ?", (flags[p], i))
                                    for p, i in inodes.items()])
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache") as m:
        root = m.mountpoint
        for name in ("imm", "app"):
            f = root / name
            assert f.read_bytes() == b"data"
            assert errno_of(os.open, f, os.O_WRONLY) == errno.EPERM
            assert errno_of(os.open, f, os.O_WRONLY | os.O_APPEND | os.O_TRUNC) == errno.EPERM
            assert errno_of(os.truncate, f, 1) == errno.EPERM
            assert errno_of(os.unlink, f) == errno.EPERM
            assert errno_of(os.rename, f, root / "elsewhere") == errno.EPERM
            assert errno_of(os.chmod, f, 0o600) == errno.EPERM
            assert errno_of(os.link, f, root / f"{name}-link") == errno.EPERM
            assert errno_of(os.setxattr, f, "user.x", b"1") == errno.EPERM
        assert errno_of(os.open, root / "imm", os.O_WRONLY | os.O_APPEND) == errno.EPERM
        with open(root / "app", "ab") as out:  # append-only: appending is what it allows
            out.write(b"+more")
        assert (root / "app").read_bytes() == b"data+more"
        assert errno_of(os.open, root / "immdir" / "new", os.O_CREAT | os.O_WRONLY) == errno.EPERM
        assert errno_of(os.unlink, root / "immdir" / "inside") == errno.EPERM
        (root / "appdir" / "new").write_bytes(b"added")  # an append-only directory gains entries
        assert errno_of(os.unlink, root / "appdir" / "inside") == errno.EPERM
        assert errno_of(os.rename, root / "appdir" / "inside", root / "out") == errno.EPERM
        assert sorted(os.listdir(root / "appdir")) == ["inside", "new"]
    blockmap("fsck", "--meta", meta)


# -- times -----------------------------------------------------------------------------------------
def test_write_marks_mtime_before_close_and_utimens_after_it_wins(d: Path) -> None:
    f = d / "f"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        past = old_times(f)
        os.write(fd, b"data")
        assert os.stat(f).st_mtime_ns > past and os.fstat(fd).st_ctime_ns > past
        os.utime(fd, ns=(past, past))  # as cp -p does before closing: the buffered write is older
    finally:
        os.close(fd)
    assert f.stat().st_mtime_ns == past and f.read_bytes() == b"data"


def test_link_unlink_rename_mark_ctime_and_nlink(d: Path) -> None:
    a, b, c = d / "a", d / "b", d / "c"
    a.write_bytes(b"a")
    c.write_bytes(b"c")
    ctime = a.stat().st_ctime_ns
    os.link(a, b)
    assert a.stat().st_nlink == 2 and a.stat().st_ctime_ns > ctime
    ctime = b.stat().st_ctime_ns
    os.rename(c, a)  # over one link of a multiply-linked file (pjdfstest rename/23)
    assert b.stat().st_nlink == 1 and b.stat().st_ctime_ns > ctime
    ctime = b.stat().st_ctime_ns
    os.link(b, d / "b2")
    os.unlink(d / "b2")
    assert b.stat().st_nlink == 1 and b.stat().st_ctime_ns > ctime


# -- directories -----------------------------------------------------------------------------------
def test_readdir_lists_dot_entries_and_every_name(d: Path) -> None:
    sub = d / "sub"
    sub.mkdir()
    names = {f"{i:04d}-" + "n" * 60 for i in range(300)}  # several of the kernel's readdir buffers
    for n in names:
        (sub / n).touch()
    listed = subprocess.run(["ls", "-a", str(sub)], capture_output=True, text=True, check=True).stdout.split()
    assert listed[:2] == [".", ".."] and set(listed[2:]) == names
    with os.scandir(sub) as it:
        entries = {e.name: e for e in it}
    assert set(entries) == names and all(e.is_file() for e in entries.values())
    assert sub.stat().st_nlink == 2 and d.stat().st_nlink == 3


def test_directory_errors(d: Path) -> None:
    (d / "dir" / "sub").mkdir(parents=True)
    (d / "file").write_bytes(b"")
    assert errno_of(os.unlink, d / "dir") == errno.EISDIR
    assert errno_of(os.rmdir, d / "dir") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, d / "file") == errno.ENOTDIR
    assert errno_of(os.rename, d / "dir", d / "dir" / "sub" / "x") == errno.EINVAL
    assert errno_of(os.rename, d / "dir", d / "file") == errno.ENOTDIR
    assert errno_of(os.rename, d / "file", d / "dir") == errno.EISDIR
    (d / "other" / "x").mkdir(parents=True)
    assert errno_of(os.rename, d / "dir", d / "other") == errno.ENOTEMPTY
    assert errno_of(os.link, d / "dir", d / "dirlink") == errno.EPERM
    assert errno_of(os.mkdir, d / "file") == errno.EEXIST
    assert errno_of(os.open, d / "file", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    assert errno_of(os.open, d / "dir", os.O_WRONLY) == errno.EISDIR
    assert errno_of(os.open, d / "file", os.O_RDONLY | os.O_DIRECTORY) == errno.ENOTDIR
    assert errno_of(os.stat, d / "missing") == errno.ENOENT
    assert errno_of(open, d / ("x" * 256), "w") == errno.ENAMETOOLONG
    (d / ("y" * 255)).write_bytes(b"max")
    assert (d / ("y" * 255)).read_bytes() == b"max"


def test_rename_flags(d: Path) -> None:
    a, b, c = d / "a", d / "b", d / "c"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    (d / "sub").mkdir()
    renameat2(a, b, RENAME_EXCHANGE)
    assert (a.read_bytes(), b.read_bytes()) == (b"B", b"A")
    renameat2(a, d / "sub", RENAME_EXCHANGE)  # a file and a directory trade places
    assert a.is_dir() and (d / "sub").read_bytes() == b"B"
    assert errno_of(renameat2, b, d / "sub", RENAME_NOREPLACE) == errno.EEXIST
    assert b.read_bytes() == b"A"
    renameat2(b, c, RENAME_NOREPLACE)
    assert c.read_bytes() == b"A" and not b.exists()
    assert errno_of(renameat2, c, d / "missing", RENAME_EXCHANGE) == errno.ENOENT
    assert errno_of(renameat2, c, a, RENAME_EXCHANGE | RENAME_NOREPLACE) == errno.EINVAL


# -- special files -----------------------------------------------------------------------------------
def test_special_files_and_symlinks(d: Path) -> None:
    os.mkfifo(d / "fifo", 0o640)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(d / "sock"))
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode) and stat.S_IMODE(os.lstat(d / "fifo").st_mode) == 0o640
    assert stat.S_ISSOCK(os.lstat(d / "sock").st_mode)
    if os.geteuid() == 0:  # device nodes need CAP_MKNOD
        os.mknod(d / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.mknod(d / "blk", stat.S_IFBLK | 0o600, os.makedev(8, 1))
        assert stat.S_ISCHR(os.lstat(d / "chr").st_mode) and os.lstat(d / "chr").st_rdev == os.makedev(1, 3)
        assert stat.S_ISBLK(os.lstat(d / "blk").st_mode) and os.lstat(d / "blk").st_rdev == os.makedev(8, 1)
    target = "t" * 4095
    os.symlink(target, d / "long")
    assert os.readlink(d / "long") == target and os.lstat(d / "long").st_size == 4095
    assert errno_of(os.symlink, "t" * 4097, d / "toolong") == errno.ENAMETOOLONG
    assert errno_of(os.readlink, d / "fifo") == errno.EINVAL
    os.symlink("loop", d / "loop")
    assert errno_of(os.stat, d / "loop") == errno.ELOOP


# -- extended attributes -------------------------------------------------------------------------------
def test_xattrs(d: Path) -> None:
    f = d / "f"
    f.write_bytes(b"")
    assert os.listxattr(f) == []
    os.setxattr(f, "user.a", b"1")
    os.setxattr(f, "user.empty", b"")
    assert os.getxattr(f, "user.a") == b"1" and os.getxattr(f, "user.empty") == b""
    assert sorted(os.listxattr(f)) == ["user.a", "user.empty"]
    assert errno_of(os.setxattr, f, "user.a", b"x", os.XATTR_CREATE) == errno.EEXIST
    assert errno_of(os.setxattr, f, "user.b", b"x", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(f, "user.a", b"3", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.a") == b"3"
    assert errno_of(os.getxattr, f, "user.missing") == errno.ENODATA
    assert errno_of(os.removexattr, f, "user.missing") == errno.ENODATA
    os.setxattr(f, "user.big", b"v" * 65536)
    assert len(os.getxattr(f, "user.big")) == 65536
    assert errno_of(os.setxattr, f, "user.huge", b"v" * 65537) == errno.E2BIG
    assert errno_of(os.setxattr, f, "user." + "n" * 251, b"") == errno.ERANGE
    os.removexattr(f, "user.a")
    assert "user.a" not in os.listxattr(f)


def test_names_that_are_not_utf8(d: Path) -> None:
    """Linux names are bytes: entries, symlink targets and attribute names that are not UTF-8
    round-trip (an attribute name like this once ended the mount)."""
    name, target, attr = b"\xff\xfe-file", b"\xff-target", b"user.\xff\x80"
    base = os.fsencode(d)
    with open(base + b"/" + name, "wb") as f:
        f.write(b"z")
    os.symlink(target, base + b"/link\xff")
    os.setxattr(base + b"/" + name, attr, b"v")
    assert sorted(os.listdir(base)) == [b"link\xff", name]
    assert os.readlink(base + b"/link\xff") == target
    assert os.getxattr(base + b"/" + name, attr) == b"v"
    assert [os.fsencode(n) for n in os.listxattr(base + b"/" + name)] == [attr]
    os.removexattr(base + b"/" + name, attr)
    assert os.listxattr(base + b"/" + name) == []


def test_offsets_up_to_the_largest_file(d: Path) -> None:
    """Files end before 128 PiB, JuiceFS's limit (beyond it: EFBIG, as JuiceFS answers; a
    truncate to 2^63 - 1 once made the volume's usage counter overflow)."""
    f = d / "f"
    f.write_bytes(b"")
    fd = os.open(f, os.O_RDWR)
    try:
        os.pwrite(fd, b"end", MAX_FILE_SIZE - 4)
        assert os.fstat(fd).st_size == MAX_FILE_SIZE - 1
        assert os.pread(fd, 8, MAX_FILE_SIZE - 9) == b"\0" * 5 + b"end"
        assert errno_of(os.pwrite, fd, b"x", MAX_FILE_SIZE - 1) == errno.EFBIG
        assert errno_of(os.ftruncate, fd, MAX_FILE_SIZE) == errno.EFBIG
        assert errno_of(os.ftruncate, fd, 2**63 - 1) == errno.EFBIG
        assert os.fstat(fd).st_size == MAX_FILE_SIZE - 1
        os.ftruncate(fd, 2)
        assert os.pread(fd, 10, 0) == b"\0\0"
    finally:
        os.close(fd)
    assert f.stat().st_size == 2


def test_acls_are_refused_and_capabilities_kept(d: Path) -> None:
    """As JuiceFS without --enable-acl: an ACL is refused (so cp -a and tar fall back to chmod)
    rather than stored and never enforced. A file capability is kept as an attribute until the
    next write drops it, as the kernel asks (the mount is nosuid: exec ignores it)."""
    f = d / "f"
    f.write_bytes(b"")
    minimal_acl = bytes.fromhex("02000000" "0100" "0600" "ffffffff" "0400" "0400" "ffffffff" "2000" "0400" "ffffffff")
    assert errno_of(os.setxattr, f, "system.posix_acl_access", minimal_acl) == errno.EOPNOTSUPP
    assert errno_of(os.getxattr, f, "system.posix_acl_access") == errno.ENODATA
    assert errno_of(os.getxattr, f, "security.capability") == errno.ENODATA
    with open(f, "ab") as out:
        out.write(b"writable")
    os.setxattr(f, "security.capability", CAP_NET_BIND_SERVICE)
    assert os.getxattr(f, "security.capability") == CAP_NET_BIND_SERVICE
    with open(f, "ab") as out:  # any write drops it (the kernel removes it, as on a local disk)
        out.write(b" still")
    assert f.read_bytes() == b"writable still"
    assert errno_of(os.getxattr, f, "security.capability") == errno.ENODATA


# -- fallocate (blockmap.fusefalloc adds it to pyfuse3's session) ----------------------------------
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10


def test_fallocate_extension_is_built() -> None:
    assert importlib.util.find_spec("blockmap._fusefalloc") is not None, (
        "blockmap/_fusefalloc.c is not built: install libfuse3-dev and pkg-config, then "
        "`python setup.py build_ext --inplace` (or `make install`)")


def test_fallocate_grows_the_file_unless_keep_size(d: Path) -> None:
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"abc")
        fallocate(fd, 0, 0, 10_000)
        assert os.fstat(fd).st_size == 10_000
        assert os.pread(fd, 10_000, 0) == b"abc" + bytes(9_997)  # buffered bytes kept, the rest zeros
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 50_000)
        assert os.fstat(fd).st_size == 10_000
        fallocate(fd, 0, 5_000, 100)  # inside the file: nothing changes
        assert os.fstat(fd).st_size == 10_000
        os.posix_fallocate(fd, 0, 20_000)
        assert os.fstat(fd).st_size == 20_000
    finally:
        os.close(fd)
    assert (d / "f").stat().st_size == 20_000  # recorded, not only in the kernel's cache


def test_fallocate_punch_hole_reads_zeros_and_keeps_the_rest(d: Path) -> None:
    data = os.urandom(3 << 20)
    (d / "f").write_bytes(data)
    fd = os.open(d / "f", os.O_RDWR)
    try:
        assert errno_of(fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 4096) == errno.EOPNOTSUPP  # needs KEEP_SIZE
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1_000_000, 500_000)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len(data) - 10, 1 << 20)  # past the end
        assert os.fstat(fd).st_size == len(data)
    finally:
        os.close(fd)
    want = bytearray(data)
    want[1_000_000:1_500_000] = bytes(500_000)
    want[-10:] = bytes(10)
    assert (d / "f").read_bytes() == bytes(want)


def test_fallocate_zero_range_and_unsupported_modes(d: Path) -> None:
    data = os.urandom(100_000)
    (d / "f").write_bytes(data)
    fd = os.open(d / "f", os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 90_000, 20_000)  # the kernel passes it to FUSE
        assert os.fstat(fd).st_size == 110_000
        assert os.pread(fd, 110_000, 0) == data[:90_000] + bytes(20_000)
        assert errno_of(fallocate, fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096) in (errno.EOPNOTSUPP, errno.EINVAL)
    finally:
        os.close(fd)
    ro = os.open(d / "f", os.O_RDONLY)
    try:
        assert errno_of(fallocate, ro, 0, 0, 200_000) == errno.EBADF  # not open for writing
    finally:
        os.close(ro)


# -- the volume and permissions ------------------------------------------------------------------
def test_statfs(mnt: Path, d: Path) -> None:
    before = os.statvfs(mnt)
    for i in range(5):
        (d / str(i)).touch()
    after = os.statvfs(mnt)
    assert after.f_namemax == 255 and after.f_bsize > 0 and after.f_blocks >= after.f_bfree
    assert before.f_ffree - after.f_ffree == 5


def as_other_user(fn: Callable[[], list[str]]) -> list[str]:
    """`fn()` in a forked child running as another user when root (as ourselves otherwise); the
    child only makes system calls and writes its answer to a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(OTHER_ID, OTHER_ID, OTHER_ID)
                os.setresuid(OTHER_ID, OTHER_ID, OTHER_ID)
            os.write(w, " ".join(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return out.split()


def test_the_kernel_checks_permissions(d: Path) -> None:
    """default_permissions: the kernel refuses from the modes and owners the mount reports."""
    secret = d / "secret"
    secret.write_bytes(b"s")
    secret.chmod(0o000 if os.geteuid() else 0o600)
    (d / "closed").mkdir()
    (d / "closed").chmod(0o555)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # the temporary directories above are private

    def code(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
        try:
            fn(*args, **kwargs)
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "ok"

    try:
        got = as_other_user(lambda: [
            code(os.open, "secret", os.O_RDONLY, dir_fd=dfd),
            code(os.mkdir, "closed/x", dir_fd=dfd),
            code(os.chown, "secret", 12345, -1, dir_fd=dfd),
        ])  # fmt: skip
    finally:
        os.close(dfd)
    assert got == ["EACCES", "EACCES", "EPERM"]


# -- pjdfstest (slow; PJDFSTEST names a build of github.com/pjd/pjdfstest) -------------------------
@pytest.mark.slow
def test_pjdfstest(d: Path) -> None:
    build = os.environ.get("PJDFSTEST")
    if not build:
        pytest.skip("PJDFSTEST is not set to a pjdfstest build directory")
    tests = Path(build) / "tests"
    prove = shutil.which("prove")
    assert tests.is_dir() and prove, f"{tests} or prove missing"
    done = subprocess.run([prove, "-r", str(tests)], cwd=d, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:]
