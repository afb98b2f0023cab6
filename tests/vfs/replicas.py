"""Replicas for VFS tests, built in code: a seeded workload's database images by TXID, shipped
with our encoder (TXID 1 whole, each later TXID as the pages it changed, at level 0), and
helpers to open them through ltxvfs and compare query results with plain SQLite."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import apsw

import vfs
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.replica import Replica
from tests.ltx.sqlgen import changed_pages, open_database, workload

#: Header timestamp of TXID n is BASE_MS + n * STEP_MS (an hour-old past, a second apart).
BASE_MS = 1_700_000_000_000
STEP_MS = 1000

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


@dataclass
class History:
    """Database images by TXID (index 0: before the first transaction)."""

    page_size: int
    images: list[bytes]

    @property
    def last_txid(self) -> int:
        return len(self.images) - 1

    def pages(self, txid: int) -> list[bytes]:
        image = self.images[txid]
        return [image[i:i + self.page_size] for i in range(0, len(image), self.page_size)]

    @staticmethod
    def timestamp_ms(txid: int) -> int:
        return BASE_MS + txid * STEP_MS

    @staticmethod
    def time(txid: int, plus_ms: int = 0) -> datetime:
        return datetime.fromtimestamp((BASE_MS + txid * STEP_MS + plus_ms) / 1000, UTC)

    def encode(self, txid: int, first: int | None = None) -> bytes:
        """One LTX file taking TXID `first - 1` (default txid - 1) to `txid`; from 1 a snapshot."""
        first = txid if first is None else first
        after = self.pages(txid)
        if first == 1:
            pgnos: Sequence[int] = range(1, len(after) + 1)
        else:
            pgnos = changed_pages(self.pages(first - 1), after)
        header = Header(page_size=self.page_size, commit=len(after), min_txid=first, max_txid=txid,
                        timestamp=self.timestamp_ms(txid))
        out = io.BytesIO()
        enc = Encoder(out, header, f"txid {first}-{txid}")
        for pgno in pgnos:
            enc.write_page(pgno, after[pgno - 1])
        enc.close()
        return out.getvalue()

    def ship(self, replica: Replica, first: int = 1, last: int | None = None, level: int = 0) -> None:
        """Put one file per TXID `first`..`last` at `level`."""
        for txid in range(first, (last if last is not None else self.last_txid) + 1):
            replica.put_file(level, txid, txid, self.encode(txid), timestamp_ms=self.timestamp_ms(txid))

    def ship_range(self, replica: Replica, first: int, last: int, level: int) -> None:
        """Put one file covering TXIDs `first`..`last` at `level` (a compaction's output)."""
        replica.put_file(level, first, last, self.encode(last, first), timestamp_ms=self.timestamp_ms(last))

    def write_image(self, txid: int, path: Path) -> Path:
        path.write_bytes(self.images[txid])
        return path


def record_history(workdir: Path, seed: int, transactions: int = 20, page_size: int = 4096,
                   grow_rows: int = 12) -> History:
    """Run the seeded workload in DELETE journal mode, keeping the file after each step."""
    path = workdir / f"history-{seed}-{page_size}.db"
    conn = open_database(path, page_size=page_size, journal_mode="delete")
    images = [b""]
    try:
        for step in workload(seed, transactions=transactions, page_size=page_size, grow_rows=grow_rows):
            step.apply(conn)
            images.append(path.read_bytes())
    finally:
        conn.close()
    return History(page_size, images)


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
