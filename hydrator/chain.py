"""Whether a replica's history still holds a local file's TXID, and where to list from next.

Which files carry a local file forward is decided by `ltx.plan.continue_from`, the rule the
restore plan and the VFS's follower use too (snapshots are left to a fresh start).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ltx.names import format_txid
from ltx.plan import LTXFileInfo, continue_from


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
    if newest > txid and not continue_from(levels, txid).files:
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
