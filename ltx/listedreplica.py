"""A replica whose listings are taken once and then kept up to date by its own writes: for a
round of work (a compaction round) that looks at the same levels many times.

`ListedReplica.open(url)` lists the whole replica with one listing at the first look (S3: one
ListObjectsV2 per 1,000 keys; file: one walk) and answers every later `list_level` /
`list_levels` from it. A level this object writes a file or sidecar to is listed again at its
next look (the new file's size and time come from the store), and a file it deletes leaves the
kept listing. Files other processes (a writer shipping level 0) add meanwhile are not seen: the
listing is the replica as it was when the round began, which is what a round of compaction needs
(a file shipped meanwhile is compacted by the next round). Not for following a replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from ltx.pagesums import PageSums
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from ltx.store import ObjectStore


class ListedReplica(Replica):
    """A `Replica` that lists once and remembers (see the module's text)."""

    def __init__(self, store: ObjectStore, scheme: str) -> None:
        super().__init__(store, scheme)
        self._levels: dict[int, list[LTXFileInfo]] | None = None
        #: Levels to list again at their next look (this object wrote to them).
        self._stale: set[int] = set()
        #: Listings sent to the store (whole-replica and per-level), for tests and reports.
        self.listings = 0

    def _kept(self) -> dict[int, list[LTXFileInfo]]:
        if self._levels is None:
            self.listings += 1
            self._levels = self.list_all()
        return self._levels

    def iter_level(self, level: int, seek: int = 0) -> Iterator[LTXFileInfo]:
        levels = self._kept()
        if level in self._stale:
            self.listings += 1
            levels[level] = list(super().iter_level(level))
            self._stale.discard(level)
        return iter([f for f in levels.get(level, []) if f.min_txid >= seek])

    def forget(self) -> None:
        """List the replica again at the next look."""
        self._levels = None
        self._stale.clear()

    def put_file(self, level: int, min_txid: int, max_txid: int, data: bytes | BinaryIO,
                 timestamp_ms: int, if_absent: bool = True) -> str:
        try:
            return super().put_file(level, min_txid, max_txid, data, timestamp_ms, if_absent)
        finally:  # a conflict means the file exists: list the level again either way
            self._stale.add(level)

    def put_sums(self, key: str, sums: PageSums, timestamp_ms: int) -> str:
        try:
            return super().put_sums(key, sums, timestamp_ms)
        finally:  # `key` is the LTX file's: list its level again
            where = self.level_of_key(key)
            if where is None:
                self.forget()
            else:
                self._stale.add(where[0])

    def delete_file(self, info: LTXFileInfo) -> None:
        super().delete_file(info)
        if self._levels is not None and info.level in self._levels:
            self._levels[info.level] = [f for f in self._levels[info.level] if f.key != info.key]
