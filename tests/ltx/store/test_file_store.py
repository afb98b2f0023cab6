"""What only the file:// store has: paths on disk, confinement to the root, temp files, mtimes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ltx.store import InvalidKeyError, ObjectExistsError, ObjectNotFoundError, StoreError, open_store
from ltx.store.file import TEMP_PREFIX, FileStore


def tree(path: Path) -> set[str]:
    """Every path below `path` (files and directories), relative."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_layout_on_disk_is_the_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    store.put("ltx/0/0000000000000001-0000000000000001.ltx", b"abc", timestamp_ms=1_650_000_000_250)
    path = tmp_path / "root" / "ltx" / "0" / "0000000000000001-0000000000000001.ltx"
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mtime_ns == 1_650_000_000_250 * 1_000_000
    assert tree(tmp_path / "root") == {"ltx", "ltx/0", "ltx/0/0000000000000001-0000000000000001.ltx"}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_mtime_survives_a_refused_create(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("a", b"1", if_absent=True, timestamp_ms=1_000_000_000_000)
    with pytest.raises(ObjectExistsError):
        store.put("a", b"2", if_absent=True, timestamp_ms=2_000_000_000_000)
    assert (tmp_path / "a").stat().st_mtime_ns == 1_000_000_000_000 * 1_000_000
    assert (tmp_path / "a").read_bytes() == b"1"
    assert tree(tmp_path) == {"a"}  # the temporary file is gone


@pytest.mark.parametrize("key", ["../outside", "../../outside", "a/../../outside", "/tmp/outside",
                                 "//outside", "a/b/../../../outside"])
def test_escaping_keys_write_nothing_outside(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    store = FileStore(root)
    before = tree(tmp_path)
    with pytest.raises(InvalidKeyError) as caught:
        store.put(key, b"escaped")
    assert repr(key) in str(caught.value)
    assert tree(tmp_path) == before
    assert not Path("/tmp/outside").exists() or Path("/tmp/outside").read_bytes() != b"escaped"


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not read")
    os.symlink(outside, root / "link")
    store = FileStore(root)
    for call in (lambda: store.put("link/new", b"x"), lambda: store.get("link/secret"),
                 lambda: store.delete("link/secret"), lambda: store.head("link/secret")):
        with pytest.raises(InvalidKeyError, match="outside the store root"):
            call()
    assert tree(outside) == {"secret"}
    assert (outside / "secret").read_bytes() == b"do not read"
    assert list(store.list("")) == []  # links are not followed by list either


def test_temporary_files_are_invisible_and_reserved(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("ltx/0/a", b"1")
    (tmp_path / "ltx" / "0" / f"{TEMP_PREFIX}leftover").write_bytes(b"partial")
    assert [i.key for i in store.list("")] == ["ltx/0/a"]
    with pytest.raises(InvalidKeyError, match="reserved"):
        store.put(f"ltx/0/{TEMP_PREFIX}x", b"1")


def test_missing_root_lists_empty_and_put_creates_it(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet" / "there"
    store = open_store(f"file://{root}")
    assert list(store.list("")) == []
    assert list(store.list("ltx/0/")) == []
    with pytest.raises(ObjectNotFoundError):
        store.get("ltx/0/x")
    store.put("ltx/0/x", b"made")
    assert (root / "ltx" / "0" / "x").read_bytes() == b"made"


def test_a_directory_is_not_an_object(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("dir/file", b"1")
    for call in (lambda: store.get("dir"), lambda: store.head("dir"), lambda: store.open("dir"),
                 lambda: store.get_range("dir", 0, 1), lambda: store.delete("dir")):
        with pytest.raises(ObjectNotFoundError):
            call()
    assert (tmp_path / "dir" / "file").exists()


def test_list_is_in_byte_order_across_directories(tmp_path: Path) -> None:
    """'ltx.txt' < 'ltx/…' < 'ltx0' in byte order ('.' < '/' < '0'), whatever the directories."""
    store = FileStore(tmp_path)
    keys = ["ltx/0/a", "ltx.txt", "ltx0", "ltx/0-x", "ltx/0/b/c", "a b", "a/b", "a+b"]
    for key in keys:
        store.put(key, b"x")
    assert [i.key for i in store.list("")] == sorted(keys)
    assert [i.key for i in store.list("", start_after="ltx.txt")] == [k for k in sorted(keys) if k > "ltx.txt"]
    assert [i.key for i in store.list("ltx/0")] == ["ltx/0-x", "ltx/0/a", "ltx/0/b/c"]


def test_open_counts_bytes_read(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k", b"z" * 5000)
    before = store.stats.bytes_read
    with store.open("k") as f:
        assert f.read(100) == b"z" * 100
        assert f.read() == b"z" * 4900
    assert store.stats.bytes_read - before == 5000


def test_relative_root_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        FileStore("relative/root")


def _fsync_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every fsync (the real fsync still runs)."""
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to name fsynced files")
def test_put_unsynced_is_readable_at_once_and_synced_in_one_batch(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.put("d/seed", b"0")  # the directory exists: the unsynced puts create none
    synced = _fsync_spy(monkeypatch)
    for i in range(3):
        store.put_unsynced(f"d/b{i}", b"x" * (i + 1))
    assert [store.get(f"d/b{i}") for i in range(3)] == [b"x", b"xx", b"xxx"], "readable before any sync"
    assert synced == [], "no fsync on the put path"
    store.delete("d/b1")  # deleted before the sync: nothing to keep
    store.sync_unsynced()
    assert synced == [str(tmp_path / "d" / "b0"), str(tmp_path / "d" / "b2"), str(tmp_path / "d")]
    synced.clear()
    store.sync_unsynced()
    assert synced == [], "each object is synced once"
    store.put("d/c", b"y")
    assert len(synced) == 2 and synced[1] == str(tmp_path / "d"), "put still syncs (its file, its directory)"


def test_a_failed_sync_is_owed_to_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.put_unsynced("a", b"1")
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(StoreError, match="sync"):
        store.sync_unsynced()
    monkeypatch.setattr(os, "fsync", real)
    synced = _fsync_spy(monkeypatch)
    store.sync_unsynced()
    assert synced == [str(tmp_path / "a"), str(tmp_path)], "the failed sync is retried, not forgotten"


def test_put_unsynced_writes_a_new_name_in_place_and_replaces_a_taken_one_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(os.fspath(b)), real_replace(a, b))[1])
    old_umask = os.umask(0o077)
    try:
        store.put_unsynced("d/new", b"abc")
    finally:
        os.umask(old_umask)
    assert renamed == [], "a new name is written in place: no temporary file, no rename"
    assert store.get("d/new") == b"abc"
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "new").st_mode) == 0o644
    store.put_unsynced("d/new", b"replaced")
    assert renamed == [str(tmp_path / "d" / "new")], "a taken name is replaced by rename (never seen partial)"
    assert store.get("d/new") == b"replaced"
    assert sorted(os.listdir(tmp_path / "d")) == ["new"]
    assert store.stats.puts == 2 and store.stats.bytes_written == 11


def test_a_failed_unsynced_put_leaves_no_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.put("d/seed", b"0")

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreError, match="No space left"):
        store.put_unsynced("d/b", b"x" * 100)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "d")) == ["seed"], "the partial object is removed"
    with pytest.raises(ObjectNotFoundError):
        store.get("d/b")


def test_unsynced_puts_stay_in_the_root_and_survive_a_removed_directory(tmp_path: Path) -> None:
    """put_unsynced remembers the directories it checked (no symlink walk per block): a link out of
    the root is still refused, a link at the name itself is never written through, and a checked
    directory removed meanwhile is made again."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    store = FileStore(root)
    store.put_unsynced("d/a", b"1")  # d checked and remembered
    os.symlink(outside, root / "link")
    with pytest.raises(InvalidKeyError, match="outside"):
        store.put_unsynced("link/b", b"2")
    os.symlink(outside / "target", root / "d" / "trap")
    with pytest.raises(InvalidKeyError, match="outside"):  # a link at the name: never written through
        store.put_unsynced("d/trap", b"3")
    assert not (outside / "target").exists()
    (root / "d" / "a").unlink()
    (root / "d" / "trap").unlink()
    (root / "d").rmdir()
    store.put_unsynced("d/c", b"4")
    assert store.get("d/c") == b"4"
    assert list(outside.iterdir()) == []
