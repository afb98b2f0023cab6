"""A replica summarised for operators: current TXID, geometry, levels, newest snapshot, plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ltx.names import format_txid
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo, restore_plan
from ltx.reader import read_header
from ltx.replica import LEVELS, Replica


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as Litestream prints times."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_record(f: LTXFileInfo) -> dict[str, Any]:
    """One file as a JSON-ready dict (TXIDs in Litestream's 16-digit hex)."""
    return {"level": f.level, "min_txid": format_txid(f.min_txid), "max_txid": format_txid(f.max_txid),
            "size": f.size, "created": format_time(f.created_at), "key": f.key, "sums_key": f.sums_key}


@dataclass(frozen=True)
class LevelSummary:
    """The files of one level in brief."""

    level: int
    files: int
    bytes: int
    min_txid: int
    max_txid: int

    def record(self) -> dict[str, Any]:
        return {"level": self.level, "files": self.files, "bytes": self.bytes,
                "min_txid": format_txid(self.min_txid), "max_txid": format_txid(self.max_txid)}


@dataclass(frozen=True)
class ReplicaInfo:
    """What `ltxctl info` shows."""

    url: str
    txid: int
    page_size: int
    commit: int
    updated: datetime
    levels: tuple[LevelSummary, ...]
    newest_snapshot: LTXFileInfo | None
    plan: tuple[LTXFileInfo, ...]

    @property
    def database_size(self) -> int:
        return self.page_size * self.commit

    def age(self, now: datetime) -> float:
        """Seconds from the newest commit to `now` (the replica's lag behind a writer still writing)."""
        return max(0.0, (now - self.updated).total_seconds())

    def record(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "txid": format_txid(self.txid),
            "page_size": self.page_size,
            "pages": self.commit,
            "database_size": self.database_size,
            "updated": format_time(self.updated),
            "levels": [lvl.record() for lvl in self.levels],
            "newest_snapshot": file_record(self.newest_snapshot) if self.newest_snapshot else None,
            "restore_plan": [file_record(f) for f in self.plan],
        }


def summarise_levels(levels: Mapping[int, Sequence[LTXFileInfo]]) -> tuple[LevelSummary, ...]:
    return tuple(LevelSummary(lvl, len(files), sum(f.size for f in files), min(f.min_txid for f in files),
                              max(f.max_txid for f in files))
                 for lvl, files in sorted(levels.items()) if files)


def replica_info(replica: Replica) -> ReplicaInfo:
    """List every level, compute the latest restore plan, and read its last file's header."""
    levels = replica.list_levels(LEVELS)
    plan = restore_plan(levels, url=replica.url)
    last = read_header(replica.store, plan[-1].key)
    snapshots = levels.get(SNAPSHOT_LEVEL, [])
    newest = max(snapshots, key=lambda f: (f.max_txid, f.created_at)) if snapshots else None
    return ReplicaInfo(replica.url, plan[-1].max_txid, last.page_size, last.commit,
                       datetime.fromtimestamp(last.timestamp / 1000, UTC), summarise_levels(levels), newest,
                       tuple(plan))
