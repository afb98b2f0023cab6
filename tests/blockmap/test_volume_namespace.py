"""Directory-entry operations: results, JuiceFS row semantics, errno-correct failures."""

from __future__ import annotations

import errno
import io
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from blockmap.errors import VolumeFormatError
from blockmap.node import TYPE_DIRECTORY, TYPE_FILE, TYPE_SYMLINK
from blockmap.volume import Volume
from tests.blockmap.conftest import meta_conn
from tests.blockmap.metacheck import metadata_problems


def _raises(code: int) -> Any:
    return pytest.raises(OSError, match=rf"\[Errno {code}\]")


def test_format_then_open_sees_the_same_volume(vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with Volume.format(meta, data, "myvol", block_size=1 << 20) as v:
        v.mkdir("/d")
        uuid = v.settings.uuid
    with Volume.open(meta) as v:
        assert v.settings.uuid == uuid
        assert v.settings.block_size == 1 << 20
        assert v.data_url == data
        assert v.listdir("/") == ["d"]
    assert (Path(data[len("file://") :]) / "myvol" / "juicefs_uuid").read_text() == uuid


def test_format_refuses_an_existing_volume(vol: Volume, vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with pytest.raises(VolumeFormatError, match="already holds a volume"):
        Volume.format(meta, data, "other")


def test_format_refuses_an_application_database(tmp_path: Path) -> None:
    """An application's replica (tables of its own) is not formatted: its tables stay alone."""
    import vfs

    replica = f"file://{tmp_path}/app-ltx"
    app = apsw.Connection(f"file:app.db?replica={replica}", vfs=vfs.VFS_NAME,
                          flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    app.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    app.execute("INSERT INTO items (name) VALUES ('kept')")
    app.close()
    with pytest.raises(VolumeFormatError, match="tables of its own \\(items\\)"):
        Volume.format(replica, f"file://{tmp_path}/data", "vol")
    local = tmp_path / "app.db"
    apsw.Connection(str(local)).execute("CREATE TABLE users (x)")
    with pytest.raises(VolumeFormatError, match="users"):
        Volume.format(f"sqlite3://{local}", f"file://{tmp_path}/data", "vol")
    check = apsw.Connection(str(local))
    assert [r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["users"]
    reader = apsw.Connection(f"file:app.db?replica={replica}&mode=ro", vfs=vfs.VFS_NAME,
                             flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    tables = [r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["items"]
    reader.close()


def test_open_refuses_a_database_without_a_volume(tmp_path: Path) -> None:
    apsw.Connection(str(tmp_path / "empty.db")).execute("CREATE TABLE t (x)")
    with pytest.raises(VolumeFormatError, match="no volume"):
        Volume.open(f"sqlite3://{tmp_path}/empty.db")


def test_format_rejects_bad_names_and_block_sizes(vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with pytest.raises(VolumeFormatError, match="invalid name"):
        Volume.format(meta, data, "Bad_Name")
    with pytest.raises(VolumeFormatError, match="power of two"):
        Volume.format(meta, data, "okname", block_size=3 << 20)


def test_mkdir_create_stat_readdir(vol: Volume) -> None:
    vol.umask = 0o022
    d = vol.mkdir("/dir", 0o755)
    assert stat.S_ISDIR(d.st_mode) and stat.S_IMODE(d.st_mode) == 0o755
    assert d.st_nlink == 2 and d.st_size == 4096
    f = vol.create("/dir/file")
    assert stat.S_ISREG(f.st_mode) and stat.S_IMODE(f.st_mode) == 0o644
    assert f.st_size == 0 and f.st_nlink == 1 and f.parent == d.st_ino
    assert vol.stat("/").st_nlink == 3
    entries = list(vol.readdir("/dir", with_attrs=True))
    assert [(e.name, e.inode, e.type) for e in entries] == [("file", f.st_ino, TYPE_FILE)]
    assert entries[0].attr == vol.stat("/dir/file")
    assert vol.stat("/dir").st_mtime_ns >= d.st_mtime_ns
    assert metadata_problems(meta_conn(vol)) == []


def test_errors_carry_the_right_errno(vol: Volume) -> None:
    vol.mkdir("/d")
    vol.write_file("/f", b"x")
    with _raises(errno.EEXIST):
        vol.mkdir("/d")
    with _raises(errno.ENOENT):
        vol.stat("/missing")
    with _raises(errno.ENOENT):
        vol.mkdir("/missing/sub")
    with _raises(errno.ENOTDIR):
        vol.mkdir("/f/sub")
    with _raises(errno.ENOTDIR):
        vol.rmdir("/f")
    with _raises(errno.EISDIR):
        vol.unlink("/d")
    with _raises(errno.EISDIR):
        vol.open_file("/d", "w")
    with _raises(errno.ENAMETOOLONG):
        vol.create("/" + "n" * 256)
    with _raises(errno.EEXIST):
        vol.create("/f", exclusive=True)
    with _raises(errno.ENOTDIR):
        list(vol.readdir("/f"))
    vol.create("/d/x")
    with _raises(errno.ENOTEMPTY):
        vol.rmdir("/d")
    with _raises(errno.EINVAL):
        vol.readlink("/f")
    with _raises(errno.EINVAL):
        vol.truncate("/f", -1)
    with _raises(errno.EBUSY):
        vol.rmdir("/")
    # 255 bytes is fine
    vol.create("/" + "n" * 255)
    assert isinstance(_catch(lambda: vol.stat("/nope")), FileNotFoundError)


def _catch(fn: object) -> BaseException | None:
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001
        return exc
    return None


def test_unlink_and_rmdir_remove_rows_and_usage(vol: Volume) -> None:
    vol.mkdir("/d")
    vol.write_file("/d/f", b"a" * 5000)
    assert vol.usage().total_inodes == 2
    assert vol.usage().used_space == 4096 + 8192
    vol.unlink("/d/f")
    vol.rmdir("/d")
    assert vol.listdir("/") == []
    assert vol.usage().used_space == 0 and vol.usage().total_inodes == 0
    db = meta_conn(vol)
    assert db.execute("SELECT COUNT(*) FROM jfs_node").fetchall()[0][0] == 1
    assert db.execute("SELECT COUNT(*) FROM jfs_chunk").fetchall()[0][0] == 0
    assert db.execute("SELECT COUNT(*) FROM jfs_chunk_ref").fetchall()[0][0] == 0
    assert db.execute("SELECT COUNT(*) FROM jfs_delfile").fetchall()[0][0] == 0
    assert db.execute("SELECT COUNT(*) FROM jfs_dir_stats WHERE inode != 1").fetchall()[0][0] == 0
    assert list(vol.store.list("testvol/chunks/")) == []
    assert metadata_problems(meta_conn(vol)) == []


def test_rename_moves_files_and_directories(vol: Volume) -> None:
    vol.makedirs("/a/b")
    vol.write_file("/a/b/f", b"hello")
    vol.mkdir("/c")
    vol.rename("/a/b", "/c/b2")
    assert vol.read_file("/c/b2/f") == b"hello"
    assert vol.stat("/a").st_nlink == 2 and vol.stat("/c").st_nlink == 3
    assert vol.stat("/c/b2").parent == vol.stat("/c").st_ino
    vol.rename("/c/b2/f", "/g")
    assert vol.stat("/g").parent == 1
    assert metadata_problems(meta_conn(vol)) == []


def test_rename_replaces_files_and_empty_dirs(vol: Volume) -> None:
    vol.write_file("/a", b"A" * 100)
    vol.write_file("/b", b"B" * 70000)
    vol.rename("/a", "/b")
    assert vol.read_file("/b") == b"A" * 100
    assert vol.listdir("/") == ["b"]
    assert vol.usage().total_inodes == 1 and vol.usage().used_space == 4096
    # the replaced file's blocks are gone
    keys = [o.key for o in vol.store.list("testvol/chunks/")]
    assert len(keys) == 1
    vol.mkdir("/d1")
    vol.mkdir("/d2")
    vol.rename("/d1", "/d2")
    assert vol.listdir("/") == ["b", "d2"]
    assert vol.stat("/").st_nlink == 3
    vol.create("/d2/x")
    vol.mkdir("/d3")
    with _raises(errno.ENOTEMPTY):
        vol.rename("/d3", "/d2")
    with _raises(errno.EISDIR):
        vol.rename("/b", "/d3")
    with _raises(errno.ENOTDIR):
        vol.rename("/d3", "/b")
    with _raises(errno.EINVAL):
        vol.rename("/d2", "/d2/x2")
    with _raises(errno.EEXIST):
        vol.rename("/b", "/d2/x", no_replace=True)
    assert metadata_problems(meta_conn(vol)) == []


def test_hard_links_share_the_inode(vol: Volume) -> None:
    vol.mkdir("/d")
    vol.write_file("/d/f", b"data")
    a = vol.link("/d/f", "/g")
    assert a.st_nlink == 2 and a.parent == 0
    assert vol.stat("/g").st_ino == vol.stat("/d/f").st_ino
    with _raises(errno.EPERM):
        vol.link("/d", "/d-link")
    with _raises(errno.EEXIST):
        vol.link("/d/f", "/g")
    # Writing through one link is seen through the other, and both directories' stats follow.
    with vol.open_file("/g", "a") as f:
        f.write(b"+more")
    assert vol.read_file("/d/f") == b"data+more"
    assert metadata_problems(meta_conn(vol)) == []
    vol.unlink("/d/f")
    assert vol.stat("/g").st_nlink == 1
    assert vol.read_file("/g") == b"data+more"
    assert vol.usage().total_inodes == 2
    vol.unlink("/g")
    assert vol.usage().total_inodes == 1
    assert metadata_problems(meta_conn(vol)) == []


def test_symlinks(vol: Volume) -> None:
    vol.makedirs("/real/dir")
    vol.write_file("/real/dir/f", b"x")
    s = vol.symlink("real/dir", "/ln")
    assert s.type == TYPE_SYMLINK and s.st_size == len("real/dir")
    assert stat.S_ISLNK(vol.lstat("/ln").st_mode)
    assert vol.stat("/ln").type == TYPE_DIRECTORY
    assert vol.readlink("/ln") == "real/dir"
    assert vol.read_file("/ln/f") == b"x"
    vol.symlink("/real", "/abs")
    assert vol.read_file("/abs/dir/f") == b"x"
    vol.symlink("loop2", "/loop1")
    vol.symlink("loop1", "/loop2")
    with _raises(errno.ELOOP):
        vol.stat("/loop1")
    with _raises(errno.ENAMETOOLONG):
        vol.symlink("t" * 4097, "/long")
    vol.unlink("/ln")
    assert vol.exists("/real/dir/f")
    assert metadata_problems(meta_conn(vol)) == []


def test_chmod_chown_utimens(vol: Volume) -> None:
    vol.write_file("/f", b"x")
    before = vol.stat("/f")
    a = vol.chmod("/f", 0o4755)
    assert stat.S_IMODE(a.st_mode) == 0o4755 and a.st_ctime_ns >= before.st_ctime_ns
    a = vol.chown("/f", 1234, 99)
    assert (a.st_uid, a.st_gid) == (1234, 99)
    assert stat.S_IMODE(a.st_mode) == 0o755  # chown clears set-user-ID
    a = vol.utimens("/f", (1_000_000_123, 2_000_000_456))
    assert a.st_atime_ns == 1_000_000_123 and a.st_mtime_ns == 2_000_000_456
    db = meta_conn(vol)
    row = db.execute("SELECT atime, atimensec, mtime, mtimensec FROM jfs_node WHERE inode = ?", (a.st_ino,))
    assert row.fetchone() == (1_000_000, 123, 2_000_000, 456)


def test_xattrs(vol: Volume) -> None:
    vol.write_file("/f", b"")
    vol.setxattr("/f", "user.a", b"1")
    vol.setxattr("/f", "user.b", b"\x00\xff")
    assert vol.getxattr("/f", "user.b") == b"\x00\xff"
    assert vol.listxattr("/f") == ["user.a", "user.b"]
    vol.setxattr("/f", "user.a", b"2", 2)
    assert vol.getxattr("/f", "user.a") == b"2"
    with _raises(errno.EEXIST):
        vol.setxattr("/f", "user.a", b"3", 1)
    with _raises(errno.ENODATA):
        vol.setxattr("/f", "user.c", b"3", 2)
    with _raises(errno.ENODATA):
        vol.getxattr("/f", "user.zzz")
    with _raises(errno.E2BIG):
        vol.setxattr("/f", "user.big", b"x" * 65537)
    vol.removexattr("/f", "user.a")
    with _raises(errno.ENODATA):
        vol.removexattr("/f", "user.a")
    assert vol.listxattr("/f") == ["user.b"]
    vol.unlink("/f")
    db = meta_conn(vol)
    assert db.execute("SELECT COUNT(*) FROM jfs_xattr").fetchall()[0][0] == 0


def test_readdir_streams_large_directories(vol: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    import blockmap.engine as engine_mod

    monkeypatch.setattr(engine_mod, "READDIR_BATCH", 7)
    names = [f"f{i:03d}" for i in range(50)]
    for n in names:
        vol.create(f"/{n}")
    seen = []
    it = vol.readdir("/")
    seen.append(next(it).name)
    vol.create("/zzz-added-while-listing")
    seen.extend(e.name for e in it)
    assert seen == sorted(names) + ["zzz-added-while-listing"]


def _ltx_files(vol: Volume) -> int:
    """LTX files this volume's metadata connection shipped (0 on a local SQLite file)."""
    return int(vol.meta_stats().get("write_ltx_files", 0))


def test_each_operation_is_one_transaction(vol: Volume) -> None:
    """Each operation is one write transaction, nothing more (one LTX file, one PUT, on a replica)."""
    vol.write_file("/warm", b"w")  # reserves the first inode and slice ID batches
    on_replica = vol.meta_url.startswith("file://")
    steps: list[tuple[str, Callable[[], object]]] = [
        ("mkdir", lambda: vol.mkdir("/d")),
        ("makedirs", lambda: vol.makedirs("/d/a/b/c")),
        ("create", lambda: vol.create("/d/f")),
        ("rename", lambda: vol.rename("/d/f", "/d/g")),
        ("chmod", lambda: vol.chmod("/d/g", 0o600)),
        ("utimens", lambda: vol.utimens("/d/g")),
        ("setxattr", lambda: vol.setxattr("/d/g", "user.k", b"v")),
        ("write_file (create + contents)", lambda: vol.write_file("/d/new", b"content")),
        ("write_file (replace)", lambda: vol.write_file("/d/new", b"replaced")),
        ("write_file (stream)", lambda: vol.write_file("/d/streamed", io.BytesIO(b"a stream"))),
        ("replace_file", lambda: vol.replace_file("/d/streamed", io.BytesIO(b"a new inode"))),
        ("truncate", lambda: vol.truncate("/d/new", 3)),
        ("link", lambda: vol.link("/d/new", "/d/new2")),
        ("symlink", lambda: vol.symlink("new", "/d/s")),
        ("unlink", lambda: vol.unlink("/d/new2")),
        ("rmdir", lambda: vol.rmdir("/d/a/b/c")),
    ]
    for name, step in steps:
        commits, reads, files = vol.commits, vol.engine.db.reads, _ltx_files(vol)
        step()
        assert vol.commits - commits == 1, name
        if on_replica:
            assert _ltx_files(vol) - files == 1, name
        if name in ("mkdir", "makedirs", "create", "rename", "chmod", "symlink"):
            assert vol.engine.db.reads == reads, f"{name} read outside its transaction"
    # A create of an existing file changes nothing: nothing is committed or shipped.
    commits, files = vol.commits, _ltx_files(vol)
    vol.create("/d/g")
    assert (vol.commits, _ltx_files(vol)) == (commits, files)
    # The replaced contents' slice: blocks deleted at once, its refs-0 row dropped by the next
    # operation's own transaction (not one of its own), so nothing is left pending.
    db = meta_conn(vol)
    assert db.execute("SELECT count(*) FROM jfs_chunk_ref WHERE refs <= 0").fetchall()[0][0] == 0
    assert metadata_problems(meta_conn(vol)) == []


def test_volume_limits_answer_enospc(vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with Volume.format(meta, data, "limited", capacity=1 << 20, inodes=3) as v:
        v.mkdir("/a")
        v.write_file("/a/f", b"x" * 1000)
        v.truncate("/a/f", (1 << 20) - 8192)  # fits: 1 MiB - 8 KiB + 4 KiB for /a
        with _raises(errno.ENOSPC):
            v.truncate("/a/f", 1 << 20)
        with _raises(errno.ENOSPC):
            v.pwrite("/a/f", b"y" * 10000, (1 << 20) - 8192)
        assert v.stat("/a/f").st_size == (1 << 20) - 8192
        v.truncate("/a/f", 10)
        v.create("/b")
        with _raises(errno.ENOSPC):
            v.create("/c")
        assert metadata_problems(meta_conn(v)) == []
        assert v.fsck().ok
        assert v.gc(skip_age=0).leaked == []  # the refused write's uploaded blocks were taken back


def test_rename_exchange_swaps_entries(vol: Volume) -> None:
    vol.makedirs("/p/sub")
    vol.mkdir("/q")
    vol.write_file("/p/sub/inner", b"in")
    vol.write_file("/q/file", b"f" * 9000)
    sub, f = vol.stat("/p/sub").st_ino, vol.stat("/q/file").st_ino
    vol.rename("/p/sub", "/q/file", exchange=True)
    assert vol.stat("/p/sub").st_ino == f and vol.read_file("/p/sub") == b"f" * 9000
    assert vol.stat("/q/file").st_ino == sub and vol.read_file("/q/file/inner") == b"in"
    assert vol.stat("/p").st_nlink == 2 and vol.stat("/q").st_nlink == 3
    assert vol.stat("/q/file").parent == vol.stat("/q").st_ino
    with _raises(errno.ENOENT):
        vol.rename("/p/sub", "/q/none", exchange=True)
    with _raises(errno.EINVAL):
        vol.rename("/q", "/q/file/inner", exchange=True)
    assert metadata_problems(meta_conn(vol)) == []


def test_read_only_open_refuses_changes(vol: Volume, vol_paths: tuple[str, str]) -> None:
    vol.write_file("/f", b"data")
    with Volume.open(vol_paths[0], read_only=True) as ro:
        assert ro.read_file("/f") == b"data"
        for change in (
            lambda: ro.mkdir("/d"),
            lambda: ro.write_file("/g", b"x"),
            lambda: ro.unlink("/f"),
            lambda: ro.gc(delete=True),
            lambda: ro.open_file("/f", "r+"),
        ):
            with _raises(errno.EROFS):
                change()
        assert ro.store.stats.puts == 0
        assert ro.fsck().ok
    assert vol.listdir("/") == ["f"]
