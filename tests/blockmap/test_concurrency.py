"""Several writers on one metadata database: IDs never collide and the accounting stays exact;
reads and block deletes of one volume do not wait on each other beyond what safety needs."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from blockmap.volume import Volume
from ltx.store import ObjectStore, open_store
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.metacheck import metadata_problems
from tests.passthrough import PassThroughStore

WRITERS = 3
FILES_EACH = 25


def test_two_clients_and_threads_share_a_volume(vol: Volume, vol_paths: tuple[str, str]) -> None:
    meta, _ = vol_paths
    other = Volume.open(meta)  # a second client: its own connection and its own ID batches
    clients = [vol, other, other]
    errors: list[BaseException] = []
    expected: dict[str, bytes] = {}
    lock = threading.Lock()

    def work(n: int) -> None:
        r = random.Random(n)
        v = clients[n]
        try:
            v.makedirs(f"/w{n}", exist_ok=True)
            for i in range(FILES_EACH):
                data = r.randbytes(r.randrange(0, 20_000))
                p = f"/w{n}/f{i}"
                v.write_file(p, data)
                with lock:
                    expected[p] = data
                if i % 5 == 4:
                    v.unlink(f"/w{n}/f{i - 1}")
                    with lock:
                        del expected[f"/w{n}/f{i - 1}"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for p, data in expected.items():
        assert vol.read_file(p) == data
        assert other.read_file(p) == data
    db = meta_conn(vol)
    inodes = [r[0] for r in db.execute("SELECT inode FROM jfs_node")]
    assert len(inodes) == len(set(inodes)) == 1 + WRITERS + len(expected)
    # Each client reserved its own batches: the counters moved past every ID in use.
    counters = dict(db.execute("SELECT name, value FROM jfs_counter"))
    assert counters["nextInode"] > max(inodes)
    assert counters["nextChunk"] > max(r[0] for r in db.execute("SELECT chunkid FROM jfs_chunk_ref"))
    assert metadata_problems(meta_conn(vol)) == []
    other.close()


class HeldDeletes(PassThroughStore):
    """The real file store; block deletes wait until the test lets them go."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.deleting = threading.Event()
        self.go = threading.Event()

    def delete(self, key: str) -> None:
        if "/chunks/" in key:
            self.deleting.set()
            self.go.wait()
        super().delete(key)


def test_deleting_blocks_does_not_hold_up_reads(tmp_path: Path) -> None:
    # Deletes (20 ms each on S3, hundreds after an rm -r) wait only for reads that began before
    # the release; a read that begins meanwhile goes through.
    (tmp_path / "data").mkdir()
    meta = f"sqlite3://{tmp_path}/meta.db"
    Volume.format(meta, f"file://{tmp_path}/data", "gated", block_size=TEST_BLOCK_SIZE).close()
    store = HeldDeletes(open_store(f"file://{tmp_path}/data"))
    rng = random.Random(5)
    keep = rng.randbytes(2 * TEST_BLOCK_SIZE + 9)
    with Volume.open(meta, store=store) as v:
        v.write_file("/keep", keep)
        v.write_file("/drop", rng.randbytes(3 * TEST_BLOCK_SIZE))
        unlinker = threading.Thread(target=v.unlink, args=("/drop",))
        unlinker.start()
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(v.read_file("/keep")))
        try:
            assert store.deleting.wait(60), "no block delete started"
            reader.start()
            reader.join(60)
            assert not reader.is_alive(), "a read waited for a block delete"
        finally:
            store.go.set()
            unlinker.join(60)
            if reader.is_alive():
                reader.join(60)
        assert got == [keep]
        assert not v.exists("/drop")
        assert v.fsck().ok
