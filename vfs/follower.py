"""Following a replica: a poller thread finds files past the connection's TXID and stages them;
SQLite's thread applies what is staged only between transactions.

Each poll lists level 0 from the staged tip's TXID. Level 0 is *anchored* when it still holds the
file ending at the tip, or a file starting right after it: then nothing newer can exist anywhere
else and one LIST per poll suffices. Otherwise (the tip's file already compacted away, or a gap)
level 1 is listed too, and levels 2..8 when a gap remains (or every DEEP_POLL_EVERY polls, with
level 9, in case the history moved on past level 1 while nobody looked). Each upper level is
listed from the min TXID of the newest file seen there: a real file boundary, so a compaction
straddling the tip is still found (Litestream issue #1460 wedges when the seek is not a
boundary). The chain continues with the one continuation rule (ltx.plan.continue_from) over all
listed files. When no chain crosses a gap, the poller rebuilds the whole view from a fresh
restore plan; a poll never stops the next one, so a gap never wedges the follower.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ltx.plan import MAX_COMPACTION_LEVEL, SNAPSHOT_LEVEL, LTXFileInfo, continue_from
from vfs.pagemap import SourceFile
from vfs.stats import ReadStats
from vfs.view import ReplicaReader, View, load_view

UPPER_LEVELS = tuple(range(1, MAX_COMPACTION_LEVEL + 1))
#: When level 0 does not anchor the tip, every this many polls list levels 2..9 as well.
DEEP_POLL_EVERY = 10


@dataclass
class Update:
    """Files to apply in order on top of the view at `base_txid`, reaching `txid`."""

    base_txid: int
    txid: int
    files: list[SourceFile]
    seeks: dict[int, int] = field(default_factory=dict)


@dataclass
class Replace:
    """A whole new view (a re-plan, or a move in time)."""

    view: View


Staged = Update | Replace


class Follower:
    """Stages new files for one connection; optionally runs the poller thread."""

    def __init__(self, reader: ReplicaReader, view: View, interval: float, stats: ReadStats) -> None:
        self.reader = reader
        self.interval = interval
        self.stats = stats
        self._lock = threading.Lock()
        self._staged: list[Staged] = []
        self._tip = view.txid
        self._seeks = dict(view.seeks)
        self._generation = 0
        self._paused = False
        self._shallow_polls = 0
        #: Wall-clock time of the last successful look at the replica (the open counts as one).
        self.last_success = time.time()
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- SQLite's thread -------------------------------------------------------------------

    def take(self) -> list[Staged]:
        """Everything staged since the last call, oldest first."""
        if not self._staged:
            return []
        with self._lock:
            staged, self._staged = self._staged, []
        return staged

    def has_staged(self) -> bool:
        return bool(self._staged)

    def stage_replace(self, view: View, follow: bool) -> None:
        """Stage a whole new view, dropping anything staged before; keep following from it or not."""
        with self._lock:
            self._generation += 1
            self._staged = [Replace(view)]
            self._tip = view.txid
            self._seeks = dict(view.seeks)
            self._paused = not follow

    def advance(self, txid: int) -> None:
        """The connection applied a commit of its own at `txid` (its file at level 0): follow on
        from there; anything staged that ends at or before it is already held."""
        with self._lock:
            self._generation += 1
            self._staged = [s for s in self._staged
                            if (s.txid if isinstance(s, Update) else s.view.txid) > txid]
            if txid > self._tip:
                self._tip = txid
                self._seeks[0] = txid

    def offer(self, update: Update) -> bool:
        """Stage `update` (another connection of this process committed it) when it continues
        exactly where this follower is; True when staged. It costs no request, so a connection
        that does not poll takes it too (one reading a fixed past must not be offered it)."""
        with self._lock:
            if update.base_txid != self._tip:
                return False
            self._generation += 1
            self._staged.append(update)
            self._tip = update.txid
            self._seeks.update(update.seeks)
            return True

    @property
    def tip(self) -> int:
        """The TXID the connection reaches once everything staged is applied."""
        return self._tip

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="ltxvfs-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    # -- the poller ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._paused:
                continue
            self.poll_once()

    def poll_once(self) -> bool:
        """One poll; returns whether something new was staged. Errors are recorded, not raised."""
        with self._lock:
            generation, tip, seeks = self._generation, self._tip, dict(self._seeks)
        self.stats.polls += 1
        try:
            staged = self._poll(tip, seeks, generation)
        except Exception as exc:  # a failed poll must never stop the next one
            self.stats.poll_errors += 1
            self.last_error = exc
            return False
        with self._lock:
            if generation != self._generation:
                return False
            self.last_success = time.time()
            self.last_error = None
            if staged is None:
                return False
            self._generation += 1
            self._staged.append(staged)
            if isinstance(staged, Replace):
                self._tip = staged.view.txid
                self._seeks = dict(staged.view.seeks)
            else:
                self._tip = staged.txid
                self._seeks.update(staged.seeks)
        return True

    def _poll(self, tip: int, seeks: dict[int, int], generation: int = -1) -> Staged | None:
        reader = self.reader
        level0 = reader.list_levels((0,), {0: tip})[0]
        listed: dict[int, list[LTXFileInfo]] = {0: level0}
        chain = continue_from(listed, tip)
        anchored = (any(f.max_txid == tip for f in level0)
                    or (bool(chain.files) and chain.files[0].min_txid == tip + 1))
        new_seeks: dict[int, int] = {}
        if chain.gap or not anchored:
            # Level 0 alone cannot tell. Level 1 is where its files go next; the levels above only
            # matter after a gap, or when the history moved on while nobody looked (an outage
            # longer than the retention): those are listed on a gap and every DEEP_POLL_EVERY polls.
            self._shallow_polls += 1
            deep = chain.gap or self._shallow_polls >= DEEP_POLL_EVERY
            for levels in ((1,), UPPER_LEVELS[1:]) if not deep else (UPPER_LEVELS,):
                upper = reader.list_levels(levels, seeks)
                for lvl, files in upper.items():
                    if files:
                        new_seeks[lvl] = files[-1].min_txid
                listed.update(upper)
                chain = continue_from(listed, tip)
                if not chain.gap:
                    break
            gap = chain.gap
            if deep:
                self._shallow_polls = 0
                snapshots = reader.list_levels((SNAPSHOT_LEVEL,))[SNAPSHOT_LEVEL]
                if snapshots and snapshots[-1].max_txid > chain.txid:
                    gap = True
        else:
            gap = False
        if gap:
            return self._replan(tip)
        if not chain.files:
            return None
        if generation != -1 and generation != self._generation:
            return None  # the connection moved meanwhile (its own commit, say): fetch nothing
        loaded = reader.load_files(chain.files)
        return Update(base_txid=tip, txid=chain.txid, files=loaded, seeks=new_seeks)

    def _replan(self, tip: int) -> Staged | None:
        self.stats.replans += 1
        view = load_view(self.reader)
        if view.txid <= tip:
            return None
        return Replace(view)
