"""A writer workload through ltxvfs whose outcome is easy to check: transaction `seq` inserts the
row (seq, payload(seq)) into table `t`, and a commit is acknowledged when COMMIT returned.

The check is then a set comparison: every acknowledged seq must be in the replica, and nothing
but acknowledged seqs and those whose COMMIT failed or never returned (their outcome unknown to
the writer) may be.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import apsw

import vfs

SCHEMA = "CREATE TABLE IF NOT EXISTS t(seq INTEGER PRIMARY KEY, v BLOB NOT NULL)"
#: Every this many transactions one row is larger than a page (an overflow chain: several pages).
BIG_EVERY = 5
ACKED = "acked "


def payload(seq: int) -> bytes:
    """The value of row `seq`: seeded, mostly small, now and then spanning several pages."""
    rng = random.Random(seq)
    size = rng.randint(9000, 20000) if seq % BIG_EVERY == 0 else rng.randint(10, 400)
    return rng.randbytes(size)


def writer_uri(path: Path | str, url: str, **params: Any) -> str:
    return "file:" + quote(str(path)) + "?" + urlencode({"replica": url, **params})


def open_writer(path: Path | str, url: str, **params: Any) -> apsw.Connection:
    """A read-write ltxvfs connection (the replica's writer), with a busy timeout."""
    conn = apsw.Connection(writer_uri(path, url, **params), vfs=vfs.VFS_NAME,
                           flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    conn.set_busy_timeout(5000)
    return conn


def ensure_schema(conn: apsw.Connection) -> None:
    with conn:
        conn.execute(SCHEMA)


def next_seq(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM t").fetchone()
    assert row is not None
    return int(row[0])


def commit_row(conn: apsw.Connection, seq: int) -> None:
    with conn:
        conn.execute("INSERT INTO t(seq, v) VALUES (?, ?)", (seq, payload(seq)))


def write_rows(conn: apsw.Connection, count: int, on_ack: Callable[[int], None],
               on_error: Callable[[int, apsw.Error], bool] | None = None) -> None:
    """Commit `count` transactions of one row each after the last row; call `on_ack(seq)` after
    each COMMIT returned. A failed COMMIT goes to `on_error` (True: go on with the row after the
    last one the connection now sees), else is raised."""
    ensure_schema(conn)
    seq = next_seq(conn)
    for _ in range(count):
        try:
            commit_row(conn, seq)
        except apsw.Error as exc:
            if on_error is None or not on_error(seq, exc):
                raise
            seq = next_seq(conn)
            continue
        on_ack(seq)
        seq += 1


def rows_of(conn: apsw.Connection) -> dict[int, bytes]:
    return {int(seq): bytes(v) for seq, v in conn.execute("SELECT seq, v FROM t ORDER BY seq")}


def main(url: str, path: str, count: int) -> None:
    """The crash child's workload: print `acked SEQ` (flushed) after each COMMIT returned."""
    conn = open_writer(path, url)
    try:
        write_rows(conn, count, lambda seq: print(f"{ACKED}{seq}", flush=True))
    finally:
        conn.close()
