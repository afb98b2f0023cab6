"""The main-database file of an ltxvfs connection: SQLite's reads served from a view of the replica.

Reads come from the page cache, else from the store (see readahead.py for what one miss fetches).
The view changes only between transactions: SQLite takes a SHARED lock at the start of every read
transaction, and that is when staged files (from the follower, or a move in time) are applied, so
one transaction sees one TXID. Page 1 is served in rollback-journal form (bytes 18 and 19 set to
1, so SQLite never looks for a WAL) with the change counter (24..27, and 92..95 which vouches for
the size at 28..31) derived from the TXID: SQLite drops its own cache exactly when the TXID moves.

The view moves forward one way, `advance` (files on top of it, reaching a TXID): the follower's
files and a writer's own commits (vfs/writefile.py) both go through it. The writer builds on
this class through its public surface: `refresh`, `advance`, `replace_view`, `view_page`,
`hold_own_pages`, and the hooks `load_latest`, `on_view_changed`, `begin_write` and `end_write`.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import apsw

from ltx.header import lock_pgno
from ltx.plan import RestorePlanError
from ltx.replica import Replica
from ltx.store.base import StoreError
from vfs.errors import PageCorruptError, PageReadError, ReadOnlyVFSError, TimeTravelError
from vfs.fetch import FileGoneError, PageFetcher, Run
from vfs.follower import Follower, Replace, Update
from vfs.options import OpenOptions
from vfs.pagecache import PageCache
from vfs.pagemap import PageMap, SourceFile
from vfs.pragmas import handle_pragma
from vfs.readahead import ReadAhead
from vfs.stats import ReadStats, stats_json
from vfs.view import ReplicaReader, View, head_pages, load_view

if TYPE_CHECKING:  # the hydrator loads only for hydrate= (vfs/hydrate.py)
    from vfs.hydrate import Hydration

_U32 = struct.Struct(">I")
#: The sector size reported to SQLite (that of a typical disk; journals are local files).
SECTOR_SIZE = 4096


def patch_page1(raw: bytes, txid: int, commit: int) -> bytes:
    """Page 1 as SQLite must see it: rollback-journal format versions, a change counter that is a
    function of the TXID (and marks the in-header size valid), and the size set to the commit."""
    page = bytearray(raw)
    page[18] = 1
    page[19] = 1
    counter = _U32.pack(txid & 0xFFFFFFFF)
    page[24:28] = counter
    page[28:32] = _U32.pack(commit)
    page[92:96] = counter
    return bytes(page)


def read_pages(amount: int, offset: int, page_size: int, pages: int, page: Callable[[int], bytes]) -> bytes:
    """`amount` bytes at `offset` of a database of `pages` pages of `page_size`, each page from
    `page(pgno)`: short at the end of the file, as SQLite expects."""
    size = pages * page_size
    if offset >= size or amount <= 0:
        return b""
    end = min(offset + amount, size)
    first = offset // page_size + 1
    last = (end - 1) // page_size + 1
    start = offset - (first - 1) * page_size
    if first == last:
        return page(first)[start:start + end - offset]
    out = bytearray()
    for pgno in range(first, last + 1):
        out += page(pgno)
    return bytes(out[start:start + end - offset])


class LTXFile:
    """One connection's main database file (apsw calls the x-methods)."""

    def __init__(self, options: OpenOptions, replica: Replica, reader: ReplicaReader, view: View,
                 stats: ReadStats) -> None:
        self.options = options
        self.replica = replica
        self.reader = reader
        self.stats = stats
        self.url = replica.url
        self._view = view
        self._page_size = view.page_size
        self._lock_pgno = lock_pgno(view.page_size)
        self._lock = apsw.SQLITE_LOCK_NONE
        self._cache = PageCache(options.cache_size)
        self._raw_page1: bytes | None = None
        #: Added to the TXID for page 1's change counter (0 but on a writer, whose counter follows
        #: what SQLite wrote: vfs/writefile.py).
        self.counter_bias = 0
        self._readahead = ReadAhead(neighbour_bytes=options.neighbour_bytes)
        self._fetcher = PageFetcher(replica.store)
        self._stale = False
        #: The time asked for with timestamp= or PRAGMA litestream_time (None: latest or txid=).
        self.target_time: datetime | None = options.timestamp
        #: Whether this connection reads a fixed point of the past (txid=, timestamp=, litestream_time).
        self.pinned = options.pinned
        #: The local copy read once complete and at this view's TXID (hydrate=), or None.
        self.hydration: Hydration | None = None
        if options.hydrate_path is not None:
            try:
                from vfs.hydrate import attach as attach_hydration

                self.hydration = attach_hydration(options.hydrate_path, options.path, options.replica_url,
                                                  replica.url, follow=options.poll > 0 and not options.pinned,
                                                  poll_interval=options.poll, writer=not options.read_only)
            except BaseException:
                replica.close()
                raise
        self.follower = Follower(reader, view, options.poll, stats)
        if not self.pinned:
            self.follower.start()
        if self.hydration is not None:
            self.hydration.on_ahead = self._poll_now
        self._preload(view.fresh)
        view.fresh = []
        self._closed = False
        #: Called once when SQLite closes the file (the VFS forgets the open path).
        self.on_close: Callable[[], None] | None = None

    # -- the view --------------------------------------------------------------------------

    @property
    def view(self) -> View:
        return self._view

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def txid(self) -> int:
        """The TXID this connection reads (staged updates applied first when outside a transaction)."""
        if self._lock == apsw.SQLITE_LOCK_NONE:
            self.refresh()
        return self._view.txid

    @property
    def lock_level(self) -> int:
        """SQLite's lock on the file (apsw.SQLITE_LOCK_*)."""
        return self._lock

    @property
    def in_transaction(self) -> bool:
        return self._lock != apsw.SQLITE_LOCK_NONE

    @property
    def stale(self) -> bool:
        """Whether the view is to be reloaded from the replica at the next refresh."""
        return self._stale

    def mark_stale(self) -> None:
        """Reload the view from the replica at the next refresh (between transactions)."""
        self._stale = True

    @property
    def closed(self) -> bool:
        return self._closed

    def load_latest(self) -> View:
        """The replica's latest view (a stale view is replaced by it); a writer also takes an empty
        replica as an empty database."""
        return load_view(self.reader, waited=self.stats)

    def refresh(self) -> None:
        """Between transactions: reload a stale view, then apply the follower's staged files or
        views. An update that cannot be applied where the view is marks it stale, and it is
        reloaded at once."""
        for _ in range(2):
            if self._stale:
                view = self.load_latest()  # may raise: the view stays stale
                self._stale = False
                self.target_time = None
                self.follower.stage_replace(view, follow=self.options.poll > 0)
                self.follower.start()
            if self.follower.has_staged():
                for staged in self.follower.take():
                    if isinstance(staged, Replace):
                        self.replace_view(staged.view)
                    else:
                        self._apply_update(staged)
            if not self._stale:
                return

    def _apply_update(self, update: Update) -> None:
        if update.base_txid != self._view.txid or self._view.txid == 0:
            # Staged against another view (a replace raced it), or the first files of an empty
            # database (a writer's): load the replica whole instead.
            self._stale = True
            return
        self.advance(update.files, update.txid, update.seeks)
        self.stats.files_applied += len(update.files)

    def replace_view(self, view: View) -> None:
        """Read `view` from now on (a re-plan, a move in time, a reload)."""
        same_state = view.txid == self._view.txid and view.page_size == self._view.page_size
        self._view = view
        if not same_state:
            self.stats.pages_evicted += len(self._cache)
            self._cache.clear()
            self._raw_page1 = None
            self._readahead.forget()
        self._page_size = view.page_size
        self._lock_pgno = lock_pgno(view.page_size)
        self._preload(view.fresh)
        view.fresh = []
        self.refresh_page1()
        self.on_view_changed(replaced=True)

    def advance(self, files: Sequence[SourceFile], txid: int, seeks: Mapping[int, int]) -> None:
        """Move the view to `txid` with `files` on top of it, each continuing the one before (the
        follower's files, or a writer's own commit): their pages replace the view's, the pages
        they change leave the cache. On an empty database (TXID 0) the first file starts the view."""
        view = self._view
        first, arrived = files[0], files
        if view.txid == 0:
            assert first.header is not None
            ps = first.header.page_size
            view = View(txid=txid, page_size=ps, pages=PageMap(first, ps, first.header.commit),
                        created_at=first.created_at, seeks=dict(seeks))
            self._view = view
            self._page_size = ps
            self._lock_pgno = lock_pgno(ps)
            self._cache.clear()
            self._raw_page1 = None
            files = files[1:]
        pages = view.pages
        old_commit = pages.commit
        evicted = 0
        for f in files:
            changed = pages.add(f, f.header.commit if f.header is not None else None)
            evicted += self._cache.evict(changed)
            if 1 in changed:
                self._raw_page1 = None
        if pages.commit < old_commit:
            evicted += self._cache.evict_above(pages.commit)
        view.txid = txid
        view.created_at = arrived[-1].created_at
        view.seeks.update(seeks)
        self.stats.pages_evicted += evicted
        self._readahead.forget()
        self._preload(list(arrived))
        self.refresh_page1()
        self.on_view_changed(replaced=False)

    def on_view_changed(self, replaced: bool) -> None:
        """Called after the view advanced (`replaced` False) or was replaced (a writer follows)."""

    def hold_own_pages(self, page1: bytes | None, pages: Iterable[tuple[int, bytes]]) -> None:
        """Pages of the current view that this connection wrote itself: `page1` raw, as SQLite
        wrote it (served patched), and others cached as they are."""
        if page1 is not None:
            self._raw_page1 = page1
        for pgno, page in pages:
            self._cache.put(pgno, page)
        self.refresh_page1()

    def _preload(self, files: list[SourceFile]) -> None:
        """Cache the pages that came with the files' head GETs (page 1 and other low pages) and the
        view's hint."""
        view = self._view
        pages = head_pages(view.pages, files) + view.take_hint_pages()
        self._readahead.observe_all(pages)
        for pgno, page in pages:
            self.stats.preloaded_pages += 1
            if pgno == 1:
                self._raw_page1 = page
                page = self._patch_page1(page)
            self._cache.put(pgno, page)

    def _patch_page1(self, raw: bytes) -> bytes:
        """`patch_page1` for this connection's view (and counter bias)."""
        view = self._view
        return patch_page1(raw, view.txid + self.counter_bias, view.commit)

    def refresh_page1(self) -> None:
        """Re-derive the cached page 1 from its raw bytes for the current TXID and commit."""
        if self._raw_page1 is not None:
            self._cache.put(1, self._patch_page1(self._raw_page1))
        else:
            self._cache.pop(1, None)

    def _poll_now(self) -> None:
        """The hydrated copy is past this view: look for its files now, not at the next poll
        (a connection that follows and reads the latest only)."""
        if not self.pinned and self.options.poll > 0 and not self.follower.paused:
            self.follower.poll_once()

    def move_to(self, when: datetime | None) -> None:
        """Read the state before `when` (None: the latest, and follow again). Takes effect now,
        or at the next transaction when one is open."""
        try:
            view = load_view(self.reader, timestamp=when, waited=self.stats)
        except RestorePlanError as exc:
            raise TimeTravelError(f"ltxvfs: {exc}") from exc
        follow = when is None and self.options.poll > 0
        self.target_time = when
        self.pinned = when is not None
        self.follower.stage_replace(view, follow=follow)
        if follow:
            self.follower.start()
        if not self.in_transaction:
            self.refresh()

    # -- reads -----------------------------------------------------------------------------

    def xRead(self, amount: int, offset: int) -> bytes:
        ps = self._page_size
        if amount == ps and self._lock and not offset % ps:
            try:
                page = self._cache[offset // ps + 1]
            except KeyError:
                pass
            else:
                self.stats.cache_hits += 1
                return page
        return self._read(amount, offset)

    def _read(self, amount: int, offset: int) -> bytes:
        if not self._lock:
            self.refresh()
        return read_pages(amount, offset, self._page_size, self._view.commit, self.view_page)

    def view_page(self, pgno: int) -> bytes:
        """Page `pgno` of the view (cache, local copy or store)."""
        try:
            page = self._cache[pgno]
        except KeyError:
            pass
        else:
            self.stats.cache_hits += 1
            return page
        if pgno == 1 and self._raw_page1 is not None:
            page = self._patch_page1(self._raw_page1)
            self._cache.put(1, page)
            self.stats.cache_hits += 1
            return page
        hydration = self.hydration
        if hydration is not None and hydration.local_txid == self._view.txid:
            local = hydration.read_page(pgno, self._page_size)
            if local is not None:
                self.stats.local_reads += 1
                if pgno == 1:
                    self._raw_page1 = local
                    local = self._patch_page1(local)
                    self._cache.put(1, local)
                return local
        self.stats.cache_misses += 1
        if hydration is not None:
            hydration.store_read()
        pages = self._view.pages
        if pages.locate(pgno) is None:
            if pgno == self._lock_pgno:
                return bytes(self._page_size)
            raise PageCorruptError(self.url, "", f"page {pgno} is in no file of the restore plan at TXID "
                                                 f"{self._view.txid:016x} (commit {pages.commit})")
        runs = self._readahead.plan(pgno, pages, self._cache)
        fetched = self._fetch(pgno, runs)
        return fetched

    def _fetch(self, pgno: int, runs: list[Run]) -> bytes:
        """Fetch runs (one round trip), cache what came, and return page `pgno`."""
        try:
            got = self._fetcher.fetch(runs, self._page_size)
        except FileGoneError:
            self.stats.round_trips += 1
            runs = self._reanchor(pgno)
            got = self._fetcher.fetch(runs, self._page_size)
        self.stats.round_trips += 1
        self.stats.pages_fetched += len(got)
        self.stats.readahead_pages += len(got) - 1
        wanted = b""
        for p, page in got:
            self.stats.bytes_decompressed += len(page)
            self._readahead.observe(p, page)
            if p == 1:
                self._raw_page1 = page
                page = self._patch_page1(page)
            self._cache.put(p, page)
            if p == pgno:
                wanted = page
        return wanted

    def _reanchor(self, pgno: int) -> list[Run]:
        """A planned file is gone (compacted, then removed by retention). Rebuild this same TXID
        from the files that now hold it; if none do, fail this read and move on next transaction."""
        txid = self._view.txid
        try:
            view = load_view(self.reader, txid=txid, waited=self.stats)
        except StoreError as exc:
            raise PageReadError(self.url, exc.key, f"cannot re-plan TXID {txid:016x}: {exc.reason}") from exc
        except RestorePlanError as exc:
            self._stale = not self.pinned
            raise PageReadError(self.url, "", f"files holding TXID {txid:016x} were removed from the replica "
                                              f"and no others hold that state ({exc}); the next transaction "
                                              f"reads the latest") from exc
        self.stats.replans += 1
        if view.txid != txid:
            self._stale = not self.pinned
            raise PageReadError(self.url, "", f"re-planned TXID {txid:016x} reached {view.txid:016x}")
        view.seeks = self._view.seeks
        self._view = view
        self._preload(view.fresh)
        view.fresh = []
        self._readahead.forget()
        return self._readahead.plan(pgno, view.pages, self._cache)

    def xFileSize(self) -> int:
        if not self._lock:
            self.refresh()
        return self._view.commit * self._view.page_size

    # -- locks -----------------------------------------------------------------------------

    def xLock(self, level: int) -> None:
        if self._lock == apsw.SQLITE_LOCK_NONE and level >= apsw.SQLITE_LOCK_SHARED:
            try:
                self.refresh()
            except StoreError as exc:
                raise PageReadError(self.url, exc.key, f"cannot refresh the view: {exc.reason}") from exc
            except RestorePlanError as exc:
                raise PageReadError(self.url, "", f"cannot refresh the view: {exc}") from exc
            if self.hydration is not None:  # this transaction reads the local copy if it is at our TXID
                view = self._view
                self.hydration.begin(view.txid, view.page_size, view.commit)
        if level >= apsw.SQLITE_LOCK_RESERVED and self._lock < apsw.SQLITE_LOCK_RESERVED:
            self.begin_write()
        self._lock = level

    def begin_write(self) -> None:
        """A write transaction starts (SQLite asks for RESERVED)."""
        raise ReadOnlyVFSError(f"ltxvfs: {self.options.path} is open read-only")

    def end_write(self) -> None:
        """The write transaction ends (SQLite drops to SHARED or NONE)."""

    def xUnlock(self, level: int) -> None:
        if level <= apsw.SQLITE_LOCK_SHARED and self._lock >= apsw.SQLITE_LOCK_RESERVED:
            self.end_write()
        if level == apsw.SQLITE_LOCK_NONE and self.hydration is not None:
            self.hydration.end()
        self._lock = level

    def xCheckReservedLock(self) -> bool:
        return False

    # -- everything else -------------------------------------------------------------------

    def xFileControl(self, op: int, ptr: int) -> bool:
        if op != apsw.SQLITE_FCNTL_PRAGMA:
            return False
        pragma = apsw.VFSFcntlPragma(ptr)
        result = handle_pragma(self, pragma.name.lower(), pragma.value)
        if result is None:
            return False
        if result[0] is not None:
            pragma.result = result[0]
        return True

    def stats_json(self) -> str:
        view = self._view
        return stats_json(self.stats, self.replica.store.stats, txid=f"{view.txid:016x}",
                          staged_txid=f"{self.follower.tip:016x}",
                          staged_age_ms=int((time.time() - self.follower.last_success) * 1000), commit=view.commit,
                          page_size=view.page_size, files=view.pages.file_count,
                          cache_bytes=self._cache.currsize, cache_pages=len(self._cache),
                          **(self.hydration.stats() if self.hydration is not None else {}))

    def xWrite(self, data: bytes, offset: int) -> None:
        raise ReadOnlyVFSError(f"ltxvfs: {self.options.path} is open read-only")

    def xTruncate(self, size: int) -> None:
        raise ReadOnlyVFSError(f"ltxvfs: {self.options.path} is open read-only")

    def xSync(self, flags: int) -> None:
        return None

    def xSectorSize(self) -> int:
        return SECTOR_SIZE

    def xDeviceCharacteristics(self) -> int:
        return 0

    def xClose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.on_close is not None:
            self.on_close()
        self.follower.stop()
        if self.hydration is not None:
            self.hydration.close()
        self._cache.clear()
        self.replica.close()
