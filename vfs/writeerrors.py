"""Errors of the write path. Each is an apsw exception class with an extended result code, so
SQLite reacts to it as it should (the caller gets the exception itself, with its fields):

- CommitConflictError: SQLITE_BUSY_SNAPSHOT. Another writer took the TXID this commit needed; the
  transaction is rolled back (an extended BUSY makes SQLite roll back instead of keeping the
  transaction open for a retry that can never succeed) and the next transaction reads the
  replica's latest state.
- CommitStoreError: SQLITE_IOERR_WRITE. The store failed after its retries; the transaction is
  rolled back and the connection stays usable.
- WriterBusyError: SQLITE_BUSY. A write lock SQLite may retry for (another connection of this
  process is writing, or newer commits of another writer are waiting to be read first).
- CommitRefusedError: SQLITE_IOERR_WRITE. A transaction ltxvfs cannot ship (a page-size change).
"""

from __future__ import annotations

import apsw


def _where(url: str, key: str) -> str:
    return f"{url.rstrip('/')}/{key}" if key else url


class CommitConflictError(apsw.BusyError):
    """Another writer created the file of the TXID this commit needed (or is known to be ahead)."""

    def __init__(self, url: str, txid: int, key: str, reason: str) -> None:
        self.url = url
        self.txid = txid
        self.key = key
        self.reason = reason
        super().__init__(f"ltxvfs: commit of TXID {txid:016x} to {_where(url, key)} conflicts: {reason}")
        self.extendedresult = apsw.SQLITE_BUSY_SNAPSHOT
        self.result = apsw.SQLITE_BUSY


class CommitStoreError(apsw.IOError):
    """The store did not take the commit's file (after retries)."""

    def __init__(self, url: str, key: str, reason: str) -> None:
        self.url = url
        self.key = key
        self.reason = reason
        super().__init__(f"ltxvfs: commit to {_where(url, key)} failed: {reason}")
        self.extendedresult = apsw.SQLITE_IOERR_WRITE
        self.result = apsw.SQLITE_IOERR


class CommitRefusedError(apsw.IOError):
    """A transaction that cannot become an LTX file of this replica."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ltxvfs: commit to {url} refused: {reason}")
        self.extendedresult = apsw.SQLITE_IOERR_WRITE
        self.result = apsw.SQLITE_IOERR


class WriterBusyError(apsw.BusyError):
    """The write lock is not available now (SQLite's busy handler may try again)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ltxvfs: {url}: {reason}")
