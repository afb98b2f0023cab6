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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from hydrator.index_check import FastIndexDecoder
from ltx.decoder import PGNO_TYPECODE, Readable
from ltx.errors import LTXHeaderError
from ltx.header import Header
from ltx.names import format_txid
from ltx.plan import LTXFileInfo

#: Decoded pages of one file stay in memory up to this many bytes, then spill to a temporary file.
DEFAULT_SPILL_MEMORY = 8 * 1024 * 1024
#: Adjacent pages written by one pwritev at most (well under IOV_MAX).
WRITE_BATCH_PAGES = 256
#: A large file being written has its writeback started every this many bytes (so the final fsync
#: has little left to do).
FLUSH_EVERY = 32 * 1024 * 1024
#: Linux sync_file_range(2) flag: start writeback of dirty pages, do not wait for it.
SYNC_FILE_RANGE_WRITE = 2
#: Page batches (one per decoder read, at most ltx.decoder.BATCH_BYTES of pages) waiting for the writer.
WRITE_QUEUE_DEPTH = 4
#: Pages read back from a spill per step when applying it.
APPLY_READ_PAGES = 256


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


def start_writeback(fd: int) -> None:
    """Start writing `fd`'s dirty pages to disk without waiting for them (Linux sync_file_range),
    so the writer goes on while the kernel writes; elsewhere fdatasync (which waits). Durability
    still comes only from the caller's fsync."""
    if _sync_file_range is not None and _sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0:
        return
    os.fdatasync(fd)


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


def write_pages(fd: int, page_size: int, pgnos: Sequence[int], pages: Sequence[bytes | memoryview]) -> None:
    """Write pages at their offsets, each run of consecutive page numbers in one pwritev."""
    n = len(pgnos)
    i = 0
    while i < n:
        j = i + 1
        while j < n and j - i < WRITE_BATCH_PAGES and pgnos[j] == pgnos[j - 1] + 1:
            j += 1
        offset = (pgnos[i] - 1) * page_size
        want = (j - i) * page_size
        done = os.pwritev(fd, pages[i:j], offset)
        if done != want:  # a short write: finish it from a joined buffer
            rest = memoryview(b"".join(pages[i:j]))[done:]
            while rest:
                rest = rest[os.pwrite(fd, rest, offset + want - len(rest)):]
        i = j


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
        """Write the pages into `fd`, then cut it to the commit; return the pages written."""
        ps = self.header.page_size
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
    dec = FastIndexDecoder(stream, name)
    check_header(dec.header, name, info, page_size)
    spill: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spill_memory, dir=spill_dir)
    all_pgnos: array[int] = array(PGNO_TYPECODE)
    try:
        for pgnos, pages in dec.batches():
            all_pgnos.extend(pgnos)
            spill.write(b"".join(pages))
    except BaseException:
        spill.close()
        raise
    assert dec.verified
    return VerifiedFile(name, dec.header, all_pgnos, spill, dec.n)


class AsyncPageWriter:
    """Writes page batches to `fd` from a helper thread (the writes release the GIL, so they overlap
    with decoding), starting writeback (start_writeback) every `flush_every` bytes so the final fsync of a
    large file has little left to do. At most `depth` batches wait, which bounds memory."""

    def __init__(self, fd: int, page_size: int, flush_every: int | None = None,
                 depth: int | None = None) -> None:
        self._fd = fd
        self._page_size = page_size
        self._flush_every = FLUSH_EVERY if flush_every is None else flush_every
        self._depth = WRITE_QUEUE_DEPTH if depth is None else depth
        self._unflushed = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hydrator-write")
        self._queued: deque[Future[None]] = deque()

    def _write(self, pgnos: array[int], pages: list[bytes]) -> None:
        write_pages(self._fd, self._page_size, pgnos, pages)
        self._unflushed += len(pages) * self._page_size
        if self._unflushed >= self._flush_every:
            self._unflushed = 0
            start_writeback(self._fd)

    def submit(self, pgnos: array[int], pages: list[bytes]) -> None:
        while len(self._queued) >= self._depth or (self._queued and self._queued[0].done()):
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._write, pgnos, pages))

    def finish(self, size: int | None = None, sync: bool = True) -> None:
        """Wait for every write; cut the file to `size` (if given) and fsync it (if `sync`)."""
        try:
            while self._queued:
                self._queued.popleft().result()
            if size is not None:
                os.ftruncate(self._fd, size)
            if sync:
                os.fsync(self._fd)
        finally:
            self.close()

    def close(self) -> None:
        for fut in self._queued:
            fut.cancel()
        self._queued.clear()
        self._pool.shutdown(wait=True)
