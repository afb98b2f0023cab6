"""Hydration for ltxvfs connections: `hydrate=PATH` (or LTXVFS_HYDRATE_PATH) downloads the replica
into a local file in the background, and read transactions move from the store to that file.

One `Hydrator` per local path in the process, shared by every connection naming it (two would
write the same file). Each connection holds a `Hydration` handle. At the start of a read
transaction, `begin` takes a lease on the hydrator (pages are applied only while nobody holds
one) and keeps it when the file is complete and at exactly the connection's TXID, page size and
size; then the transaction's cache misses are read from the file, and `end` returns the lease.
Otherwise (still hydrating, an apply under way, or the file one TXID ahead or behind the view)
the transaction reads the store at the view's TXID, so a connection never reads pages of another
TXID than its view. Both follow the replica at the same interval, so they soon agree again.

The writer's own commits: `Hydration.on_commit(ltx, name)` after a commit succeeded hands the LTX
file to a background applier, which applies it once hydration is complete (a file that does not
continue the local TXID is skipped; following the replica brings it instead).

A copy used by writers only follows the replica on demand (`on_demand`): its writers' commits
reach it through the applier, so a timed poll (two LISTs a second) would find nothing but another
writer's commits, which the writer's own follower finds anyway. Instead, a transaction that finds
the copy behind its view while none of the writer's commits wait for the applier wakes the
hydrator, which polls once (at most once per view TXID, or again after POLL_INTERVAL). A reader
attaching to the same copy turns timed following back on.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import apsw

from hydrator.errors import HydrationError
from hydrator.hydrator import Hydrator
from hydrator.state import state_path
from ltx.names import format_txid
from ltx.plan import RestorePlanError
from ltx.store.base import StoreError
from vfs.process import HYDRATIONS

log = logging.getLogger(__name__)

#: Bytes of the writer's commits held for the applier while hydration is incomplete; commits past
#: this are not held (the file then catches up by following the replica).
MAX_PENDING_COMMIT_BYTES = 64 * 1024 * 1024
#: A commit handed over as a file object is copied into memory up to this size, else to a temporary file.
COPY_IN_MEMORY_LIMIT = 8 * 1024 * 1024
#: Bytes copied per read when spilling a commit file.
COPY_CHUNK = 1024 * 1024
#: Seconds before a hydration that failed on the store or an unusable history (an empty replica,
#: a compaction under way) is started again, while connections use it.
RESTART_DELAY = 1.0
#: Appended to the hydrated file's path to name its lock file (one process hydrates a path at a time).
LOCK_SUFFIX = "-ltxvfs.lock"
#: Seconds the applier waits at most between looks at a hydration (completion, stop, restart).
SUPERVISE_INTERVAL = 0.5

#: A new hydration waits until the connections' page reads from the store pause this long (seconds)
#: before it downloads: its GETs and its page writes would compete with them for the link and the
#: GIL, and a cold open's first reads (a mount's first lookups) are what a user waits for. A
#: connection asking for `litestream_hydration_progress` starts it at once (it waits for the copy).
HYDRATE_QUIET = 0.15
#: ...but never longer than this after it was attached (a scan that keeps reading from the store
#: is what hydration is for).
HYDRATE_MAX_DEFER = 1.0

#: Errors after which hydration is started again: the store or the history may recover.
_RETRYABLE = (StoreError, RestorePlanError)


class HydratePathError(apsw.CantOpenError):
    """`hydrate=PATH` cannot be used (taken by another replica, not a hydrated copy, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"ltxvfs: hydrate={path}: {reason}")


@dataclass
class _Commit:
    """One of the writer's commits waiting for the applier."""

    source: BinaryIO
    name: str
    size: int


