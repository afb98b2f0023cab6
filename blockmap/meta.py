"""The metadata database: how it is opened, and how an operation runs as one short transaction.

`connect_meta` is the single seam between blockmap and where its SQLite database lives. Today it
opens a local file; when the `ltxvfs` VFS is ready it becomes
`apsw.Connection("blockmap.db", vfs="ltxvfs")` on the replica `meta_url`, and nothing else changes.
Each commit becomes one LTX file in object storage, so every operation is one short
`BEGIN IMMEDIATE ... COMMIT` and nothing else writes.
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import apsw

from blockmap.errors import InvalidMetaURLError

#: How long SQLite waits for another connection's lock before answering BUSY (ms).
BUSY_TIMEOUT_MS = 5000
#: Whole-transaction retries after SQLITE_BUSY (a conflicting writer committed first).
TXN_RETRIES = 10
#: First retry back-off (s); it doubles each time, with jitter.
TXN_BACKOFF = 0.005

T = TypeVar("T")


def meta_path(meta_url: str) -> str:
    """The local database path named by `sqlite3:///abs/path`, `sqlite3://rel/path`, `file:` or a path."""
    if "://" not in meta_url:
        if meta_url.startswith("file:"):
            return urllib.parse.unquote(meta_url[5:])
        return meta_url
    parsed = urllib.parse.urlsplit(meta_url)
    if parsed.scheme not in ("sqlite3", "sqlite", "file"):
        raise InvalidMetaURLError(meta_url, "scheme must be sqlite3:// (or a plain path) for now")
    path = urllib.parse.unquote(parsed.netloc + parsed.path)
    if not path:
        raise InvalidMetaURLError(meta_url, "no database path")
    return path


def connect_meta(meta_url: str, *, create: bool = False, read_only: bool = False) -> apsw.Connection:
    """Open the metadata database named by `meta_url` (the one place that knows where it lives)."""
    path = meta_path(meta_url)
    if read_only:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if not create and not os.path.exists(path):
        raise InvalidMetaURLError(meta_url, f"database {path} does not exist")
    conn = apsw.Connection(path, flags=flags)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    return conn


class MetaDB:
    """One connection and the transaction discipline every operation follows."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self._lock = threading.RLock()
        #: Commits made through `write` (each one an LTX file once the VFS ships them).
        self.commits = 0

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def write(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` inside BEGIN IMMEDIATE ... COMMIT, retrying the whole function when another
        writer holds or took the lock first. Any exception from `fn` rolls back and propagates."""
        delay = TXN_BACKOFF
        for attempt in range(TXN_RETRIES + 1):
            with self._lock:
                cur = self.conn.cursor()
                try:
                    cur.execute("BEGIN IMMEDIATE")
                except apsw.BusyError:
                    if attempt == TXN_RETRIES:
                        raise
                else:
                    try:
                        result = fn(cur)
                        cur.execute("COMMIT")
                        self.commits += 1
                        return result
                    except apsw.BusyError:
                        self._rollback(cur)
                        if attempt == TXN_RETRIES:
                            raise
                    except BaseException:
                        self._rollback(cur)
                        raise
            time.sleep(delay * (1 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` inside one read transaction, so it sees a single consistent state."""
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            try:
                return fn(cur)
            finally:
                self._rollback(cur)

    @contextmanager
    def reading(self) -> Iterator[apsw.Cursor]:
        """A read transaction held open by a `with` block (for iterators that fetch in batches)."""
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                self._rollback(cur)

    def _rollback(self, cur: apsw.Cursor) -> None:
        if not self.conn.getautocommit():
            cur.execute("ROLLBACK")


def as_int(value: Any) -> int:
    """A column value known to be an INTEGER (apsw types row values as a union)."""
    return int(value)


def as_bytes(value: Any) -> bytes:
    """A BLOB column value; TEXT (which SQL `||` can produce) is turned back into its bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if value is None:
        return b""
    return bytes(value)
