"""neighbours=BYTES: a random miss brings the frames of its file within that many bytes, in the same
GET, so point reads of rows written together (a file system's entry, inode and chunk rows) wait
for one round trip instead of one each. Without it a random miss fetches exactly its frame."""

from __future__ import annotations

import random
from pathlib import Path

import apsw

from ltx.importer import import_database
from ltx.replica import Replica
from tests.s3proxy import S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import connect, stats

ROWS = 6_000
#: Ids a few leaf pages apart (rows of ~400 bytes: ~9 a page).
NEAR = (3_000, 3_020, 3_040)


def _database(path: Path) -> Path:
    rng = random.Random(7)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 4096")
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", ((i, rng.randbytes(200).hex()[:400]) for i in range(ROWS)))
    conn.close()
    return path


def _gets_per_read(endpoint: str, url: str, tmp_path: Path, **params: str) -> list[int]:
    """The requests each point read of NEAR made, and check what it read."""
    with S3Proxy(endpoint) as proxy:
        conn = connect(tmp_path / "x.db", url.replace(endpoint, proxy.url), poll=0, **params)
        try:
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # the open, then the schema
            counts = []
            for i in NEAR:
                before = len(proxy.seen)
                (v,) = conn.execute("SELECT length(v) FROM t WHERE id = ?", (i,)).fetchone()
                assert v == 400
                counts.append(len(proxy.seen) - before)
            assert stats(conn)["cache_misses"] >= 1
        finally:
            conn.close()
    return counts


def test_point_reads_of_near_rows_share_one_get(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    replica = Replica.open(s3_url)
    import_database(_database(tmp_path / "src.db"), replica)
    replica.close()
    assert _gets_per_read(s3_server.endpoint, s3_url, tmp_path / "a") == [1, 1, 1], "one frame per miss"
    assert _gets_per_read(s3_server.endpoint, s3_url, tmp_path / "b", neighbours="16k") == [1, 0, 0]
