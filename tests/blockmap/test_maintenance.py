"""clone, gc, fsck and the trash."""

from __future__ import annotations

import errno
import random
import time
from pathlib import Path

import pytest

from blockmap.volume import Volume
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.metacheck import metadata_problems


def _block_count(vol: Volume) -> int:
    return len(list(vol.store.list(f"{vol.name}/chunks/")))


def _refs(vol: Volume) -> dict[int, int]:
    db = meta_conn(vol)
    return dict(db.execute("SELECT chunkid, refs FROM jfs_chunk_ref"))


def test_clone_file_shares_slices(vol: Volume) -> None:
    data = random.Random(1).randbytes(3 * TEST_BLOCK_SIZE)
    vol.write_file("/src", data)
    vol.setxattr("/src", "user.x", b"1")
    blocks = _block_count(vol)
    a = vol.clone("/src", "/copy")
    assert a.st_ino != vol.stat("/src").st_ino
    assert vol.read_file("/copy") == data
    assert vol.getxattr("/copy", "user.x") == b"1"
    assert _block_count(vol) == blocks
    assert set(_refs(vol).values()) == {2}
    # Writing to the copy does not change the source.
    vol.pwrite("/copy", b"CHANGED", 5)
    assert vol.read_file("/src") == data
    vol.unlink("/src")
    assert vol.read_file("/copy")[:12] == data[:5] + b"CHANGED"
    assert _block_count(vol) > 0
    vol.unlink("/copy")
    assert _block_count(vol) == 0
    assert metadata_problems(meta_conn(vol)) == []


