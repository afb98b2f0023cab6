"""Errors the VFS hands to SQLite. Each is an apsw exception class, so SQLite gets the matching
result code (CANTOPEN, IOERR, CORRUPT) and the caller gets this exception with its fields."""

from __future__ import annotations

import apsw

from ltx.store.url import redact_url


class ReplicaOpenError(apsw.CantOpenError):
    """A database could not be opened from its replica (empty, a gap, unreachable, bad files).
    `url` is shown without credentials (a URL that failed to parse may still hold some)."""

    def __init__(self, url: str, reason: str) -> None:
        url = redact_url(url)
        self.url = url
        self.reason = reason
        super().__init__(f"ltxvfs: cannot open replica {url}: {reason}")


class PageReadError(apsw.IOError):
    """Pages could not be fetched from the store, after retries."""

    def __init__(self, url: str, key: str, reason: str) -> None:
        self.url = url
        self.key = key
        self.reason = reason
        super().__init__(f"ltxvfs: {url.rstrip('/')}/{key}: {reason}")


class PageCorruptError(apsw.CorruptError):
    """A fetched page frame is malformed (bad frame header, wrong size, LZ4 that does not decode to
    exactly one page), or the replica's index points nowhere."""

    def __init__(self, url: str, key: str, reason: str) -> None:
        self.url = url
        self.key = key
        self.reason = reason
        super().__init__(f"ltxvfs: {url.rstrip('/')}/{key}: {reason}")


class ReadOnlyVFSError(apsw.ReadOnlyError):
    """A write reached a read-only ltxvfs file."""


class TimeTravelError(apsw.SQLError):
    """A `PRAGMA litestream_time` the replica cannot serve."""