class SharedHydration:
    """The hydration of one local path, shared by the connections naming it; its supervisor thread
    restarts a hydration that failed for a reason that may pass, and applies the writer's commits."""

    def __init__(self, path: str, replica_url: str, follow: bool, poll_interval: float,
                 on_demand: bool = False) -> None:
        self.path = path
        self.replica_url = replica_url
        self.follow = follow
        self.poll_interval = poll_interval
        #: Follow the replica only when `catch_up` asks (every connection attached is a writer).
        self.on_demand = on_demand
        #: Times `catch_up` woke the hydrator.
        self.wakes = 0
        self._woken_for = 0
        self._woken_at = 0.0
        #: A commit is being applied (popped from the queue, not yet in the copy).
        self._applying = False
        self.refs = 0
        #: Set once the last connection let go: a new one waits for the close, then starts afresh.
        self.closing = False
        self._lock_fd = _lock_path(path)
        try:
            self.hydrator = self._new_hydrator()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.url = self.hydrator.url
        #: Store counters of hydrators replaced by a restart (added to the current one's).
        self._past_stats: dict[str, int] = {}
        self.restarts = 0
        self.commits_applied = 0
        self.commits_skipped = 0
        self.commits_dropped = 0
        self.commit_error: BaseException | None = None
        self._cond = threading.Condition()
        self._commits: deque[_Commit] = deque()
        self._pending_bytes = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: When a connection last read a page from the store (the open's reads count from here).
        self._last_store_read = time.monotonic()
        #: Seconds the start waited for the connections' reads to pause (for tools and tests).
        self.deferred = 0.0
        #: Set when a connection asks how far hydration is: it is wanted now.
        self._wanted = False

    def _new_hydrator(self) -> Hydrator:
        return Hydrator(self.replica_url, self.path, follow=self.follow, poll_interval=self.poll_interval,
                        on_demand=self.on_demand)

    def follow_on_timer(self) -> None:
        """A connection that is not a writer shares the copy: follow every poll interval again."""
        self.on_demand = False
        h = self.hydrator
        h.on_demand = False
        h.wake()

    def catch_up(self, txid: int) -> None:
        """A transaction at `txid` found the complete copy behind it: with on-demand following,
        wake the hydrator unless the writer's commits waiting for the applier explain the gap
        (once per `txid`; again after the poll interval, in case that poll failed)."""
        if not self.on_demand or not self.follow:
            return
        now = time.monotonic()
        with self._cond:
            if self._commits or self._applying:
                return
            if txid <= self._woken_for and now - self._woken_at < self.poll_interval:
                return
            self._woken_for, self._woken_at = txid, now
            self.wakes += 1
        self.hydrator.wake()

    def start(self) -> None:
        """Start the supervisor, which starts the hydrator once the connections' reads from the
        store pause (HYDRATE_QUIET), at most HYDRATE_MAX_DEFER from now."""
        self._thread = threading.Thread(target=self._supervise, name=f"ltxvfs-hydrate:{Path(self.path).name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the supervisor and the hydrator (the file and its record stay, to resume later)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            self.hydrator.close()
        finally:
            for commit in self._commits:
                commit.source.close()
            self._commits.clear()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # ends the flock
                self._lock_fd = -1

    # -- counters --------------------------------------------------------------------------

    def store_stats(self) -> dict[str, int]:
        now = self.hydrator.stats
        return {k: now.get(k, 0) + self._past_stats.get(k, 0) for k in now.keys() | self._past_stats.keys()}

    @property
    def error(self) -> BaseException | None:
        return self.hydrator.error or self.commit_error

    # -- the writer's commits --------------------------------------------------------------

    def queue_commit(self, source: BinaryIO, name: str, size: int) -> None:
        with self._cond:
            if self._stopping or self._pending_bytes + size > MAX_PENDING_COMMIT_BYTES:
                self.commits_dropped += 1
                source.close()
                return
            self._commits.append(_Commit(source, name, size))
            self._pending_bytes += size
            self._cond.notify_all()

    def note_store_read(self) -> None:
        """A connection fetches a page from the store: hydration that has not started waits on."""
        self._last_store_read = time.monotonic()

    def start_now(self) -> None:
        """Stop waiting for reads to pause: someone is waiting for the copy."""
        if not self._wanted:
            with self._cond:
                self._wanted = True
                self._cond.notify_all()

    def _wait_for_quiet(self) -> bool:
        """Wait until reads from the store pause or the deferral ends; False when stopping."""
        began = time.monotonic()
        latest = began + HYDRATE_MAX_DEFER
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                until = min(self._last_store_read + HYDRATE_QUIET, latest)
                if now >= until or self._wanted:
                    self.deferred = now - began
                    return True
                self._cond.wait(until - now)
        return False

    def _supervise(self) -> None:
        if not self._wait_for_quiet():
            return
        with self._cond:
            if self._stopping:
                return
            self.hydrator.start()
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._commits or not self.hydrator.is_complete:
                    self._cond.wait(SUPERVISE_INTERVAL)
                if self._stopping:
                    return
            h = self.hydrator
            if not h.running and not h.is_complete and isinstance(h.error, _RETRYABLE):
                self._restart(h)
                continue
            if h.is_complete:
                self._apply_commits(h)

    def _restart(self, old: Hydrator) -> None:
        """Start hydration again after a failure that may pass (it resumes from the record)."""
        with self._cond:
            if self._cond.wait_for(lambda: self._stopping, RESTART_DELAY):
                return
        log.debug("%s: starting hydration again after: %s", self.path, old.error)
        stats = old.stats
        old.close()
        fresh = self._new_hydrator()
        with self._cond:
            if self._stopping:
                fresh.close()
                return
            for k, v in stats.items():
                self._past_stats[k] = self._past_stats.get(k, 0) + v
            self.restarts += 1
            self.hydrator = fresh
        fresh.start()

    def _apply_commits(self, h: Hydrator) -> None:
        while True:
            with self._cond:
                if self._stopping or not self._commits:
                    return
                commit = self._commits.popleft()
                self._pending_bytes -= commit.size
                self._applying = True
            try:
                if h.apply_ltx(commit.source, commit.name):
                    self.commits_applied += 1
                else:
                    self.commits_skipped += 1
            except (HydrationError, OSError) as exc:
                self.commit_error = exc
                log.warning("%s: the writer's commit %s was not applied: %s", self.path, commit.name, exc)
            finally:
                commit.source.close()
                with self._cond:
                    self._applying = False


#: Hydrations by local path: the process's registry (vfs/process.py).
_shared = HYDRATIONS.entries
_shared_lock = HYDRATIONS.lock


def lock_path(path: str) -> str:
    """The file whose advisory lock (flock) says a process hydrates `path`."""
    return f"{path}{LOCK_SUFFIX}"


def _lock_path(path: str) -> int:
    """Take the per-path lock for this process (two processes must not write one copy)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise HydratePathError(path, f"is being hydrated by another process (it holds {lock_path(path)}); "
                                     "give each process its own path") from exc
    return fd


def check_path(path: str, db_path: str) -> None:
    """Refuse a hydrate path that would destroy something: the database's own name (SQLite keeps
    its journal beside it, and the hydrator clears side files), a directory, or an existing file
    that is not a hydrated copy (no record beside it)."""
    if os.path.realpath(db_path) == path:
        raise HydratePathError(path, "is the database's own name, where SQLite keeps its journal: give "
                                     "the hydrated copy another path")
    if os.path.isdir(path):
        raise HydratePathError(path, "is a directory")
    if os.path.exists(path) and not state_path(path).exists():
        raise HydratePathError(path, f"exists and is not a hydrated copy (no {state_path(path).name} beside "
                                     "it): refusing to overwrite it")


def attach(path: str, db_path: str, replica_url: str, url: str, *, follow: bool,
           poll_interval: float, writer: bool = False) -> Hydration:
    """A connection's handle on the hydration of `path` from `replica_url` (credential-free `url`)
    for the database `db_path`, started here unless another connection of this process runs it.
    A `writer`'s copy follows on demand while only writers use it (see the module's text)."""
    path = os.path.realpath(path)
    with _shared_lock:
        # The last connection closed it a moment ago: let its hydrator stop before another starts.
        _shared_lock.wait_for(lambda: path not in _shared or not _shared[path].closing)
        shared = _shared.get(path)
        if shared is None:
            check_path(path, db_path)
            shared = SharedHydration(path, replica_url, follow, poll_interval, on_demand=writer)
            if shared.url != url:
                shared.close()
                raise HydratePathError(path, f"replica {url} opened as {shared.url}")
            shared.start()
            _shared[path] = shared
        elif shared.url != url:
            raise HydratePathError(path, f"is being hydrated from {shared.url} by another connection, "
                                         f"not from {url}")
        elif shared.on_demand and not writer:
            shared.follow_on_timer()
        shared.refs += 1
    return Hydration(shared)


def shared_hydration(path: str | os.PathLike[str]) -> SharedHydration | None:
    """The hydration of `path` running in this process, if any (for tools and tests)."""
    with _shared_lock:
        shared = _shared.get(os.path.realpath(path))
        return None if shared is None or shared.closing else shared


def _detach(shared: SharedHydration) -> None:
    with _shared_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        shared.closing = True
    try:
        shared.close()
    finally:
        with _shared_lock:
            if _shared.get(shared.path) is shared:
                del _shared[shared.path]
            _shared_lock.notify_all()


class Hydration:
    """One connection's use of a shared hydration: which transactions read the local file."""

    def __init__(self, shared: SharedHydration) -> None:
        self.shared = shared
        #: The TXID the current transaction reads from the local file (0: it reads the store).
        self.local_txid = 0
        self._leased: Hydrator | None = None
        self.local_transactions = 0
        self.local_read_errors = 0
        #: Called (in a background thread) when the copy is complete at a TXID past the view's:
        #: the connection's follower looks for the new files now instead of at its next poll.
        self.on_ahead: Callable[[], object] | None = None
        self._nudged_for = 0
        self._nudging = False
        self.nudges = 0
        self._closed = False

    @property
    def path(self) -> str:
        return self.shared.path

    @property
    def hydrator(self) -> Hydrator:
        return self.shared.hydrator

    # -- read transactions -----------------------------------------------------------------

    def begin(self, txid: int, page_size: int, commit: int) -> bool:
        """A read transaction at `txid` begins: True when it reads the local file (lease kept)."""
        h = self.shared.hydrator
        if self._leased is not None or not h.is_complete:
            return False
        ahead = h.txid
        if ahead != txid:
            if ahead > txid:
                self._nudge(ahead)
            else:
                self.shared.catch_up(txid)
            return False
        if not h.acquire_lease(timeout=0):  # pages are being applied: the store this time
            return False
        # Under the lease nothing changes: check again what the quick look saw.
        if h.is_complete and h.txid == txid and h.page_size == page_size and h.commit == commit:
            self._leased = h
            self.local_txid = txid
            self.local_transactions += 1
            return True
        h.release_lease()
        return False

    def _nudge(self, ahead: int) -> None:
        """Run `on_ahead` once per TXID the copy reached, never two at a time."""
        if self.on_ahead is None or self._nudging or self._nudged_for >= ahead:
            return
        self._nudged_for = ahead
        self._nudging = True
        self.nudges += 1
        callback = self.on_ahead

        def run() -> None:
            try:
                callback()
            except Exception as exc:  # the follower's own polls go on regardless
                log.debug("%s: catching up with the local copy failed: %s", self.path, exc)
            finally:
                self._nudging = False

        threading.Thread(target=run, name="ltxvfs-hydrate-nudge", daemon=True).start()

    def end(self) -> None:
        """The read transaction ended: pages may be applied again."""
        self.local_txid = 0
        leased, self._leased = self._leased, None
        if leased is not None:
            leased.release_lease()

    def store_read(self) -> None:
        """This connection fetches a page from the store (see SharedHydration.note_store_read)."""
        self.shared.note_store_read()

    def read_page(self, pgno: int, page_size: int) -> bytes | None:
        """Page `pgno` from the local file (hold `begin`'s lease); None when it cannot be read
        whole, so the caller reads the store (never a short or stale page)."""
        leased = self._leased
        if leased is None:
            return None
        try:
            page = leased.pread((pgno - 1) * page_size, page_size)
        except (HydrationError, OSError) as exc:
            self.local_read_errors += 1
            log.warning("%s: page %d not read from the local file (%s): reading the store", self.path, pgno, exc)
            return None
        if len(page) != page_size:
            self.local_read_errors += 1
            log.warning("%s: page %d is short in the local file: reading the store", self.path, pgno)
            return None
        return page

    # -- the writer's commits --------------------------------------------------------------

    def on_commit(self, ltx: bytes | str | os.PathLike[str] | BinaryIO, name: str) -> None:
        """Apply the writer's own commit (an LTX file: bytes, a path, or a seekable binary file
        such as EncodedCommit.data) to the local file too.

        Call after the commit succeeded. Returns at once: a background thread applies it once
        hydration is complete, when it continues the local TXID. A path is opened and a file
        object copied here, so the caller may delete or close it as soon as this returns. Ends this
        connection's lease, if any: the pages just committed are not in the local file yet."""
        self.end()
        if isinstance(ltx, bytes | bytearray | memoryview):
            data = bytes(ltx)
            self.shared.queue_commit(io.BytesIO(data), name, len(data))
        elif isinstance(ltx, str | os.PathLike):
            f = open(os.fspath(ltx), "rb")  # noqa: SIM115 - closed by the applier
            self.shared.queue_commit(f, name, os.fstat(f.fileno()).st_size)
        else:
            copy, size = self._copy(ltx)
            self.shared.queue_commit(copy, name, size)

    def _copy(self, src: BinaryIO) -> tuple[BinaryIO, int]:
        """A private copy of a commit file from its start: in memory when small, else spilled."""
        src.seek(0)
        head = src.read(COPY_IN_MEMORY_LIMIT + 1)
        if len(head) <= COPY_IN_MEMORY_LIMIT:
            return io.BytesIO(head), len(head)
        spill = tempfile.TemporaryFile(dir=os.path.dirname(self.path))  # noqa: SIM115 - closed by the applier
        spill.write(head)
        shutil.copyfileobj(src, spill, COPY_CHUNK)
        size = spill.tell()
        spill.seek(0)
        return spill, size

    # -- reporting -------------------------------------------------------------------------

    def progress_text(self) -> str:
        """`PRAGMA litestream_hydration_progress`: percent with one decimal, as Litestream prints it."""
        self.shared.start_now()  # a connection asking how far it is waits for the copy: start it
        return f"{self.hydrator.progress.percent:.1f}"

    def stats(self) -> dict[str, object]:
        """The `hydration_*` fields of `PRAGMA ltxvfs_stats`."""
        shared = self.shared
        h = shared.hydrator
        progress = h.progress
        store = shared.store_stats()
        error = shared.error
        return {
            "hydration_path": shared.path,
            "hydration_percent": round(progress.percent, 1),
            "hydration_complete": progress.complete,
            "hydration_txid": format_txid(progress.txid) if progress.txid else "",
            "hydration_bytes_total": progress.bytes_total,
            "hydration_gets": store.get("gets", 0),
            "hydration_lists": store.get("lists", 0),
            "hydration_bytes": store.get("bytes_read", 0),
            "hydration_retries": store.get("retries", 0),
            "hydration_restarts": shared.restarts,
            "hydration_start_overs": h.restarts,
            "hydration_commits_applied": shared.commits_applied,
            "hydration_commits_skipped": shared.commits_skipped,
            "hydration_commits_dropped": shared.commits_dropped,
            "hydration_error": str(error) if error is not None else None,
            "local_transactions": self.local_transactions,
            "hydration_nudges": self.nudges,
            "hydration_polls": h.polls,
            "hydration_follows_on_demand": shared.on_demand,
            "hydration_wakes": shared.wakes,
            "local_read_errors": self.local_read_errors,
        }

    def close(self) -> None:
        """The connection closed: end its lease and let go of the hydration (stopped with the last)."""
        if self._closed:
            return
        self._closed = True
        self.end()
        _detach(self.shared)
