"""Verify a whole LTX file quickly while handing its pages on: the hydrator's decoding loop.

`ltx.decoder.Decoder` checks a file page by page through small reads and compares the page
index entry by entry; at about 650 MB/s of pages it, not the network, bounded hydration. This
loop parses frames straight out of large reads and checks, per page: flags, ascending page
numbers (every page 1..commit for a snapshot), the lock page, the commit bound, the LZ4 size
bound and the decompressed size; and per file: the header's rules, the index's length field,
its entry count and its first and last entries against the frames read, the trailer's rules and
the file checksum (CRC-64 over header, frame prefixes with decompressed pages, end marker, index
and post-apply checksum). Index entries between the first and the last are covered by the
checksum and the count, not compared one by one: hydration applies frames, never the index.

Decoded pages are handed to `on_pages` in batches (after each large read), with their page
numbers; a caller applies them only after `verify_file` returns.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import lz4.block
from fastcrc import crc64

from ltx.checksum import file_checksum
from ltx.errors import (
    LTXChecksumError,
    LTXCompressionError,
    LTXIndexError,
    LTXLockPageError,
    LTXPageError,
    LTXPageOrderError,
    LTXTruncatedError,
)
from ltx.frame import FRAME_PREFIX_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, lz4_bound
from ltx.header import HEADER_SIZE, Header
from ltx.index import INDEX_SIZE_FIELD, read_uvarint
from ltx.trailer import TRAILER_SIZE, Trailer

#: Bytes asked of the stream per read.
READ_SIZE = 1024 * 1024
#: The most bytes one index entry can take: pgno (5) + offset (10) + size (5) varint bytes.
MAX_INDEX_ENTRY_SIZE = 20
_PREFIX = struct.Struct(">IHI")
_U64 = struct.Struct(">Q")
_HIGH_BYTES = bytes(range(0x80, 0x100))

class Readable(Protocol):
    """What is read from: a stream of the file's bytes."""

    def read(self, size: int = ..., /) -> bytes: ...


#: Receives a batch of decoded pages: their page numbers and their images, in file order.
PagesSink = Callable[["array[int]", list[bytes]], None]


@dataclass(frozen=True)
class VerifiedSummary:
    """What a verified file held: header, trailer, page count and its size in bytes."""

    header: Header
    trailer: Trailer
    pages: int
    size: int


def _read_exact(src: Readable, size: int, name: str, offset: int, what: str) -> bytes:
    data = src.read(size)
    while len(data) < size:
        more = src.read(size - len(data))
        if not more:
            raise LTXTruncatedError(name, offset + len(data), f"file ends inside the {what}")
        data += more
    return data


def verify_file(src: Readable, name: str, on_pages: PagesSink,
                check_header: Callable[[Header], None] | None = None) -> VerifiedSummary:
    """Read the whole of `src`, checking everything listed above; pass the pages to `on_pages`
    batch by batch. `check_header` may refuse the file from its header before any page is read."""
    raw = _read_exact(src, HEADER_SIZE, name, 0, "header")
    header = Header.decode(raw, name)
    header.validate(name)
    if check_header is not None:
        check_header(header)
    crc = crc64.go_iso(raw)
    ps = header.page_size
    commit = header.commit
    lock = header.lock_pgno
    snapshot = header.is_snapshot
    bound = lz4_bound(ps)
    decompress = lz4.block.decompress
    go_iso = crc64.go_iso
    unpack = _PREFIX.unpack_from

    prev = 0
    count = 0
    first_entry: tuple[int, int, int] | None = None
    last_offset = last_size = 0
    base = HEADER_SIZE  # file offset of buf[0]
    buf = b""
    pos = 0
    ended = False
    while not ended:
        pgnos: array[int] = array("L")
        pages: list[bytes] = []
        add_pgno = pgnos.append
        add_page = pages.append
        more = src.read(READ_SIZE)
        buf = buf[pos:] + more if pos < len(buf) else more
        base += pos
        pos = 0
        view = memoryview(buf)
        end = len(buf)
        while pos + FRAME_PREFIX_SIZE <= end:
            pgno, flags, size = unpack(buf, pos)
            if pgno == 0 and flags == 0:  # the end marker (its size field is not there: index bytes)
                crc = go_iso(view[pos:pos + PAGE_HEADER_SIZE], crc)
                pos += PAGE_HEADER_SIZE
                ended = True
                break
            start = pos + FRAME_PREFIX_SIZE
            stop = start + size
            # One test for the common case; the specific error (or the lock-page skip) comes after.
            if (flags != PAGE_FLAG_SIZE or size > bound or pgno <= prev or pgno > commit or pgno == lock
                    or (snapshot and pgno != prev + 1)):
                _check_frame(name, base + pos, pgno, flags, size, bound, ps, prev, commit, lock, snapshot)
            if stop > end:
                break  # the frame continues in the next read
            try:
                page = decompress(view[start:stop], ps)
            except lz4.block.LZ4BlockError as exc:
                raise LTXCompressionError(name, base + pos, f"page {pgno}: corrupt LZ4 block ({exc})") from exc
            if len(page) != ps:
                raise LTXCompressionError(name, base + pos, f"page {pgno}: LZ4 block decodes to {len(page)} "
                                                            f"bytes, expected {ps}")
            crc = go_iso(page, go_iso(view[pos:start], crc))
            add_pgno(pgno)
            add_page(page)
            if not count:
                first_entry = (pgno, base + pos, stop - pos)
            last_offset = base + pos
            last_size = stop - pos
            prev = pgno
            count += 1
            pos = stop
        if pages:
            on_pages(pgnos, pages)
        if not ended and not more:
            if buf[pos:pos + PAGE_HEADER_SIZE] == bytes(PAGE_HEADER_SIZE):
                raise LTXTruncatedError(name, base + end, "file ends inside the index or trailer")
            raise LTXTruncatedError(name, base + end, "file ends inside the page frames")
    if snapshot and prev != (commit - 1 if commit == lock else commit):
        raise LTXPageOrderError(name, base + pos, f"snapshot ends at page {prev}, commit is {commit}")

    index_start = base + pos
    limit = count * MAX_INDEX_ENTRY_SIZE + 1 + INDEX_SIZE_FIELD + TRAILER_SIZE
    tail = buf[pos:]
    while len(tail) <= limit:
        more = src.read(limit + 1 - len(tail))
        if not more:
            break
        tail += more
    if len(tail) > limit:
        raise LTXIndexError(name, index_start, f"more than {limit} bytes after the pages: the index or trailer "
                                               "is malformed, or bytes follow the trailer")
    if len(tail) < 1 + INDEX_SIZE_FIELD + TRAILER_SIZE:
        raise LTXTruncatedError(name, index_start + len(tail), "file ends inside the index or trailer")
    trailer_off = len(tail) - TRAILER_SIZE
    index = tail[:trailer_off - INDEX_SIZE_FIELD]
    (declared,) = _U64.unpack_from(tail, trailer_off - INDEX_SIZE_FIELD)
    if declared != len(index):
        raise LTXIndexError(name, index_start + len(index), f"index length field says {declared} bytes, the "
                                                            f"file has {len(index)}")
    _check_index(index, name, index_start, count, first_entry, (prev, last_offset, last_size))
    trailer = Trailer.decode(tail[trailer_off:], name, index_start + trailer_off)
    trailer.validate(header, name, index_start + trailer_off)
    crc = go_iso(memoryview(tail)[:trailer_off + 8], crc)
    if file_checksum(crc) != trailer.file_checksum:
        raise LTXChecksumError(name, index_start + trailer_off + 8, trailer.file_checksum, file_checksum(crc))
    return VerifiedSummary(header, trailer, count, index_start + len(tail))


