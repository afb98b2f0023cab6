"""Which LTX files carry a local file from the TXID it holds to the replica's newest one.

A file continues a database at TXID `t` when `min <= t + 1` and `max > t` (it holds the latest
image of every page changed in between). Among the continuations of levels 0..8 the one reaching
furthest is taken, as the restore plan does (fewer GETs and, compacted, fewer bytes); among those
reaching equally far, the smallest (the restore plan prefers the earliest start instead, which
only costs bytes here). Snapshots (level 9) are left to a fresh start.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ltx.names import format_txid
from ltx.plan import MAX_COMPACTION_LEVEL, LTXFileInfo


def _rank(f: LTXFileInfo) -> tuple[int, int, int]:
    return (f.max_txid, -f.size, f.min_txid)


def continuation(levels: Mapping[int, Sequence[LTXFileInfo]], txid: int) -> list[LTXFileInfo]:
    """Files of levels 0..8, in order, that take a database at `txid` as far as the history allows."""
    candidates = sorted((f for lvl, files in levels.items() if lvl <= MAX_COMPACTION_LEVEL for f in files
                         if f.max_txid > txid), key=lambda f: f.min_txid)
    chain: list[LTXFileInfo] = []
    reachable: list[tuple[tuple[int, int, int], int]] = []  # max-heap by rank, as negated keys
    current = txid
    i = 0
    while True:
        while i < len(candidates) and candidates[i].min_txid <= current + 1:
            max_txid, neg_size, min_txid = _rank(candidates[i])
            heapq.heappush(reachable, ((-max_txid, -neg_size, -min_txid), i))
            i += 1
        if not reachable or candidates[reachable[0][1]].max_txid <= current:
            return chain
        best = candidates[heapq.heappop(reachable)[1]]
        chain.append(best)
        current = best.max_txid


def newest_txid(levels: Mapping[int, Sequence[LTXFileInfo]]) -> int:
    return max((f.max_txid for files in levels.values() for f in files), default=0)


def ending_at(levels: Mapping[int, Sequence[LTXFileInfo]], txid: int) -> LTXFileInfo | None:
    """A file whose last TXID is `txid`, preferring the lowest level (smallest file)."""
    for lvl in sorted(levels):
        for f in levels[lvl]:
            if f.max_txid == txid:
                return f
    return None


@dataclass(frozen=True)
class HistoryVerdict:
    """Whether a replica's history still holds a TXID; `reason` says why not."""

    holds: bool
    reason: str = ""


def history_holds(levels: Mapping[int, Sequence[LTXFileInfo]], txid: int, url: str) -> HistoryVerdict:
    """Whether the listed history still reaches `txid` and can continue from it (by listing alone;
    the caller also compares the header of the file ending at `txid`, when one exists)."""
    newest = newest_txid(levels)
    if newest < txid:
        return HistoryVerdict(False, f"{url}: the replica's history ends at TXID {format_txid(newest)}, "
                                     f"before the {format_txid(txid)} the local file holds")
    if newest > txid and not continuation(levels, txid):
        return HistoryVerdict(False, f"{url}: no file continues the history from TXID {format_txid(txid)} "
                                     f"(the replica now starts later, or was replaced)")
    return HistoryVerdict(True)


class SeekHints:
    """Per level, the lowest min TXID a file useful beyond the current TXID can have, so polls
    list only the tail of a level: files at one level never overlap, so a file reaching past `t`
    starts after the last file that ends at or before `t`."""

    def __init__(self) -> None:
        self._ends: dict[int, int] = {}

    def seek(self, level: int) -> int:
        return self._ends.get(level, 0) + 1

    def observe(self, files: Iterable[LTXFileInfo], txid: int) -> None:
        """Learn from listed files, now that the local file holds `txid`."""
        for f in files:
            if f.max_txid <= txid and f.max_txid > self._ends.get(f.level, 0):
                self._ends[f.level] = f.max_txid

    def reset(self) -> None:
        self._ends.clear()
