"""Several writers on one metadata database: IDs never collide and the accounting stays exact."""

from __future__ import annotations

import random
import threading

from blockmap.volume import Volume
from tests.blockmap.conftest import meta_conn
from tests.blockmap.metacheck import metadata_problems

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
