"""The page cache: decompressed pages by page number, least recently used out first, sized in bytes."""

from __future__ import annotations

from collections.abc import Iterable

import cachetools

#: Bytes of decompressed pages kept per connection (URI parameter `cache_size=`).
DEFAULT_CACHE_SIZE = 64 * 1024 * 1024


class PageCache(cachetools.LRUCache[int, bytes]):
    """An LRU of pages sized in bytes. Reading is `cache[pgno]` (KeyError on a miss): the
    cheapest lookup cachetools offers, kept so for xRead's hit path."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_SIZE) -> None:
        super().__init__(maxsize=max(max_bytes, 1), getsizeof=len)

    def put(self, pgno: int, page: bytes) -> None:
        """Store a page unless it alone is larger than the whole cache."""
        if len(page) <= self.maxsize:
            self[pgno] = page

    def evict(self, pgnos: Iterable[int]) -> int:
        """Drop the given pages; return how many were cached."""
        n = 0
        for pgno in pgnos:
            if self.pop(pgno, None) is not None:
                n += 1
        return n

    def evict_above(self, commit: int) -> int:
        """Drop every page past `commit` (the database shrank)."""
        return self.evict([p for p in self if p > commit])