def _check_index(index: bytes, name: str, start: int, count: int, first: tuple[int, int, int] | None,
                 last: tuple[int, int, int]) -> None:
    """Entry count (one byte below 0x80 ends each varint), terminator, first and last entries."""
    if not index or index[-1] != 0:
        raise LTXIndexError(name, start + len(index) - 1, "page index does not end with its 0 terminator")
    varints = len(index.translate(None, _HIGH_BYTES))
    if varints != 3 * count + 1:
        raise LTXIndexError(name, start, f"index holds {(varints - 1) / 3:g} entries, the file holds {count} pages")
    if first is None:
        return
    pos = 0
    got = []
    for _ in range(3):
        value, pos = read_uvarint(index, pos, name, start)
        got.append(value)
    if tuple(got) != first:
        raise LTXIndexError(name, start, f"first index entry {tuple(got)} disagrees with the first frame {first}")
    # The last entry's three varints end just before the terminator: find their starts backwards.
    ends = len(index) - 1
    starts = []
    for _ in range(3):
        i = ends - 1
        while i > 0 and index[i - 1] >= 0x80:
            i -= 1
        starts.append(i)
        ends = i
    got = [read_uvarint(index, s, name, start)[0] for s in reversed(starts)]
    if tuple(got) != last:
        raise LTXIndexError(name, start + starts[-1], f"last index entry {tuple(got)} disagrees with the last "
                                                      f"frame {last}")


def _check_frame(name: str, offset: int, pgno: int, flags: int, size: int, bound: int, ps: int, prev: int,
                 commit: int, lock: int, snapshot: bool) -> None:
    """Raise the error a frame deserves; return only for a snapshot's legitimate lock-page skip."""
    if pgno == 0:
        raise LTXPageError(name, offset, "page number 0 in a page header")
    if not flags & PAGE_FLAG_SIZE:
        raise LTXPageError(name, offset, f"page {pgno}: legacy LZ4-frame page (no size field) is not supported")
    if flags != PAGE_FLAG_SIZE:
        raise LTXPageError(name, offset, f"page {pgno}: unknown page flags 0x{flags:04x}")
    if size > bound:
        raise LTXPageError(name, offset, f"page {pgno}: compressed size {size} exceeds the LZ4 bound {bound} "
                                         f"for {ps}-byte pages")
    if pgno == lock:
        raise LTXLockPageError(name, offset, f"lock page {pgno} is present")
    if pgno > commit:
        raise LTXPageError(name, offset, f"page {pgno} lies beyond the commit ({commit} pages)")
    if snapshot:
        want = prev + 1 if prev + 1 != lock else prev + 2
        if pgno != want:
            raise LTXPageOrderError(name, offset, f"snapshot has page {pgno} where {want} was due")
    elif pgno <= prev:
        raise LTXPageOrderError(name, offset, f"page {pgno} follows page {prev}")
