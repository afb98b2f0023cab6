"""`File`: an open file of a volume, with buffered sequential writes.

Contiguous writes accumulate in one new slice whose blocks upload as they fill; the slice is
recorded in the metadata (one transaction) when its chunk is full, on a non-contiguous write, and
on `flush`, `read`, `truncate` or `close`. Memory stays near one block per upload in flight.
"""

from __future__ import annotations

import errno
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from blockmap.blocks import SliceWriter
from blockmap.errors import fs_error
from blockmap.files import WritePiece
from blockmap.node import Attr
from blockmap.slices import CHUNK_SIZE, MAX_FILE_SIZE, SliceRecord

if TYPE_CHECKING:
    from blockmap.engine import Engine

#: Read size used by `copy_from` and `__iter__`.
COPY_BUFFER = 4 << 20


@dataclass
class _OpenSlice:
    """The slice being written: it will sit at chunk `indx`, offset `pos`."""

    indx: int
    pos: int
    writer: SliceWriter
    length: int = 0
    #: When the last write into it happened: the file's mtime once it is recorded (as JuiceFS).
    mtime_ns: int = 0

    @property
    def file_end(self) -> int:
        return self.indx * CHUNK_SIZE + self.pos + self.length


class File:
    """An open file: `read`/`write` at a position, `pread`/`pwrite` at an offset, like os-level I/O."""

    def __init__(
        self, engine: Engine, inode: int, path: str, *, readable: bool, writable: bool, append: bool
    ) -> None:
        self.engine = engine
        self.inode = inode
        self.path = path
        self.readable = readable
        self.writable = writable
        self.append = append
        self._pos = 0
        self._open: _OpenSlice | None = None
        self.closed = False
        engine.file_opened(inode)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, want_write: bool = False, want_read: bool = False) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on closed file {self.path}")
        if want_write and not self.writable:
            raise fs_error(errno.EBADF, self.path)
        if want_read and not self.readable:
            raise fs_error(errno.EBADF, self.path)

    # -- writing -----------------------------------------------------------------------------
    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> int:
        """Write `data` at `offset`; returns the number of bytes written."""
        self._check(want_write=True)
        if offset < 0:
            raise fs_error(errno.EINVAL, self.path)
        view = memoryview(data).cast("B")
        if offset + len(view) >= MAX_FILE_SIZE:
            raise fs_error(errno.EFBIG, self.path)
        total = len(view)
        off = offset
        while view:
            indx, coff = divmod(off, CHUNK_SIZE)
            cur = self._open
            if cur is not None and (cur.indx != indx or cur.pos + cur.length != coff):
                self._commit()
                cur = None
            if cur is None:
                cur = self._open = _OpenSlice(indx, coff, self.engine.writer())
            n = min(len(view), CHUNK_SIZE - coff)
            try:
                cur.writer.write(view[:n])
            except BaseException:
                self._abandon()
                raise
            cur.length += n
            cur.mtime_ns = time.time_ns()
            view = view[n:]
            off += n
            if coff + n == CHUNK_SIZE:
                self._commit()
        return total

    def buffers(self, offset: int, size: int) -> bool:
        """Whether `pwrite` of `size` bytes at `offset` would only copy them into the write buffer:
        no block fills (no upload starts or is waited for), no slice is recorded, no slice ID is
        reserved. A caller that must not block (the mount's event loop) writes itself then."""
        if self.closed or not self.writable or offset < 0 or size <= 0:
            return False
        indx, coff = divmod(offset, CHUNK_SIZE)
        if coff + size >= CHUNK_SIZE:
            return False
        cur = self._open
        if cur is None:
            return size < self.engine.blocks.block_size and self.engine.ids.slice_ids_left() > 0
        return cur.indx == indx and cur.pos + cur.length == coff and size < cur.writer.room

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write at the current position (at the end in append mode) and advance."""
        self._check(want_write=True)
        if self.append:
            self._pos = self._open.file_end if self._open is not None else self.engine.length(self.inode)
        n = self.pwrite(data, self._pos)
        self._pos += n
        return n

    def copy_from(self, stream: BinaryIO, buffer_size: int = COPY_BUFFER) -> int:
        """Write everything `stream` yields at the current position; returns the bytes copied."""
        total = 0
        while True:
            buf = stream.read(buffer_size)
            if not buf:
                break
            total += self.write(buf)
        return total

    def _commit(self, compact: bool = True) -> list[int]:
        cur, self._open = self._open, None
        if cur is None:
            return []
        try:
            size = cur.writer.finish()
        except BaseException:
            cur.writer.abort()
            self.engine.discard_slice(cur.writer.slice_id, cur.writer.size)
            raise
        if size == 0:
            return []
        piece = WritePiece(cur.indx, SliceRecord(cur.pos, cur.writer.slice_id, size, 0, size))
        return self.engine.commit_write(self.inode, [piece], self.path, mtime_ns=cur.mtime_ns or None,
                                        compact=compact)

    def _abandon(self) -> None:
        cur, self._open = self._open, None
        if cur is not None:
            cur.writer.abort()
            self.engine.discard_slice(cur.writer.slice_id, cur.writer.size)

    @property
    def buffered(self) -> bool:
        """Whether writes wait in the buffer (a `flush` would record them)."""
        return self._open is not None

    @property
    def pending_end(self) -> int:
        """The file offset where buffered (not yet recorded) writes end; 0 with none."""
        return self._open.file_end if self._open is not None else 0

    @property
    def pending_mtime_ns(self) -> int:
        """When the last buffered (not yet recorded) write happened; 0 with none."""
        return self._open.mtime_ns if self._open is not None else 0

    def flush(self) -> None:
        """Record buffered writes in the metadata (one transaction)."""
        if not self.closed:
            self._commit()

    fsync = flush

    @property
    def flushes_at_once(self) -> bool:
        """Whether `flush` would not wait for the store before its transaction: nothing is
        buffered, or write-back takes the buffered block (see SliceWriter.finishes_at_once)."""
        return self._open is None or self._open.writer.finishes_at_once

    def flush_uncompacted(self) -> list[int]:
        """`flush`, leaving chunk compaction (a store read and upload) to the caller: returns
        the indexes of the chunks due for it (Engine.compact_chunk)."""
        return [] if self.closed else self._commit(compact=False)

    # -- reading -----------------------------------------------------------------------------
    def pread(self, size: int, offset: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer at the end of the file)."""
        self._check(want_read=True)
        if offset < 0:
            raise fs_error(errno.EINVAL, self.path)
        self._commit()
        return self.engine.read_data(self.inode, offset, size, self.path)

    def read(self, size: int = -1) -> bytes:
        """Read from the current position and advance (everything to the end when `size` < 0)."""
        self._check(want_read=True)
        self._commit()
        data = self.engine.read_data(self.inode, self._pos, size, self.path)
        self._pos += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        """The rest of the file in pieces of at most COPY_BUFFER bytes."""
        while True:
            data = self.read(COPY_BUFFER)
            if not data:
                return
            yield data

    def copy_to(self, stream: BinaryIO) -> int:
        """Write the rest of the file into `stream`; returns the bytes copied."""
        total = 0
        for piece in self:
            stream.write(piece)
            total += len(piece)
        return total

    # -- position, size, attributes --------------------------------------------------------
    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            self._commit()
            pos = self.engine.length(self.inode) + offset
        else:
            raise fs_error(errno.EINVAL, self.path)
        if pos < 0:
            raise fs_error(errno.EINVAL, self.path)
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._check(want_write=True)
        self._commit()
        length = self._pos if size is None else size
        self.engine.truncate_inode(self.inode, length, self.path)
        return length

    def stat(self) -> Attr:
        self._check()
        self._commit()
        return self.engine.stat_inode(self.inode, self.path)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a volume file has no OS file descriptor")

    def close(self) -> None:
        """Commit buffered writes and release the file (and its data, if it was unlinked meanwhile)."""
        if self.closed:
            return
        try:
            self._commit()
        finally:
            self.closed = True
            self.engine.file_closed(self.inode)

    def __repr__(self) -> str:
        return f"<blockmap.File {self.path!r} inode={self.inode} pos={self._pos}>"


def parse_mode(mode: str) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(readable, writable, append, create, truncate, exclusive) for an `open()` mode string."""
    m = mode.replace("b", "").replace("t", "")
    if not m or m[0] not in "rwax" or any(c not in "rwax+" for c in m) or len(set(m)) != len(m):
        raise ValueError(f"invalid mode: {mode!r}")
    plus = "+" in m
    kind = m[0]
    return (
        kind == "r" or plus,
        kind != "r" or plus,
        kind == "a",
        kind in "wax",
        kind == "w",
        kind == "x",
    )


__all__ = ["File", "parse_mode"]
