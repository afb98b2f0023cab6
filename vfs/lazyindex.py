"""A large file's page index, decoded a block of entries at a time when first needed.

A 500 MB snapshot has ~120,000 index entries: decoding them all in Python takes ~170 ms, while
a point query needs two or three. At open, one pass over the index bytes (in C,
ltx/_frames.c, or a regex where the extension was not built) finds where every block of
BLOCK_ENTRIES entries starts (each entry is three varints), and the first page number and offset
of each block are read; a block is decoded and checked (page order, frames
between the header and the index, no overlap) the first time one of its entries is used.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterator

from ltx.errors import LTXIndexError, LTXTruncatedError
from ltx.frame import PAGE_HEADER_SIZE
from ltx.header import HEADER_SIZE
from ltx.index import INDEX_SIZE_FIELD, IndexEntry
from ltx.native import load_frames
from ltx.reader import tail_length_needed
from ltx.trailer import TRAILER_SIZE, Trailer

#: Entries per lazily decoded block.
BLOCK_ENTRIES = 128
#: Indexes at least this long (bytes) are decoded lazily; shorter ones at once.
LAZY_INDEX_BYTES = 64 * 1024
_BLOCK = re.compile(rb"(?:[\x80-\xff]*+[\x00-\x7f]){%d}+" % (3 * BLOCK_ENTRIES))
_MAX_VARINT = 10
#: The C scan of block starts (ltx/_frames.c index_blocks), or None: the regex loop then (also
#: under an extension built before it had the function).
FRAMES = load_frames()
INDEX_BLOCKS = getattr(FRAMES, "index_blocks", None)
#: The smallest frame: page header, size field and a one-byte LZ4 block.
_MIN_FRAME = 11


def _varint(data: bytes, pos: int, name: str, base: int) -> tuple[int, int]:
    value = 0
    shift = 0
    for i in range(_MAX_VARINT):
        if pos + i >= len(data):
            raise LTXTruncatedError(name, base + pos + i, "page index varint cut short")
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + i + 1
        shift += 7
    raise LTXIndexError(name, base + pos, "page index varint longer than 10 bytes")


class _Column:
    """One column (page numbers, offsets or sizes) of a LazyIndex, indexable like an array."""

    __slots__ = ("_index", "_col")

    def __init__(self, index: LazyIndex, col: int) -> None:
        self._index = index
        self._col = col

    def __len__(self) -> int:
        return self._index.count

    def __getitem__(self, pos: int) -> int:
        if pos < 0:
            pos += self._index.count
        if not 0 <= pos < self._index.count:
            raise IndexError(pos)
        return self._index.block(pos // BLOCK_ENTRIES)[self._col][pos % BLOCK_ENTRIES]


class LazyIndex:
    """Entries (pgno, offset, size) of one file, by position, decoded per block on first use."""

    def __init__(self, body: bytes, name: str, base: int, index_start: int) -> None:
        """`body` holds the entries and the 0 terminator (not the length field); `base` is its
        offset in the file; frames must lie in [HEADER_SIZE, index_start - 6)."""
        self.name = name
        #: The file's trailer, when decode_tail_lazy made this index.
        self.trailer: Trailer | None = None
        self._body = body
        self._base = base
        self._frames_end = index_start - PAGE_HEADER_SIZE
        found = INDEX_BLOCKS(body, BLOCK_ENTRIES) if INDEX_BLOCKS is not None else None
        if found is not None:  # the same scan in C (a 500 MB file's index: ~1 ms instead of ~10)
            starts, first_pgnos, first_offsets, tail_start = found
            self._starts = array("Q", starts).tolist()
        else:
            self._starts = []
            tail_start = 0
            while (m := _BLOCK.match(body, tail_start)) is not None:
                self._starts.append(tail_start)
                tail_start = m.end()
        self._blocks: list[tuple[array[int], array[int], array[int]] | None] = [None] * len(self._starts)
        # The last, partial block is decoded now: it gives the count and checks the terminator.
        last = self._decode(tail_start, BLOCK_ENTRIES, final=True)
        if len(last[0]):
            self._starts.append(tail_start)
            self._blocks.append(last)
        self.count = (len(self._starts) - (1 if len(last[0]) else 0)) * BLOCK_ENTRIES + len(last[0])
        self._first_pgno = array("Q")
        self._first_offset = array("Q")
        if found is not None:
            self._first_pgno.frombytes(first_pgnos)
            self._first_offset.frombytes(first_offsets)
            if len(last[0]):  # the partial block, decoded above
                self._first_pgno.append(last[0][0])
                self._first_offset.append(last[1][0])
        else:
            for start in self._starts:
                pgno, pos = _varint(body, start, name, base)
                offset, _ = _varint(body, pos, name, base)
                self._first_pgno.append(pgno)
                self._first_offset.append(offset)
        for i in range(1, len(self._first_pgno)):
            if self._first_pgno[i] <= self._first_pgno[i - 1]:
                raise LTXIndexError(name, base + self._starts[i], f"page index entry {self._first_pgno[i]} "
                                    f"out of order after block starting {self._first_pgno[i - 1]}")
        self.pgnos = _Column(self, 0)
        self.offsets = _Column(self, 1)
        self.sizes = _Column(self, 2)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[IndexEntry]:
        for pos in range(self.count):
            pgnos, offsets, sizes = self.block(pos // BLOCK_ENTRIES)
            i = pos % BLOCK_ENTRIES
            yield IndexEntry(pgnos[i], offsets[i], sizes[i])

    def block(self, number: int) -> tuple[array[int], array[int], array[int]]:
        """The decoded arrays of block `number` (decoding and checking it the first time)."""
        cached = self._blocks[number]
        if cached is not None:
            return cached
        decoded = self._decode(self._starts[number], BLOCK_ENTRIES, final=False)
        pgnos, offsets, sizes = decoded
        if number + 1 < len(self._starts):
            nxt = number + 1
            if pgnos[-1] >= self._first_pgno[nxt] or offsets[-1] + sizes[-1] > self._first_offset[nxt]:
                raise LTXIndexError(self.name, self._base + self._starts[nxt], "page index blocks overlap")
        if number > 0:
            prev = self._blocks[number - 1]
            if prev is not None and prev[1][-1] + prev[2][-1] > offsets[0]:
                raise LTXIndexError(self.name, self._base + self._starts[number], "page index blocks overlap")
        self._blocks[number] = decoded
        return decoded

    def find(self, pgno: int) -> IndexEntry | None:
        """The entry for `pgno`, or None."""
        b = bisect_right(self._first_pgno, pgno) - 1
        if b < 0:
            return None
        pgnos, offsets, sizes = self.block(b)
        for i in range(len(pgnos)):
            if pgnos[i] == pgno:
                return IndexEntry(pgno, offsets[i], sizes[i])
        return None

    def position(self, pgno: int) -> int | None:
        """The position of `pgno`'s entry, or None."""
        b = bisect_right(self._first_pgno, pgno) - 1
        if b < 0:
            return None
        pgnos = self.block(b)[0]
        lo, hi = 0, len(pgnos)
        while lo < hi:
            mid = (lo + hi) // 2
            if pgnos[mid] < pgno:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(pgnos) and pgnos[lo] == pgno:
            return b * BLOCK_ENTRIES + lo
        return None

    def _decode(self, start: int, limit: int, final: bool) -> tuple[array[int], array[int], array[int]]:
        """Decode up to `limit` entries from byte `start`; with `final`, the terminator must follow
        them and end the body. Checks order and frame bounds within the block."""
        body, name, base = self._body, self.name, self._base
        pgnos, offsets, sizes = array("Q"), array("Q"), array("Q")
        pos = start
        prev_pgno = 0
        prev_end = HEADER_SIZE
        for _ in range(limit):
            pgno, pos = _varint(body, pos, name, base)
            if pgno == 0:
                if not final:
                    raise LTXIndexError(name, base + pos - 1, "page index ends inside a block")
                if pos != len(body):
                    raise LTXIndexError(name, base + pos, f"{len(body) - pos} stray bytes after the index "
                                                          f"terminator")
                return pgnos, offsets, sizes
            offset, pos = _varint(body, pos, name, base)
            size, pos = _varint(body, pos, name, base)
            if pgno <= prev_pgno or pgno > 0xFFFFFFFF:
                raise LTXIndexError(name, base + pos, f"page index entry {pgno} out of order after {prev_pgno}")
            if offset < prev_end or size < _MIN_FRAME or offset + size > self._frames_end:
                raise LTXIndexError(name, base + pos, f"index entry for page {pgno} points outside the page "
                                                      f"block ({offset}+{size})")
            pgnos.append(pgno)
            offsets.append(offset)
            sizes.append(size)
            prev_pgno = pgno
            prev_end = offset + size
        if final:
            raise LTXIndexError(name, base + pos, "page index has no terminator")
        return pgnos, offsets, sizes


def decode_tail_lazy(tail: bytes, file_size: int, name: str) -> LazyIndex:
    """Like ltx.reader.decode_tail for a large index (length field checked, trailer parsed), with
    the entries left for LazyIndex to decode on use. A large file's tail never holds its header."""
    need = tail_length_needed(tail, file_size, name)
    index_start = file_size - need
    body_end = len(tail) - TRAILER_SIZE - INDEX_SIZE_FIELD
    body = bytes(memoryview(tail)[len(tail) - need:body_end])
    trailer = Trailer.decode(tail[len(tail) - TRAILER_SIZE:], name, file_size - TRAILER_SIZE)
    index = LazyIndex(body, name, index_start, index_start)
    index.trailer = trailer
    return index
