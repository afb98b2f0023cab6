"""Page frames: a 6-byte page header, a 4-byte compressed size, and one raw LZ4 block."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import lz4.block

from ltx.errors import LTXCompressionError, LTXPageError, LTXTruncatedError

PAGE_HEADER_SIZE = 6
SIZE_FIELD_SIZE = 4
FRAME_PREFIX_SIZE = PAGE_HEADER_SIZE + SIZE_FIELD_SIZE
#: Page-header flag: a 4-byte compressed size follows (every current writer sets it).
PAGE_FLAG_SIZE = 0x0001
PAGE_FLAG_MASK = PAGE_FLAG_SIZE
#: The all-zero page header that ends the page block.
END_OF_PAGES = bytes(PAGE_HEADER_SIZE)

_PREFIX = struct.Struct(">IHI")
_PAGE_HEADER = struct.Struct(">IH")


def lz4_bound(page_size: int) -> int:
    """The largest LZ4 block a page of this size can compress to (LZ4_COMPRESSBOUND)."""
    return page_size + page_size // 255 + 16


@dataclass(frozen=True)
class PageHeader:
    """The 6-byte header before each page: page number and flags."""

    pgno: int
    flags: int = PAGE_FLAG_SIZE

    def encode(self) -> bytes:
        return _PAGE_HEADER.pack(self.pgno, self.flags)

    @classmethod
    def decode(cls, data: bytes, name: str = "", offset: int = 0) -> PageHeader:
        if len(data) < PAGE_HEADER_SIZE:
            raise LTXTruncatedError(name, offset, "page header cut short")
        pgno, flags = _PAGE_HEADER.unpack_from(data)
        return cls(pgno, flags)

    @property
    def is_end(self) -> bool:
        return self.pgno == 0 and self.flags == 0

    def validate(self, name: str = "", offset: int = 0) -> None:
        if self.pgno == 0:
            raise LTXPageError(name, offset, "page number 0 in a page header")
        if self.flags & ~PAGE_FLAG_MASK:
            raise LTXPageError(name, offset, f"page {self.pgno}: unknown page flags 0x{self.flags:04x}")
        if not self.flags & PAGE_FLAG_SIZE:
            raise LTXPageError(name, offset, f"page {self.pgno}: legacy LZ4-frame page (no size field) "
                                             "is not supported")


def encode_frame(pgno: int, page: bytes) -> bytes:
    """One page frame: header, compressed size, LZ4 block of `page`."""
    block = lz4.block.compress(page, store_size=False)
    return _PREFIX.pack(pgno, PAGE_FLAG_SIZE, len(block)) + block


def decompress_page(block: bytes | memoryview, page_size: int, name: str, offset: int, pgno: int) -> bytes:
    """Decompress one LZ4 block, insisting it gives exactly `page_size` bytes."""
    try:
        page = lz4.block.decompress(block, uncompressed_size=page_size)
    except lz4.block.LZ4BlockError as exc:
        raise LTXCompressionError(name, offset, f"page {pgno}: corrupt LZ4 block ({exc})") from exc
    if len(page) != page_size:
        raise LTXCompressionError(name, offset, f"page {pgno}: LZ4 block decodes to {len(page)} bytes, "
                                                f"expected {page_size}")
    return page


def decode_frame(frame: bytes | memoryview, page_size: int, name: str = "", offset: int = 0,
                 expect_pgno: int | None = None) -> tuple[int, bytes]:
    """Decode one whole frame fetched by index entry; return (pgno, page). Every check applies:
    page header, size field against the frame's length, LZ4 size, expected page number."""
    if len(frame) < FRAME_PREFIX_SIZE:
        raise LTXTruncatedError(name, offset, f"page frame of {len(frame)} bytes is too short")
    pgno, flags, size = _PREFIX.unpack_from(frame)
    PageHeader(pgno, flags).validate(name, offset)
    if expect_pgno is not None and pgno != expect_pgno:
        raise LTXPageError(name, offset, f"frame holds page {pgno}, index says {expect_pgno}")
    if size != len(frame) - FRAME_PREFIX_SIZE:
        raise LTXPageError(name, offset, f"page {pgno}: size field {size} disagrees with frame "
                                         f"length {len(frame) - FRAME_PREFIX_SIZE}")
    return pgno, decompress_page(memoryview(frame)[FRAME_PREFIX_SIZE:], page_size, name, offset, pgno)
