"""The object-store interface every backend implements, and the errors it raises.

Keys are '/'-separated paths relative to the store's root (the URL's path). Backends are
chosen by URL in `ltx.store.open_store`. Everything above this layer (replica layout, blockmap
blocks, hint files) speaks only this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the store root), size and modification time."""

    key: str
    size: int
    modified: datetime
    #: The LTX timestamp recorded at put time (ms since the epoch) where the backend keeps one:
    #: a file store's mtime (always), S3's `litestream-timestamp` metadata (`head` only; LIST
    #: does not return metadata). None when unknown.
    timestamp_ms: int | None = None


@dataclass
class StoreStats:
    """Requests and bytes a store has made; every backend counts into its own `stats`."""

    gets: int = 0
    lists: int = 0
    puts: int = 0
    deletes: int = 0
    heads: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    retries: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


class StoreError(Exception):
    """A store operation failed; `url` is credential-free, `key` the object concerned."""

    def __init__(self, url: str, key: str, reason: str) -> None:
        self.url = url
        self.key = key
        self.reason = reason
        where = f"{url.rstrip('/')}/{key}" if key else url
        super().__init__(f"{where}: {reason}")


class ObjectNotFoundError(StoreError):
    """The object (or the range's object) does not exist."""


class ObjectExistsError(StoreError):
    """A create-if-absent found the key taken (S3 412, or an existing file): a conflict."""


class InvalidKeyError(StoreError, ValueError):
    """A key the store refuses: empty, absolute, with `.`/`..`/empty segments or NUL, or one that
    would resolve outside the store's root."""


class ObjectRangeError(StoreError):
    """A byte range that the object does not hold in full (the object is shorter than asked)."""

    def __init__(self, url: str, key: str, offset: int, length: int, size: int | None) -> None:
        self.offset = offset
        self.length = length
        self.size = size
        have = "unknown size" if size is None else f"object size {size}"
        super().__init__(url, key, f"range offset {offset} length {length} is past the end ({have})")


class BucketNotFoundError(StoreError):
    """The bucket or root directory named by the URL does not exist."""


class StoreAuthError(StoreError):
    """The store refused the credentials (S3 403 / InvalidAccessKeyId / SignatureDoesNotMatch)."""


class StoreUnavailableError(StoreError):
    """The store kept failing (5xx, throttling, connection errors) after every retry."""


class InvalidURLError(ValueError):
    """A replica or data URL that cannot be used: unknown scheme, missing bucket or path."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class ObjectStore(abc.ABC):
    """A flat key space of immutable objects: list, read (whole, range, stream), create, delete."""

    #: The store's URL without credentials, for messages.
    url: str
    #: Request counters (a GET of a range, a suffix or a stream counts one; a LIST page counts one).
    stats: StoreStats

    @abc.abstractmethod
    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Yield objects whose key starts with `prefix` and sorts after `start_after`, in key order."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return the object's info; ObjectNotFoundError when it does not exist."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object (small objects only: use `open` to stream)."""

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Return exactly `length` bytes from `offset`; a short object is an error."""

    @abc.abstractmethod
    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        """Return the last `length` bytes (fewer if the object is smaller) and the object's size."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Return a readable stream of the whole object (bounded memory)."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_absent: bool = False,
        timestamp_ms: int | None = None,
    ) -> None:
        """Store an object. With `if_absent`, raise ObjectExistsError if the key exists (the commit
        point of a writer). `timestamp_ms` is the LTX header timestamp: file stores set the mtime to
        it, S3 stores the `litestream-timestamp` metadata."""

    def put_unsynced(self, key: str, data: bytes) -> None:
        """`put` an object that is readable when this returns but may be durable only once
        `sync_unsynced` has returned (a file store skips its two fsyncs per object and does them
        in one batch there). Stores whose puts are durable when they return just put."""
        self.put(key, data)

    def sync_unsynced(self) -> None:  # noqa: B027 - optional hook
        """Make every object `put_unsynced` so far durable (nothing to do where puts are)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key is not an error."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""
