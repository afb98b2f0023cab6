"""A file's page index known by its spans (the sparse index its sidecar starts with,
ltx/pagesums.py). With a span per frame (small files) the spans are the whole index, each frame
with its own check value. With longer spans only a snapshot is read so: the page at each position
is known (a snapshot holds every page 1..commit but the lock page), its frame only to within its
span. A read fetches whole spans, checks each against
its check value, and walks the frames (each names its page and its size) to the ones it wants: the
index segment a page needs comes with the page, in the same GET.

Offsets and sizes of single frames are estimates (the span's bytes shared evenly) for read-ahead's
budget and gap decisions; `span_range` gives the bytes a fetch really takes.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from ltx.errors import LTXError, LTXIndexError, LTXPageError, LTXTruncatedError
from ltx.frame import FRAME_PREFIX_SIZE, PAGE_HEADER_SIZE, decode_frame
from ltx.header import HEADER_SIZE
from ltx.index import INDEX_SIZE_FIELD, IndexEntry
from ltx.pagesums import SUMS_SUFFIX, FrameSpans, frame_check, span_check
from ltx.trailer import TRAILER_SIZE

_SIZE = struct.Struct(">I")
#: The smallest frame: page header, size field and a one-byte LZ4 block.
_MIN_FRAME = FRAME_PREFIX_SIZE + 1


def _dense_firsts(count: int, stride: int, lock: int) -> array[int]:
    """The first page of each span of a snapshot of `count` pages (every page but the lock page)."""
    firsts = array("I", range(1, count + 1, stride))
    past = -(-(lock - 1) // stride)  # the first span starting at position >= lock - 1
    if past < len(firsts):
        firsts[past:] = array("I", range(past * stride + 2, count + 2, stride))
    return firsts


class SpanCheckError(LTXError):
    """A fetched span's frames differ from its check value in the sidecar, or do not walk."""


class _Pgnos:
    __slots__ = ("_n", "_lock")

    def __init__(self, n: int, lock: int) -> None:
        self._n = n
        self._lock = lock

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, pos: int) -> int:
        if pos < 0:
            pos += self._n
        if not 0 <= pos < self._n:
            raise IndexError(pos)
        pgno = pos + 1
        return pgno + 1 if pgno >= self._lock else pgno


class _Estimate:
    """Offsets (col 0) or sizes (col 1) of single frames, estimated within their spans."""

    __slots__ = ("_index", "_col")

    def __init__(self, index: SparseIndex, col: int) -> None:
        self._index = index
        self._col = col

    def __len__(self) -> int:
        return self._index.count

    def __getitem__(self, pos: int) -> int:
        index = self._index
        if pos < 0:
            pos += index.count
        if not 0 <= pos < index.count:
            raise IndexError(pos)
        k, i = divmod(pos, index.stride)
        size = index.lengths[k] // index.span_count(k)
        return size if self._col else index.starts[k] + i * size


