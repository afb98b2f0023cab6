"""`PassThroughStore`: a real store behind a wrapper that tests subclass to watch, slow down or
fail chosen requests; every request it does not override goes to the real store unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from ltx.store import ObjectInfo, ObjectStore


class PassThroughStore(ObjectStore):
    """Delegates every request to `inner`."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.stats = inner.stats

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(key, offset, length)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        return self.inner.get_suffix(key, length)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        self.inner.put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()
