"""The main-database file of a read-write ltxvfs connection: the read path plus the writer.

How SQLite's calls map to the write path (SQLite 3.54, rollback-journal modes):

- xLock(SHARED) from NONE is where a transaction's view is fixed: shipped group commits are
  absorbed and the follower's news applied (as for readers). xLock(RESERVED) takes this
  process's write lock for the replica (`peers.py`), and answers SQLITE_BUSY when the replica is
  known to be ahead (the busy handler then starts over from NONE, which catches up).
- xWrite / xTruncate go to the transaction's dirty pages (`dirty.py`); reads look there first,
  then at committed groups not yet absorbed (group commit), then at the view.
- The commit point is `SQLITE_FCNTL_SYNC`, which SQLite sends in commit phase one right after the
  last page is written and before the journal is finalized, whatever `PRAGMA synchronous` says
  (with synchronous=OFF it stands in for the xSync). There the transaction becomes an LTX file
  and is created in the store. An error raised there fails phase one: the journal is still hot,
  SQLite plays it back (through xWrite, into the dirty pages) and unlocks; the dirty pages are
  dropped at the unlock. Phase two (journal deleted, then `SQLITE_FCNTL_COMMIT_PHASETWO`) would be
  too late: SQLite would keep the failed transaction's pages in its cache as committed.
- SQLite shrinks a database file only in phase two, after the commit point, so a commit's size
  is page 1's in-header size (bytes 28..31), which SQLite keeps exact.
- xUnlock to SHARED or NONE ends the write transaction: whatever was not committed (ROLLBACK, a
  failed commit, a crash of the statement) is dropped, and the write lock released. Savepoint
  rollbacks happen inside the transaction: SQLite writes the original pages back through xWrite.
- Page 1 is stored exactly as SQLite wrote it. Its change counter is what SQLite derived from the
  one it read (the TXID, plus `counter_bias`), so after its own commit the connection keeps its
  page cache. When local commits are thrown away (a conflict), the bias moves the counter past
  anything SQLite may hold, so it rereads.
- The journal is a private anonymous file (`journal.py`); a journal file left beside the name is
  never hot for ltxvfs.
"""

from __future__ import annotations

import atexit
import json
import logging
import struct
import time
from datetime import UTC, datetime

import apsw

from ltx.header import is_valid_page_size
from ltx.index import PageIndex
from ltx.plan import EmptyReplicaError, HistoryGapError, LTXFileInfo, RestorePlanError
from ltx.replica import Replica
from ltx.store.base import StoreError
from vfs import autocompact, dirty
from vfs.commitfile import header_commit, header_page_size
from vfs.errors import ReadOnlyVFSError, ReplicaOpenError
from vfs.file import LTXFile, read_pages
from vfs.follower import Update
from vfs.options import OpenOptions
from vfs.pagemap import PageMap, SourceFile
from vfs.process import GROUP_WRITERS, peers
from vfs.stats import ReadStats
from vfs.view import ALL_LEVELS, ReplicaReader, View, load_view, open_reader
from vfs.writeerrors import CommitConflictError, CommitRefusedError, CommitStoreError, WriterBusyError
from vfs.writer import Group, Writer, WriteStats

log = logging.getLogger(__name__)

#: Page size of a new database unless `PRAGMA page_size` chose another before the first write.
DEFAULT_PAGE_SIZE = 4096
#: Pause between looks at a replica caught with a gap in its history during a writer's open.
OPEN_RETRY_INTERVAL = 0.2
#: A commit whose pages total at most this many bytes leaves them in the page cache.
CACHE_OWN_PAGES_BYTES = 16 * 1024 * 1024
#: How long `PRAGMA ltxvfs_flush` waits for group commits to ship.
FLUSH_TIMEOUT = 60.0
#: Device characteristics of the main database: SQLite then skips journal syncs and header
#: rewrites that only matter for a journal that must survive a crash (ours need not).
DEVICE_CHARACTERISTICS = apsw.SQLITE_IOCAP_SAFE_APPEND | apsw.SQLITE_IOCAP_SEQUENTIAL
WRITER_PRAGMAS = ("ltxvfs_flush",)
#: `PRAGMA ltxvfs_position` (writers, read-only): "<staged TXID, 16 hex> <LTX files this connection
#: shipped> <ms since the follower's last look> <1 if a commit now returns without waiting for the
#: store, else 0>", what a fencing check reads before every write transaction (blockmap's mount),
#: without building the JSON of `ltxvfs_stats` (a few µs instead of ~70-250).
POSITION_PRAGMA = "ltxvfs_position"