class SparseIndex:
    """The index of a file of `count` pages, by spans (FrameIndex; with spans longer than a frame,
    a snapshot's, with estimated frames)."""

    def __init__(self, spans: FrameSpans, count: int, lock_pgno: int, file_size: int, name: str) -> None:
        """Check the spans against the file: page numbers ascending (and, with longer spans,
        where a snapshot has them), frames between the header and the smallest possible index."""
        self.name = name
        self.count = count
        self.stride = spans.stride
        self.lengths = spans.lengths
        self.checks = spans.checks
        self._lock = lock_pgno
        self.pgnos: _Pgnos | array[int] = _Pgnos(count, lock_pgno) if spans.stride > 1 else spans.first_pgnos
        self.offsets: _Estimate | array[int]
        self.sizes: _Estimate | array[int]
        #: Where each span starts (and, last, where the frames end).
        self.starts = array("Q", accumulate(spans.lengths, initial=HEADER_SIZE))
        if spans.stride == 1:
            self.offsets, self.sizes = self.starts[:-1], spans.lengths
        else:
            self.offsets, self.sizes = _Estimate(self, 0), _Estimate(self, 1)
        if len(spans) != -(-count // spans.stride):
            raise LTXIndexError(name, 0, f"{len(spans)} spans for {count} pages of stride {spans.stride}")
        first = spans.first_pgnos
        if spans.stride == 1:
            prev = 0
            for pgno in first:
                if not prev < pgno != lock_pgno:
                    raise LTXIndexError(name, 0, f"span of page {pgno} out of order after page {prev} (or the lock "
                                                 f"page)")
                prev = pgno
        elif first != _dense_firsts(count, spans.stride, lock_pgno):
            raise LTXIndexError(name, 0, "spans do not start where a snapshot's pages are")
        short = min(spans.lengths[:-1], default=spans.stride * _MIN_FRAME) < spans.stride * _MIN_FRAME
        if short or (len(spans) and spans.lengths[-1] < self.span_count(len(spans) - 1) * _MIN_FRAME):
            raise LTXIndexError(name, 0, "a span is too short for its frames")
        tail = PAGE_HEADER_SIZE + 3 * count + 1 + INDEX_SIZE_FIELD + TRAILER_SIZE
        if self.starts[-1] + tail > file_size:
            raise LTXIndexError(name, 0, f"spans end at byte {self.starts[-1]}, past what a {file_size}-byte "
                                         f"file leaves before its index")

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[IndexEntry]:
        for pos in range(self.count):
            yield IndexEntry(self.pgnos[pos], self.offsets[pos], self.sizes[pos])

    def span_count(self, k: int) -> int:
        """Frames in span `k`."""
        return min(self.stride, self.count - k * self.stride)

    def position(self, pgno: int) -> int | None:
        """The position of `pgno`, or None."""
        if self.stride == 1:
            pos = bisect_left(self.pgnos, pgno)
            return pos if pos < self.count and self.pgnos[pos] == pgno else None
        if pgno < 1:
            return None
        lock = self._lock
        if pgno == lock:
            return None
        pos = pgno - 1 if pgno < lock else pgno - 2
        return pos if pos < self.count else None

    def span_range(self, first: int, last: int) -> tuple[int, int, int]:
        """(offset, length, first span) of the bytes holding positions `first`..`last`: whole spans."""
        k0, k1 = first // self.stride, last // self.stride
        return self.starts[k0], self.starts[k1 + 1] - self.starts[k0], k0

    def decode_spans(self, data: bytes | memoryview, k0: int, wanted: Sequence[int], page_size: int,
                     check: bool = True) -> list[tuple[int, int, bytes]]:
        """(position, pgno, page) of each wanted position, from `data`: whole spans from span `k0`
        on. Every span is checked against its check value and walked; a span that does not match
        raises SpanCheckError naming the file (`check`: also for spans holding no wanted page)."""
        view = memoryview(data)
        want = set(wanted)
        out: list[tuple[int, int, bytes]] = []
        origin = self.starts[k0]
        k = k0
        while k < len(self.lengths) and self.starts[k] - origin < len(view):
            if self.starts[k + 1] - origin > len(view):
                raise LTXTruncatedError(self.name, self.starts[k], f"span {k} cut short")
            first = k * self.stride
            positions = range(first, first + self.span_count(k))
            if check or want.intersection(positions):
                frames = self._walk(view, self.starts[k] - origin, k, first)
                for pos, (start, size) in zip(positions, frames, strict=True):
                    if pos in want:
                        pgno, page = decode_frame(view[start:start + size], page_size, self.name, origin + start,
                                                  self.pgnos[pos])
                        out.append((pos, pgno, page))
            k += 1
        return out

    def _walk(self, view: memoryview, start: int, k: int, first: int) -> list[tuple[int, int]]:
        """The (start in `view`, size) of each frame of span `k`, checked against its value."""
        frames: list[tuple[int, int]] = []
        checks = array("I")
        pos = start
        end = start + self.lengths[k]
        for i in range(self.span_count(k)):
            if pos + FRAME_PREFIX_SIZE > end:
                raise SpanCheckError(self.name, self.starts[k], f"span {k} ends inside frame {first + i}")
            (block,) = _SIZE.unpack_from(view, pos + PAGE_HEADER_SIZE)
            size = FRAME_PREFIX_SIZE + block
            if pos + size > end:
                raise SpanCheckError(self.name, self.starts[k], f"span {k}: frame {first + i} runs past its end")
            checks.append(frame_check(view[pos:pos + size]))
            frames.append((pos, size))
            pos += size
        if pos != end:
            raise SpanCheckError(self.name, self.starts[k], f"span {k}: {end - pos} bytes after its last frame")
        if span_check(checks) != self.checks[k]:
            raise SpanCheckError(self.name, self.starts[k], f"pages {self.pgnos[first]}.."
                                 f"{self.pgnos[first + len(frames) - 1]} (span {k}) differ from their check "
                                 f"value in {self.name}{SUMS_SUFFIX}")
        return frames

    def check_head(self, head: bytes) -> None:
        """Check the first span against the file's first bytes when they hold it (SpanCheckError:
        the spans describe another file of this name, or the file is damaged there)."""
        if len(self.lengths) and self.starts[1] <= len(head):
            self._walk(memoryview(head), self.starts[0], 0, 0)

    def head_pages(self, head: bytes, page_size: int) -> list[tuple[int, int, bytes]]:
        """(position, pgno, page) of every frame in the spans that `head` (the file's first bytes)
        holds whole; spans that do not check are left out (reading their pages reports it)."""
        out: list[tuple[int, int, bytes]] = []
        view = memoryview(head)
        k = 0
        while k < len(self.lengths) and self.starts[k + 1] <= len(head):
            first = k * self.stride
            try:
                frames = self._walk(view, self.starts[k], k, first)
                for i, (start, size) in enumerate(frames):
                    pgno, page = decode_frame(view[start:start + size], page_size, self.name, start,
                                              self.pgnos[first + i])
                    out.append((first + i, pgno, page))
            except LTXError:
                pass
            k += 1
        return out


def check_sparse_header(index: SparseIndex, commit: int, lock_pgno: int, name: str) -> None:
    """A snapshot's header (fetched beside the spans) must agree with the spans' page count."""
    expected = commit - 1 if commit >= lock_pgno else commit
    if expected != index.count:
        raise LTXPageError(name, 0, f"header commit {commit} means {expected} pages, the page checksum file "
                                    f"says {index.count}")
