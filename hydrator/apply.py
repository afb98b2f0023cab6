"""Verify an LTX file in full, then apply its pages to the local database file.

A file is decoded once (`ltx.decoder`): its pages go to a spill (memory up to a limit, then a
temporary file) while frames, index, trailer and the file checksum are checked. Only a file that passed
every check is applied: each page written at `(pgno - 1) * page_size` (applying files in TXID
order makes the latest page win), then the file truncated to the file's commit. A snapshot that
starts a hydration is decoded straight into a fresh file (`hydrator.compose`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import tempfile
from array import array
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from ltx.dbheader import DB_HEADER_SIZE, check_commit
from ltx.decoder import PGNO_TYPECODE, Decoder, Readable
from ltx.errors import LTXHeaderError
from ltx.header import Header
from ltx.names import format_txid
from ltx.pageslots import PageSlots
from ltx.pagewrite import write_pages
from ltx.plan import LTXFileInfo

#: Decoded pages of one file stay in memory up to this many bytes, then spill to a temporary file.
DEFAULT_SPILL_MEMORY = 8 * 1024 * 1024
#: A large file being written has its writeback started every this many bytes (so the final fsync
#: has little left to do) ...
FLUSH_EVERY = 8 * 1024 * 1024
#: ... and, with drop-behind, each such range is dropped from the page cache once on disk: the
#: cache held by a hydration stays near (WRITEBACK_RANGES + 1) * FLUSH_EVERY whatever the database's
#: size, and its writes reuse the memory just freed (new memory can cost several times more to fill,
#: notably in a VM). Off by default: readers of a just-hydrated file would then read from disk (a
#: full scan of 96 MB took 0.22 s instead of 0.11 s in bench/bench_vfs_hydrate.py).
DROP_BEHIND = False
#: Ranges whose writeback runs while the writer goes on; the oldest is waited for (and dropped) when
#: one more starts, so the disk has this many ranges' time to write each.
WRITEBACK_RANGES = 4
#: Linux sync_file_range(2) flags: wait for writeback already under way, start writeback of dirty
#: pages, wait for that writeback.
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
#: Decoder batches (PageSlots of up to ltx.decoder.NATIVE_BATCH_BYTES) are handed to the writer
#: thread in groups of at least this many bytes: each handover costs the GIL changing hands.
WRITE_GROUP_BYTES = 2 * 1024 * 1024
#: Groups waiting for the writer at most.
WRITE_QUEUE_DEPTH = 4
#: Pages read back from a spill per step when applying it.
APPLY_READ_PAGES = 256


#: Why a file whose commit disagrees with page 1 is refused (ltx.dbheader.CommitSizeError).
HYDRATION_ADVICE = "a damaged or hostile header: hydration refuses it"


class HeaderMismatchError(LTXHeaderError):
    """A file's header disagrees with its name or with the database it is applied to."""


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range on Linux (None elsewhere or when missing)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Start writing `fd`'s dirty pages in [offset, offset + length) (length 0: to the end) to disk
    without waiting for them (Linux sync_file_range), so the writer goes on while the kernel
    writes; elsewhere fdatasync (which waits). Durability still comes only from the caller's fsync."""
    if _sync_file_range is not None and _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0:
        return
    os.fdatasync(fd)


def can_drop_behind() -> bool:
    """Whether this platform can wait for a range's writeback and drop it from the page cache."""
    return _sync_file_range is not None and hasattr(os, "posix_fadvise")


def drop_behind(fd: int, offset: int, length: int) -> None:
    """Wait until `fd`'s pages in [offset, offset + length) are on disk, then drop them from the page
    cache (the file's contents are unchanged; a later read fetches them from disk). A write error
    raises OSError. Only where `can_drop_behind()`."""
    assert _sync_file_range is not None
    flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
    if _sync_file_range(fd, offset, length, flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"writing back bytes {offset}-{offset + length}: {os.strerror(code)}")
    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes for the empty file `fd` up front (one extent allocation instead of one per
    write); a file system without fallocate just skips it."""
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


def check_header(header: Header, name: str, info: LTXFileInfo | None, page_size: int) -> None:
    """The header must carry the TXIDs of its name, and the page size of the database (if known)."""
    if info is not None and (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid):
        raise HeaderMismatchError(name, 16, f"header holds TXIDs {format_txid(header.min_txid)}-"
                                            f"{format_txid(header.max_txid)}, its name says "
                                            f"{format_txid(info.min_txid)}-{format_txid(info.max_txid)}")
    if page_size and header.page_size != page_size:
        raise HeaderMismatchError(name, 8, f"page size {header.page_size} differs from the local "
                                           f"database's {page_size}")


@dataclass
class VerifiedFile:
    """A fully verified LTX file's pages, waiting in a spill to be applied."""

    name: str
    header: Header
    pgnos: array[int]
    spill: IO[bytes]
    size: int

    @property
    def page_count(self) -> int:
        return len(self.pgnos)

    def apply(self, fd: int) -> int:
        """Write the pages into `fd`, then cut it to the commit; return the pages written. A file
        without page 1 keeps the local page 1, whose size must then agree with its commit
        (CommitSizeError before anything is written; one with page 1 was checked when verified)."""
        ps = self.header.page_size
        if not self.pgnos or self.pgnos[0] != 1:
            check_commit(self.name, self.header.commit, os.pread(fd, DB_HEADER_SIZE, 0), HYDRATION_ADVICE)
        self.spill.seek(0)
        for i in range(0, len(self.pgnos), APPLY_READ_PAGES):
            pgnos = self.pgnos[i:i + APPLY_READ_PAGES]
            block = self.spill.read(len(pgnos) * ps)
            if len(block) != len(pgnos) * ps:
                raise OSError(f"{self.name}: the spill file lost pages")
            view = memoryview(block)
            write_pages(fd, ps, pgnos, [view[k * ps:(k + 1) * ps] for k in range(len(pgnos))])
        os.ftruncate(fd, self.header.commit * ps)
        return len(self.pgnos)

    def close(self) -> None:
        self.spill.close()


