"""The page index: (page number, frame offset, frame size) as LEB128 varints, then 0 and a u64
length; and a compact in-memory form of it."""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from ltx.errors import LTXIndexError, LTXTruncatedError

INDEX_SIZE_FIELD = 8
#: Longest varint the index parser reads before calling it malformed (Go's binary.MaxVarintLen64).
MAX_VARINT_SIZE = 10
#: Bytes one index entry may take before the parser has judged it: three longest varints.
MAX_INDEX_ENTRY_SIZE = 3 * MAX_VARINT_SIZE
_U64 = struct.Struct(">Q")


@dataclass(frozen=True)
class IndexEntry:
    """Where one page's frame sits in its file."""

    pgno: int
    offset: int
    size: int


def append_uvarint(out: bytearray, value: int) -> None:
    """Append `value` as an unsigned LEB128 varint (Go's binary.AppendUvarint)."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(data: bytes | memoryview, pos: int, name: str, base: int) -> tuple[int, int]:
    """Read one varint at `pos`; return (value, next position). At most 10 bytes, as Go's."""
    value = 0
    shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise LTXTruncatedError(name, base + pos + i, "page index varint cut short")
        b = data[pos + i]
        if i == 9 and b > 1:
            raise LTXIndexError(name, base + pos + i, "page index varint overflows 64 bits")
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + i + 1
        shift += 7
    raise LTXIndexError(name, base + pos, "page index varint longer than 10 bytes")


class PageIndex:
    """A file's page index held compactly (three arrays, ascending page numbers)."""

    __slots__ = ("pgnos", "offsets", "sizes")

    def __init__(self) -> None:
        self.pgnos = array("I")
        self.offsets = array("Q")
        self.sizes = array("I")

    def append(self, pgno: int, offset: int, size: int) -> None:
        self.pgnos.append(pgno)
        self.offsets.append(offset)
        self.sizes.append(size)

    def __len__(self) -> int:
        return len(self.pgnos)

    def __iter__(self) -> Iterator[IndexEntry]:
        for i in range(len(self.pgnos)):
            yield IndexEntry(self.pgnos[i], self.offsets[i], self.sizes[i])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PageIndex) and (
            self.pgnos == other.pgnos and self.offsets == other.offsets and self.sizes == other.sizes)

    def find(self, pgno: int) -> IndexEntry | None:
        """The entry for `pgno`, or None when this file does not hold that page."""
        i = bisect_left(self.pgnos, pgno)
        if i < len(self.pgnos) and self.pgnos[i] == pgno:
            return IndexEntry(pgno, self.offsets[i], self.sizes[i])
        return None

    def encode(self) -> bytes:
        """The on-disk index: entries, a 0 terminator, and the u64 length of both."""
        out = bytearray()
        for i in range(len(self.pgnos)):
            append_uvarint(out, self.pgnos[i])
            append_uvarint(out, self.offsets[i])
            append_uvarint(out, self.sizes[i])
        out.append(0)
        return bytes(out) + _U64.pack(len(out))

    @classmethod
    def decode(cls, data: bytes | memoryview, name: str = "", base: int = 0) -> PageIndex:
        """Parse an index whose bytes (entries, terminator, u64 length) are exactly `data`;
        `base` is the file offset of data[0], for messages. Checks order and the length field."""
        if len(data) < 1 + INDEX_SIZE_FIELD:
            raise LTXTruncatedError(name, base, "page index cut short")
        body_len = len(data) - INDEX_SIZE_FIELD
        (declared,) = _U64.unpack_from(data, body_len)
        if declared != body_len:
            raise LTXIndexError(name, base + body_len, f"index length field {declared} != {body_len}")
        index = cls()
        body = memoryview(data)[:body_len]
        pos = 0
        prev = 0
        try:
            while True:
                pgno, pos = read_uvarint(body, pos, name, base)
                if pgno == 0:
                    break
                offset, pos = read_uvarint(body, pos, name, base)
                size, pos = read_uvarint(body, pos, name, base)
                if pgno <= prev or pgno > 0xFFFFFFFF:
                    raise LTXIndexError(name, base + pos, f"page index entry {pgno} out of order after {prev}")
                index.append(pgno, offset, size)
                prev = pgno
        except LTXTruncatedError as exc:
            raise LTXIndexError(name, exc.offset, f"page index entries run past its {body_len}-byte length "
                                                  "(no terminator)") from exc
        if pos != body_len:
            raise LTXIndexError(name, base + pos, f"{body_len - pos} stray bytes after the index terminator")
        return index

    def validate(self, name: str, index_start: int, header_size: int) -> None:
        """Frames must lie between the header and the index, without overlapping."""
        end = header_size
        for i in range(len(self.pgnos)):
            off, size = self.offsets[i], self.sizes[i]
            if off < end or off + size > index_start or size < 10:
                raise LTXIndexError(name, index_start, f"index entry for page {self.pgnos[i]} points "
                                                       f"outside the page block ({off}+{size})")
            end = off + size
