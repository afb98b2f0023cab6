"""Streaming LTX encoder: a header, then pages one at a time, then the index and trailer.

Memory is bounded by one page plus the compact page index (a few bytes per page).
"""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO

import lz4.block

from ltx.checksum import crc64_update, file_checksum
from ltx.errors import LTXEncodeError
from ltx.frame import END_OF_PAGES, PAGE_FLAG_SIZE
from ltx.header import Header
from ltx.index import PageIndex
from ltx.pagesums import FrameSpans, PageSums, frame_check, page_sum
from ltx.trailer import Trailer

_PREFIX = struct.Struct(">IHI")
_U64 = struct.Struct(">Q")


class Encoder:
    """Write one LTX file to `out`. Call `write_page` in page order, then `close`."""

    def __init__(self, out: BinaryIO, header: Header, name: str = "", with_sums: bool = False) -> None:
        """`with_sums`: also keep each page's checksum for a sidecar (`page_sums` after close)."""
        header.validate(name)
        self.header = header
        self.name = name
        self._out = out
        self._index = PageIndex()
        self._prev = 0
        self._lock = header.lock_pgno
        self._trailer: Trailer | None = None
        self._sums: array[int] | None = array("I") if with_sums else None
        #: With sums: each frame's stored-bytes CRC-32, for the sidecar's spans.
        self._frame_checks = array("I")
        raw = header.encode()
        out.write(raw)
        self._crc = crc64_update(0, raw)
        self.n = len(raw)

    @property
    def page_count(self) -> int:
        return len(self._index)

    def write_page(self, pgno: int, page: bytes | bytearray | memoryview) -> None:
        """Compress and append one page; page numbers must follow the format's order rules."""
        if self._trailer is not None:
            raise LTXEncodeError(f"{self.name}: encoder is closed")
        hdr = self.header
        if len(page) != hdr.page_size:
            raise LTXEncodeError(f"{self.name}: page {pgno} has {len(page)} bytes, page size is {hdr.page_size}")
        if pgno <= 0 or pgno > hdr.commit:
            raise LTXEncodeError(f"{self.name}: page {pgno} out of range for commit {hdr.commit}")
        if pgno == self._lock:
            raise LTXEncodeError(f"{self.name}: page {pgno} is the lock page")
        if hdr.is_snapshot:
            want = self._prev + 1 if self._prev + 1 != self._lock else self._prev + 2
            if pgno != want:
                raise LTXEncodeError(f"{self.name}: snapshot page {pgno} where {want} was due")
        elif pgno <= self._prev:
            raise LTXEncodeError(f"{self.name}: page {pgno} after page {self._prev}")
        block = lz4.block.compress(page, store_size=False)
        prefix = _PREFIX.pack(pgno, PAGE_FLAG_SIZE, len(block))
        out = self._out
        out.write(prefix)
        out.write(block)
        self._crc = crc64_update(crc64_update(self._crc, prefix), page)
        if self._sums is not None:
            self._sums.append(page_sum(pgno, page))
            self._frame_checks.append(frame_check(block, frame_check(prefix)))
        size = len(prefix) + len(block)
        self._index.append(pgno, self.n, size)
        self.n += size
        self._prev = pgno

    def close(self, post_apply_checksum: int = 0) -> Trailer:
        """Finish the file: end marker, page index, trailer. Returns the trailer."""
        if self._trailer is not None:
            return self._trailer
        hdr = self.header
        if hdr.is_snapshot:
            last = hdr.commit - 1 if hdr.commit == self._lock else hdr.commit
            if self._prev != last:
                raise LTXEncodeError(f"{self.name}: snapshot ends at page {self._prev}, commit is {hdr.commit}")
        tail = END_OF_PAGES + self._index.encode()
        post = _U64.pack(post_apply_checksum)
        crc = crc64_update(crc64_update(self._crc, tail), post)
        trailer = Trailer(post_apply_checksum, file_checksum(crc))
        trailer.validate(hdr, self.name)
        self._out.write(tail)
        self._out.write(trailer.encode())
        self.n += len(tail) + 16
        self._trailer = trailer
        return trailer

    @property
    def index(self) -> PageIndex:
        return self._index

    @property
    def page_sums(self) -> PageSums:
        """The sidecar of the closed file (the encoder must have been made `with_sums`)."""
        if self._sums is None or self._trailer is None:
            raise LTXEncodeError(f"{self.name}: page checksums need with_sums=True and a closed encoder")
        hdr = self.header
        index = self._index
        spans = FrameSpans.build(index.pgnos, index.sizes, self._frame_checks)
        return PageSums(hdr.page_size, hdr.min_txid, hdr.max_txid, self._trailer.file_checksum, self._sums,
                        file_size=self.n, timestamp=hdr.timestamp, spans=spans)
