"""Write-back of blocks (blockmap.staging): with its metadata on a replica and an upload budget
(as the mount opens it), a volume on S3 returns from a slice's finish before the block is in the
store; reads see the staged bytes; no metadata commit ships before the blocks it names are in
the store; a failed upload is retried before the next ship; a slice dropped before its upload
started never reaches the store. Against the real SeaweedFS server."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest

from blockmap.errors import UploadStalledError
from blockmap.staging import StagedUploads
from blockmap.volume import Volume
from ltx.store import open_store
from ltx.store.base import ObjectNotFoundError, ObjectStore, StoreUnavailableError
from tests.blockmap.conftest import TEST_BLOCK_SIZE
from tests.passthrough import PassThroughStore
from tests.s3server import S3Server
from vfs import shipbarrier, writefile

#: The mount's write buffer stands in here (write-back needs an upload budget).
BUDGET = 8 << 20


class BlockPuts(PassThroughStore):
    """The real S3 store; block puts can be held at a gate or made to fail, and are logged."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = 0
        self.attempted: set[str] = set()
        self.stored: list[str] = []
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        if "/chunks/" in key:
            self.gate.wait()
            with self._lock:
                self.attempted.add(key)
                failing = self.fail_next > 0
                self.fail_next -= failing
            if failing:
                raise StoreUnavailableError(self.url, key, "injected outage")
        super().put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)
        if "/chunks/" in key:
            with self._lock:
                self.stored.append(key)


@pytest.fixture
def s3_volume(s3_server: S3Server) -> Iterator[tuple[str, BlockPuts]]:
    """A formatted volume on S3 (metadata replica and blocks) and the watched block store."""
    name = f"staging-{uuid.uuid4().hex[:8]}"
    meta = s3_server.url(f"{name}-meta")
    Volume.format(meta, s3_server.url(""), name, block_size=TEST_BLOCK_SIZE).close()
    store = BlockPuts(open_store(s3_server.url("")))
    yield meta, store
    store.close()


def open_written_back(meta: str, store: BlockPuts) -> Volume:
    """The volume as the mount opens it: group commit (nothing ships on its own for a minute)
    and an upload budget, so blocks are written back."""
    return Volume.open(meta, store=store, sync="interval:60s", upload_budget=BUDGET)


def reserve_ids(vol: Volume) -> None:
    """Write a first file: the inode and slice ID reservations (which ship) are behind us."""
    vol.write_file("/first", b"reserves inode and slice IDs")
    vol.engine.flush()


def chunk_keys(store: ObjectStore, name: str) -> set[str]:
    return {o.key for o in store.list(f"{name}/chunks/")}


def test_a_small_file_closes_before_its_block_uploads_and_reads_back_from_staging(
        s3_volume: tuple[str, BlockPuts]) -> None:
    meta, store = s3_volume
    rng = random.Random(1)
    small = {f"/s{i}": rng.randbytes(rng.randrange(1, TEST_BLOCK_SIZE)) for i in range(3)}
    big = rng.randbytes(2 * TEST_BLOCK_SIZE + 777)
    with open_written_back(meta, store) as vol:
        reserve_ids(vol)
        store.stored.clear()
        store.gate.clear()  # no block reaches the store until the test says so
        for path, data in small.items():
            vol.write_file(path, data)  # returns with its one block still held
        assert store.stored == []
        assert vol.engine.blocks.staged is not None and len(vol.engine.blocks.staged) == 3
        for path, data in small.items():
            assert vol.read_file(path) == data
            assert vol.read_file(path, 1, 5) == data[1:6]
        store.gate.set()
        # A big file's full blocks upload while it is written, and its close waits for them;
        # only its last (partial) block is written back.
        vol.write_file("/big", big)
        full = {k for k in store.stored if k.endswith(f"_{TEST_BLOCK_SIZE}")}
        assert len(full) == 2
        assert vol.read_file("/big") == big
        vol.engine.flush()
        assert len(vol.engine.blocks.staged) == 0
        assert len(store.stored) == 6
        assert set(store.stored) <= chunk_keys(store, vol.name)
    with Volume.open(meta, read_only=True) as again:  # another process's view: what shipped
        for path, data in small.items():
            assert again.read_file(path) == data
        assert again.read_file("/big") == big
        assert again.fsck().ok


