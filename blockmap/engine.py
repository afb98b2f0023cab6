"""`Engine`: the volume's machinery, below paths: transactions, ID reservation, block I/O,
slice release and open-inode tracking.

Everything that changes a volume goes through one `Engine`: `Volume` (the path-level Python API),
the maintenance modules (clone, compaction, fsck, gc, trash) and the FUSE mount (inode-level) all
call these methods, so the ordering rules live in one place:

- blocks are uploaded before the transaction that names them, and deleted only after the commit
  that stopped naming them is in the store (`release_slices` flushes group commit first);
- IDs come from batches whose reservation is in the store before any ID of them is used;
- the data of a file unlinked while it is open here is released at its last close.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import apsw

from blockmap import namespace as ns
from blockmap.accounting import Accounting
from blockmap.blockcache import BlockCache
from blockmap.blocks import BlockStore, SliceWriter
from blockmap.compaction import compact_chunk
from blockmap.counters import TOTAL_INODES, USED_SPACE, IdAllocator, get_counter, incr_counter
from blockmap.errors import CommitOutcomeUnknownError, fs_error
from blockmap.files import (
    WritePiece,
    commit_write,
    fallocate,
    iter_pieces,
    iter_range,
    plan_read,
    truncate_open,
    unlinked_length,
)
from blockmap.meta import MetaDB, as_bytes, as_int
from blockmap.node import TYPE_DIRECTORY, TYPE_FILE, TYPE_SYMLINK, Attr, Node, get_node
from blockmap.release import forget_slices, release_file_data, release_slices
from blockmap.settings import VolumeSettings
from blockmap.slices import CHUNK_SIZE, SliceRecord, chunk_span
from ltx.rwlock import ReadWriteLock
from ltx.store.base import ObjectStore

T = TypeVar("T")

log = logging.getLogger(__name__)

#: A chunk with this many records is compacted after a write (JuiceFS compacts near 100 too).
AUTO_COMPACT_RECORDS = 100
#: Entries fetched per transaction while listing a directory.
READDIR_BATCH = 1000
#: Bytes read from a stream at a time by `upload_stream`.
STREAM_READ = 4 << 20
#: Default umask for new inodes.
DEFAULT_UMASK = 0o022


@dataclass(frozen=True)
class DirEntry:
    """One directory entry from `readdir`."""

    name: str
    inode: int
    type: int
    attr: Attr | None = None

    def is_dir(self) -> bool:
        return self.type == TYPE_DIRECTORY

    def is_file(self) -> bool:
        return self.type == TYPE_FILE

    def is_symlink(self) -> bool:
        return self.type == TYPE_SYMLINK


class Engine:
    """One volume's metadata database and block store, and the rules that bind them."""

    def __init__(
        self,
        db: MetaDB,
        settings: VolumeSettings,
        store: ObjectStore,
        *,
        uid: int | None = None,
        gid: int | None = None,
        umask: int = DEFAULT_UMASK,
        auto_compact: bool = True,
        read_only: bool = False,
        owns_store: bool = True,
        block_cache: BlockCache | None = None,
        upload_budget: int | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.store = store
        self.umask = umask
        self.auto_compact = auto_compact
        self.read_only = read_only
        self.owns_store = owns_store
        self.blocks = BlockStore(store, settings.name, settings.block_size, settings.hash_prefix, cache=block_cache,
                                 upload_budget=upload_budget)
        #: Blocks are put without a sync of their own when the metadata is on an ltxvfs replica:
        #: the store's `sync_unsynced` runs before every commit the writer ships (vfs.shipbarrier),
        #: so a block is durable before any shipped commit names it, in one batch per ship. With
        #: an upload budget (the mount's), a slice's last block is also written back: stored in
        #: the background (a local directory's put too: under load a small file's close waited
        #: ~1 ms on ext4 for it), and the same barrier first waits for every one (blockmap.staging).
        self._barrier: Callable[[], None] | None = None
        if not read_only and db.on_replica:
            from vfs import shipbarrier

            if upload_budget:
                self.blocks.write_back()
            self._barrier = self._blocks_durable
            shipbarrier.add(self._barrier)
            self.blocks.defer_sync = True
        self.ids = IdAllocator(self.reserve)
        db.on_lost = self.ids.reset
        #: Reads hold it shared while they fetch blocks; deleting a slice's blocks takes it
        #: exclusively, so a read in this process never loses a block it has just looked up.
        self.block_gate = ReadWriteLock()
        self.ctx = ns.OpContext(
            uid=os.getuid() if uid is None else uid,
            gid=os.getgid() if gid is None else gid,
            acct=Accounting(settings.dir_stats, settings.capacity, settings.inodes),
            trash_days=settings.trash_days,
        )
        self.closed = False
        self._lock = threading.Lock()
        self._open_counts: dict[int, int] = {}
        #: Unlinked while open here: their data is released at the last close.
        self._deferred: set[int] = set()
        #: Released slices whose blocks are gone and whose rows go in the next write transaction.
        self._forget: set[int] = set()
        #: What `finish_later` queued, and the thread that frees it in batches (started on first use).
        self._later: list[ns.Released] = []
        self._later_cond = threading.Condition()
        self._releaser: threading.Thread | None = None
        self._releasing = False

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the rows of released slices, ship what group commit holds, close. A failure is
        raised after everything is closed."""
        if self.closed:
            return
        self.drain_releases()
        self.closed = True
        try:
            try:
                with self._lock:
                    forget = sorted(self._forget)
                if forget and not self.read_only:
                    self.db.write(functools.partial(forget_slices, ids=forget))
            finally:
                self.db.close()
        finally:
            if self._barrier is not None:
                from vfs import shipbarrier

                shipbarrier.remove(self._barrier)
            self.blocks.close()
            if self.owns_store:
                self.store.close()

    def _blocks_durable(self) -> None:
        """The ship barrier: every block written so far is uploaded and synced."""
        self.blocks.settle()
        self.store.sync_unsynced()

    def flush(self) -> None:
        """Group commit: ship the metadata transactions committed so far and wait for the store."""
        if not self.read_only and not self.closed:
            self.db.flush()

    # -- transactions ----------------------------------------------------------------------
    def check_writable(self) -> None:
        if self.closed:
            raise ValueError("volume is closed")
        if self.read_only:
            raise fs_error(errno.EROFS)

    def write(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` as one write transaction; the `chunk_ref` rows of slices released earlier
        (blocks already deleted) are dropped in the same transaction, not in one of their own."""
        self.check_writable()
        with self._lock:
            forget = sorted(self._forget)
        if not forget:
            return self.db.write(fn)

        def body(c: apsw.Cursor) -> T:
            forget_slices(c, forget)
            return fn(c)

        result = self.db.write(body)
        with self._lock:
            self._forget.difference_update(forget)
        return result

    def write_new(self, inode: int, fn: Callable[[apsw.Cursor], Node]) -> Node:
        """`write` of an operation that creates `inode`; when it fails with an OS error (the
        entry exists...), or finds an existing node instead, the unused number goes back."""
        try:
            node = self.write(fn)
        except OSError:
            self.ids.give_back_inode(inode)
            raise
        if node.inode != inode:
            self.ids.give_back_inode(inode)
        return node

    def read(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` inside one read transaction (one consistent state)."""
        if self.closed:
            raise ValueError("volume is closed")
        return self.db.read(fn)

    def reserve(self, counter: str, batch: int) -> int:
        """Reserve a batch of IDs; it is in the store before any ID of it is used (group commit
        flushes), so no other writer can ever reserve the same range."""
        value = self.write(lambda cur: incr_counter(cur, counter, batch))
        self.db.flush()
        return value

    # -- open inodes -----------------------------------------------------------------------
    def file_opened(self, inode: int) -> None:
        with self._lock:
            self._open_counts[inode] = self._open_counts.get(inode, 0) + 1
            self.ctx.open_inodes.add(inode)

    def releases_at_close(self, inode: int) -> bool:
        """Whether closing `inode` now would release its data (its last handle here, and it was
        unlinked meanwhile): that close deletes blocks; any other only counts."""
        with self._lock:
            return inode in self._deferred and self._open_counts.get(inode, 1) <= 1

    def file_closed(self, inode: int) -> None:
        """The last close of an inode unlinked meanwhile releases its data."""
        with self._lock:
            left = self._open_counts.get(inode, 1) - 1
            if left > 0:
                self._open_counts[inode] = left
                return
            self._open_counts.pop(inode, None)
            self.ctx.open_inodes.discard(inode)
            deferred = inode in self._deferred
            self._deferred.discard(inode)
        if self.closed or not deferred:
            return
        pending = self.read(
            lambda c: c.execute("SELECT 1 FROM jfs_delfile WHERE inode = ?", (inode,)).fetchone()
        )
        if pending:
            self.finish(ns.Released(pending_files=[inode]))

    # -- releasing space -------------------------------------------------------------------
    def finish(self, released: ns.Released) -> None:
        """Release what an operation freed: pending file data (unless open here: then at its
        last close), then slices."""
        for inode in released.pending_files:
            with self._lock:
                if inode in self.ctx.open_inodes:
                    self._deferred.add(inode)
                    continue
            released.slices |= release_file_data(self.db, inode).slices
        if released.slices:
            self.release_slices(released.slices)

    def finish_later(self, released: ns.Released) -> None:
        """`finish` in the background (the mount's unlink and rename): the caller returns at once,
        and what deletes free meanwhile is released in one batch: one metadata flush before the
        batch's blocks go, not one per delete. Until then it is what a crash would leave anyway
        (`jfs_delfile` rows, slices at refs <= 0), which the next release or `gc` finishes."""
        if not released.pending_files and not released.slices:
            return
        with self._later_cond:
            self._later.append(released)
            if self._releaser is None:
                self._releaser = threading.Thread(target=self._release_loop, name="blockmap-release", daemon=True)
                self._releaser.start()
            self._later_cond.notify_all()

    def drain_releases(self) -> None:
        """Wait until everything `finish_later` queued is released (errors were logged)."""
        with self._later_cond:
            while self._later or self._releasing:
                self._later_cond.wait()

    def _release_loop(self) -> None:
        while True:
            with self._later_cond:
                while not self._later:
                    self._later_cond.wait()
                batch, self._later = self._later, []
                self._releasing = True
            merged = ns.Released()
            for r in batch:
                merged.merge(r)
            try:
                self.finish(merged)
            except Exception as exc:  # noqa: BLE001 - a background step: gc finishes what is left
                log.error("releasing deleted data failed (gc finishes it): %s", exc)
            finally:
                with self._later_cond:
                    self._releasing = False
                    self._later_cond.notify_all()

    def release_slices(self, slices: set[tuple[int, int]] | list[tuple[int, int]], *, defer: bool = True) -> int:
        """Delete the blocks of those `slices` whose refs are <= 0, then their rows (in the next
        write transaction when `defer`)."""
        if not slices:
            return 0
        self.db.flush()  # the commit that dropped the refs is in the store before any block goes
        # A fence, not a hold: once every read that started before that commit (it holds the
        # gate shared from its plan to its last block) has ended, no read can plan these slices
        # any more, so the deletes need not keep reads waiting (on S3, 20 ms each).
        with self.block_gate.write():
            pass
        return release_slices(self.db, self.blocks, slices, self._defer_forget if defer else None)

    def _defer_forget(self, ids: list[int]) -> None:
        with self._lock:
            self._forget.update(ids)

    def discard_slice(self, slice_id: int, size: int) -> None:
        """Best effort: delete the blocks of a slice no commit names (gc finds what is left)."""
        try:
            with self.block_gate.write():
                self.blocks.delete_slice(slice_id, size)
        except Exception:  # noqa: BLE001 - best effort: gc finds leftovers
            pass

    # -- file data -------------------------------------------------------------------------
    def node(self, inode: int, path: str = "") -> Node:
        """The inode's row (ENOENT when it is gone)."""
        node = self.read(lambda c: get_node(c, inode))
        if node is None:
            raise fs_error(errno.ENOENT, path) if path else fs_error(errno.ENOENT)
        return node

    def stat_inode(self, inode: int, path: str = "") -> Attr:
        return Attr.of(self.node(inode, path))

    def length(self, inode: int) -> int:
        return self.node(inode).length

    def read_data(self, inode: int, offset: int, size: int, path: str = "") -> bytes:
        """Up to `size` bytes of file `inode` from `offset` (fewer at its end)."""
        with self.block_gate.read():
            plan = self.read(lambda c: plan_read(c, inode, offset, size, path))
            return b"".join(iter_range(self.blocks, plan, offset, size))

    def read_cached(self, inode: int, offset: int, size: int) -> tuple[bytes, int] | None:
        """`read_data` and the file's length, when every block it needs is in the memory cache and
        no block is being deleted (nothing to wait for); else None."""
        if self.blocks.cache is None or not self.block_gate.acquire_read(timeout=0):
            return None
        try:
            plan = self.read(lambda c: plan_read(c, inode, offset, size, ""))
            out = []
            for sid, ssize, soff, n in iter_pieces(plan, offset, size):
                got = self.blocks.read_cached(sid, ssize, soff, n) if sid else bytes(n)
                if got is None:
                    return None
                out.append(got)
            return b"".join(out), plan.length
        finally:
            self.block_gate.release_read()

    def prefetch(self, inode: int, offset: int, size: int) -> None:
        """Start fetching the blocks of [offset, offset+size) of file `inode` into the block
        cache (read-ahead); nothing without a cache."""
        if self.blocks.cache is None or size <= 0:
            return
        plan = self.read(lambda c: plan_read(c, inode, offset, size, ""))
        for sid, ssize, soff, n in iter_pieces(plan, offset, size):
            if sid:
                self.blocks.prefetch(sid, ssize, soff, n)

    def truncate_inode(self, inode: int, length: int, path: str = "") -> Node | None:
        """Set file `inode`'s length; a file unlinked while open here is cut too (None: no node)."""
        node, released = self.write(lambda c: truncate_open(c, self.ctx, inode, length, path))
        self.finish(released)
        return node

    def fallocate_inode(self, inode: int, mode: int, offset: int, size: int, path: str = "") -> Node:
        """fallocate(2) on file `inode` (blockmap.files.fallocate: grow, punch a hole, zero a range)."""
        return self.write(lambda c: fallocate(c, self.ctx, inode, mode, offset, size, path))

    def unlinked_length(self, inode: int) -> int | None:
        """The length of file `inode` if it was unlinked while open here (its data lives on until
        the last close), else None."""
        return self.read(lambda c: unlinked_length(c, inode))

    def writer(self) -> SliceWriter:
        """A new slice (fresh ID) whose blocks upload as they fill."""
        return self.blocks.writer(self.ids.next_slice_id())

    def commit_write(self, inode: int, pieces: list[WritePiece], path: str = "", *,
                     mtime_ns: int | None = None, compact: bool = True) -> list[int]:
        """Record uploaded `pieces` in file `inode` (one transaction; mtime `mtime_ns`, the time of
        the last write, or now); on failure their blocks go back, unless the commit's outcome is
        unknown. Busy chunks are compacted afterwards; with `compact` False their indexes are
        returned instead, for the caller to compact where waiting on the store is fine."""
        try:
            counts = self.write(lambda c: commit_write(c, self.ctx, inode, pieces, path, mtime_ns))
        except CommitOutcomeUnknownError:
            raise  # the commit may be in the store: its blocks stay (gc finds them if it is not)
        except BaseException:
            for p in pieces:  # nothing refers to the new slices: take their blocks back
                self.discard_slice(p.record.id, p.record.size)
            raise
        due = [indx for indx, n in counts.items() if n >= AUTO_COMPACT_RECORDS] if self.auto_compact else []
        if not compact:
            return due
        for indx in due:
            self.compact_chunk(inode, indx)
        return []

    def compact_chunk(self, inode: int, indx: int) -> bool:
        """Merge a chunk's records into one new slice (see blockmap.compaction)."""
        return compact_chunk(self, inode, indx)

    def upload(self, data: bytes | bytearray | memoryview | BinaryIO) -> list[WritePiece]:
        """Upload bytes or a stream (from file offset 0) as new slices, one per chunk, before any
        metadata refers to them; on failure what was uploaded goes back."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._upload_view(memoryview(data).cast("B"))
        return self._upload_stream(data)

    def _upload_stream(self, stream: BinaryIO) -> list[WritePiece]:
        pieces: list[WritePiece] = []
        writer: SliceWriter | None = None
        try:
            for indx in itertools.count():
                writer = self.writer()
                n = 0
                while n < CHUNK_SIZE:
                    buf = stream.read(min(STREAM_READ, CHUNK_SIZE - n))
                    if not buf:
                        break
                    writer.write(buf)
                    n += len(buf)
                size = writer.finish()
                if size:
                    pieces.append(WritePiece(indx, SliceRecord(0, writer.slice_id, size, 0, size)))
                writer = None
                if n < CHUNK_SIZE:
                    return pieces
        except BaseException:
            if writer is not None:  # the slice that failed half way
                writer.abort()
                self.discard_slice(writer.slice_id, writer.size)
            self.discard_pieces(pieces)
            raise
        raise AssertionError("unreachable")

    def _upload_view(self, view: memoryview) -> list[WritePiece]:
        pieces: list[WritePiece] = []
        try:
            for indx, coff, n in chunk_span(0, len(view)):
                start = indx * CHUNK_SIZE + coff
                sid = self.ids.next_slice_id()
                pieces.append(WritePiece(indx, SliceRecord(coff, sid, n, 0, n)))
                self.blocks.upload(sid, view[start : start + n])
        except BaseException:
            self.discard_pieces(pieces)  # including the one that failed half way
            raise
        return pieces

    def discard_pieces(self, pieces: list[WritePiece]) -> None:
        for p in pieces:
            self.discard_slice(p.record.id, p.record.size)

    def commit_contents(
        self, inode: int, pieces: list[WritePiece], body: Callable[[apsw.Cursor], tuple[Node, ns.Released]]
    ) -> Node:
        """Run the transaction that records uploaded `pieces` (in a file made with `inode` if
        needed); on failure the blocks go back, unless the commit's outcome is unknown."""
        try:
            node, released = self.write(body)
        except CommitOutcomeUnknownError:
            raise  # the commit may be in the store: its blocks stay (gc finds them if it is not)
        except BaseException as exc:
            self.discard_pieces(pieces)
            if isinstance(exc, OSError):  # refused inside the transaction: the inode was not used
                self.ids.give_back_inode(inode)
            raise
        if node.inode != inode:
            self.ids.give_back_inode(inode)
        self.finish(released)
        return node

    def usage(self) -> tuple[int, int]:
        """(bytes charged, inodes in use): the volume counters."""
        return self.read(lambda c: (get_counter(c, USED_SPACE), get_counter(c, TOTAL_INODES)))

    # -- directories -------------------------------------------------------------------------
    def readdir(self, inode: int, after: bytes = b"", *, with_attrs: bool = False,
                limit: int | None = None) -> list[DirEntry]:
        """Up to `limit` (READDIR_BATCH) entries of directory `inode` named after `after`, in name
        order (one read transaction)."""
        limit = READDIR_BATCH if limit is None else limit

        def body(c: apsw.Cursor) -> list[DirEntry]:
            rows = c.execute(
                "SELECT name, inode, type FROM jfs_edge WHERE parent = ? AND name > ? ORDER BY name LIMIT ?",
                (inode, after, limit),
            ).fetchall()
            out = []
            for name, ino, typ in rows:
                attr = None
                if with_attrs:
                    node = get_node(c, as_int(ino))
                    attr = Attr.of(node) if node is not None else None
                out.append(DirEntry(os.fsdecode(as_bytes(name)), as_int(ino), as_int(typ), attr))
            return out

        return self.read(body)

    def iter_dir(self, inode: int, *, with_attrs: bool = False) -> Iterator[DirEntry]:
        """Every entry of directory `inode` in name order, READDIR_BATCH per read transaction."""
        after = b""
        while True:
            batch = self.readdir(inode, after, with_attrs=with_attrs)
            yield from batch
            if len(batch) < READDIR_BATCH:
                return
            after = os.fsencode(batch[-1].name)
