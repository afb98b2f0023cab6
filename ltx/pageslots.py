"""A batch of decoded pages in one buffer, as the C frame loop (ltx._frames) lays them out.

Slot k holds the frame prefix of page `pgnos[k]`, then the page. Handing a batch around as one
buffer (rather than a Python object per page) is what lets a hydration write 256 MB without
allocating, and garbage-collecting, 65,536 page objects.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from ltx.native import load_frames
from ltx.pagewrite import write_pages

_frames = load_frames()


@dataclass
class PageSlots:
    """`pgnos` (ascending) and their pages: page k is `buf[k * stride + stride - page_size:][:page_size]`."""

    pgnos: array[int]
    buf: bytearray
    page_size: int
    stride: int

    def __len__(self) -> int:
        return len(self.pgnos)

    def _at(self, k: int) -> int:
        return k * self.stride + self.stride - self.page_size

    def page(self, k: int) -> memoryview:
        """Page k, as a view into the buffer."""
        at = self._at(k)
        return memoryview(self.buf)[at:at + self.page_size]

    def pages(self) -> list[memoryview]:
        """Every page as a view (an object per page: for the few callers that need them)."""
        return [self.page(k) for k in range(len(self.pgnos))]

    def replace(self, k: int, page: bytes | memoryview) -> None:
        """Overwrite page k in place."""
        if len(page) != self.page_size:
            raise ValueError(f"a page of {len(page)} bytes where {self.page_size} are due")
        at = self._at(k)
        self.buf[at:at + self.page_size] = page

    def write_to(self, fd: int) -> None:
        """Write every page to `fd` at (pgno - 1) * page_size, one pwritev per run of consecutive
        page numbers (in C without the GIL where ltx._frames was built)."""
        if _frames is not None:
            _frames.write_slots(fd, self.buf, len(self.pgnos), self.page_size, self.stride, self.pgnos)
            return
        write_pages(fd, self.page_size, self.pgnos, self.pages())
