"""The real tools agree with the writer: after a scripted workload through ltxvfs (schema, inserts,
updates, deletes, overflow pages, growth, a shrink and VACUUM), `litestream restore` and
`ltxctl restore` both give a database equal to a plain-SQLite run of the same workload, and the
real litestream-vfs extension reads the replica the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.litestream import restore as litestream_restore
from tests.ltx.sqlgen import workload
from tests.vfs.writing import (
    as_json_rows,
    dump_file,
    litestream_vfs_query,
    ltxctl,
    open_writer,
    plain_run,
    replay,
)

#: Queries that JSON can carry (blobs as hex), over the workload's schema. No integrity check:
#: litestream-vfs 0.5.17 sizes the file by the highest page any planned file holds, ignoring a
#: later, smaller commit (vfs.go FileSize), and randomizes page 1's change counter, so SQLite
#: trusts that size; after a VACUUM shrank the database it then reports the cut pages as "never
#: used". Both restores, which honour the commit, check the whole file above.
PEER_QUERIES = (
    "SELECT id, k, length(v), hex(substr(v, 1, 24)) FROM kv ORDER BY id",
    "SELECT count(*), sum(length(v)), max(k) FROM kv",
    "SELECT id, at, length(body) FROM events ORDER BY id",
    "SELECT name, sql FROM sqlite_schema ORDER BY name",
)


def _plain_queries(path: Path, queries: tuple[str, ...] = PEER_QUERIES) -> list[list[list[Any]]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return as_json_rows([[tuple(r) for r in conn.execute(q)] for q in queries])
    finally:
        conn.close()


@pytest.mark.parametrize("sync", ["commit", "interval:20ms"])
def test_restores_and_litestream_vfs_match_plain_sqlite(store_url: str, tmp_path: Path, sync: str,
                                                        s3_env: dict[str, str]) -> None:
    steps = workload(seed=5, transactions=30, grow_rows=45)
    expected = plain_run(tmp_path / "plain.db", steps)
    conn = open_writer(tmp_path / "x.db", store_url, sync=sync)
    replay(conn, steps)
    conn.close()  # group commit: ships the last interval before it returns

    litestream_restore(store_url, tmp_path / "litestream.db", env=s3_env)
    assert dump_file(tmp_path / "litestream.db") == expected
    ltxctl("restore", store_url, "-o", str(tmp_path / "ltxctl.db"), env=s3_env)
    assert dump_file(tmp_path / "ltxctl.db") == expected
    assert (tmp_path / "ltxctl.db").read_bytes() == (tmp_path / "litestream.db").read_bytes()
    header = (tmp_path / "ltxctl.db").read_bytes()[:100]
    assert header[18] == 1 and header[19] == 1, "a rollback-journal database, as SQLite wrote it"

    peer = litestream_vfs_query(store_url, PEER_QUERIES, tmp_path, s3_env)
    assert peer == _plain_queries(tmp_path / "plain.db")


def test_litestream_vfs_reads_a_growing_replica_whole(store_url: str, tmp_path: Path,
                                                      s3_env: dict[str, str]) -> None:
    """Without a shrink, litestream-vfs's integrity check of our replica passes too."""
    steps = [s for s in workload(seed=9, transactions=16, grow_rows=30) if s.kind not in ("shrink", "vacuum")]
    plain_run(tmp_path / "plain.db", steps)
    conn = open_writer(tmp_path / "x.db", store_url)
    replay(conn, steps)
    conn.close()
    queries = (*PEER_QUERIES, "PRAGMA integrity_check")
    peer = litestream_vfs_query(store_url, queries, tmp_path, s3_env)
    assert peer[-1] == [["ok"]]
    assert peer == _plain_queries(tmp_path / "plain.db", queries)