def verify_to_spill(stream: Readable, name: str, *, info: LTXFileInfo | None = None, page_size: int = 0,
                    spill_dir: str | None = None, spill_memory: int = DEFAULT_SPILL_MEMORY) -> VerifiedFile:
    """Decode the whole of `stream` (every check, checksum included) into a spill; raise LTXError
    (naming `name`) when anything is wrong, in which case nothing is kept."""
    dec = Decoder(stream, name, fast_index=True)
    check_header(dec.header, name, info, page_size)
    spill: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spill_memory, dir=spill_dir)
    all_pgnos: array[int] = array(PGNO_TYPECODE)
    try:
        for slots in dec.slot_batches():
            if not all_pgnos and len(slots) and slots.pgnos[0] == 1:
                check_commit(name, dec.header.commit, slots.page(0), HYDRATION_ADVICE)
            all_pgnos.extend(slots.pgnos)
            spill.write(b"".join(slots.pages()))
    except BaseException:
        spill.close()
        raise
    assert dec.verified
    return VerifiedFile(name, dec.header, all_pgnos, spill, dec.n)


class AsyncPageWriter:
    """Writes page batches to `fd` from a helper thread (the writes release the GIL, so they overlap
    with decoding), handed over in groups of WRITE_GROUP_BYTES. Every `flush_every` bytes it starts
    writeback of what it wrote since (so the final fsync of a large file has little left to do)
    and, with `drop` (DROP_BEHIND, where the platform can), waits for the range started
    WRITEBACK_RANGES times before and drops it from the page cache. At most `depth` groups wait,
    which bounds memory. Writes are expected in ascending order (a snapshot); a page written below
    a range already flushed stays cached until the caller's fsync makes it durable like the rest."""

    def __init__(self, fd: int, page_size: int, flush_every: int | None = None,
                 depth: int | None = None, drop: bool | None = None) -> None:
        self._fd = fd
        self._page_size = page_size
        self._flush_every = FLUSH_EVERY if flush_every is None else flush_every
        self._depth = WRITE_QUEUE_DEPTH if depth is None else depth
        self._drop = (DROP_BEHIND if drop is None else drop) and can_drop_behind()
        self._end = 0  # end of the highest page written
        self._started = 0  # writeback was started up to here ...
        self._writing: deque[tuple[int, int]] = deque()  # ... for these ranges, not yet dropped
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hydrator-write")
        self._queued: deque[Future[None]] = deque()
        self._group: list[PageSlots] = []
        self._group_pages = 0

    def _write(self, group: list[PageSlots]) -> None:
        for slots in group:
            slots.write_to(self._fd)
        self._end = max(self._end, max(slots.pgnos[-1] for slots in group) * self._page_size)
        if self._end - self._started >= self._flush_every:
            if self._drop and len(self._writing) >= WRITEBACK_RANGES:
                drop_behind(self._fd, *self._writing.popleft())
            start_writeback(self._fd, self._started, self._end - self._started)
            if self._drop:
                self._writing.append((self._started, self._end - self._started))
            self._started = self._end

    def submit(self, slots: PageSlots) -> None:
        """Queue a batch of pages for writing (handed over once WRITE_GROUP_BYTES are gathered)."""
        self._group.append(slots)
        self._group_pages += len(slots)
        if self._group_pages * self._page_size >= WRITE_GROUP_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        while len(self._queued) >= self._depth or (self._queued and self._queued[0].done()):
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._write, self._group))
        self._group, self._group_pages = [], 0

    def finish(self, size: int | None = None, sync: bool = True) -> None:
        """Wait for every write; cut the file to `size` (if given) and fsync it (if `sync`)."""
        try:
            if self._group:
                self._hand_over()
            while self._queued:
                self._queued.popleft().result()
            if size is not None:
                os.ftruncate(self._fd, size)
            if sync:
                os.fsync(self._fd)
        finally:
            self.close()

    def close(self) -> None:
        self._group, self._group_pages = [], 0
        for fut in self._queued:
            fut.cancel()
        self._queued.clear()
        self._pool.shutdown(wait=True)
