"""The writer: a connection's local changes above its view of the replica, and their shipping.

Layers, top first: the open transaction's dirty pages, then *groups* of committed transactions
not yet absorbed into the view (each becomes one LTX file, one TXID). Reads look through the
layers before the view.

- `sync=commit` (default): COMMIT turns the transaction into a group and ships it at once, on
  SQLite's thread; COMMIT returns after the store took the file.
- `sync=interval:D` (group commit): COMMIT merges the transaction into the open group and returns;
  a thread ships a group once its first commit is D old, as one file with one TXID (the way
  Litestream numbers a sync of several SQLite commits). A crash loses what was not shipped: at
  most D of commits (plus the PUT under way).

Shipping a group at TXID N: if the replica is known to be past N-1 (the follower saw newer
files), it is a conflict without a request; if nothing confirmed the replica's tip for a while
(`MAX_UNCONFIRMED_AGE`, well inside Litestream's level-0 retention), one LIST of every level
checks first; then the file `N-N.ltx` is created at level 0 with create-if-absent, the commit
point. A taken name is a conflict (another writer has TXID N): nothing is overwritten, and every
group built on the lost state is void. One name per TXID for every writer is what makes the
conditional create decisive: a group spanning several TXIDs could sit beside another writer's
single-TXID file of the same start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ltx.errors import LTXError
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from ltx.store.base import ObjectExistsError, StoreError
from vfs import shipbarrier
from vfs.commitfile import EncodedCommit, encode_commit
from vfs.dirty import DEFAULT_MEMORY_BYTES, DirtyPages, zero_page
from vfs.pagemap import SourceFile
from vfs.writeerrors import CommitConflictError, CommitStoreError

log = logging.getLogger(__name__)

#: Seconds after which the replica's tip counts as unconfirmed: before the next commit, one LIST of
#: every level checks that nobody moved past it. Far below Litestream's level-0 retention (5 min),
#: so a file another writer created since the last confirmation is still at level 0 for the
#: create-if-absent to collide with.
MAX_UNCONFIRMED_AGE = 30.0
#: Group commit: sealed groups waiting to ship before a COMMIT waits for the shipper (a bound for
#: safety: the shipper seals one group at a time).
MAX_SEALED_GROUPS = 4
#: Group commit: pause before shipping again after the store failed (its own retries came first).
SHIP_RETRY_DELAY = 1.0
#: Group commit: how long a COMMIT made while earlier commits could not ship waits for the
#: shipper's next attempt (started at once) before it fails: a store that recovered takes the
#: commit, one still down refuses it without holding the caller for long.
COMMIT_RESHIP_WAIT = 10.0
#: Group commit: how long closing a connection waits for its last groups to ship.
CLOSE_FLUSH_TIMEOUT = 60.0

@dataclass
class WriteStats:
    """Counters of a writer connection (part of `PRAGMA ltxvfs_stats`)."""

    commits: int = 0
    ltx_files: int = 0
    pages_shipped: int = 0
    bytes_shipped: int = 0
    conflicts: int = 0
    commit_errors: int = 0
    rollbacks: int = 0
    lost_commits: int = 0
    #: Transactions whose dirty pages outgrew memory and went to a local temporary file.
    spilled_transactions: int = 0
    tip_checks: int = 0
    put_seconds: float = 0.0


@dataclass(eq=False)
class Group:
    """Committed transactions that become one LTX file."""

    pages: DirtyPages
    #: Database size in pages after the group (page 1's in-header size).
    commit: int
    #: Monotonic time of the group's first commit.
    first_at: float
    commits: int = 1
    #: Set when the shipper takes the group: no more commits merge into it.
    sealed: bool = False
    txid: int = 0
    source: SourceFile | None = None
    encoded: EncodedCommit | None = None

    @property
    def shipped(self) -> bool:
        return self.source is not None

    def close(self) -> None:
        self.pages.close()
        if self.encoded is not None:
            self.encoded.close()
            self.encoded = None


class Writer:
    """Local layers and shipping for one connection. SQLite's thread calls everything except the
    shipper's own methods; the shipper thread (group commit) only reads sealed groups."""

    def __init__(self, replica: Replica, *, interval: float, base_txid: int, stats: WriteStats,
                 remote_tip: Callable[[], int], confirmed_at: Callable[[], float],
                 list_tip: Callable[[], int], on_shipped: Callable[[Group], None] | None = None,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.replica = replica
        self.url = replica.url
        self.interval = interval
        self.stats = stats
        self.memory_bytes = memory_bytes
        self._remote_tip = remote_tip
        self._confirmed_at = confirmed_at
        self._list_tip = list_tip
        #: Told of each group as soon as its file is created (from the shipper thread in group commit).
        self._on_shipped = on_shipped
        self._cond = threading.Condition()
        self._next_txid = base_txid + 1
        self._own_confirmed = time.time()
        #: The open transaction's pages (None outside a write transaction).
        self.txn: DirtyPages | None = None
        #: Groups not yet absorbed into the view, oldest first (only SQLite's thread changes the list).
        self.groups: list[Group] = []
        self._failure: CommitConflictError | CommitStoreError | None = None
        self._ship_error: CommitStoreError | None = None
        self._retry_at = 0.0
        #: Ship attempts started, and finished (success or not): a commit waiting on a retry
        #: waits for one that started after it asked (one under way may predate the store's recovery).
        self._ship_starts = 0
        self._ship_attempts = 0
        #: Callers of `flush` waiting now (any thread): groups then ship without waiting out the interval.
        self._flushing = 0
        self._closed = False
        self._stop = False
        self._thread: threading.Thread | None = None
        if interval > 0:
            self._thread = threading.Thread(target=self._run, name="ltxvfs-group-commit", daemon=True)
            self._thread.start()

    # -- reads through the layers (SQLite's thread) ----------------------------------------

    @property
    def active(self) -> bool:
        return self.txn is not None or bool(self.groups)

    def lookup(self, pgno: int) -> bytes | None:
        """The page from the layers (zeros for a page cut and not written again), or None: read the view."""
        txn = self.txn
        if txn is not None:
            page = txn.get(pgno)
            if page is not None:
                return page
            if pgno > txn.cut:
                return zero_page(txn.page_size)
        return self.lookup_below(pgno)

    def lookup_below(self, pgno: int) -> bytes | None:
        """`lookup` without the open transaction (the committed state it started from)."""
        for group in reversed(self.groups):
            page = group.pages.get(pgno)
            if page is not None:
                return page
            if pgno > group.pages.cut:
                return zero_page(group.pages.page_size)
        return None

    def size(self) -> int | None:
        """Database size in pages as the layers leave it (None: the view's)."""
        if self.txn is not None:
            return self.txn.size
        return self.size_below()

    def size_below(self) -> int | None:
        """`size` without the open transaction."""
        if self.groups:
            return self.groups[-1].pages.size
        return None

    # -- transactions (SQLite's thread) ----------------------------------------------------

    def open_txn(self, page_size: int, base_size: int) -> DirtyPages:
        if self.txn is None:
            self.txn = DirtyPages(page_size, base_size, self.memory_bytes)
        return self.txn

    def discard_txn(self) -> bool:
        """Drop the open transaction's pages (rolled back); True if there were any."""
        txn, self.txn = self.txn, None
        if txn is None:
            return False
        if txn.spilled:
            self.stats.spilled_transactions += 1
        txn.close()
        return True

    def commit_txn(self, commit: int) -> Group | None:
        """Commit the open transaction (database size `commit` pages). `sync=commit`: ship it now
        and return the shipped group, for the view to absorb. Group commit: merge it into the
        open group and return None. Raises CommitConflictError / CommitStoreError (the transaction
        then rolls back: its pages stay in `txn` until SQLite unlocks)."""
        txn = self.txn
        if txn is None:
            return None
        spilled = txn.spilled
        if self.interval <= 0:
            group = Group(pages=txn, commit=commit, first_at=time.monotonic())
            self._ship(group)
            self.txn = None
            self.groups.append(group)
            self.stats.commits += 1
            self.stats.spilled_transactions += spilled
            return group
        self._check_group_state()
        with self._cond:
            last = self.groups[-1] if self.groups else None
            if last is not None and not last.sealed:
                last.pages.merge(txn)
                last.commit = commit
                last.commits += 1
                txn.close()
            else:
                self.groups.append(Group(pages=txn, commit=commit, first_at=time.monotonic()))
                self._cond.notify_all()
            self.txn = None
        self.stats.commits += 1
        self.stats.spilled_transactions += spilled
        return None

    def _check_group_state(self) -> None:
        """Before a group commit: report a failure, and wait while too many groups queue up."""
        with self._cond:
            while True:
                if self._failure is not None:
                    raise self._failure
                if self._ship_error is not None:
                    self._reship_now()
                    if self._ship_error is not None:
                        raise CommitStoreError(self.url, self._ship_error.key,
                                               f"earlier commits are not shipped yet ({self._ship_error.reason})")
                    continue
                if self._sealed_waiting() < MAX_SEALED_GROUPS:
                    return
                self._cond.wait(1.0)

    def _reship_now(self) -> None:
        """(Holding the condition.) Ask the shipper to try the failed group again now and wait
        for that attempt, at most COMMIT_RESHIP_WAIT seconds."""
        started = self._ship_starts
        self._retry_at = 0.0
        self._cond.notify_all()
        self._cond.wait_for(lambda: self._ship_attempts > started or self._failure is not None, COMMIT_RESHIP_WAIT)

    # -- after shipping (SQLite's thread) --------------------------------------------------

    def take_shipped(self) -> list[Group]:
        """Shipped groups at the front of the list, removed: the view absorbs them in order."""
        with self._cond:
            done = []
            while self.groups and self.groups[0].shipped:
                done.append(self.groups.pop(0))
            return done

    @property
    def failure(self) -> CommitConflictError | CommitStoreError | None:
        return self._failure

    def discard_groups(self) -> int:
        """Drop every group not shipped (after a conflict: they were built on a lost state);
        return how many SQLite commits were in them."""
        with self._cond:
            lost = [g for g in self.groups if not g.shipped]
            self.groups = [g for g in self.groups if g.shipped]
            self._failure = None
            self._ship_error = None
            self._cond.notify_all()
        n = sum(g.commits for g in lost)
        for g in lost:
            g.close()
        self.stats.lost_commits += n
        return n

    def rebase(self, txid: int) -> None:
        """The view moved to `txid` (no groups pending): the next group ships at `txid + 1`."""
        with self._cond:
            if not self.groups:
                self._next_txid = txid + 1

    @property
    def next_txid(self) -> int:
        return self._next_txid

    @property
    def commits_at_once(self) -> bool:
        """Whether a commit now would return without waiting for the store: group commit, no
        failed ship to retry first, and room for another group (see `_check_group_state`)."""
        if self.interval <= 0:
            return False
        with self._cond:
            if self._failure is not None or self._ship_error is not None:
                return False
            return self._sealed_waiting() < MAX_SEALED_GROUPS

    def _sealed_waiting(self) -> int:
        """(Holding the condition.) Groups sealed for shipping and not shipped yet."""
        return sum(1 for g in self.groups if g.sealed and not g.shipped)

    @property
    def unshipped(self) -> bool:
        """Whether committed groups wait to be shipped."""
        return any(not g.shipped for g in list(self.groups))

    def flush(self, timeout: float | None = None) -> None:
        """Ship every group now and wait for it (group commit); raise what failed."""
        if self._thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while any(not g.shipped for g in list(self.groups)):
                    if self._failure is not None:
                        raise self._failure
                    if self._ship_error is not None and deadline is not None and time.monotonic() > deadline:
                        raise self._ship_error
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise CommitStoreError(self.url, "", f"commits not shipped within {timeout:g}s")
                    self._cond.wait(0.5 if left is None else min(0.5, left))
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Ship what is left (group commit), stop the shipper, release the layers."""
        error: BaseException | None = None
        try:
            self.flush(CLOSE_FLUSH_TIMEOUT)
        except (CommitConflictError, CommitStoreError) as exc:
            error = exc
        with self._cond:
            self._closed = True
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.discard_txn()
        for g in self.groups:
            g.close()
        self.groups = []
        if error is not None:
            raise error

    # -- shipping --------------------------------------------------------------------------

    def _ship(self, group: Group) -> None:
        """Encode and create the group's file at the next TXID (the commit point)."""
        txid = self._next_txid
        key = self.replica.key(0, txid, txid)
        self._check_tip(txid, key)
        try:
            encoded = encode_commit(group.pages, commit=group.commit, txid=txid,
                                    timestamp_ms=int(time.time() * 1000), snapshot=txid == 1)
        except (OSError, LTXError) as exc:
            self.stats.commit_errors += 1
            raise CommitStoreError(self.url, key, f"cannot encode the commit: {exc}") from exc
        started = time.monotonic()
        try:
            shipbarrier.run()  # what the commit names elsewhere is durable before it ships
        except (OSError, StoreError) as exc:
            encoded.close()
            self.stats.commit_errors += 1
            reason = exc.reason if isinstance(exc, StoreError) else str(exc)
            raise CommitStoreError(self.url, key, f"cannot make what the commit names durable: {reason}") from exc
        try:
            if encoded.sums is not None:
                self.replica.put_sums(key, encoded.sums, encoded.header.timestamp)
            self.replica.put_file(0, txid, txid, encoded.stream(), encoded.header.timestamp, if_absent=True)
        except ObjectExistsError as exc:
            encoded.close()
            self.stats.conflicts += 1
            raise CommitConflictError(self.url, txid, key, "another writer created this TXID's file first") from exc
        except StoreError as exc:
            encoded.close()
            self.stats.commit_errors += 1
            raise CommitStoreError(self.url, key, exc.reason) from exc
        finally:
            self.stats.put_seconds += time.monotonic() - started
        self._own_confirmed = time.time()
        info = LTXFileInfo(0, txid, txid, encoded.size, encoded.created_at, key,
                           encoded.sums.encoded_size if encoded.sums is not None else 0)
        group.source = SourceFile(info, encoded.index, encoded.header, sums=encoded.sums)
        group.encoded = encoded
        group.txid = txid
        self.stats.ltx_files += 1
        self.stats.pages_shipped += len(encoded.index)
        self.stats.bytes_shipped += encoded.size
        with self._cond:
            self._next_txid = txid + 1
        if self._on_shipped is not None:
            self._on_shipped(group)

    def _check_tip(self, txid: int, key: str) -> None:
        """Refuse a TXID the replica is known to have, and look when its tip is unconfirmed."""
        if self._remote_tip() >= txid:
            self.stats.conflicts += 1
            raise CommitConflictError(self.url, txid, key, "the replica already has newer commits")
        confirmed = max(self._confirmed_at(), self._own_confirmed)
        if time.time() - confirmed <= MAX_UNCONFIRMED_AGE:
            return
        self.stats.tip_checks += 1
        try:
            tip = self._list_tip()
        except StoreError as exc:
            self.stats.commit_errors += 1
            raise CommitStoreError(self.url, key, f"cannot check the replica's tip: {exc.reason}") from exc
        if tip >= txid:
            self.stats.conflicts += 1
            raise CommitConflictError(self.url, txid, key, f"the replica is at TXID {tip:016x}")
        self._own_confirmed = time.time()

    # -- the group-commit thread -----------------------------------------------------------

    def _due(self, now: float) -> tuple[Group | None, float]:
        """The next group to ship and, when none is due yet, how long to wait."""
        if self._failure is not None:
            return None, 1.0
        for group in self.groups:
            if group.shipped:
                continue
            if self._ship_error is not None and now < self._retry_at:
                return None, self._retry_at - now
            if group.sealed or self._flushing or self._closed:
                return group, 0.0
            wait = group.first_at + self.interval - now
            return (group, 0.0) if wait <= 0 else (None, wait)
        return None, 1.0

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    group, wait = self._due(time.monotonic())
                    if group is not None:
                        group.sealed = True
                        self._ship_starts += 1
                        break
                    self._cond.wait(wait)
            try:
                self._ship(group)
            except CommitConflictError as exc:
                log.warning("%s: group commit lost: %s", self.url, exc)
                with self._cond:
                    self._failure = exc
                    self._ship_attempts += 1
                    self._cond.notify_all()
            except CommitStoreError as exc:
                log.warning("%s: group commit not shipped yet: %s", self.url, exc)
                with self._cond:
                    self._ship_error = exc
                    self._retry_at = time.monotonic() + SHIP_RETRY_DELAY
                    self._ship_attempts += 1
                    self._cond.notify_all()
            except BaseException as exc:  # never let the thread die silently
                log.exception("%s: group commit failed", self.url)
                with self._cond:
                    self._failure = CommitStoreError(self.url, "", f"group commit failed: {exc!r}")
                    self._ship_attempts += 1
                    self._cond.notify_all()
            else:
                with self._cond:
                    self._ship_error = None
                    self._ship_attempts += 1
                    self._cond.notify_all()
