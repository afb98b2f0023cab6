"""Per-page checksums kept beside an LTX file, as `<name>.ltx.sum` in the same level folder.

An LTX file has one checksum, over the whole file, so a reader that fetches single frames by
range (the VFS) can check a frame's structure and LZ4 size but not its bytes: a flipped LZ4
literal still decodes to a page of the right size. The sidecar holds a CRC-32 of each page
(page number and uncompressed bytes) in index order, and the file checksum of the LTX file it
describes, so a sidecar left from another file of the same name is recognised as stale.

Version 1 (big-endian): magic `LTXS`, version u32, page size u32, page count u32, min TXID u64,
max TXID u64, LTX file checksum u64 (40 bytes); one u32 per page; then a u32 CRC-32 of all that.

Version 2 (what writers write now) puts a sparse index of the file's page index first, so a
reader that needs a few pages of a large file fetches this short prefix instead of the whole page
index and the whole sidecar (see `span_stride`: up to FULL_SPANS_PAGES pages a span is one frame,
and the spans are the whole index). Header (62 bytes): magic, version, page size, page count, min TXID,
max TXID, LTX file checksum, LTX file size u64, LTX header timestamp i64, stride u32, 2 zero
bytes (a reader tells a stale sidecar by the size and timestamp, before it has the trailer). Then one span per
`stride` index entries (the last may hold fewer): first page number u32, byte length u32 of its
frames (the first span starts right after the LTX header; each starts where the previous ends),
and a check u32: the CRC-32 of the big-endian CRC-32s of its frames' stored bytes. Then a u32
CRC-32 of the header and spans (the prefix checks alone), then the per-page checksums and a u32
CRC-32 of everything before it, as in version 1. A reader fetches one span's frames in one GET,
checks them against the span's check value and walks the frames (each names its page and its
size) to the page it wants. A version-2 sidecar's size is 2 mod 4 (version 1: 0 mod 4), so a
listing tells the versions, the page count and the prefix's length apart without a GET.

Litestream lists only names matching `^[0-9a-f]{16}-[0-9a-f]{16}\\.ltx$`, so it skips these.
Only files larger than a reader fetches whole get one (smaller ones are checked whole).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from ltx.errors import LTXError
from ltx.header import MAX_PAGE_SIZE, MIN_PAGE_SIZE
from ltx.reader import DEFAULT_INDEX_FETCH_SIZE

#: Appended to an LTX file's key to name its sidecar.
SUMS_SUFFIX = ".sum"
SUMS_MAGIC = b"LTXS"
SUMS_VERSION = 1
#: The version with the sparse index of the page index (what writers write).
SUMS_VERSION_SPANS = 2
#: Index entries per span, at least (larger files double it: see `span_stride`).
MIN_SPAN_STRIDE = 16
#: A file of more than SPAN_RATIO * stride**2 pages doubles its stride: the spans' prefix and the
#: span a page comes with grow alike, as the square root of the page count (a cold point query
#: fetches the prefix and a few spans: 16 frames per span up to 524,288 pages, 32 up to 2 M).
SPAN_RATIO = 2048
#: Files of at most this many pages (a commit's or a compaction's, mostly) have a span per page:
#: the spans are their whole index, so a reader needs nothing else to read them by range.
FULL_SPANS_PAGES = 4096
#: Files up to this size are read whole (and checked by their file checksum): no sidecar.
SUMS_MIN_FILE_SIZE = DEFAULT_INDEX_FETCH_SIZE

_HEADER = struct.Struct(">4sIIIQQQ")
_HEADER2 = struct.Struct(">4sIIIQQQQqI2x")
_SPAN = struct.Struct(">III")
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
    layout = sums_layout(size)
    return None if layout is None else layout[0]


def span_stride(pages: int) -> int:
    """Index entries per span for a file of `pages` pages: 1 up to FULL_SPANS_PAGES (the spans
    are then the whole index, with a check value per frame), else MIN_SPAN_STRIDE, doubled while
    the file has more than SPAN_RATIO * stride**2 pages."""
    if pages <= FULL_SPANS_PAGES:
        return 1
    stride = MIN_SPAN_STRIDE
    while pages > _band_end(stride):
        stride *= 2
    return stride


def _band_end(stride: int) -> int:
    """The most pages a file read in spans of `stride` has."""
    return FULL_SPANS_PAGES if stride == 1 else SPAN_RATIO * stride * stride


def _v2_size(pages: int) -> int:
    spans = -(-pages // span_stride(pages))
    return _HEADER2.size + _SPAN.size * spans + 2 * _CRC.size + 4 * pages


def prefix_size(pages: int) -> int:
    """Bytes of a version-2 sidecar's prefix (header, spans, their CRC) for `pages` pages."""
    return _HEADER2.size + _SPAN.size * -(-pages // span_stride(pages)) + _CRC.size


def sums_layout(size: int) -> tuple[int, int] | None:
    """(page count, prefix length) of a sidecar of `size` bytes: for version 2 the prefix is the
    header, the spans and their CRC; for version 1 it is 0 (no spans). None when no sidecar of
    either version is that long. Past SPAN_RATIO * MIN_SPAN_STRIDE**2 pages two page counts (of
    different strides) can give one version-2 size: both values are then the larger candidate's,
    upper bounds that a GET sized by them covers (the prefix's header tells the true count)."""
    if size % 4 == 0:
        body = size - _HEADER.size - _CRC.size
        return (body // 4, 0) if body >= 0 else None
    if size % 4 != 2 or size < _HEADER2.size + 2 * _CRC.size:
        return None
    found: tuple[int, int] | None = None
    hi = (size - _HEADER2.size) // 4 + 1
    lo = 0
    while lo <= hi:  # within one stride the size grows with the page count: search each band
        stride = span_stride(lo)
        band_end = min(hi, _band_end(stride))
        a, b = lo, band_end
        while a < b:
            mid = (a + b) // 2
            if _v2_size(mid) < size:
                a = mid + 1
            else:
                b = mid
        if _v2_size(a) == size and span_stride(a) == stride:
            cand = (a, prefix_size(a))
            found = cand if found is None else (max(found[0], cand[0]), max(found[1], cand[1]))
        lo = band_end + 1
    return found


def needs_sums(file_size: int) -> bool:
    """Whether a file this large gets a sidecar (readers fetch smaller ones whole)."""
    return file_size > SUMS_MIN_FILE_SIZE


def sums_key(ltx_key: str) -> str:
    """The sidecar key of an LTX file's key."""
    return ltx_key + SUMS_SUFFIX


def page_sum(pgno: int, page: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a page number (u32) and the page's uncompressed bytes."""
    return zlib.crc32(page, zlib.crc32(_PGNO.pack(pgno)))


def frame_check(frame: bytes | bytearray | memoryview, start: int = 0) -> int:
    """CRC-32 of one frame's stored bytes (page header, size field, LZ4 block); `start` continues
    a CRC over the frame's first part."""
    return zlib.crc32(frame, start)


def span_check(frame_checks: array[int]) -> int:
    """The check value of a span: CRC-32 of its frames' `frame_check`s, big-endian u32 each."""
    return zlib.crc32(_big_endian(frame_checks))


@dataclass
class FrameSpans:
    """The sparse index of a file's page index: every `stride`-th entry's page number, and each
    span's frame bytes (length and check value). Span `k` covers index positions
    `k*stride .. (k+1)*stride - 1` and starts at byte `HEADER_SIZE + sum(lengths[:k])`."""

    stride: int
    first_pgnos: array[int] = field(default_factory=lambda: array("I"))
    lengths: array[int] = field(default_factory=lambda: array("I"))
    checks: array[int] = field(default_factory=lambda: array("I"))

    def __len__(self) -> int:
        return len(self.first_pgnos)

    @classmethod
    def build(cls, pgnos: Sequence[int], sizes: Sequence[int], frame_checks: array[int]) -> FrameSpans:
        """The spans of a file whose index holds `pgnos`/`sizes` and whose frames' stored bytes
        have `frame_checks` (as the encoder records them)."""
        n = len(pgnos)
        stride = span_stride(n)
        out = cls(stride)
        for start in range(0, n, stride):
            stop = min(start + stride, n)
            out.first_pgnos.append(pgnos[start])
            out.lengths.append(sum(sizes[start:stop]))
            out.checks.append(span_check(frame_checks[start:stop]))
        return out


@dataclass
class SpanPrefix:
    """What a reader fetches of a version-2 sidecar: its header fields and the spans."""

    page_size: int
    pages: int
    min_txid: int
    max_txid: int
    file_checksum: int
    file_size: int
    timestamp: int
    spans: FrameSpans

    @classmethod
    def decode(cls, data: bytes, name: str = "") -> SpanPrefix:
        """Parse and check the prefix of a version-2 sidecar (`data` is exactly the prefix)."""
        if len(data) < _HEADER2.size + _CRC.size:
            raise PageSumsError(name, len(data), f"{len(data)} bytes is too short for a page checksum file's spans")
        (magic, version, page_size, pages, min_txid, max_txid, checksum, file_size, timestamp,
         stride) = _HEADER2.unpack_from(data)
        if magic != SUMS_MAGIC:
            raise PageSumsError(name, 0, f"not a page checksum file (magic {magic!r})")
        if version != SUMS_VERSION_SPANS:
            raise PageSumsError(name, 4, f"page checksum file version {version} has no spans")
        if stride != span_stride(pages):
            raise PageSumsError(name, 56, f"span stride {stride}, {span_stride(pages)} expected for {pages} pages")
        count = -(-pages // stride)
        want = _HEADER2.size + _SPAN.size * count + _CRC.size
        if len(data) != want:
            raise PageSumsError(name, len(data), f"{len(data)} bytes of spans, {want} expected for {pages} pages")
        table = _checked_words(data, _HEADER2.size, name, "spans checksum")
        spans = FrameSpans(stride, table[0::3], table[1::3], table[2::3])
        out = cls(page_size, pages, min_txid, max_txid, checksum, file_size, timestamp, spans)
        PageSums(page_size, min_txid, max_txid, checksum).validate(name)
        return out

    def describes(self, min_txid: int, max_txid: int, file_size: int, timestamp: int) -> bool:
        """Whether these spans belong to the LTX file with these fields (else the sidecar is stale)."""
        return (self.min_txid, self.max_txid, self.file_size, self.timestamp) == (
            min_txid, max_txid, file_size, timestamp)


@dataclass
class PageSums:
    """The checksums of one LTX file's pages, by index position, and (version 2) its spans."""

    page_size: int
    min_txid: int
    max_txid: int
    file_checksum: int
    sums: array[int] = field(default_factory=lambda: array("I"))
    #: Version 2: the LTX file's size and header timestamp, and the sparse index of its page index.
    file_size: int = 0
    timestamp: int = 0
    spans: FrameSpans | None = None

    def __len__(self) -> int:
        return len(self.sums)

    @property
    def encoded_size(self) -> int:
        if self.spans is None:
            return _HEADER.size + 4 * len(self.sums) + _CRC.size
        return _HEADER2.size + _SPAN.size * len(self.spans) + 2 * _CRC.size + 4 * len(self.sums)

    def encode(self) -> bytes:
        spans = self.spans
        if spans is None:
            body = _HEADER.pack(SUMS_MAGIC, SUMS_VERSION, self.page_size, len(self.sums), self.min_txid,
                                self.max_txid, self.file_checksum) + _big_endian(self.sums)
            return body + _CRC.pack(zlib.crc32(body))
        table = array("I", bytes(4 * 3 * len(spans)))
        table[0::3] = spans.first_pgnos
        table[1::3] = spans.lengths
        table[2::3] = spans.checks
        prefix = _HEADER2.pack(SUMS_MAGIC, SUMS_VERSION_SPANS, self.page_size, len(self.sums), self.min_txid,
                               self.max_txid, self.file_checksum, self.file_size, self.timestamp,
                               spans.stride) + _big_endian(table)
        body = prefix + _CRC.pack(zlib.crc32(prefix)) + _big_endian(self.sums)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes, name: str = "") -> PageSums:
        """Parse and check a sidecar of either version (`name` is its key, for errors)."""
        if len(data) < _HEADER.size + _CRC.size:
            raise PageSumsError(name, len(data), f"{len(data)} bytes is too short for a page checksum file")
        magic, version, page_size, count, min_txid, max_txid, checksum = _HEADER.unpack_from(data)
        if magic != SUMS_MAGIC:
            raise PageSumsError(name, 0, f"not a page checksum file (magic {magic!r})")
        if version not in (SUMS_VERSION, SUMS_VERSION_SPANS):
            raise PageSumsError(name, 4, f"unknown page checksum file version {version}")
        prefix: SpanPrefix | None = None
        start = _HEADER.size
        if version == SUMS_VERSION_SPANS:
            start = prefix_size(count)
            if len(data) < start:
                raise PageSumsError(name, len(data), f"{len(data)} bytes, {start} expected before the page "
                                                     f"checksums of {count} pages")
            prefix = SpanPrefix.decode(data[:start], name)
        want = start + 4 * count + _CRC.size
        if len(data) != want:
            raise PageSumsError(name, len(data), f"{len(data)} bytes, {want} expected for {count} pages")
        sums = _checked_words(data, start, name, "checksum")
        out = cls(page_size, min_txid, max_txid, checksum, sums)
        if prefix is not None:
            out.file_size, out.timestamp, out.spans = prefix.file_size, prefix.timestamp, prefix.spans
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


def _checked_words(data: bytes, start: int, name: str, what: str) -> array[int]:
    """The big-endian u32s of `data` from `start` up to its trailing CRC-32 of everything before
    it, once that CRC is checked (PageSumsError naming `what` when it differs)."""
    end = len(data) - _CRC.size
    (stored,) = _CRC.unpack_from(data, end)
    actual = zlib.crc32(memoryview(data)[:end])
    if stored != actual:
        raise PageSumsError(name, end, f"{what} {actual:08x}, stored {stored:08x}")
    words = array("I")
    words.frombytes(memoryview(data)[start:end])
    if _LITTLE_ENDIAN:
        words.byteswap()
    return words


def _big_endian(values: array[int]) -> bytes:
    if _LITTLE_ENDIAN:
        swapped = array("I", values)
        swapped.byteswap()
        return swapped.tobytes()
    return values.tobytes()
