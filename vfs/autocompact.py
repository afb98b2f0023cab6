"""Compaction of a replica inside the writer's process (the default; `compact=off` opts out), by
`ltxctl compact`'s rules.

One thread per replica URL in the process, shared by its writer connections and stopped with the
last of them. A round runs as soon as the writers have shipped `file_count` files since the last
one, and at every multiple of the level-1 interval (30 s, Litestream's). Levels 1-3 are compacted
by file count (ltx.compaction.compact_chunks: each takes the level below `file_count` files at a
time), so a cold reader's restore plan stays bounded at any commit rate; the snapshot follows
Litestream's schedule (every 24 h) or the file count; then retention (level-0 files 5 min after
level 1 covers them, snapshots after 24 h) and the hint's refresh, as `ltxctl compact
--scheduled` does. Compaction creates its files with create-if-absent and its chunks have fixed
boundaries, so two processes compacting one replica never overwrite each other nor write
overlapping files. A round lists the replica once (ltx.listedreplica) and works from that listing,
kept up to date with its own writes (it looked at the levels ~40 times a round before). A replica
with no file yet (a new writer's) has nothing to compact; a failed step is logged and tried again
at the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from ltx import compaction
from ltx.hint import refresh_hint
from ltx.listedreplica import ListedReplica
from ltx.plan import SNAPSHOT_LEVEL, EmptyReplicaError
from vfs.process import COMPACTORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """When levels are compacted and how long superseded files are kept."""

    intervals: dict[int, timedelta] = field(default_factory=lambda: {
        **compaction.DEFAULT_COMPACTION_INTERVALS, SNAPSHOT_LEVEL: compaction.DEFAULT_SNAPSHOT_INTERVAL})
    l0_retention: timedelta = compaction.DEFAULT_L0_RETENTION
    snapshot_retention: timedelta = compaction.DEFAULT_SNAPSHOT_RETENTION
    #: Files shipped since the last round that start one, and files waiting for a level that make
    #: it due (ltx.compaction.DEFAULT_COMPACTION_FILE_COUNT); None: the time schedule only.
    file_count: int | None = compaction.DEFAULT_COMPACTION_FILE_COUNT

    @property
    def tick(self) -> float:
        """Seconds between looks: the shortest interval (level 1's)."""
        return min(i.total_seconds() for i in self.intervals.values())


#: The schedule of `compact=auto` (Litestream's defaults, and the file-count trigger).
DEFAULT_SCHEDULE = Schedule()


@dataclass
class CompactorStats:
    steps: int = 0
    files_written: int = 0
    files_deleted: int = 0
    errors: int = 0


class AutoCompactor:
    """Compacts one replica on a schedule until stopped."""

    def __init__(self, url: str, schedule: Schedule = DEFAULT_SCHEDULE) -> None:
        self.url = url
        self.schedule = schedule
        self.stats = CompactorStats()
        self.last_error: BaseException | None = None
        self._stopping = False
        self._wake = threading.Event()
        self._shipped_lock = threading.Lock()
        #: Files shipped by this process's writers since the last round began.
        self._shipped = 0
        self._thread = threading.Thread(target=self._run, name="ltxvfs-compact", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round under way, and after one more if enough files were shipped
        since it began (a closing writer leaves a bounded plan to the next cold reader)."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def note_shipped(self) -> None:
        """A writer shipped a level-0 file: a round starts once `file_count` have been."""
        count = self.schedule.file_count
        if count is None:
            return
        with self._shipped_lock:
            self._shipped += 1
            if self._shipped >= count:
                self._wake.set()

    def _run(self) -> None:
        tick = self.schedule.tick
        while True:
            self._wake.wait(tick - time.time() % tick)
            self._wake.clear()
            with self._shipped_lock:
                asked, self._shipped = self._shipped_enough(), 0
            if self._stopping:
                if asked:  # the last writer closed: finish the round its files asked for
                    self.run_once()
                return
            self.run_once()

    def _shipped_enough(self) -> bool:
        count = self.schedule.file_count
        return count is not None and self._shipped >= count

    def run_once(self) -> None:
        """One scheduled round: due levels, retention, hint. Errors are logged and counted."""
        replica = ListedReplica.open(self.url)  # one listing of the replica per round, not one per look
        try:
            levels = sorted(self.schedule.intervals)
            report = compaction.run(replica, levels, l0_retention=self.schedule.l0_retention,
                                    snapshot_retention=self.schedule.snapshot_retention,
                                    intervals=self.schedule.intervals, file_count=self.schedule.file_count)
            written = [s for s in report.steps if s.file is not None]
            self.stats.steps += 1
            self.stats.files_written += len(written)
            self.stats.files_deleted += len(report.deleted)
            if written or report.deleted:
                refresh_hint(replica)
            self.last_error = None
        except EmptyReplicaError:
            self.last_error = None  # a new writer's replica before its first commit: nothing to compact
        except Exception as exc:  # noqa: BLE001 - a background step: logged, tried again next time
            self.stats.errors += 1
            self.last_error = exc
            log.warning("%s: compaction failed (tried again in %gs): %s", self.url, self.schedule.tick, exc)
        finally:
            replica.close()


#: Compactors by replica URL with their users: the process's registry (vfs/process.py).
_lock = COMPACTORS.lock
_running = COMPACTORS.entries


def attach(url: str) -> AutoCompactor:
    """The compactor of `url` in this process (started on first use); `detach` when done."""
    with _lock:
        found = _running.get(url)
        if found is None:
            compactor = AutoCompactor(url, DEFAULT_SCHEDULE)
            compactor.start()
            _running[url] = (compactor, 1)
            return compactor
        _running[url] = (found[0], found[1] + 1)
        return found[0]


def detach(url: str) -> None:
    """One user of the compactor of `url` is done; the last one stops it."""
    with _lock:
        found = _running.get(url)
        if found is None:
            return
        compactor, users = found
        if users > 1:
            _running[url] = (compactor, users - 1)
            return
        del _running[url]
    compactor.stop()