_U32 = struct.Struct(">I")
_EPOCH = datetime.fromtimestamp(0, UTC)
_MASK32 = 0xFFFFFFFF



def empty_view(page_size: int) -> View:
    """The view of a replica with no files yet: a database of 0 pages at TXID 0."""
    info = LTXFileInfo(0, 0, 0, 0, _EPOCH, "")
    base = SourceFile(info, PageIndex(), None)
    return View(txid=0, page_size=page_size, pages=PageMap(base, page_size, 0), created_at=_EPOCH)


def load_latest(reader: ReplicaReader, page_size: int, stats: ReadStats | None) -> View:
    """The replica's latest view; an empty replica is an empty database."""
    try:
        return load_view(reader, waited=stats)
    except EmptyReplicaError:
        return empty_view(page_size)


def open_writer(options: OpenOptions) -> LTXWriteFile:
    """Open a replica for writing: its latest state, or an empty database if it has no files."""
    reader = open_reader(options.replica_url)
    replica = reader.replica
    stats = ReadStats()
    deadline = time.monotonic() + options.gap_wait
    try:
        while True:
            try:
                view = load_latest(reader, DEFAULT_PAGE_SIZE, stats)
                break
            except HistoryGapError as exc:
                if time.monotonic() >= deadline:
                    raise ReplicaOpenError(reader.url, f"{exc} (waited {options.gap_wait:g}s)") from exc
                time.sleep(OPEN_RETRY_INTERVAL)
            except RestorePlanError as exc:
                raise ReplicaOpenError(reader.url, str(exc)) from exc
            except StoreError as exc:
                raise ReplicaOpenError(reader.url, str(exc)) from exc
        return LTXWriteFile(options, replica, reader, view, stats)
    except BaseException:
        replica.close()
        raise


def _counter(page1: bytes) -> int:
    return int(_U32.unpack_from(page1, 24)[0])


