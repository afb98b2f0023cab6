"""The restore plan, computed as `litestream restore` and the Litestream VFS compute it.

The newest level-9 snapshot at or below the target, then repeatedly the file from levels 0..8
that continues the chain (min <= current + 1, max > current) with the largest max TXID; ties go
to the smaller min TXID, then the higher level, then the older file. Without a target, a file
that starts past the chain's end is a gap, and an error.

`continue_from` is that continuation rule, the only one: the restore plan, the VFS's follower
and the hydrator all choose the files that carry a TXID forward with it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ltx.names import format_txid
from ltx.pagesums import sums_key

SNAPSHOT_LEVEL = 9
#: The highest compaction level (levels 1..8 hold compacted files).
MAX_COMPACTION_LEVEL = SNAPSHOT_LEVEL - 1


@dataclass(frozen=True)
class LTXFileInfo:
    """One LTX file of a replica: where it is, which TXIDs it covers, its size and creation time."""

    level: int
    min_txid: int
    max_txid: int
    size: int
    created_at: datetime
    key: str
    #: Size of the file's page checksum sidecar (ltx/pagesums.py) when listed beside it, else 0.
    sums_size: int = 0

    @property
    def sums_key(self) -> str | None:
        """The key of the file's page checksum sidecar, when one was listed."""
        return sums_key(self.key) if self.sums_size else None

    @property
    def name(self) -> str:
        return f"{self.min_txid:016x}-{self.max_txid:016x}.ltx"


class RestorePlanError(Exception):
    """No restore plan can reach the target."""


class EmptyReplicaError(RestorePlanError):
    """The replica holds no LTX files at all."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"{url}: no LTX files found (an empty replica, or the wrong URL)")


class HistoryGapError(RestorePlanError):
    """The history lacks TXIDs `missing_from`..`missing_to` needed to reach the target."""

    def __init__(self, url: str, missing_from: int, missing_to: int) -> None:
        self.url = url
        self.missing_from = missing_from
        self.missing_to = missing_to
        super().__init__(f"{url}: gap in the history: no file holds TXIDs {format_txid(missing_from)}.."
                         f"{format_txid(missing_to)}")


class TXIDNotAvailableError(RestorePlanError):
    """The target TXID or time lies outside what the replica holds."""

    def __init__(self, url: str, target: str, reached: int) -> None:
        self.url = url
        self.target = target
        self.reached = reached
        where = (f"the history reaches only {format_txid(reached)} there" if reached
                 else "the replica holds no state at or before it")
        super().__init__(f"{url}: cannot restore to {target}: {where}")


@dataclass(frozen=True)
class Continuation:
    """The files that carry the history on from a TXID, in order, and where that leaves it."""

    #: The TXID the chain starts from.
    start: int
    files: list[LTXFileInfo]
    #: The min TXID of the earliest eligible file that starts past the chain's end (a gap), or 0.
    gap_to: int = 0

    @property
    def txid(self) -> int:
        """The TXID the chain reaches (`start` when no file continues it)."""
        return self.files[-1].max_txid if self.files else self.start

    @property
    def gap(self) -> bool:
        """Whether some file starts past the chain's end: the TXIDs between are missing."""
        return self.gap_to != 0


def _preference(f: LTXFileInfo) -> tuple[int, int, int, datetime]:
    """Heap order (smallest first): larger max TXID, then smaller min, higher level, older file."""
    return (-f.max_txid, f.min_txid, -f.level, f.created_at)


def continue_from(
    levels: Mapping[int, Iterable[LTXFileInfo]],
    tip: int,
    eligible: Callable[[LTXFileInfo], bool] | None = None,
) -> Continuation:
    """Which files of levels 0..8 continue the history from `tip`, as Litestream's plan does.

    A file continues TXID `t` when `min <= t + 1` and `max > t`. Each step takes, among the
    continuations, the one with the largest max TXID; ties go to the smaller min TXID, then the
    higher level, then the older file. Snapshots (level 9) are not continuations: a plan starts
    from one. `eligible` leaves files out (a target TXID or time); the gap it reports counts
    eligible files only."""
    files = sorted((f for lvl, fs in levels.items() if lvl <= MAX_COMPACTION_LEVEL for f in fs
                    if f.max_txid > tip and (eligible is None or eligible(f))),
                   key=lambda f: f.min_txid)
    chain: list[LTXFileInfo] = []
    reachable: list[tuple[tuple[int, int, int, datetime], int]] = []
    current = tip
    i = 0
    while True:
        while i < len(files) and files[i].min_txid <= current + 1:
            heapq.heappush(reachable, (_preference(files[i]), i))
            i += 1
        if not reachable or files[reachable[0][1]].max_txid <= current:
            break
        best = files[heapq.heappop(reachable)[1]]
        chain.append(best)
        current = best.max_txid
    return Continuation(tip, chain, files[i].min_txid if i < len(files) else 0)


def restore_plan(
    levels: Mapping[int, Sequence[LTXFileInfo]],
    txid: int = 0,
    timestamp: datetime | None = None,
    url: str = "",
) -> list[LTXFileInfo]:
    """Files to apply, in order, to reach `txid` (0: the latest) or the last state before `timestamp`:
    the newest eligible snapshot, then `continue_from` its TXID."""
    if txid and timestamp is not None:
        raise ValueError("give a target TXID or a timestamp, not both")
    if not any(levels.get(lvl) for lvl in range(SNAPSHOT_LEVEL + 1)):
        raise EmptyReplicaError(url)

    def eligible(f: LTXFileInfo) -> bool:
        if txid and f.max_txid > txid:
            return False
        return timestamp is None or f.created_at < timestamp

    snapshot = None
    for f in levels.get(SNAPSHOT_LEVEL, ()):
        if eligible(f):
            snapshot = f
    plan = [snapshot] if snapshot is not None else []
    chain = continue_from(levels, snapshot.max_txid if snapshot else 0, eligible)
    plan += chain.files
    current = chain.txid
    if txid == 0 and timestamp is None:
        if chain.gap:
            raise HistoryGapError(url, current + 1, chain.gap_to - 1)
    elif current < txid if txid else not plan:
        if chain.gap and (not txid or chain.gap_to <= txid):
            raise HistoryGapError(url, current + 1, chain.gap_to - 1)
        target = format_txid(txid) if txid else (timestamp.isoformat() if timestamp else "")
        raise TXIDNotAvailableError(url, target, current)
    if not plan:
        raise EmptyReplicaError(url)
    return plan
