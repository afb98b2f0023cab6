"""Streaming LTX decoder that validates everything the format lets it check.

Iterate `pages()` to get (pgno, page) in file order; when the end marker is reached the index,
trailer and file checksum are checked, so a caller that consumes every page has a verified file.
Memory is bounded by one page plus the index (whose size the decoder bounds by the pages read,
whatever the file claims).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from ltx.checksum import crc64_update, file_checksum
from ltx.errors import (
    LTXChecksumError,
    LTXIndexError,
    LTXLockPageError,
    LTXPageError,
    LTXPageOrderError,
    LTXTrailerError,
    LTXTruncatedError,
)
from ltx.frame import FRAME_PREFIX_SIZE, PAGE_HEADER_SIZE, PageHeader, decompress_page, lz4_bound
from ltx.header import HEADER_SIZE, Header
from ltx.index import INDEX_SIZE_FIELD, PageIndex, read_uvarint
from ltx.trailer import TRAILER_SIZE, Trailer

_SIZE = struct.Struct(">I")
_U64 = struct.Struct(">Q")
#: The most bytes one index entry can take: pgno (5) + offset (10) + size (5) varint bytes.
MAX_INDEX_ENTRY_SIZE = 20


class Decoder:
    """Decode one LTX file from a readable stream; `name` identifies it in errors."""

    def __init__(self, src: BinaryIO, name: str = "") -> None:
        self.name = name
        self._src = src
        self.n = 0
        raw = self._read(HEADER_SIZE, "header")
        self.header = Header.decode(raw, name)
        self.header.validate(name)
        self._crc = crc64_update(0, raw)
        self._frames = PageIndex()
        self.trailer: Trailer | None = None
        self.index: PageIndex | None = None
        self._started = False

    def _read(self, size: int, what: str) -> bytes:
        data = self._src.read(size)
        while len(data) < size:
            more = self._src.read(size - len(data))
            if not more:
                raise LTXTruncatedError(self.name, self.n + len(data),
                                        f"file ends inside the {what} ({len(data)} of {size} bytes)")
            data += more
        self.n += size
        return data

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Yield every (pgno, page); validates the index, trailer and checksum after the last."""
        if self._started:
            raise RuntimeError(f"{self.name}: pages() may be iterated once")
        self._started = True
        hdr = self.header
        name = self.name
        page_size = hdr.page_size
        lock = hdr.lock_pgno
        bound = lz4_bound(page_size)
        prev = 0
        while True:
            offset = self.n
            raw = self._read(PAGE_HEADER_SIZE, "page header")
            ph = PageHeader.decode(raw, name, offset)
            if ph.is_end:
                self._crc = crc64_update(self._crc, raw)
                break
            ph.validate(name, offset)
            pgno = ph.pgno
            if pgno == lock:
                raise LTXLockPageError(name, offset, f"lock page {pgno} is present")
            if pgno > hdr.commit:
                raise LTXPageError(name, offset, f"page {pgno} lies beyond the commit ({hdr.commit} pages)")
            if hdr.is_snapshot:
                want = prev + 1 if prev + 1 != lock else prev + 2
                if pgno != want:
                    raise LTXPageOrderError(name, offset, f"snapshot has page {pgno} where {want} was due")
            elif pgno <= prev:
                raise LTXPageOrderError(name, offset, f"page {pgno} follows page {prev}")
            size_raw = self._read(4, f"size field of page {pgno}")
            (size,) = _SIZE.unpack(size_raw)
            if size > bound:
                raise LTXPageError(name, offset, f"page {pgno}: compressed size {size} exceeds the LZ4 bound "
                                                 f"{bound} for {page_size}-byte pages")
            block = self._read(size, f"LZ4 block of page {pgno}")
            page = decompress_page(block, page_size, name, offset, pgno)
            self._crc = crc64_update(crc64_update(crc64_update(self._crc, raw), size_raw), page)
            self._frames.append(pgno, offset, FRAME_PREFIX_SIZE + size)
            prev = pgno
            yield pgno, page
        if hdr.is_snapshot:
            last = hdr.commit - 1 if hdr.commit == lock else hdr.commit
            if prev != last:
                raise LTXPageOrderError(name, self.n, f"snapshot ends at page {prev}, commit is {hdr.commit}")
        self._finish_tail()

    def _finish_tail(self) -> None:
        name = self.name
        index_start = self.n
        limit = len(self._frames) * MAX_INDEX_ENTRY_SIZE + 1 + INDEX_SIZE_FIELD + TRAILER_SIZE
        tail = self._src.read(limit + 1)
        while len(tail) <= limit:
            more = self._src.read(limit + 1 - len(tail))
            if not more:
                break
            tail += more
        # Walk the index entries forward to their terminator: a file cut short is then told apart
        # from a malformed index, and bytes after the trailer are found where they start.
        body_len = _index_body_length(tail, name, index_start, too_long=len(tail) > limit)
        trailer_off = body_len + INDEX_SIZE_FIELD
        end = trailer_off + TRAILER_SIZE
        if len(tail) < end:
            raise LTXTruncatedError(name, index_start + len(tail), "file ends inside the index or trailer")
        if len(tail) > end:
            at_least = "at least " if len(tail) > limit else ""
            raise LTXTrailerError(name, index_start + end, f"{at_least}{len(tail) - end} bytes follow the trailer")
        index = PageIndex.decode(memoryview(tail)[:trailer_off], name, index_start)
        if index != self._frames:
            raise LTXIndexError(name, index_start, self._describe_mismatch(index))
        trailer = Trailer.decode(tail[trailer_off:], name, index_start + trailer_off)
        trailer.validate(self.header, name, index_start + trailer_off)
        crc = crc64_update(self._crc, memoryview(tail)[:trailer_off + 8])
        self.n += len(tail)
        if file_checksum(crc) != trailer.file_checksum:
            raise LTXChecksumError(name, index_start + trailer_off + 8, trailer.file_checksum, file_checksum(crc))
        self.index = index
        self.trailer = trailer

    def _describe_mismatch(self, index: PageIndex) -> str:
        for got, want in zip(index, self._frames, strict=False):
            if got != want:
                return (f"index entry (page {got.pgno}, offset {got.offset}, size {got.size}) disagrees with "
                        f"the frame read (page {want.pgno}, offset {want.offset}, size {want.size})")
        return f"index lists {len(index)} pages, the file holds {len(self._frames)}"

    def verify(self) -> Trailer:
        """Read the whole file, checking everything; return the trailer."""
        for _ in self.pages():
            pass
        assert self.trailer is not None
        return self.trailer


def _index_body_length(tail: bytes, name: str, base: int, too_long: bool) -> int:
    """Bytes of index entries plus terminator at the start of `tail`. `too_long`: `tail` was cut
    at the decoder's bound, so running out of bytes means a malformed index, not a short file."""
    pos = 0
    try:
        while True:
            pgno, pos = read_uvarint(tail, pos, name, base)
            if pgno == 0:
                return pos
            _, pos = read_uvarint(tail, pos, name, base)
            _, pos = read_uvarint(tail, pos, name, base)
    except LTXTruncatedError:
        if too_long:
            raise LTXIndexError(name, base, f"page index runs past {len(tail)} bytes, more than the pages "
                                            "read need") from None
        raise
