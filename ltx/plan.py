"""The restore plan, computed as `litestream restore` and the Litestream VFS compute it.

The newest level-9 snapshot at or below the target, then repeatedly the file from levels 0..8
that continues the chain (min <= current + 1, max > current) with the largest max TXID; ties go
to the smaller min TXID, then the higher level, then the older file. Without a target, a file
that starts past the chain's end is a gap, and an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _better(cur: LTXFileInfo, new: LTXFileInfo) -> bool:
    if new.max_txid != cur.max_txid:
        return new.max_txid > cur.max_txid
    if new.min_txid != cur.min_txid:
        return new.min_txid < cur.min_txid
    if new.level != cur.level:
        return new.level > cur.level
    return new.created_at < cur.created_at


def restore_plan(
    levels: Mapping[int, Sequence[LTXFileInfo]],
    txid: int = 0,
    timestamp: datetime | None = None,
    url: str = "",
) -> list[LTXFileInfo]:
    """Files to apply, in order, to reach `txid` (0: the latest) or the last state before `timestamp`.
    `levels` maps a level to its files sorted by (min, max) TXID."""
    if txid and timestamp is not None:
        raise ValueError("give a target TXID or a timestamp, not both")

    def eligible(f: LTXFileInfo) -> bool:
        if txid and f.max_txid > txid:
            return False
        return timestamp is None or f.created_at < timestamp

    plan: list[LTXFileInfo] = []
    snapshot = None
    for f in levels.get(SNAPSHOT_LEVEL, ()):
        if eligible(f):
            snapshot = f
    if snapshot is not None:
        plan.append(snapshot)
    current = snapshot.max_txid if snapshot else 0
    pending = {lvl: list(levels.get(lvl, ())) for lvl in range(MAX_COMPACTION_LEVEL + 1)}
    pos = dict.fromkeys(pending, 0)
    while not (txid and current >= txid):
        best: LTXFileInfo | None = None
        for lvl, files in pending.items():
            i = pos[lvl]
            while i < len(files) and files[i].min_txid <= current + 1:
                f = files[i]
                if f.max_txid > current and eligible(f) and (best is None or _better(best, f)):
                    best = f
                i += 1
        if best is None:
            break
        plan.append(best)
        current = best.max_txid
        for lvl, files in pending.items():
            while pos[lvl] < len(files) and files[pos[lvl]].max_txid <= current:
                pos[lvl] += 1

    if not any(levels.get(lvl) for lvl in range(SNAPSHOT_LEVEL + 1)):
        raise EmptyReplicaError(url)
    later = [f.min_txid for lvl, files in pending.items() for f in files[pos[lvl]:]
             if f.min_txid > current + 1 and eligible(f)]
    if txid == 0 and timestamp is None:
        if later:
            raise HistoryGapError(url, current + 1, min(later) - 1)
    elif current < txid if txid else not plan:
        if later and (not txid or min(later) <= txid):
            raise HistoryGapError(url, current + 1, min(later) - 1)
        target = format_txid(txid) if txid else (timestamp.isoformat() if timestamp else "")
        raise TXIDNotAvailableError(url, target, current)
    if not plan:
        raise EmptyReplicaError(url)
    return plan