def test_no_commit_ships_before_the_blocks_it_names_are_stored(s3_volume: tuple[str, BlockPuts]) -> None:
    meta, store = s3_volume
    data = random.Random(2).randbytes(TEST_BLOCK_SIZE - 1)
    missing_at_ship: list[str] = []

    def check_blocks() -> None:  # runs after the volume's own barrier, just before the LTX put
        for key in sorted(store.attempted):
            try:
                store.inner.head(key)
            except ObjectNotFoundError:
                missing_at_ship.append(key)

    with open_written_back(meta, store) as vol:
        reserve_ids(vol)
        store.attempted.clear()
        store.stored.clear()
        store.fail_next = 2  # the background upload fails, and the retry below
        vol.write_file("/f", data)
        assert vol.engine.blocks.staged is not None
        with pytest.raises(StoreUnavailableError):
            vol.engine.blocks.staged.settle()  # waits for the background attempts, retries once
        assert store.fail_next == 0 and len(store.attempted) == 1 and store.stored == []
        shipbarrier.add(check_blocks)
        try:
            vol.engine.flush()
        finally:
            shipbarrier.remove(check_blocks)
        assert vol.engine.blocks.staged.failures == 1
        assert missing_at_ship == []
        assert store.attempted <= chunk_keys(store, vol.name)
    with Volume.open(meta, read_only=True) as again:
        assert again.read_file("/f") == data


def test_an_outage_holds_the_ship_back_until_the_blocks_are_stored(s3_volume: tuple[str, BlockPuts],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    meta, store = s3_volume
    monkeypatch.setattr(writefile, "FLUSH_TIMEOUT", 3.0)  # a flush gives up after 3 s, not 60
    data = random.Random(3).randbytes(TEST_BLOCK_SIZE // 2)
    with open_written_back(meta, store) as vol:
        reserve_ids(vol)
        store.fail_next = 10**6  # the store is down for blocks
        vol.write_file("/f", data)  # accepted: the block is staged
        with pytest.raises(Exception, match="injected outage"):
            vol.engine.flush()
        with Volume.open(meta, read_only=True) as other:  # nothing naming the block shipped
            assert other.exists("/first") and not other.exists("/f")
        assert vol.read_file("/f") == data  # still readable here, still staged
        store.fail_next = 0  # the store is back
        vol.engine.flush()
    with Volume.open(meta, read_only=True) as again:
        assert again.read_file("/f") == data
        assert again.fsck().ok


def test_writes_wait_for_the_store_while_a_ship_fails(s3_volume: tuple[str, BlockPuts],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount runs a write transaction in its event loop only while it would not wait for the
    store (MetaDB.writes_at_once): not while a failed ship waits for its retry."""
    meta, store = s3_volume
    monkeypatch.setattr(writefile, "FLUSH_TIMEOUT", 3.0)
    with Volume.open(meta, store=store, sync="interval:60s", upload_budget=BUDGET, exclusive=True) as vol:
        reserve_ids(vol)
        assert vol.engine.db.writes_at_once()
        store.fail_next = 10**6
        vol.write_file("/f", b"staged")
        with pytest.raises(Exception, match="injected outage"):
            vol.engine.flush()
        assert not vol.engine.db.writes_at_once(), "the next commit retries the ship first"
        store.fail_next = 0
        vol.engine.flush()
        assert vol.engine.db.writes_at_once()


def test_a_delete_cancels_an_upload_that_has_not_started(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    released: list[int] = []
    staged = StagedUploads(store.put, released.append)
    busy = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(busy.wait)  # the only transfer thread is busy: the upload below waits
        staged.stage("vol/chunks/0/0/7_0_5", b"hello", pool)
        assert staged.get("vol/chunks/0/0/7_0_5") == b"hello"
        assert staged.forget("vol/chunks/0/0/7_0_5") is True
        assert released == [5] and len(staged) == 0
        staged.stage("vol/chunks/0/0/8_0_5", b"world", pool)
        busy.set()
        staged.settle()  # waits for the second upload
    assert [o.key for o in store.list("vol/")] == ["vol/chunks/0/0/8_0_5"]
    assert released == [5, 5]
    assert staged.forget("vol/chunks/0/0/8_0_5") is False  # no longer staged: delete it normally


def test_a_write_fails_once_the_buffer_is_full_and_no_upload_finishes(s3_volume: tuple[str, BlockPuts]) -> None:
    meta, store = s3_volume
    rng = random.Random(4)
    held = {f"/s{i}": rng.randbytes(TEST_BLOCK_SIZE - 1) for i in range(2)}
    with Volume.open(meta, store=store, sync="interval:60s", upload_budget=2 * TEST_BLOCK_SIZE) as vol:
        reserve_ids(vol)
        vol.engine.blocks.upload_stall = 0.5
        store.fail_next = 10**6  # the store is down for blocks
        for path, data in held.items():  # the buffer takes two blocks
            vol.write_file(path, data)
        with pytest.raises(UploadStalledError, match="none finished in 0.5s"):
            vol.write_file("/third", b"x" * 100)  # waits for room, then fails
        store.fail_next = 0  # back: what was staged uploads, and writes go on
        vol.write_file("/after", b"ok")
        vol.engine.flush()
    with Volume.open(meta, read_only=True) as again:
        for path, data in held.items():
            assert again.read_file(path) == data
        assert again.read_file("/after") == b"ok" and not again.exists("/third")
        assert again.fsck().ok