class LTXWriteFile(LTXFile):
    """A read-write main database: SQLite's writes buffered, each commit shipped as an LTX file."""

    def __init__(self, options: OpenOptions, replica: Replica, reader: ReplicaReader, view: View,
                 stats: ReadStats) -> None:
        super().__init__(options, replica, reader, view, stats)
        self.write_stats = WriteStats()
        self.writer = Writer(replica, interval=options.sync_interval, base_txid=view.txid,
                             stats=self.write_stats, remote_tip=lambda: self.follower.tip,
                             confirmed_at=lambda: self.follower.last_success, list_tip=self._list_tip,
                             on_shipped=self._shipped, memory_bytes=dirty.DEFAULT_MEMORY_BYTES)
        #: What to do when the write transaction ends: reload the replica's state (after a conflict
        #: or a commit whose outcome the store left uncertain).
        self._reload_after_txn = False
        #: Commits of a group lost to a failure, reported by the next COMMIT.
        self._lost: CommitConflictError | CommitStoreError | None = None
        #: After local changes were thrown away: change counters SQLite may still hold (the one it
        #: read, those it wrote since); the next counter served must be none of them.
        self._avoid_counters: set[int] = set()
        #: Change counters SQLite wrote into page 1 during the current write transaction.
        self._txn_counters: set[int] = set()
        self._has_page_size = view.txid > 0
        peers().join(self.url, self)
        if options.sync_interval > 0:
            GROUP_WRITERS.add(self)
        #: The process's compactor of this replica (compact=auto, the default), or None (compact=off).
        self.compactor = autocompact.attach(options.replica_url) if options.compact else None

    # -- the view and the layers above it --------------------------------------------------

    def refresh(self) -> None:
        """Between transactions: absorb shipped commits, deal with a failed group commit, then
        (when no local commit is waiting) catch up with the replica."""
        writer = self.writer
        if writer.groups:
            self._absorb_shipped()
            if writer.failure is not None and self.lock_level < apsw.SQLITE_LOCK_RESERVED:
                failure = writer.failure
                lost = self._discard_local()
                self._lost = _lost_error(failure, lost)
            if writer.groups:
                return  # our commits come first; news from elsewhere means they will conflict
        super().refresh()

    def load_latest(self) -> View:
        return load_latest(self.reader, self.page_size, self.stats)

    def on_view_changed(self, replaced: bool) -> None:
        view = self.view
        if replaced:
            self._has_page_size = self._has_page_size or view.txid > 0
        self.writer.rebase(view.txid)
        if replaced and self._avoid_counters:
            counter = (view.txid + self.counter_bias) & _MASK32
            while counter in self._avoid_counters:
                counter = (counter + 1) & _MASK32
            self.counter_bias = (counter - view.txid) & _MASK32
            self._avoid_counters = set()
            self.refresh_page1()

    def _list_tip(self) -> int:
        """The highest TXID in any level of the replica (one round of parallel LISTs)."""
        levels = self.reader.list_levels(ALL_LEVELS, dict(self.view.seeks))
        return max((f.max_txid for files in levels.values() for f in files), default=0)

    def _logical_page(self, pgno: int) -> bytes:
        """A page as the open transaction and the unshipped commits leave it."""
        return self._over_view(pgno, self.writer.lookup(pgno))

    def _committed_page(self, pgno: int) -> bytes:
        """A page as of the last commit (the open transaction left out)."""
        return self._over_view(pgno, self.writer.lookup_below(pgno))

    def _over_view(self, pgno: int, layered: bytes | None) -> bytes:
        """`layered` (a page the writer's layers hold), else the view's page (zeros past its end)."""
        if layered is not None:
            return layered
        if pgno > self.view.commit:
            return dirty.zero_page(self.page_size)
        return self.view_page(pgno)

    def _logical_size(self) -> int:
        size = self.writer.size()
        return self.view.commit if size is None else size

    def _txn_is_noop(self) -> bool:
        """Whether the open transaction leaves every page as the last commit had it. SQLite syncs
        the file after playing a journal back (ROLLBACK of a transaction that wrote pages, or a
        failed commit), and that SQLITE_FCNTL_SYNC must not ship the restored pages as a commit.
        A commit never looks so: it changes page 1's counter (or some other page); comparing page 1
        first makes the check one comparison for a commit."""
        txn = self.writer.txn
        assert txn is not None
        below = self.writer.size_below()
        base = self.view.commit if below is None else below
        if txn.size != base or txn.cut < base:
            return False
        pgnos = txn.pgnos()
        if 1 in txn:
            pgnos.remove(1)
            pgnos.insert(0, 1)
        for pgno in pgnos:
            if txn.get(pgno) != self._committed_page(pgno):
                return False
        return True

    # -- reads -----------------------------------------------------------------------------

    def xRead(self, amount: int, offset: int) -> bytes:
        writer = self.writer
        if writer.txn is None and not writer.groups:
            return super().xRead(amount, offset)
        if not self.lock_level:
            self.refresh()
        return read_pages(amount, offset, self.page_size, self._logical_size(), self._logical_page)

    def xFileSize(self) -> int:
        if not self.lock_level:
            self.refresh()
        size = self.writer.size()
        if size is not None:
            return size * self.page_size
        return super().xFileSize()

    # -- writes ----------------------------------------------------------------------------

    def xWrite(self, data: bytes, offset: int) -> None:
        writer = self.writer
        txn = writer.txn
        if txn is None:
            if self.lock_level < apsw.SQLITE_LOCK_RESERVED:
                raise ReadOnlyVFSError(f"ltxvfs: {self.options.path}: write outside a write transaction")
            if not self._has_page_size and offset == 0 and not writer.groups:
                self._set_page_size(len(data))
            txn = writer.open_txn(self.page_size, self._logical_size())
        ps = self.page_size
        n = len(data)
        if offset == 0 and n >= 28:  # page 1: SQLite now holds this change counter
            self._txn_counters.add(_U32.unpack_from(data, 24)[0])
        if n == ps and not offset % ps:
            txn.put(offset // ps + 1, data)
            return
        end = offset + n
        pos = offset
        while pos < end:
            pgno = pos // ps + 1
            page_start = (pgno - 1) * ps
            chunk_end = min(end, page_start + ps)
            page = bytearray(self._logical_page(pgno))
            page[pos - page_start:chunk_end - page_start] = data[pos - offset:chunk_end - offset]
            txn.put(pgno, bytes(page))
            pos = chunk_end

    def xTruncate(self, size: int) -> None:
        writer = self.writer
        ps = self.page_size
        pages = -(-size // ps)
        txn = writer.txn
        if txn is None:
            current = self._logical_size()
            if pages == current:
                return
            if self.lock_level < apsw.SQLITE_LOCK_RESERVED:
                raise ReadOnlyVFSError(f"ltxvfs: {self.options.path}: truncate outside a write transaction")
            txn = writer.open_txn(ps, current)
        txn.truncate(pages)

    def _set_page_size(self, page_size: int) -> None:
        """The first write to a new database fixes its page size (SQLite writes page 1 first)."""
        if not is_valid_page_size(page_size) or page_size == self.page_size:
            return
        view = empty_view(page_size)
        self.follower.stage_replace(view, follow=self.options.poll > 0)
        self.follower.take()
        self.replace_view(view)

    def xSync(self, flags: int) -> None:
        return None

    def xDeviceCharacteristics(self) -> int:
        return DEVICE_CHARACTERISTICS

    # -- locks and the commit --------------------------------------------------------------

    def begin_write(self) -> None:
        if self.pinned:
            raise ReadOnlyVFSError(f"ltxvfs: {self.options.path} reads a past state (txid=, timestamp= or "
                                   f"litestream_time): writing is refused")
        if not peers().try_lock(self.url, self):
            raise WriterBusyError(self.url, "another connection of this process is writing")
        for peer in peers().others(self.url, self):  # their group commits come first
            if isinstance(peer, LTXWriteFile) and peer.writer.unshipped:
                try:
                    peer.writer.flush(FLUSH_TIMEOUT)
                except (CommitConflictError, CommitStoreError) as exc:
                    log.info("%s: another connection's group commit failed: %s", self.url, exc)
        writer = self.writer
        if not writer.groups and (self.stale or self.follower.tip > self.view.txid):
            peers().unlock(self.url, self)
            raise WriterBusyError(self.url, "the replica has newer commits: the transaction must start "
                                            "again to read them")
        self._reload_after_txn = False
        self._txn_counters = set()

    def xCheckReservedLock(self) -> bool:
        return self.lock_level >= apsw.SQLITE_LOCK_RESERVED or peers().locked_by_other(self.url, self)

    def end_write(self) -> None:
        """The write transaction is over: drop what it did not commit, release the write lock."""
        if self._reload_after_txn:
            self._reload_after_txn = False
            self._discard_local()
        elif self.writer.discard_txn():
            self.write_stats.rollbacks += 1
        peers().unlock(self.url, self)

    def _commit(self) -> None:
        """SQLITE_FCNTL_SYNC: the commit point of the open transaction."""
        writer = self.writer
        txn = writer.txn
        if txn is None:
            return
        if self._txn_is_noop():
            return
        if self._lost is not None:
            lost, self._lost = self._lost, None
            raise lost
        page1 = self._logical_page(1)
        if len(page1) >= 100:
            recorded = header_page_size(page1)
            if recorded != self.page_size:
                raise CommitRefusedError(self.url, f"page 1 records page size {recorded} but the database's "
                                                   f"is {self.page_size} (changing the page size of an ltxvfs "
                                                   f"database is not supported)")
        commit = header_commit(page1, txn.size)
        failure = writer.failure
        if failure is not None:  # group commit: the unshipped groups are lost, and this one with them
            self._reload_after_txn = True
            raise _lost_error(failure, sum(g.commits for g in writer.groups if not g.shipped))
        try:
            shipped = writer.commit_txn(commit)
        except CommitConflictError:
            self._reload_after_txn = True
            raise
        except CommitStoreError:
            self._reload_after_txn = True  # the file may exist all the same: read the replica again
            raise
        self._has_page_size = True
        if shipped is not None:
            self._absorb_shipped()

    def _absorb_shipped(self) -> None:
        for group in self.writer.take_shipped():
            try:
                self._absorb(group)
            finally:
                group.close()

    def _absorb(self, group: Group) -> None:
        """Make a shipped group part of the view, as if the follower had brought its file, with
        its pages already in the cache."""
        source = group.source
        assert source is not None and source.header is not None
        commit = source.header.commit
        txid = group.txid
        self.advance([source], txid, {0: txid})
        self.follower.advance(txid)
        pages = group.pages
        raw1 = pages.get(1)
        if raw1 is not None:
            self.counter_bias = (_counter(raw1) - txid) & _MASK32
        small = pages.nbytes <= CACHE_OWN_PAGES_BYTES
        self.hold_own_pages(raw1, ((p, page) for p, page in pages.items() if small and 1 < p <= commit))
        if self.hydration is not None and group.encoded is not None:
            self.hydration.on_commit(_ltx_for_hydration(group), group.encoded.name)

    def _shipped(self, group: Group) -> None:
        """A group's file was just created (any thread): this connection's follower skips it, and
        the other connections of this process to the replica are handed it without a request."""
        source = group.source
        assert source is not None
        txid = group.txid
        self.follower.advance(txid)
        if self.compactor is not None:
            self.compactor.note_shipped()
        update = Update(base_txid=txid - 1, txid=txid, files=[source], seeks={0: txid})
        for peer in peers().others(self.url, self):
            if not peer.pinned:
                peer.follower.offer(update)

    def _discard_local(self) -> int:
        """Throw away the open transaction and the local commits not in the store, and reread the
        replica at the next transaction. The change counters SQLite may hold (the one it read,
        and those it wrote into what is thrown away) are kept out of the next one served, so
        SQLite drops its page cache. Returns the SQLite commits lost."""
        self._absorb_shipped()
        writer = self.writer
        avoid = {(self.view.txid + self.counter_bias) & _MASK32, *self._txn_counters}
        for group in writer.groups:
            page1 = group.pages.get(1)
            if not group.shipped and page1 is not None:
                avoid.add(_counter(page1))
        self._avoid_counters |= avoid
        lost = writer.discard_groups()
        if writer.discard_txn():
            self.write_stats.rollbacks += 1
        self.mark_stale()
        return lost

    # -- file controls ---------------------------------------------------------------------

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op == apsw.SQLITE_FCNTL_SYNC:
            self._commit()
            return True
        if op == apsw.SQLITE_FCNTL_PRAGMA:
            pragma = apsw.VFSFcntlPragma(ptr)
            name = pragma.name.lower()
            if name == "journal_mode" and (pragma.value or "").strip().lower() == "wal":
                raise CommitRefusedError(self.url, "journal_mode=WAL is not available on an ltxvfs writer "
                                                   "(use DELETE, TRUNCATE, PERSIST or MEMORY)")
            if name in WRITER_PRAGMAS:
                pragma.result = self._flush_pragma()
                return True
            if name == POSITION_PRAGMA:
                pragma.result = self.position_text()
                return True
        return super().xFileControl(op, ptr)

    def position_text(self) -> str:
        """What `PRAGMA ltxvfs_position` answers. The staged tip is read before the count of
        shipped files, as `ltxvfs_stats` reads them: a file shipped in between is counted in the
        second and not yet in the first, never the reverse."""
        tip = self.follower.tip
        shipped = self.write_stats.ltx_files
        age_ms = int((time.time() - self.follower.last_success) * 1000)
        at_once = 1 if self.writer.commits_at_once else 0
        return f"{tip:016x} {shipped} {age_ms} {at_once}"

    def _flush_pragma(self) -> str:
        """`PRAGMA ltxvfs_flush`: ship group commits now; answers the TXID shipped up to. A group
        lost to a conflict is reported here (and not again by the next COMMIT)."""
        try:
            self.writer.flush(FLUSH_TIMEOUT)
        except (CommitConflictError, CommitStoreError) as exc:
            if self.writer.failure is None or self.lock_level >= apsw.SQLITE_LOCK_RESERVED:
                raise
            raise _lost_error(exc, self._discard_local()) from exc
        if self.lock_level < apsw.SQLITE_LOCK_RESERVED:
            self._absorb_shipped()
        return f"{self.writer.next_txid - 1:016x}"

    def stats_json(self) -> str:
        data = json.loads(super().stats_json())
        stats = self.write_stats
        data.update({f"write_{k}": v for k, v in stats.__dict__.items()})
        data["write_pending_groups"] = len(self.writer.groups)
        if self.compactor is not None:
            data.update({f"compact_{k}": v for k, v in self.compactor.stats.__dict__.items()})
        return json.dumps(data)

    def xClose(self) -> None:
        if self.closed:
            return
        error: BaseException | None = None
        try:
            self.writer.close()
        except (CommitConflictError, CommitStoreError) as exc:
            error = exc
            log.error("%s: commits lost at close: %s", self.url, exc)
        peers().leave(self.url, self)
        GROUP_WRITERS.discard(self)
        if self.compactor is not None:
            autocompact.detach(self.options.replica_url)
        super().xClose()
        if error is not None:
            raise error


def _ltx_for_hydration(group: Group) -> bytes | str:
    encoded = group.encoded
    assert encoded is not None
    data = encoded.data
    if isinstance(data, bytes):
        return data
    return str(data.name)


def _lost_error(failure: CommitConflictError | CommitStoreError, lost: int) -> CommitConflictError | CommitStoreError:
    """The error the next COMMIT reports after `lost` group-committed transactions were lost."""
    what = f"{lost} group-committed transaction(s) were lost: {failure.reason}"
    if isinstance(failure, CommitConflictError):
        return CommitConflictError(failure.url, failure.txid, failure.key, what)
    return CommitStoreError(failure.url, failure.key, what)


@atexit.register
def _ship_at_exit() -> None:
    """Group commit: ship what is left when the interpreter exits without closing."""
    for file in list(GROUP_WRITERS):
        try:
            file.writer.flush(FLUSH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - reported, nothing else to do at exit
            log.error("%s: commits not shipped at exit: %s", file.url, exc)
