"""Compaction and retention of a replica by Litestream 0.5.17's rules, one step at a time.

- Level L+1 (1..8) takes every file of level L that starts after its own last TXID and merges
  them into one file (latest page wins), created only if absent.
- Level 9 gets a snapshot (min TXID 1) merged from the restore plan of the latest state.
- Retention: a level-0 file goes only when level 1 covers it and it is older than the L0
  retention (scanning stops at the first younger file, so level 0 never gets a hole); snapshots
  older than the snapshot retention go, and then files of levels 1.. that end before the last
  deleted snapshot. The newest file of every level always stays.

A writer may ship level-0 files and readers may follow them meanwhile: nothing a reader at some
TXID needs goes before a higher level covers it and the retention has passed.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from ltx.compactor import compact_with_sums
from ltx.pagesums import needs_sums
from ltx.plan import MAX_COMPACTION_LEVEL, SNAPSHOT_LEVEL, LTXFileInfo, restore_plan
from ltx.replica import Replica
from ltx.store.base import ObjectExistsError, ObjectStore

#: Litestream's DefaultCompactionLevels: level -> interval between compactions into it.
DEFAULT_COMPACTION_INTERVALS: dict[int, timedelta] = {
    1: timedelta(seconds=30),
    2: timedelta(minutes=5),
    3: timedelta(hours=1),
}
#: The highest compaction level of Litestream's default configuration.
DEFAULT_MAX_LEVEL = max(DEFAULT_COMPACTION_INTERVALS)
#: Litestream's DefaultSnapshotInterval and DefaultSnapshotRetention.
DEFAULT_SNAPSHOT_INTERVAL = timedelta(hours=24)
DEFAULT_SNAPSHOT_RETENTION = timedelta(hours=24)
#: Litestream's DefaultL0Retention: level-0 files stay this long after level 1 covers them.
DEFAULT_L0_RETENTION = timedelta(minutes=5)
#: Compaction by file count (`run(file_count=...)`, what a writer's compactor does): levels 1..8
#: take the level below this many files at a time, as soon as that many wait past their last TXID
#: (whatever the schedule), and a snapshot is due once the highest level in use holds this many
#: past the newest snapshot. Whatever the commit rate, a restore plan then holds at most the
#: snapshot and (this - 1) files per level; the snapshot is rewritten at most once per this**4
#: level-0 files. Chunks start where the level ends and hold exactly this many files, so two
#: compactors of one replica write the same keys (one gets a conflict), never overlapping files.
DEFAULT_COMPACTION_FILE_COUNT = 8
#: Merge inputs up to this size are fetched whole (one GET) rather than streamed...
SMALL_INPUT_SIZE = 1024 * 1024
#: ...while their total stays under this many bytes.
SMALL_INPUT_BUDGET = 64 * 1024 * 1024
#: Whole-file GETs of small merge inputs in flight at once.
DEFAULT_FETCH_PARALLELISM = 16
#: A merge's output is spooled in memory up to this size, then on disk, before the upload.
SPOOL_MAX_SIZE = 8 * 1024 * 1024


class CompactionError(Exception):
    """A compaction step was asked for something that cannot be done."""


@dataclass(frozen=True)
class StepResult:
    """One compaction step: `file` is what it wrote (None when there was nothing to do or
    another compactor had already written the same file: `conflict`)."""

    level: int
    inputs: tuple[LTXFileInfo, ...] = ()
    file: LTXFileInfo | None = None
    conflict: bool = False
    reason: str = ""


@dataclass
class CompactionReport:
    """Every step taken and every file deleted by retention."""

    steps: list[StepResult] = field(default_factory=list)
    deleted: list[LTXFileInfo] = field(default_factory=list)


def _open_inputs(store: ObjectStore, infos: Sequence[LTXFileInfo], stack: ExitStack,
                 parallelism: int = DEFAULT_FETCH_PARALLELISM) -> list[tuple[BinaryIO, str]]:
    """Open every input: small ones fetched whole (in parallel) within a budget, the rest streamed."""
    budget = SMALL_INPUT_BUDGET
    small: list[str] = []
    for info in infos:
        if info.size <= SMALL_INPUT_SIZE and info.size <= budget:
            budget -= info.size
            small.append(info.key)
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(small) or 1))) as pool:
        fetched = dict(zip(small, pool.map(store.get, small), strict=True))
    out: list[tuple[BinaryIO, str]] = []
    for info in infos:
        if info.key in fetched:
            out.append((io.BytesIO(fetched[info.key]), info.key))
        else:
            out.append((stack.enter_context(store.open(info.key)), info.key))
    return out


def merge_files(replica: Replica, level: int, inputs: Sequence[LTXFileInfo]) -> tuple[LTXFileInfo | None, bool]:
    """Merge `inputs` (contiguous, in TXID order) into one file at `level`, created if absent.
    Returns (the new file, False), or (None, True) when that file already exists."""
    store = replica.store
    with ExitStack() as stack:
        sources = _open_inputs(store, inputs, stack)
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_SIZE))
        key = replica.key(level, inputs[0].min_txid, inputs[-1].max_txid)
        header, sums = compact_with_sums(sources, spool, name=key)  # type: ignore[arg-type]
        size = spool.tell()
        spool.seek(0)
        if needs_sums(size):
            replica.put_sums(key, sums, header.timestamp)
        try:
            replica.put_file(level, header.min_txid, header.max_txid, spool,  # type: ignore[arg-type]
                             timestamp_ms=header.timestamp, if_absent=True)
        except ObjectExistsError:
            return None, True
    created = datetime.fromtimestamp(header.timestamp / 1000, UTC)
    return LTXFileInfo(level, header.min_txid, header.max_txid, size, created, key,
                       sums.encoded_size if needs_sums(size) else 0), False


def compact_level(replica: Replica, dst_level: int) -> StepResult:
    """Merge into `dst_level` (1..8) every file of the level below that starts after the
    destination's last TXID (Litestream's Compactor.Compact)."""
    if not 1 <= dst_level <= MAX_COMPACTION_LEVEL:
        raise CompactionError(f"compaction level must be 1..{MAX_COMPACTION_LEVEL}, got {dst_level}")
    dst = replica.list_level(dst_level)
    dst_max = max((f.max_txid for f in dst), default=0)
    inputs = replica.list_level(dst_level - 1, seek=dst_max + 1)
    if not inputs:
        return StepResult(dst_level, reason=f"no files in level {dst_level - 1} after TXID {dst_max:016x}")
    info, conflict = merge_files(replica, dst_level, inputs)
    return StepResult(dst_level, tuple(inputs), info, conflict,
                      "written by another compactor already" if conflict else "")


def compact_chunks(replica: Replica, dst_level: int, count: int) -> list[StepResult]:
    """Merge into `dst_level` (1..8) the files of the level below that start after its last TXID,
    `count` at a time, while `count` wait; fewer are left for later."""
    if not 1 <= dst_level <= MAX_COMPACTION_LEVEL:
        raise CompactionError(f"compaction level must be 1..{MAX_COMPACTION_LEVEL}, got {dst_level}")
    if count < 1:
        raise CompactionError(f"compaction file count must be at least 1, got {count}")
    dst_max = max((f.max_txid for f in replica.list_level(dst_level)), default=0)
    waiting = replica.list_level(dst_level - 1, seek=dst_max + 1)
    steps: list[StepResult] = []
    while len(waiting) >= count:
        chunk, waiting = waiting[:count], waiting[count:]
        info, conflict = merge_files(replica, dst_level, chunk)
        steps.append(StepResult(dst_level, tuple(chunk), info, conflict,
                                "written by another compactor already" if conflict else ""))
    if not steps:
        steps.append(StepResult(dst_level, reason=f"{len(waiting)} of {count} files waiting in level "
                                                  f"{dst_level - 1}"))
    return steps


def snapshot(replica: Replica) -> StepResult:
    """Write a level-9 snapshot of the latest state, merged from its restore plan, unless the
    newest snapshot already holds that state."""
    levels = replica.list_levels()
    plan = restore_plan(levels, url=replica.url)
    newest = max((f.max_txid for f in levels.get(SNAPSHOT_LEVEL, ())), default=0)
    if newest >= plan[-1].max_txid:
        return StepResult(SNAPSHOT_LEVEL, reason=f"the newest snapshot already reaches {newest:016x}")
    info, conflict = merge_files(replica, SNAPSHOT_LEVEL, plan)
    return StepResult(SNAPSHOT_LEVEL, tuple(plan), info, conflict,
                      "written by another compactor already" if conflict else "")


def _delete(replica: Replica, files: Sequence[LTXFileInfo]) -> list[LTXFileInfo]:
    for f in files:
        replica.delete_file(f)
    return list(files)


def l0_expired(l0: Sequence[LTXFileInfo], l1_max: int, threshold: datetime) -> list[LTXFileInfo]:
    """The level-0 files to delete (Litestream's EnforceL0Retention): covered by level 1
    (max TXID <= `l1_max`) and created before `threshold`; the scan stops at the first younger
    file, and the newest file stays when every file was old enough."""
    if l1_max == 0:
        return []
    deleted: list[LTXFileInfo] = []
    processed_all = True
    for f in l0:
        if f.created_at > threshold:
            processed_all = False
            break
        if f.max_txid <= l1_max:
            deleted.append(f)
    if processed_all and deleted and l0 and deleted[-1] is l0[-1]:
        deleted.pop()
    return deleted


def enforce_l0_retention(replica: Replica, retention: timedelta, now: datetime | None = None) -> list[LTXFileInfo]:
    """Delete level-0 files that level 1 covers and that are older than `retention` (<= 0: none)."""
    if retention <= timedelta(0):
        return []
    now = now or datetime.now(UTC)
    l1_max = max((f.max_txid for f in replica.list_level(1)), default=0)
    return _delete(replica, l0_expired(replica.list_level(0), l1_max, now - retention))


def snapshots_expired(snapshots: Sequence[LTXFileInfo], threshold: datetime) -> tuple[list[LTXFileInfo], int]:
    """Snapshots created before `threshold` (the newest always stays), and the TXID below which
    files of levels 1.. may go: the max TXID of the last deleted snapshot before the first kept
    one (Litestream's conservative floor, which keeps an in-flight restore's files), else 0."""
    deleted = [f for f in snapshots if f.created_at < threshold]
    if deleted and snapshots and deleted[-1] is snapshots[-1]:
        deleted.pop()
    floor = 0
    for i, f in enumerate(snapshots):
        if any(f is d for d in deleted):
            continue
        if i > 0:
            floor = snapshots[i - 1].max_txid
        break
    return deleted, floor


def enforce_snapshot_retention(replica: Replica, retention: timedelta, now: datetime | None = None,
                               max_level: int = DEFAULT_MAX_LEVEL) -> list[LTXFileInfo]:
    """Delete snapshots older than `retention`, then files of levels 1..`max_level` that end
    before the floor that leaves (always keeping each level's newest file)."""
    now = now or datetime.now(UTC)
    deleted, floor = snapshots_expired(replica.list_level(SNAPSHOT_LEVEL), now - retention)
    removed = _delete(replica, deleted)
    if floor:
        for level in range(1, max_level + 1):
            removed += enforce_retention_by_txid(replica, level, floor)
    return removed


def enforce_retention_by_txid(replica: Replica, level: int, txid: int) -> list[LTXFileInfo]:
    """Delete files of `level` whose max TXID is below `txid`, keeping the level's newest file."""
    files = replica.list_level(level)
    doomed = [f for f in files if f.max_txid < txid]
    if doomed and doomed[-1] is files[-1]:
        doomed.pop()
    return _delete(replica, doomed)


def highest_level(replica: Replica) -> int:
    """The highest compaction level to run: Litestream's default or the highest one in use."""
    used = [lvl for lvl, files in replica.list_levels(tuple(range(1, MAX_COMPACTION_LEVEL + 1))).items() if files]
    return max([DEFAULT_MAX_LEVEL, *used])


def is_due(newest: Sequence[LTXFileInfo], interval: timedelta, now: datetime) -> bool:
    """Litestream's schedule: a level is due unless its newest file was created after the most
    recent multiple of `interval` (since the epoch) before `now`."""
    if not newest:
        return True
    step = interval.total_seconds()
    if step <= 0:
        return True
    prev = datetime.fromtimestamp((now.timestamp() // step) * step, UTC)
    return max(f.created_at for f in newest) <= prev


def backlog(replica: Replica, level: int) -> int:
    """Files waiting to be compacted into `level`: for 1..8, the files of the level below past
    the level's last TXID; for the snapshot, the files of the highest compaction level in use
    (Litestream's default at least) past the newest snapshot."""
    if level == SNAPSHOT_LEVEL:
        done = max((f.max_txid for f in replica.list_level(SNAPSHOT_LEVEL)), default=0)
        return sum(1 for f in replica.list_level(highest_level(replica)) if f.max_txid > done)
    done = max((f.max_txid for f in replica.list_level(level)), default=0)
    return len(replica.list_level(level - 1, seek=done + 1))


def rewhole(replica: Replica) -> bool:
    """Whether the restore plan applies, after its snapshot, a file that starts at TXID 1 (the first
    chunk of a level, holding the whole database again): a new snapshot then halves what a cold
    reader fetches (two whole-database indexes and sidecars become one)."""
    plan = restore_plan(replica.list_levels(), url=replica.url)
    return any(f.min_txid == 1 for f in plan[1:])


def run(replica: Replica, levels: Sequence[int], *, l0_retention: timedelta = DEFAULT_L0_RETENTION,
        snapshot_retention: timedelta = DEFAULT_SNAPSHOT_RETENTION, retention: bool = True,
        intervals: dict[int, timedelta] | None = None, file_count: int | None = None,
        now: Callable[[], datetime] | None = None) -> CompactionReport:
    """One step for each of `levels` in order (1..8 compaction, 9 snapshot), then retention.

    With `intervals`, a level whose interval has not passed since its newest file is skipped, as
    Litestream's scheduler would. With `file_count`, levels 1..8 are compacted by file count
    instead (`compact_chunks`), and the snapshot is also due once `file_count` files wait for it
    (`backlog`) or the plan holds a second whole-database file (`rewhole`)."""
    clock = now or (lambda: datetime.now(UTC))
    report = CompactionReport()
    for level in levels:
        if file_count is not None and level != SNAPSHOT_LEVEL:
            report.steps.extend(compact_chunks(replica, level, file_count))
            continue
        if intervals is not None and level in intervals:
            due = is_due(replica.list_level(level), intervals[level], clock())
            if not due and file_count is not None:
                due = backlog(replica, level) >= file_count or (level == SNAPSHOT_LEVEL and rewhole(replica))
            if not due:
                report.steps.append(StepResult(level, reason="not due yet"))
                continue
        if level == SNAPSHOT_LEVEL:
            report.steps.append(snapshot(replica))
        else:
            report.steps.append(compact_level(replica, level))
    if retention:
        report.deleted += enforce_l0_retention(replica, l0_retention, clock())
        report.deleted += enforce_snapshot_retention(replica, snapshot_retention, clock(), highest_level(replica))
    return report
