"""Slice records: the 24-byte entries of `jfs_chunk.slices`, and a chunk's visible view of them.

A file is cut into 64 MiB chunks. Each chunk row holds an append-only list of records
`pos u32 | id u64 | size u32 | off u32 | len u32` (big-endian): bytes [off, off+len) of slice `id`
(an object of `size` bytes) appear at chunk offset `pos`. A later record wins where records
overlap; `id == 0` is a hole that reads as zeros.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from blockmap.errors import CorruptMetadataError

#: Bytes per record, and the struct that packs one.
SLICE_RECORD_SIZE = 24
_RECORD = struct.Struct(">IQIII")
#: Chunk size: 64 MiB (JuiceFS `ChunkSize`).
CHUNK_SIZE = 64 << 20
#: Files end before this many bytes (JuiceFS's maxFileSize, 128 PiB: chunk indexes stay within
#: 31 bits); a write or truncate reaching it is EFBIG.
MAX_FILE_SIZE = CHUNK_SIZE << 31
#: Compaction: at most this many records are merged at once (JuiceFS `maxCompactSlices`).
MAX_COMPACT_RECORDS = 1000
#: A leading record at least this long may be left out of a compaction (JuiceFS skips them too).
MIN_SKIP_LENGTH = 1 << 20
#: ...if it is at least 1/SKIP_RATIO of the span being compacted.
SKIP_RATIO = 5


@dataclass(frozen=True)
class SliceRecord:
    """One record: bytes [off, off+len) of slice `id` (`size` bytes long) at chunk offset `pos`."""

    pos: int
    id: int
    size: int
    off: int
    len: int

    def encode(self) -> bytes:
        """The 24-byte big-endian form."""
        self.validate()
        return _RECORD.pack(self.pos, self.id, self.size, self.off, self.len)

    @classmethod
    def decode(cls, data: bytes, what: str = "slice record") -> SliceRecord:
        """Parse 24 bytes; `what` names the row in errors."""
        if len(data) != SLICE_RECORD_SIZE:
            raise CorruptMetadataError(what, f"slice record is {len(data)} bytes, expected 24")
        return cls(*_RECORD.unpack(data))

    def validate(self, what: str = "slice record") -> None:
        """Raise CorruptMetadataError unless the record fits in a chunk and inside its slice."""
        if not (0 <= self.pos and self.pos + self.len <= CHUNK_SIZE):
            raise CorruptMetadataError(what, f"record {self} extends past the 64 MiB chunk")
        if self.len <= 0 or self.len >= 1 << 32:
            raise CorruptMetadataError(what, f"record {self} has length {self.len}")
        if self.id < 0 or self.id >= 1 << 64:
            raise CorruptMetadataError(what, f"record {self} has slice id out of range")
        if self.id and not (0 <= self.off and self.off + self.len <= self.size < 1 << 32):
            raise CorruptMetadataError(what, f"record {self} reads past the end of its slice")

    @property
    def end(self) -> int:
        return self.pos + self.len


def hole(pos: int, length: int) -> SliceRecord:
    """A record that makes [pos, pos+length) of a chunk read as zeros."""
    return SliceRecord(pos, 0, 0, 0, length)


def encode_records(records: Sequence[SliceRecord]) -> bytes:
    """Concatenate the records' 24-byte forms."""
    return b"".join(r.encode() for r in records)


def decode_records(blob: Any, what: str = "chunk") -> list[SliceRecord]:
    """Parse a `slices` value (possibly typed TEXT by SQLite after `||`); `what` names the row."""
    if blob is None:
        return []
    if isinstance(blob, str):
        data = blob.encode("utf-8", "surrogateescape")
    elif isinstance(blob, (bytes, bytearray, memoryview)):
        data = bytes(blob)
    else:
        raise CorruptMetadataError(what, f"slices value has type {type(blob).__name__}")
    if len(data) % SLICE_RECORD_SIZE:
        raise CorruptMetadataError(what, f"slices value is {len(data)} bytes, not a multiple of 24")
    return [
        SliceRecord(*_RECORD.unpack_from(data, i)) for i in range(0, len(data), SLICE_RECORD_SIZE)
    ]