def test_clone_tree(vol: Volume) -> None:
    r = random.Random(2)
    vol.makedirs("/t/a/b")
    files = {f"/t/a/f{i}": r.randbytes(r.randrange(0, 100_000)) for i in range(5)}
    files["/t/a/b/deep"] = r.randbytes(10)
    for p, d in files.items():
        vol.write_file(p, d)
    vol.symlink("a/f1", "/t/ln")
    vol.link("/t/a/f2", "/t/a/b/f2-hard")
    used = vol.usage()
    base = vol.commits
    vol.clone("/t", "/t2")
    # top, then per directory one file batch and one per sub-directory, then attach; not one per file:
    # top + (t: files) + (a) + (a: files) + (b) + (b: files) + attach
    assert vol.commits - base == 7
    for p, d in files.items():
        assert vol.read_file(p.replace("/t/", "/t2/", 1)) == d
    assert vol.readlink("/t2/ln") == "a/f1"
    # A hard link becomes an independent file in the copy.
    assert vol.stat("/t2/a/b/f2-hard").st_nlink == 1
    after = vol.usage()
    f2_space = -(-len(files["/t/a/f2"]) // 4096) * 4096 or 4096
    assert after.total_inodes == 2 * used.total_inodes + 1  # f2's two links are two inodes now
    assert after.used_space == 2 * used.used_space + f2_space
    assert metadata_problems(meta_conn(vol)) == []
    with pytest.raises(OSError) as exc:
        vol.clone("/t", "/t/a/inside")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(FileExistsError):
        vol.clone("/t", "/t2")
    db = meta_conn(vol)
    assert db.execute("SELECT COUNT(*) FROM jfs_detached_node").fetchall()[0][0] == 0


def test_clone_preserve_keeps_owner_and_times(vol: Volume) -> None:
    vol.write_file("/f", b"abc")
    vol.chown("/f", 4321, 55)
    vol.utimens("/f", (10**18, 10**18 + 1))
    p = vol.clone("/f", "/kept", preserve=True)
    assert (p.st_uid, p.st_gid, p.st_mtime_ns) == (4321, 55, 10**18 + 1)
    n = vol.clone("/f", "/mine")
    assert (n.st_uid, n.st_gid) == (vol.engine.ctx.uid, vol.engine.ctx.gid)
    assert n.st_mtime_ns > 10**18 + 1


def test_gc_finds_and_deletes_leaked_objects(vol: Volume) -> None:
    vol.write_file("/f", random.Random(3).randbytes(100_000))
    vol.store.put(f"{vol.name}/chunks/0/0/999_0_5", b"12345")  # an upload whose commit never happened
    vol.store.put(f"{vol.name}/chunks/0/0/1_7_65536", b"x" * 65536)  # a block past the slice's size
    report = vol.gc(skip_age=0)
    assert sorted(report.leaked) == sorted([f"{vol.name}/chunks/0/0/999_0_5", f"{vol.name}/chunks/0/0/1_7_65536"])
    assert report.valid == 2 and report.deleted_objects == 0
    young = vol.gc()  # everything is younger than an hour: nothing is called leaked
    assert young.leaked == [] and young.skipped == report.scanned
    report = vol.gc(delete=True, skip_age=0)
    assert report.deleted_objects == 2
    assert vol.gc(skip_age=0).leaked == []
    assert vol.read_file("/f") == random.Random(3).randbytes(100_000)


def test_gc_finishes_interrupted_deletes(vol: Volume) -> None:
    vol.write_file("/f", random.Random(4).randbytes(200_000))
    # Simulate a crash after the unlink transaction: the slice rows are at refs 0, blocks remain.
    db = meta_conn(vol)
    db.execute("UPDATE jfs_chunk_ref SET refs = 0")
    db.execute("DELETE FROM jfs_chunk")
    assert _block_count(vol) > 0
    report = vol.gc(skip_age=0)
    assert report.pending == _block_count(vol) and report.leaked == []
    report = vol.gc(delete=True, skip_age=0)
    assert report.released_slices == 1
    assert _block_count(vol) == 0
    assert db.execute("SELECT COUNT(*) FROM jfs_chunk_ref").fetchall()[0][0] == 0


def test_fsck_reports_missing_blocks_and_bad_accounting(vol: Volume) -> None:
    vol.mkdir("/d")
    vol.write_file("/d/f", random.Random(5).randbytes(3 * TEST_BLOCK_SIZE))
    assert vol.fsck().ok
    key = sorted(o.key for o in vol.store.list(f"{vol.name}/chunks/"))[1]
    vol.store.delete(key)
    db = meta_conn(vol)
    db.execute("UPDATE jfs_dir_stats SET used_space = used_space + 4096 WHERE inode = 1")
    db.execute("UPDATE jfs_counter SET value = 7 WHERE name = 'totalInodes'")
    db.execute("UPDATE jfs_node SET nlink = 5 WHERE inode = 1")
    report = vol.fsck()
    assert not report.ok
    assert len(report.missing_blocks) == 1 and key in report.missing_blocks[0]
    assert list(report.broken_files.values()) == ["/d/f"]
    text = "\n".join(report.problems)
    assert "totalInodes is 7, should be 2" in text
    assert "dir stats of /" in text and "nlink of / is 5, should be 3" in text
    fixed = vol.fsck(repair=True)
    assert fixed.repaired
    again = vol.fsck()
    assert again.problems == [] and len(again.missing_blocks) == 1


def test_trash_keeps_removed_files_until_they_expire(vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with Volume.format(meta, data, "trashy", block_size=TEST_BLOCK_SIZE, trash_days=1) as v:
        v.mkdir("/d")
        v.write_file("/d/f", b"x" * 5000)
        v.write_file("/g", b"old")
        v.write_file("/h", b"new")
        v.rename("/h", "/g")  # the replaced file goes to the trash too
        v.unlink("/d/f")
        v.rmdir("/d")
        assert v.listdir("/") == ["g"]
        assert _block_count(v) == 3
        assert v.usage().total_inodes == 5  # g, the hour directory, d, f and the old g
        assert metadata_problems(meta_conn(v)) == []
        assert v.gc(delete=True, skip_age=0).trash.entries == 0  # not expired yet
        report = v.empty_trash(force=True)
        assert report.entries == 3 and report.directories == 1
        assert _block_count(v) == 1
        assert v.usage().total_inodes == 1
        assert v.fsck().ok
        assert metadata_problems(meta_conn(v)) == []


def test_compaction_with_trash_delays_slice_release(vol_paths: tuple[str, str]) -> None:
    meta, data = vol_paths
    with Volume.format(meta, data, "trashy", block_size=TEST_BLOCK_SIZE, trash_days=1) as v:
        v.auto_compact = False
        with v.open_file("/f", "w") as f:
            for i in range(5):
                f.pwrite(b"%d" % i * 1000, i * 2000)
                f.flush()
        blocks = _block_count(v)
        assert v.compact("/f") == 1
        assert _block_count(v) == blocks + 1  # the old slices wait in jfs_delslices
        assert v.fsck().ok
        assert v.empty_trash(force=True).delayed_slices == 5
        assert _block_count(v) == 1
        assert v.fsck().ok


def test_unlinked_open_file_stays_readable(vol: Volume) -> None:
    data = random.Random(6).randbytes(50_000)
    vol.write_file("/f", data)
    f = vol.open_file("/f")
    vol.unlink("/f")
    assert not vol.exists("/f")
    assert f.read() == data
    assert _block_count(vol) > 0
    f.close()
    assert _block_count(vol) == 0
    db = meta_conn(vol)
    assert db.execute("SELECT COUNT(*) FROM jfs_delfile").fetchall()[0][0] == 0


def test_big_unlink_goes_through_delfile(vol: Volume, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import blockmap.namespace as namespace

    monkeypatch.setattr(namespace, "INLINE_RELEASE_CHUNKS", 0)
    vol.write_file("/f", b"abc")
    vol.unlink("/f")
    assert _block_count(vol) == 0
    db = meta_conn(vol)
    assert db.execute("SELECT COUNT(*) FROM jfs_delfile").fetchall()[0][0] == 0
    assert metadata_problems(meta_conn(vol)) == []
    assert time.time() > 0
