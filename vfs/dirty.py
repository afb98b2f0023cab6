"""Dirty pages: what a writer's transaction (or a group of committed transactions) changed.

Pages live in memory until they pass a byte budget, then in an anonymous local temporary file
(one slot per page, reused on rewrite), so a large transaction costs disk, not memory. Besides the
pages, a buffer tracks the database size in pages after its writes and `cut`: the lowest size a
truncation reached. A page at or below `cut` that the buffer does not hold reads from the layer
beneath; a page above `cut` that it does not hold reads as zeros (the file was cut there and the
page never written again), exactly as a real file behaves.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator

#: Bytes of pages a buffer keeps in memory before moving them to a local temporary file.
DEFAULT_MEMORY_BYTES = 32 * 1024 * 1024



@functools.lru_cache(maxsize=8)
def zero_page(page_size: int) -> bytes:
    """A page of zeros (what a page past a cut reads as), one shared object per page size."""
    return bytes(page_size)

class DirtyPages:
    """Pages by page number, the size they leave the database at, and the lowest cut."""

    __slots__ = ("page_size", "size", "cut", "_mem", "_slots", "_file", "_next_slot", "_free",
                 "_memory_bytes", "_spill_dir")

    def __init__(self, page_size: int, base_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 spill_dir: str | None = None) -> None:
        self.page_size = page_size
        #: Database size in pages after these writes.
        self.size = base_size
        #: Pages above this and not held here read as zeros; at or below, from the layer beneath.
        self.cut = base_size
        self._mem: dict[int, bytes] = {}
        self._slots: dict[int, int] = {}
        self._file: int | None = None
        self._next_slot = 0
        self._free: list[int] = []
        self._memory_bytes = memory_bytes
        self._spill_dir = spill_dir

    def __len__(self) -> int:
        return len(self._mem) + len(self._slots)

    def __contains__(self, pgno: object) -> bool:
        return pgno in self._mem or pgno in self._slots

    def __bool__(self) -> bool:
        return True

    @property
    def spilled(self) -> bool:
        return self._file is not None

    @property
    def nbytes(self) -> int:
        return len(self) * self.page_size

    def get(self, pgno: int) -> bytes | None:
        """The page, or None when this buffer does not hold it."""
        page = self._mem.get(pgno)
        if page is not None or self._file is None:
            return page
        slot = self._slots.get(pgno)
        if slot is None:
            return None
        ps = self.page_size
        data = os.pread(self._file, ps, slot * ps)
        if len(data) != ps:
            raise OSError(f"dirty-page file: short read of page {pgno} ({len(data)} of {ps} bytes)")
        return data

    def put(self, pgno: int, page: bytes) -> None:
        """Hold a whole page (a copy of `page` when it is not `bytes`)."""
        if len(page) != self.page_size:
            raise ValueError(f"page {pgno}: {len(page)} bytes, page size is {self.page_size}")
        if pgno > self.size:
            self.size = pgno
        if self._file is None:
            self._mem[pgno] = page if type(page) is bytes else bytes(page)
            if len(self._mem) * self.page_size > self._memory_bytes:
                self._spill()
            return
        slot = self._slots.get(pgno)
        if slot is None:
            slot = self._free.pop() if self._free else self._take_slot()
            self._slots[pgno] = slot
        self._pwrite(slot, page)

    def truncate(self, size: int) -> None:
        """Cut the database to `size` pages: pages above it are dropped."""
        if size < self.size:
            for pgno in [p for p in self._mem if p > size]:
                del self._mem[pgno]
            for pgno in [p for p in self._slots if p > size]:
                self._free.append(self._slots.pop(pgno))
        self.cut = min(self.cut, size)
        self.size = size

    def pgnos(self) -> list[int]:
        """Page numbers held, ascending."""
        return sorted([*self._mem, *self._slots])

    def items(self) -> Iterator[tuple[int, bytes]]:
        """(pgno, page) ascending."""
        for pgno in self.pgnos():
            page = self.get(pgno)
            assert page is not None
            yield pgno, page

    def merge(self, newer: DirtyPages) -> None:
        """Lay a later buffer (built on top of this one) over this one: its cut first, then its pages."""
        self.truncate(min(self.size, newer.cut))
        for pgno, page in newer.items():
            self.put(pgno, page)
        self.size = newer.size

    def close(self) -> None:
        """Release the temporary file, if any."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self._mem.clear()
        self._slots.clear()

    # -- spilling --------------------------------------------------------------------------

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix="ltxvfs-dirty-", dir=self._spill_dir)
        os.unlink(path)  # anonymous: gone with the process, whatever happens to it
        self._file = fd
        mem, self._mem = self._mem, {}
        for pgno in sorted(mem):
            slot = self._take_slot()
            self._slots[pgno] = slot
            self._pwrite(slot, mem[pgno])

    def _take_slot(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        return slot

    def _pwrite(self, slot: int, page: bytes) -> None:
        assert self._file is not None
        ps = self.page_size
        written = os.pwrite(self._file, page, slot * ps)
        if written != ps:
            raise OSError(f"dirty-page file: short write ({written} of {ps} bytes)")
