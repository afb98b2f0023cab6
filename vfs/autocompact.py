"""`compact=auto`: compaction of a replica inside the writer's process, by `ltxctl compact`'s rules.

One thread per replica URL in the process, shared by its writer connections and stopped with the
last of them. At every multiple of the level-1 interval (Litestream's schedule: level 1 every
30 s, level 2 every 5 min, level 3 every hour, a snapshot every 24 h) it runs one step of each
level that is due (ltx.compaction.run with the intervals, which checks each level's newest file),
then retention (level-0 files 5 min after level 1 covers them, snapshots after 24 h), then
refreshes the hint, as `ltxctl compact --scheduled` does. Compaction creates its files with
create-if-absent, so two processes compacting one replica never overwrite each other. A failed
step is logged and tried again at the next multiple.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from ltx import compaction
from ltx.hint import refresh_hint
from ltx.plan import SNAPSHOT_LEVEL
from ltx.replica import Replica

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """When levels are compacted and how long superseded files are kept."""

    intervals: dict[int, timedelta] = field(default_factory=lambda: {
        **compaction.DEFAULT_COMPACTION_INTERVALS, SNAPSHOT_LEVEL: compaction.DEFAULT_SNAPSHOT_INTERVAL})
    l0_retention: timedelta = compaction.DEFAULT_L0_RETENTION
    snapshot_retention: timedelta = compaction.DEFAULT_SNAPSHOT_RETENTION

    @property
    def tick(self) -> float:
        """Seconds between looks: the shortest interval (level 1's)."""
        return min(i.total_seconds() for i in self.intervals.values())


#: The schedule of `compact=auto` (Litestream's defaults).
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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ltxvfs-compact", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        tick = self.schedule.tick
        while not self._stop.wait(tick - time.time() % tick):
            self.run_once()

    def run_once(self) -> None:
        """One scheduled round: due levels, retention, hint. Errors are logged and counted."""
        replica = Replica.open(self.url)
        try:
            levels = sorted(self.schedule.intervals)
            report = compaction.run(replica, levels, l0_retention=self.schedule.l0_retention,
                                    snapshot_retention=self.schedule.snapshot_retention,
                                    intervals=self.schedule.intervals)
            written = [s for s in report.steps if s.file is not None]
            self.stats.steps += 1
            self.stats.files_written += len(written)
            self.stats.files_deleted += len(report.deleted)
            if written or report.deleted:
                refresh_hint(replica)
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - a background step: logged, tried again next time
            self.stats.errors += 1
            self.last_error = exc
            log.warning("%s: compaction failed (tried again in %gs): %s", self.url, self.schedule.tick, exc)
        finally:
            replica.close()


_lock = threading.Lock()
_running: dict[str, tuple[AutoCompactor, int]] = {}


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
