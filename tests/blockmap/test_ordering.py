"""Crash safety by ordering: a block is stored before any row names its slice, and deleted only
after no record names it. Checked at every put and delete with a pass-through wrapper around the
real file store that looks at the committed metadata at that moment."""

from __future__ import annotations

import random
from pathlib import Path
from typing import BinaryIO

import apsw
import pytest

from blockmap.volume import Volume
from ltx.store import open_store
from ltx.store.base import ObjectStore, StoreUnavailableError
from tests.blockmap.conftest import TEST_BLOCK_SIZE
from tests.passthrough import PassThroughStore


class WatchedStore(PassThroughStore):
    """Delegates to a real store; before each block put/delete, checks the committed metadata."""

    def __init__(self, inner: ObjectStore, meta_path: str) -> None:
        super().__init__(inner)
        self.meta_path = meta_path
        self.violations: list[str] = []
        self.puts = 0
        self.deletes = 0

    def _slice(self, key: str) -> int | None:
        if "/chunks/" not in key:
            return None
        return int(key.rsplit("/", 1)[1].split("_")[0])

    def _named(self, sid: int) -> bool:
        db = apsw.Connection(self.meta_path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            for (blob,) in db.execute("SELECT CAST(slices AS BLOB) FROM jfs_chunk"):
                data = bytes(blob)
                for i in range(0, len(data), 24):
                    if int.from_bytes(data[i + 4 : i + 12], "big") == sid:
                        return True
            live = db.execute("SELECT 1 FROM jfs_chunk_ref WHERE chunkid = ? AND refs > 0", (sid,)).fetchone()
            return live is not None
        finally:
            db.close()

    def put(
        self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False, timestamp_ms: int | None = None
    ) -> None:
        sid = self._slice(key)
        if sid is not None:
            self.puts += 1
            if self._named(sid):
                self.violations.append(f"put {key} after metadata named slice {sid}")
        self.inner.put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)

    def delete(self, key: str) -> None:
        sid = self._slice(key)
        if sid is not None:
            self.deletes += 1
            if self._named(sid):
                self.violations.append(f"delete {key} while metadata still names slice {sid}")
        self.inner.delete(key)


def test_blocks_go_up_before_and_down_after_the_metadata(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    meta = f"sqlite3://{tmp_path}/meta.db"
    # The volume is created first, so the watcher can open the committed database.
    Volume.format(meta, f"file://{tmp_path}/data", "ordered", block_size=TEST_BLOCK_SIZE).close()
    store = WatchedStore(open_store(f"file://{tmp_path}/data"), f"{tmp_path}/meta.db")
    r = random.Random(11)
    with Volume.open(meta, store=store) as v:
        v.write_file("/a", r.randbytes(3 * TEST_BLOCK_SIZE))
        with v.open_file("/b", "w") as f:
            for _ in range(20):
                f.pwrite(r.randbytes(5000), r.randrange(0, 200_000))
        v.clone("/a", "/a2")
        v.write_file("/a", b"replaced")
        v.truncate("/b", 10)
        v.compact("/")
        v.unlink("/a2")
        v.rename("/b", "/a")
        v.gc(delete=True, skip_age=0)
    assert store.puts > 0 and store.deletes > 0
    assert store.violations == []


class FailingPuts(WatchedStore):
    """Fails every block put after the first `allowed` ones (as a store that went away would)."""

    def __init__(self, inner: ObjectStore, meta_path: str, allowed: int) -> None:
        super().__init__(inner, meta_path)
        self.allowed = allowed

    def put(
        self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False, timestamp_ms: int | None = None
    ) -> None:
        if "/chunks/" in key:
            if self.allowed <= 0:
                raise StoreUnavailableError(self.url, key, "injected failure")
            self.allowed -= 1
        super().put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)


def test_a_failed_upload_changes_no_metadata_and_leaves_no_blocks(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    meta = f"sqlite3://{tmp_path}/meta.db"
    Volume.format(meta, f"file://{tmp_path}/data", "failing", block_size=TEST_BLOCK_SIZE).close()
    store = FailingPuts(open_store(f"file://{tmp_path}/data"), f"{tmp_path}/meta.db", allowed=4)
    r = random.Random(12)
    with Volume.open(meta, store=store) as v:
        old = r.randbytes(2 * TEST_BLOCK_SIZE)
        v.write_file("/f", old)  # 2 blocks: fine
        with pytest.raises(StoreUnavailableError):
            v.write_file("/f", r.randbytes(5 * TEST_BLOCK_SIZE))
        assert v.read_file("/f") == old
        with pytest.raises(StoreUnavailableError):
            with v.open_file("/g", "w") as f:
                f.write(r.randbytes(5 * TEST_BLOCK_SIZE))
        assert v.stat("/g").st_size == 0
        assert v.gc(skip_age=0).leaked == []
        assert v.fsck().ok
    assert store.violations == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to name fsynced files")
@pytest.mark.parametrize("sync", ["commit", "interval:1h"])
def test_blocks_are_synced_in_one_batch_before_the_commit_naming_them_ships(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: str) -> None:
    """With the metadata on a replica, a block is put without its own fsync (readable at once)
    and made durable by the barrier the metadata writer runs before it ships the commit."""
    import os

    (tmp_path / "data").mkdir()
    vol = Volume.format(f"file://{tmp_path}/meta", f"file://{tmp_path}/data", "testvol",
                       block_size=TEST_BLOCK_SIZE, sync=sync)
    events: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        events.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    data = random.Random(7).randbytes(3 * TEST_BLOCK_SIZE + 100)
    try:
        with vol.open_file("/f", "w") as f:
            f.write(data)
        vol.flush()
        blocks = sorted(str(p) for p in (tmp_path / "data").rglob("*_*_*"))
        assert len(blocks) == 4
        level0 = str(tmp_path / "meta" / "ltx" / "0")
        shipped = max(i for i, e in enumerate(events) if e == level0)  # the commit's file went in
        # A put fsyncs its temporary name; a block's own name is fsynced only by the batch.
        assert [e for e in events if e in blocks] == [e for e in events[:shipped] if e in blocks], \
            "every block synced before the commit naming it shipped"
        assert sorted(e for e in events if e in blocks) == blocks, "each block synced once, by the batch"
    finally:
        vol.close()
    with Volume.open(f"file://{tmp_path}/meta") as again:
        assert again.read_file("/f") == data
