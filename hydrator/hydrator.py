"""Background hydration: download a replica's restore plan into a local file, then follow it.

`Hydrator(replica_url, path).start()` runs in a thread. It lists the replica, picks the restore
plan (or, with a record beside the file, resumes: only files not yet applied are fetched), fetches
the plan's files with parallel GETs (one per small file, large ranges of big ones; memory bounded
by the prefetch window and a spill limit), verifies each file in full before applying it, and
applies files in TXID order (latest page wins, file cut to the commit). A fresh start fetches the
files after the snapshot first (up to COMPOSE_AHEAD_BYTES) and writes them into the new file in the
snapshot's own pass (`hydrator.compose`), which replaces the database only once all are verified.
After each applied batch the record beside the file is replaced atomically. When the replica's
history no longer holds the recorded TXID, hydration starts over. With `follow`, new files of
levels 0 and 1 are applied whole every poll interval (level 1 and above when level 0 has a gap).

Readers of the local file (the VFS) hold `reading()` around a read transaction: pages are applied
only while no reader holds it, so a reader sees one TXID throughout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from hydrator.apply import DEFAULT_SPILL_MEMORY, VerifiedFile, verify_to_spill
from hydrator.chain import SeekHints, ending_at, history_holds, newest_txid
from hydrator.compose import verify_snapshot_into
from hydrator.errors import CorruptFileError, HydrationError, HydrationStoppedError
from hydrator.progress import HydrationProgress
from hydrator.state import HydrationState, PlannedFile, fsync_dir, load_state, save_state
from ltx.dbheader import CommitSizeError
from ltx.decoder import Readable
from ltx.errors import LTXError
from ltx.names import format_txid
from ltx.plan import LTXFileInfo, RestorePlanError, continue_from, restore_plan
from ltx.prefetch import Prefetcher, StoredObject
from ltx.reader import read_header
from ltx.replica import Replica
from ltx.rwlock import ReadWriteLock
from ltx.store.base import ObjectNotFoundError, StoreError

log = logging.getLogger(__name__)

#: Range/whole-file GETs in flight at once while hydrating.
DEFAULT_HYDRATION_PARALLELISM = 8
#: Seconds between polls for new files in follow mode (Litestream's VFS polls every second).
DEFAULT_POLL_INTERVAL = 1.0
#: Bytes fetched by one range GET of a large file; smaller files take one GET each. 8 MiB is the
#: range AWS advises for S3; against SeaweedFS on 2 cores it hydrates 256 MB in ~0.2 s where
#: 2 MiB ranges took ~0.3 s (bench/bench_hydrate.py). Memory in flight: parallelism x this (64 MiB).
DEFAULT_HYDRATION_CHUNK_SIZE = 8 * 1024 * 1024
#: Verified files are applied together up to this many decoded bytes ...
APPLY_BATCH_BYTES = 32 * 1024 * 1024
#: ... or this many files ...
APPLY_BATCH_FILES = 256
#: ... or once the oldest has waited this many seconds (bounds work redone after a crash).
APPLY_BATCH_SECONDS = 0.5
#: A fresh start fetches files after the snapshot first, up to this many bytes of them, and writes
#: them into the new file with the snapshot (their verified pages wait in spills meanwhile, at most
#: APPLY_BATCH_BYTES of them in memory, the rest in temporary files).
COMPOSE_AHEAD_BYTES = 16 * 1024 * 1024
#: Levels polled in follow mode, as Litestream's VFS does.
FOLLOW_LEVELS = (0, 1)
#: Files SQLite may keep beside a database; stale ones must not meet a freshly hydrated file.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
#: Suffix of the file a starting snapshot is decoded into before it replaces the database.
SNAPSHOT_TMP_SUFFIX = "-hydrator.tmp"
#: How often a hydration lists the replica again when a file it planned was removed before it was
#: fetched (compaction removes level-0 files once a higher level covers them), before it reports
#: the missing file.
VANISHED_FILE_RELISTS = 3


class _Stoppable:
    """A stream that raises HydrationStoppedError once `stop` is set, so a large file being
    fetched does not hold up `stop()` (what was read of it is thrown away)."""

    def __init__(self, inner: Readable, stop: threading.Event, path: str) -> None:
        self._inner = inner
        self._stop = stop
        self._path = path

    def read(self, size: int = -1, /) -> bytes | memoryview:
        if self._stop.is_set():
            raise HydrationStoppedError(self._path, "stopped")
        return self._inner.read(size)


def files_ahead_of_snapshot(plan: Sequence[LTXFileInfo],
                            limit: int = COMPOSE_AHEAD_BYTES) -> Sequence[LTXFileInfo]:
    """The files after a fresh plan's snapshot that are fetched and verified before it, so they
    go into the new file with it (each page written once, one fsync, one record): up to `limit`
    bytes of objects and APPLY_BATCH_FILES files."""
    total = 0
    for n, f in enumerate(plan[1:]):
        total += f.size
        if total > limit or n >= APPLY_BATCH_FILES:
            return plan[1:1 + n]
    return plan[1:]


def fetch_order(plan: Sequence[LTXFileInfo], fresh: bool, limit: int = COMPOSE_AHEAD_BYTES) -> list[LTXFileInfo]:
    """The order a plan's files are fetched in: a fresh start fetches the files composed with the
    snapshot first (they are small; the snapshot then needs no page written twice)."""
    if not fresh or not plan:
        return list(plan)
    ahead = files_ahead_of_snapshot(plan, limit)
    return [*ahead, plan[0], *plan[1 + len(ahead):]]


def open_replica(url: str) -> Replica:
    """The replica a Hydrator given `url` reads from."""
    return Replica.open(url)


class Hydrator:
    """Builds and keeps up to date a local copy of the database of `replica` at `path`.

    `replica` is a Litestream replica URL or an open `Replica` (then it is not closed here)."""

    def __init__(self, replica: str | Replica, path: str | os.PathLike[str], *, follow: bool = False,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, on_demand: bool = False,
                 parallelism: int = DEFAULT_HYDRATION_PARALLELISM,
                 chunk_size: int = DEFAULT_HYDRATION_CHUNK_SIZE,
                 spill_memory: int = DEFAULT_SPILL_MEMORY,
                 compose_ahead: int = COMPOSE_AHEAD_BYTES) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be at least 1, got {parallelism}")
        self._owns_replica = isinstance(replica, str)
        self.replica = open_replica(replica) if isinstance(replica, str) else replica
        self.path = Path(path)
        self.follow = follow
        self.poll_interval = poll_interval
        #: In follow mode, poll only when `wake` is called, not every poll interval (a writer's
        #: copy: the writer applies its own commits with apply_ltx, and wakes the hydrator when
        #: the copy fell behind for another reason). May be changed while running.
        self.on_demand = on_demand
        self._wake = threading.Event()
        #: Follow polls made (timed or woken).
        self.polls = 0
        self.parallelism = parallelism
        self.chunk_size = chunk_size
        self.spill_memory = spill_memory
        #: Bytes of files after a fresh start's snapshot fetched before it and written with it.
        self.compose_ahead = compose_ahead
        self._lock = ReadWriteLock()
        #: Serialises changes of the record (the thread and apply_ltx callers).
        self._state_mutex = threading.RLock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._state = HydrationState(self.replica.url)
        self._hints = SeekHints()
        self._error: BaseException | None = None
        self._finished = False
        self._plan_bytes_done = 0
        self._plan_files_total = 0
        self._plan_files_done = 0
        self._pages_written = 0
        self._target_txid = 0
        #: Times hydration started over because the history no longer held the recorded TXID.
        self.restarts = 0
        #: Why hydration last started over (empty if it never did).
        self.restart_reason = ""
        #: Times the replica was listed again because a planned file was removed before its fetch.
        self.relists = 0
        #: The last error of a follow poll that will be retried (store unavailable, ...).
        self.last_poll_error: BaseException | None = None

    # --- public surface -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The replica's credential-free URL."""
        return self.replica.url

    @property
    def stats(self) -> dict[str, int]:
        """The replica store's request counters (GETs, bytes read, LISTs, ...)."""
        return self.replica.store.stats.snapshot()

    @property
    def txid(self) -> int:
        """The TXID the local file holds (0 while no consistent state has been reached)."""
        with self._cond:
            return self._state.txid if self._state.consistent else 0

    @property
    def page_size(self) -> int:
        return self._state.page_size

    @property
    def commit(self) -> int:
        """The database's size in pages at `txid`."""
        return self._state.commit

    @property
    def is_complete(self) -> bool:
        """The local file is a consistent database at `txid`, at least as new as the replica was
        when hydration (or its last start-over) began."""
        with self._cond:
            return self._state.complete and self._state.consistent

    @property
    def error(self) -> BaseException | None:
        """The error that ended the background thread, if any."""
        return self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def progress(self) -> HydrationProgress:
        with self._cond:
            st = self._state
            return HydrationProgress(
                bytes_done=min(self._plan_bytes_done, st.bytes_total), bytes_total=st.bytes_total,
                files_done=self._plan_files_done, files_total=self._plan_files_total,
                pages_written=self._pages_written, txid=st.txid if st.consistent else 0,
                target_txid=self._target_txid, complete=st.complete and st.consistent)

    def start(self) -> Hydrator:
        """Run hydration in a background (daemon) thread; returns self."""
        if self._thread is not None:
            raise RuntimeError(f"{self.path}: hydrator already started")
        self._thread = threading.Thread(target=self._main, name=f"hydrator:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Hydrate in the calling thread (until complete, or until stopped in follow mode)."""
        self._main()
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop after the file it is on; wait for it up to `timeout`."""
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wake(self) -> None:
        """Follow mode: poll the replica now (the only way an `on_demand` hydrator polls)."""
        self._wake.set()

    def close(self) -> None:
        """Stop, close the local file and, when it was opened here, the replica."""
        self.stop()
        if self._thread is None or not self._thread.is_alive():
            with self._lock.write():
                self._close_fd()
        if self._owns_replica:
            self.replica.close()

    def __enter__(self) -> Hydrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_complete(self, timeout: float | None = None) -> bool:
        """Wait until the file is complete; False on timeout. Raises the error that ended hydration,
        and HydrationStoppedError if it ended otherwise before completing."""
        return self._wait(lambda: self.is_complete, timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (without follow: plan applied); False on timeout. Raises the
        error that ended it."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self._error is not None:
            raise self._error
        return True

    def wait_txid(self, txid: int, timeout: float | None = None) -> bool:
        """Wait until the file holds `txid` or later (follow mode); False on timeout."""
        return self._wait(lambda: self.is_complete and self.txid >= txid, timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if ready():
                    return True
                if self._error is not None:
                    raise self._error
                if self._finished:
                    raise HydrationStoppedError(str(self.path), "hydration stopped before it completed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)

    # --- reads by the VFS ---------------------------------------------------------------------

    def acquire_read(self, timeout: float | None = None) -> bool:
        """Hold off applying new pages (a read transaction begins); pair with release_read."""
        return self._lock.acquire_read(timeout)

    def release_read(self) -> None:
        self._lock.release_read()

    def acquire_lease(self, timeout: float | None = None) -> bool:
        """Like acquire_read, but any thread may end it with release_lease (SQLite can end a read
        transaction on another thread than the one it began on). A lease holder must not apply."""
        return self._lock.acquire_lease(timeout)

    def release_lease(self) -> None:
        self._lock.release_lease()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold off applying new pages while the block runs: `txid` and the file stay as they are."""
        with self._lock.read():
            yield

    def pread(self, offset: int, length: int) -> bytes:
        """Read the local file (hold `reading()`; only meaningful once complete). Short at the end."""
        fd = self._fd
        if fd < 0:
            raise HydrationError(str(self.path), "the local file is not open (hydration incomplete)")
        return os.pread(fd, length, offset)

    # --- the writer's own commits -------------------------------------------------------------

    def apply_ltx(self, stream: BinaryIO, name: str) -> bool:
        """Apply an LTX file the caller holds (the VFS writer's own commit), verified first, when it
        continues the complete local file; False (nothing applied) when it does not. Call it without
        holding `reading()` (it waits for readers; from a reading thread it raises RuntimeError)."""
        if not self.is_complete:
            return False
        try:
            vf = verify_to_spill(stream, name, page_size=self._state.page_size,
                                 spill_dir=str(self.path.parent), spill_memory=self.spill_memory)
        except LTXError as exc:
            raise CorruptFileError(str(self.path), "<local>", name, str(exc)) from exc
        try:
            return self._apply_batch([(None, vf)], strict=False) > 0
        finally:
            vf.close()

    # --- the background thread ----------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._hydrate()
            if self.follow:
                self._follow()
        except HydrationStoppedError:
            pass
        except BaseException as exc:  # reported through wait_complete / error
            self._error = exc
            log.debug("%s: hydration failed: %s", self.path, exc)
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise HydrationStoppedError(str(self.path), "stopped")

    def _hydrate(self) -> None:
        """Resume from the record or start afresh, then apply the plan (which catches up). A
        planned file removed since the listing (compaction's retention) means listing again."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(VANISHED_FILE_RELISTS + 1):
            levels = self.replica.list_levels(parallelism=self.parallelism)
            plan = self._resume_plan(levels)
            if plan is None:
                plan = self._fresh_plan(levels)
            self._hints.reset()
            self._hints.observe((f for files in levels.values() for f in files), self._state.txid)
            try:
                self._apply_plan(plan, mark_complete=True)
                break
            except ObjectNotFoundError as exc:
                if attempt == VANISHED_FILE_RELISTS:
                    raise
                self.relists += 1
                log.info("%s: %s: removed since the listing, listing again", self.path, exc)
        self._mark_complete()
        log.info("%s: hydrated to TXID %s", self.path, format_txid(self._state.txid))

    def _mark_complete(self) -> None:
        with self._state_mutex:
            if not self._state.consistent:
                raise HydrationError(str(self.path), f"the plan ended at TXID {format_txid(self._state.txid)} "
                                                     f"with pages up to {format_txid(self._state.dirty_until)} "
                                                     "partly written")
            if self._fd < 0:  # a resume with nothing left to apply opened nothing yet
                self._fd = os.open(self.path, os.O_RDWR)
            if self._state.complete:  # recorded with the plan's last files (a composed fresh start)
                return
            with self._cond:
                self._state.complete = True
                self._cond.notify_all()
            save_state(self.path, self._state)

    def _resume_plan(self, levels: dict[int, list[LTXFileInfo]]) -> list[LTXFileInfo] | None:
        """The files left to apply according to the record, or None to start afresh."""
        try:
            state = load_state(self.path)
        except HydrationError as exc:
            self._note_restart(f"{exc}")
            return None
        if state is None:
            return None
        reason = self._resume_refusal(state, levels)
        if reason:
            self._note_restart(reason)
            return None
        listed = [f for files in levels.values() for f in files]
        by_key = {(f.level, f.min_txid, f.max_txid): f for f in listed}
        if state.pending and state.pending_infos_match(listed):
            plan = [by_key[(p.level, p.min_txid, p.max_txid)] for p in state.pending]
        else:
            plan = continue_from(levels, state.txid).files
            if state.dirty_until and (not plan or plan[-1].max_txid < state.dirty_until):
                self._note_restart(f"pages of TXIDs up to {format_txid(state.dirty_until)} were partly "
                                   "written and no file reaching them remains")
                return None
        # Files newer than the recorded plan are caught up with as part of this hydration.
        plan += continue_from(levels, plan[-1].max_txid if plan else state.txid).files
        remaining = sum(f.size for f in plan)
        state.pending = [PlannedFile.of(f) for f in plan]
        state.bytes_total = max(state.bytes_total, state.bytes_done + remaining)
        state.bytes_done = state.bytes_total - remaining
        with self._state_mutex:
            self._install_state(state, plan)
            save_state(self.path, state)
        log.info("%s: resuming at TXID %s, %d file(s) to apply", self.path, format_txid(state.txid), len(plan))
        return plan

    def _resume_refusal(self, state: HydrationState, levels: dict[int, list[LTXFileInfo]]) -> str:
        """Why the record cannot be resumed from ('' when it can)."""
        if state.replica_url != self.url:
            return f"the record names replica {state.replica_url}, not {self.url}"
        if not self.path.exists():
            return f"{self.path} is missing"
        if state.txid == 0:
            return "the interrupted hydration had not yet applied its snapshot"
        verdict = history_holds(levels, state.txid, self.url)
        if not verdict.holds:
            return verdict.reason
        last = ending_at(levels, state.txid)
        if last is not None:
            try:
                hdr = read_header(self.replica.store, last.key)
            except ObjectNotFoundError:  # removed by retention since the listing: the listing decides
                return ""
            except LTXError as exc:
                raise CorruptFileError(str(self.path), self.url, last.key, str(exc)) from exc
            if (hdr.timestamp, hdr.commit, hdr.page_size) != (state.timestamp, state.commit, state.page_size):
                return (f"{self.url}/{last.key} is not the file that took the local copy to TXID "
                        f"{format_txid(state.txid)} (its timestamp, commit or page size differ): "
                        "the replica's history was replaced")
        size = os.path.getsize(self.path)
        if state.consistent and size != state.commit * state.page_size:
            return f"{self.path} has {size} bytes, the record says {state.commit} pages of {state.page_size}"
        return ""

    def _fresh_plan(self, levels: dict[int, list[LTXFileInfo]]) -> list[LTXFileInfo]:
        """Start afresh: the newest restore plan; the record says nothing is applied yet."""
        plan = restore_plan(levels, url=self.url)
        state = HydrationState(self.url, pending=[PlannedFile.of(f) for f in plan],
                               bytes_total=sum(f.size for f in plan))
        with self._state_mutex, self._lock.write():  # readers of an older complete file finish first
            self._install_state(state, plan)
            save_state(self.path, state)
        return plan

    def _note_restart(self, reason: str) -> None:
        self.restarts += 1
        self.restart_reason = reason
        log.warning("%s: starting hydration over: %s", self.path, reason)

    def _install_state(self, state: HydrationState, plan: Sequence[LTXFileInfo]) -> None:
        with self._cond:
            self._state = state
            self._plan_bytes_done = state.bytes_done
            self._plan_files_total = len(plan)
            self._plan_files_done = 0
            self._target_txid = plan[-1].max_txid if plan else state.txid
            self._cond.notify_all()

    def _on_bytes(self, n: int) -> None:
        with self._cond:
            self._plan_bytes_done += n

    def _apply_plan(self, plan: Sequence[LTXFileInfo], mark_complete: bool = False) -> None:
        """Fetch `plan` with parallel GETs, verify each file whole, apply in batches. A fresh start
        composes the snapshot with the files fetched ahead of it (`fetch_order`) in one new file;
        with `mark_complete`, its record says complete when that was the whole plan."""
        if not plan:
            return
        fresh = self._state.txid == 0
        ahead = len(files_ahead_of_snapshot(plan, self.compose_ahead)) if fresh else 0
        order = fetch_order(plan, fresh, self.compose_ahead)
        objects = [StoredObject(f.key, f.size) for f in order]
        batch: list[tuple[LTXFileInfo | None, VerifiedFile]] = []
        batch_bytes = 0
        batch_since = 0.0
        try:
            with Prefetcher(self.replica.store, objects, self.parallelism, self.chunk_size,
                            self._on_bytes) as prefetcher:
                streams = zip(order, prefetcher.streams(views=True), strict=True)
                if fresh:
                    composed = batch  # closed with the batch on any way out
                    held = 0  # decoded bytes of the composed files kept in memory, at most APPLY_BATCH_BYTES
                    for info, (_, raw_stream) in islice(streams, ahead):
                        room = max(1, min(self.spill_memory, APPLY_BATCH_BYTES - held))  # 1: straight to disk
                        vf = self._verify(info, raw_stream, page_size=0, spill_memory=room)
                        composed.append((info, vf))
                        held += min(room, vf.page_count * vf.header.page_size)
                    info, (_, raw_stream) = next(streams)
                    self._check_stop()
                    self._apply_snapshot(info, _Stoppable(raw_stream, self._stop, str(self.path)),
                                         [vf for _, vf in composed], complete_when_done=mark_complete)
                    self._close_batch(composed)
                    batch = []
                for info, (_, raw_stream) in streams:
                    if self._stop.is_set():
                        break
                    vf = self._verify(info, raw_stream, page_size=self._state.page_size)
                    if not batch:
                        batch_since = time.monotonic()
                    batch.append((info, vf))
                    batch_bytes += vf.page_count * vf.header.page_size
                    if (batch_bytes >= APPLY_BATCH_BYTES or len(batch) >= APPLY_BATCH_FILES
                            or time.monotonic() - batch_since >= APPLY_BATCH_SECONDS):
                        self._apply_batch(batch, strict=True)
                        self._close_batch(batch)
                        batch, batch_bytes = [], 0
                if batch:
                    self._apply_batch(batch, strict=True)
        finally:
            self._close_batch(batch)
        self._check_stop()

    def _verify(self, info: LTXFileInfo, raw_stream: Readable, page_size: int,
                spill_memory: int | None = None) -> VerifiedFile:
        """Fetch and verify one whole file into a spill (CorruptFileError naming it when it is bad)."""
        stream = _Stoppable(raw_stream, self._stop, str(self.path))
        memory = self.spill_memory if spill_memory is None else spill_memory
        try:
            return verify_to_spill(stream, info.key, info=info, page_size=page_size,
                                   spill_dir=str(self.path.parent), spill_memory=memory)
        except LTXError as exc:
            raise CorruptFileError(str(self.path), self.url, info.key, str(exc)) from exc

    @staticmethod
    def _close_batch(batch: Sequence[tuple[LTXFileInfo | None, VerifiedFile]]) -> None:
        for _, vf in batch:
            vf.close()

    def _apply_snapshot(self, info: LTXFileInfo, stream: Readable, then: Sequence[VerifiedFile] = (),
                        complete_when_done: bool = False) -> None:
        """Decode the plan's starting snapshot into a fresh file, verify it, apply the verified files
        `then` that follow it, then rename the file over the database: the old file (if any) is
        untouched until the new one is known good, and the record then names the last file's TXID
        (and, with `complete_when_done`, says complete when no planned file is left)."""
        if info.min_txid != 1:
            raise HydrationError(str(self.path), f"the plan starts with {self.url}/{info.key}, not a snapshot")
        current = info.max_txid
        for vf in then:
            if vf.header.min_txid > current + 1 or vf.header.max_txid <= current:
                raise HydrationError(str(self.path), f"{vf.name} does not continue TXID {format_txid(current)}")
            current = vf.header.max_txid
        tmp = Path(f"{self.path}{SNAPSHOT_TMP_SUFFIX}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                header = verify_snapshot_into(stream, info.key, fd, info=info, then=then)
            finally:
                os.close(fd)
        except LTXError as exc:
            tmp.unlink(missing_ok=True)
            raise CorruptFileError(str(self.path), self.url, exc.name or info.key, str(exc)) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._state_mutex:
            with self._lock.write():
                self._close_fd()
                for suffix in SIDE_FILE_SUFFIXES:
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                os.replace(tmp, self.path)
                fsync_dir(self.path.parent)
                self._fd = os.open(self.path, os.O_RDWR)
                last = then[-1].header if then else header
                with self._cond:
                    st = self._state
                    st.page_size, st.txid, st.timestamp, st.commit = (header.page_size, last.max_txid,
                                                                     last.timestamp, last.commit)
                    st.dirty_until = 0
                    self._advance_pending(info.size + sum(vf.size for vf in then), 1 + len(then))
                    self._pages_written += header.commit + sum(vf.page_count for vf in then)
                    # The whole plan applied: the same record says complete (one save less).
                    st.complete = st.complete or (complete_when_done and not st.pending)
                    self._cond.notify_all()
            save_state(self.path, self._state)

    def _advance_pending(self, applied_bytes: int, files: int) -> None:
        st = self._state
        st.pending = [p for p in st.pending if p.max_txid > st.txid]
        st.bytes_done = min(st.bytes_total, st.bytes_done + applied_bytes)
        self._plan_files_done += files

    def _apply_batch(self, batch: Sequence[tuple[LTXFileInfo | None, VerifiedFile]], strict: bool) -> int:
        """Apply verified files that continue the local file, in order; return how many applied.

        The record is marked dirty first, so a crash while pages are written is repaired on restart
        by applying these files again (they hold every page they change). `strict` (the thread's
        own plan) makes a file that does not continue the local TXID an error; otherwise (a file
        handed in by apply_ltx) it is declined."""
        with self._state_mutex:
            st = self._state
            todo = [(info, vf) for info, vf in batch if vf.header.max_txid > st.txid]
            if not todo:
                return 0
            first = todo[0][1]
            if st.txid == 0 or first.header.min_txid > st.txid + 1 or (st.dirty_until and not strict):
                if not strict:
                    return 0
                raise HydrationError(str(self.path), f"{first.name} (TXIDs {format_txid(first.header.min_txid)}-"
                                                     f"{format_txid(first.header.max_txid)}) does not continue "
                                                     f"the local TXID {format_txid(st.txid)}")
            end = todo[-1][1].header
            mark = max(st.dirty_until, end.max_txid)
            pages = 0
            with self._lock.write():
                with self._cond:
                    st.dirty_until = mark
                save_state(self.path, st)
                if self._fd < 0:
                    self._fd = os.open(self.path, os.O_RDWR)
                for info, vf in todo:
                    try:
                        pages += vf.apply(self._fd)
                    except CommitSizeError as exc:  # refused before any of its pages was written
                        raise CorruptFileError(str(self.path), self.url, info.key if info else vf.name,
                                               str(exc)) from exc
                os.fsync(self._fd)
                with self._cond:
                    st.txid, st.timestamp, st.commit = end.max_txid, end.timestamp, end.commit
                    st.dirty_until = 0 if end.max_txid >= mark else mark
                    self._advance_pending(sum(info.size if info else vf.size for info, vf in todo), len(todo))
                    self._pages_written += pages
                    self._cond.notify_all()
            save_state(self.path, st)
            return len(todo)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # --- follow mode --------------------------------------------------------------------------

    def _follow(self) -> None:
        """Every poll interval (or, `on_demand`, whenever woken), apply what continues the local
        file; store errors are retried."""
        while True:
            self._wake.wait(None if self.on_demand else self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.polls += 1
            try:
                self.poll_once()
                self.last_poll_error = None
            except (StoreError, RestorePlanError) as exc:
                self.last_poll_error = exc
                log.warning("%s: poll failed, will retry: %s", self.path, exc)
        raise HydrationStoppedError(str(self.path), "stopped")

    def poll_once(self) -> int:
        """One follow step: apply every file that continues the local file; return how many.

        Lists levels 0 and 1 from the seek hints; when they have a gap, all levels; when no level
        continues the history at all, starts over from the newest restore plan."""
        txid = self._state.txid
        seeks = {lvl: self._hints.seek(lvl) for lvl in FOLLOW_LEVELS}
        levels = self.replica.list_levels(FOLLOW_LEVELS, seeks, parallelism=self.parallelism)
        self._hints.observe((f for files in levels.values() for f in files), txid)
        chain = continue_from(levels, txid).files
        if newest_txid(levels) > (chain[-1].max_txid if chain else txid):
            levels = self.replica.list_levels(parallelism=self.parallelism)
            chain = continue_from(levels, txid).files
            if not chain:
                return self._start_over(levels, txid)
        if not chain:
            return 0
        with self._state_mutex:
            st = self._state
            # The writer's own commits (apply_ltx) may have moved the file on since `txid` was read.
            chain = [f for f in chain if f.max_txid > st.txid]
            if not chain:
                return 0
            st.pending = [PlannedFile.of(f) for f in chain]
            st.bytes_total = sum(f.size for f in chain)
            st.bytes_done = 0
            self._install_state(st, chain)
        self._apply_plan(chain)
        self._hints.observe(chain, self._state.txid)
        return len(chain)

    def _start_over(self, levels: dict[int, list[LTXFileInfo]], txid: int) -> int:
        verdict = history_holds(levels, txid, self.url)
        self._note_restart(verdict.reason or f"{self.url}: no file continues TXID {format_txid(txid)}")
        plan = self._fresh_plan(levels)
        self._apply_plan(plan, mark_complete=True)
        self._mark_complete()
        self._hints.reset()
        self._hints.observe((f for files in levels.values() for f in files), self._state.txid)
        return len(plan)
