"""Replicas for VFS tests, built in code: a seeded workload's database images by TXID (`History`,
shared with the ltx tests), shipped with our encoder, and helpers to open them through ltxvfs and
compare query results with plain SQLite."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import apsw

import vfs
from tests.ltx import history as ltx_history
from tests.ltx.history import History

#: Queries over the workload's schema: full scans, index order, ranges, points, aggregates, the
#: schema (without the tables litestream adds to a database it replicates), and an integrity
#: check (which reads every page).
QUERIES = (
    "SELECT * FROM kv ORDER BY id",
    "SELECT id, k FROM kv ORDER BY k, id",
    "SELECT k FROM kv WHERE k BETWEEN 'k2' AND 'k6' ORDER BY k DESC",
    "SELECT count(*), sum(length(v)), min(id), max(id) FROM kv",
    "SELECT id, length(v), substr(v, 1, 16) FROM kv WHERE id IN (1, 2, 7, 30, 31, 64, 65)",
    "SELECT * FROM events ORDER BY id DESC",
    "SELECT count(*), sum(at) FROM events WHERE at % 2 = 0",
    "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE '\\_litestream%' ESCAPE '\\' "
    "ORDER BY name",
    "PRAGMA integrity_check",
)


def record_history(workdir: Path, seed: int, transactions: int = 20, page_size: int = 4096,
                   grow_rows: int = 12) -> History:
    """The shared seeded history (tests/ltx/history.py) at the sizes the VFS tests use."""
    return ltx_history.record_history(workdir, seed, transactions=transactions, page_size=page_size,
                                      grow_rows=grow_rows)


def big_value(i: int) -> str:
    """Seeded, poorly compressible text, so a table of them is much larger than an open fetches."""
    return f"row {i} " + random.Random(i).randbytes(100 + i % 300).hex()


def big_table_history(workdir: Path, rows: int, page_size: int = 4096) -> History:
    """A one-table database `t(id, v)` of `rows` rows (a few hundred pages for 3000), as TXID 1."""
    path = workdir / f"big-{rows}-{page_size}.db"
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {page_size}").fetchall()
    conn.execute("PRAGMA journal_mode = delete").fetchall()
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, big_value(i)) for i in range(rows)])
    conn.close()
    return History(page_size, [b"", path.read_bytes()])


def uri(path: Path | str, replica: str | None = None, **params: Any) -> str:
    """An SQLite URI for `path` with the replica (percent-encoded) and other parameters."""
    query: dict[str, Any] = {}
    if replica is not None:
        query["replica"] = replica
    query.update(params)
    out = "file:" + quote(str(path))
    return out + ("?" + urlencode(query) if query else "")


def connect(path: Path | str, replica: str | None = None, **params: Any) -> apsw.Connection:
    """A read-only ltxvfs connection."""
    assert vfs.VFS_NAME == "ltxvfs"
    return apsw.Connection(uri(path, replica, **params), vfs=vfs.VFS_NAME,
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def plain(path: Path) -> apsw.Connection:
    """A plain read-only SQLite connection to a local file."""
    return apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)


def run_queries(conn: apsw.Connection, queries: Sequence[str] = QUERIES) -> list[list[tuple[Any, ...]]]:
    return [[tuple(r) for r in conn.execute(q)] for q in queries]


def pragma(conn: apsw.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchall()[0][0]


def stats(conn: apsw.Connection) -> dict[str, Any]:
    import json
    result: dict[str, Any] = json.loads(pragma(conn, "ltxvfs_stats"))
    return result
