"""Per-page checksums kept beside an LTX file, as `<name>.ltx.sum` in the same level folder.

An LTX file has one checksum, over the whole file, so a reader that fetches single frames by
range (the VFS) can check a frame's structure and LZ4 size but not its bytes: a flipped LZ4
literal still decodes to a page of the right size. The sidecar holds a CRC-32 of each page
(page number and uncompressed bytes) in index order, and the file checksum of the LTX file it
describes, so a sidecar left from another file of the same name is recognised as stale.

Layout (big-endian): magic `LTXS`, version u32, page size u32, page count u32, min TXID u64,
max TXID u64, LTX file checksum u64 (40 bytes); one u32 per page; then a u32 CRC-32 of all that.
Litestream lists only names matching `^[0-9a-f]{16}-[0-9a-f]{16}\\.ltx$`, so it skips these.
Only files larger than a reader fetches whole get one (smaller ones are checked whole).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field

from ltx.errors import LTXError
from ltx.header import MAX_PAGE_SIZE, MIN_PAGE_SIZE
from ltx.reader import DEFAULT_INDEX_FETCH_SIZE

#: Appended to an LTX file's key to name its sidecar.
SUMS_SUFFIX = ".sum"
SUMS_MAGIC = b"LTXS"
SUMS_VERSION = 1
#: Files up to this size are read whole (and checked by their file checksum): no sidecar.
SUMS_MIN_FILE_SIZE = DEFAULT_INDEX_FETCH_SIZE

_HEADER = struct.Struct(">4sIIIQQQ")
_CRC = struct.Struct(">I")
_PGNO = struct.Struct(">I")
_LITTLE_ENDIAN = sys.byteorder == "little"
assert array("I").itemsize == 4, "page checksums need a 4-byte unsigned array type"


class PageSumsError(LTXError):
    """A sidecar is malformed (wrong magic or version, cut short, its own checksum wrong)."""


class PageChecksumError(LTXError):
    """A page read from an LTX file differs from the checksum its sidecar holds for it."""

    def __init__(self, name: str, offset: int, pgno: int, expected: int, actual: int) -> None:
        self.pgno = pgno
        self.expected = expected
        self.actual = actual
        super().__init__(name, offset, f"page {pgno} has CRC-32 {actual:08x}, its sidecar "
                                       f"{name}{SUMS_SUFFIX} says {expected:08x}")


def pages_of_sums_size(size: int) -> int | None:
    """The page count a sidecar of `size` bytes describes (so the listing tells a file's page
    count without a GET), or None when no sidecar is that long."""
    body = size - _HEADER.size - _CRC.size
    return body // 4 if body >= 0 and body % 4 == 0 else None


def needs_sums(file_size: int) -> bool:
    """Whether a file this large gets a sidecar (readers fetch smaller ones whole)."""
    return file_size > SUMS_MIN_FILE_SIZE


def sums_key(ltx_key: str) -> str:
    """The sidecar key of an LTX file's key."""
    return ltx_key + SUMS_SUFFIX


def page_sum(pgno: int, page: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a page number (u32) and the page's uncompressed bytes."""
    return zlib.crc32(page, zlib.crc32(_PGNO.pack(pgno)))


@dataclass
class PageSums:
    """The checksums of one LTX file's pages, by index position."""

    page_size: int
    min_txid: int
    max_txid: int
    file_checksum: int
    sums: array[int] = field(default_factory=lambda: array("I"))

    def __len__(self) -> int:
        return len(self.sums)

    @property
    def encoded_size(self) -> int:
        return _HEADER.size + 4 * len(self.sums) + _CRC.size

    def encode(self) -> bytes:
        body = _HEADER.pack(SUMS_MAGIC, SUMS_VERSION, self.page_size, len(self.sums), self.min_txid,
                            self.max_txid, self.file_checksum) + _big_endian(self.sums)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes, name: str = "") -> PageSums:
        """Parse and check a sidecar (`name` is its key, for errors)."""
        if len(data) < _HEADER.size + _CRC.size:
            raise PageSumsError(name, len(data), f"{len(data)} bytes is too short for a page checksum file")
        magic, version, page_size, count, min_txid, max_txid, checksum = _HEADER.unpack_from(data)
        if magic != SUMS_MAGIC:
            raise PageSumsError(name, 0, f"not a page checksum file (magic {magic!r})")
        if version != SUMS_VERSION:
            raise PageSumsError(name, 4, f"unknown page checksum file version {version}")
        want = _HEADER.size + 4 * count + _CRC.size
        if len(data) != want:
            raise PageSumsError(name, len(data), f"{len(data)} bytes, {want} expected for {count} pages")
        (stored,) = _CRC.unpack_from(data, want - _CRC.size)
        actual = zlib.crc32(memoryview(data)[:want - _CRC.size])
        if stored != actual:
            raise PageSumsError(name, want - _CRC.size, f"checksum {actual:08x}, stored {stored:08x}")
        sums = array("I")
        sums.frombytes(memoryview(data)[_HEADER.size:want - _CRC.size])
        if _LITTLE_ENDIAN:
            sums.byteswap()
        out = cls(page_size, min_txid, max_txid, checksum, sums)
        out.validate(name)
        return out

    def validate(self, name: str = "") -> None:
        if not (MIN_PAGE_SIZE <= self.page_size <= MAX_PAGE_SIZE) or self.page_size & (self.page_size - 1):
            raise PageSumsError(name, 8, f"invalid page size {self.page_size}")
        if not 1 <= self.min_txid <= self.max_txid:
            raise PageSumsError(name, 16, f"invalid TXID range {self.min_txid:x}-{self.max_txid:x}")

    def describes(self, min_txid: int, max_txid: int, file_checksum: int, pages: int) -> bool:
        """Whether this sidecar belongs to the LTX file with these fields (else it is stale)."""
        return (self.min_txid, self.max_txid, self.file_checksum, len(self.sums)) == (
            min_txid, max_txid, file_checksum, pages)

    def check(self, pos: int, pgno: int, page: bytes | bytearray | memoryview, name: str = "",
              offset: int = 0) -> None:
        """Raise PageChecksumError unless `page` (number `pgno`, index position `pos`) matches."""
        actual = page_sum(pgno, page)
        expected = self.sums[pos]
        if actual != expected:
            raise PageChecksumError(name, offset, pgno, expected, actual)


def _big_endian(values: array[int]) -> bytes:
    if _LITTLE_ENDIAN:
        swapped = array("I", values)
        swapped.byteswap()
        return swapped.tobytes()
    return values.tobytes()
