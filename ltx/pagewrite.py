"""Write pages at their offsets in a database file: one pwritev per run of consecutive page
numbers (the hydrator's applies, and PageSlots where the C extension was not built)."""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence

#: Adjacent pages written by one pwritev at most (under IOV_MAX, 1024 on Linux).
WRITE_BATCH_PAGES = 512


def page_runs(pgnos: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, end) index ranges of `pgnos` holding consecutive page numbers, each at most
    WRITE_BATCH_PAGES long (found with array operations: no Python step per page)."""
    n = len(pgnos)
    if n == 0:
        return []
    import numpy as np  # loaded by the first write, never by a reader that only reads

    if isinstance(pgnos, array) and pgnos.itemsize == 8:
        values = np.frombuffer(pgnos, dtype=np.uint64)
    else:
        values = np.asarray(pgnos, dtype=np.uint64)
    breaks = (np.flatnonzero(values[1:] != values[:-1] + np.uint64(1)) + 1).tolist()
    runs = []
    for start, end in zip([0, *breaks], [*breaks, n], strict=True):
        for i in range(start, end, WRITE_BATCH_PAGES):
            runs.append((i, min(end, i + WRITE_BATCH_PAGES)))
    return runs


def write_pages(fd: int, page_size: int, pgnos: Sequence[int], pages: Sequence[bytes | memoryview]) -> None:
    """Write pages at their offsets, each run of consecutive page numbers in one pwritev."""
    for i, j in page_runs(pgnos):
        offset = (pgnos[i] - 1) * page_size
        want = (j - i) * page_size
        done = os.pwritev(fd, pages[i:j], offset)
        if done != want:  # a short write: finish it from a joined buffer
            rest = memoryview(b"".join(pages[i:j]))[done:]
            while rest:
                rest = rest[os.pwrite(fd, rest, offset + want - len(rest)):]