@dataclass(frozen=True)
class Segment:
    """A visible piece of a chunk: [pos, pos+len) reads bytes [off, off+len) of slice `id` (0: zeros)."""

    pos: int
    id: int
    size: int
    off: int
    len: int

    @property
    def end(self) -> int:
        return self.pos + self.len


def _piece(s: Segment, start: int, end: int) -> Segment:
    """The part [start, end) of segment `s`."""
    return Segment(start, s.id, s.size, s.off + (start - s.pos) if s.id else 0, end - start)


def build_view(records: Sequence[SliceRecord]) -> list[Segment]:
    """The chunk as readers see it: ordered, non-overlapping segments from 0 to the last record's end,
    holes (id 0) filling every gap. Later records win where they overlap."""
    starts: list[int] = []
    segs: list[Segment] = []
    for r in records:
        if r.len <= 0:
            continue
        lo, hi = r.pos, r.end
        i = bisect.bisect_left(starts, lo)
        if i > 0 and segs[i - 1].end > lo:
            i -= 1
        j = i
        while j < len(segs) and segs[j].pos < hi:
            j += 1
        new: list[Segment] = []
        if i < j and segs[i].pos < lo:
            new.append(_piece(segs[i], segs[i].pos, lo))
        new.append(Segment(lo, r.id, r.size, r.off, r.len) if r.id else Segment(lo, 0, 0, 0, r.len))
        if i < j and segs[j - 1].end > hi:
            new.append(_piece(segs[j - 1], hi, segs[j - 1].end))
        segs[i:j] = new
        starts[i:j] = [s.pos for s in new]
    out: list[Segment] = []

    def emit(seg: Segment) -> None:
        if seg.id == 0 and out and out[-1].id == 0:  # merge adjacent holes
            prev = out.pop()
            seg = Segment(prev.pos, 0, 0, 0, seg.end - prev.pos)
        out.append(seg)

    at = 0
    for s in segs:
        if s.pos > at:
            emit(Segment(at, 0, 0, 0, s.pos - at))
        emit(s)
        at = s.end
    return out


@dataclass(frozen=True)
class CompactionPlan:
    """Records [skipped, skipped+count) of a chunk become one slice of `size` bytes at `pos`,
    whose bytes are `segments` (the visible view of those records over [pos, pos+size))."""

    skipped: int
    count: int
    pos: int
    size: int
    segments: tuple[Segment, ...]


def _trimmed_view(records: Sequence[SliceRecord]) -> tuple[int, int, list[Segment]]:
    view = build_view(records)
    while view and view[0].id == 0:
        view.pop(0)
    while view and view[-1].id == 0:
        view.pop()
    if not view:
        return 0, 0, []
    return view[0].pos, view[-1].end - view[0].pos, view


def plan_compaction(records: Sequence[SliceRecord]) -> CompactionPlan | None:
    """Decide which records of a chunk to merge into one new slice, or None when it is not worth it.

    Large leading records that are still fully visible are left alone (rewriting them would cost
    more than it saves); at most MAX_COMPACT_RECORDS records are merged at once.
    """
    window = list(records[:MAX_COMPACT_RECORDS])
    skipped = 0
    while skipped < len(window) - 1:
        first = window[skipped]
        pos, size, view = _trimmed_view(window[skipped:])
        if size == 0 or first.id == 0 or first.len < MIN_SKIP_LENGTH or first.len * SKIP_RATIO < size:
            break
        head = view[0]
        intact = (head.pos, head.id, head.off, head.len) == (first.pos, first.id, first.off, first.len)
        if not intact or first in window[skipped + 1 :]:
            break
        skipped += 1
    rest = window[skipped:]
    if len(rest) < 2:
        return None
    pos, size, view = _trimmed_view(rest)
    if size == 0:
        return None
    return CompactionPlan(skipped, len(rest), pos, size, tuple(view))


def chunk_span(offset: int, length: int) -> list[tuple[int, int, int]]:
    """Split file range [offset, offset+length) at chunk boundaries: (chunk index, chunk offset, length)."""
    out: list[tuple[int, int, int]] = []
    while length > 0:
        indx, coff = divmod(offset, CHUNK_SIZE)
        n = min(length, CHUNK_SIZE - coff)
        out.append((indx, coff, n))
        offset += n
        length -= n
    return out
