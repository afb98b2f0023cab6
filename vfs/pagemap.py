"""Where each page of a view lives: page number -> (LTX file, position in that file's index).

The first file of a restore plan (usually a snapshot) is the *base*; its compact index is used as
is, and a snapshot's page `p` sits at position `p - 1` (`p - 2` past the lock page), so looking a
page up costs no search. Pages of every later file go into an *overlay* dict, the latest file
winning. Pages above the newest commit are dead.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ltx.header import Header, lock_pgno
from ltx.pagesums import PageSums
from ltx.plan import LTXFileInfo


class IntColumn(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, pos: int, /) -> int: ...


class FrameIndex(Protocol):
    """A file's page index by position: ltx.index.PageIndex, or vfs.lazyindex.LazyIndex."""

    @property
    def pgnos(self) -> IntColumn: ...
    @property
    def offsets(self) -> IntColumn: ...
    @property
    def sizes(self) -> IntColumn: ...
    def __len__(self) -> int: ...


def index_position(index: FrameIndex, pgno: int) -> int | None:
    """The position of `pgno` in `index`, or None."""
    find = getattr(index, "position", None)
    if find is not None:
        found: int | None = find(pgno)
        return found
    pgnos = index.pgnos
    pos = bisect_left(pgnos, pgno)  # type: ignore[call-overload]
    if pos < len(pgnos) and pgnos[pos] == pgno:
        return int(pos)
    return None


@dataclass(eq=False)
class SourceFile:
    """One LTX file a view reads pages from: its listing, page index and (when fetched) header."""

    info: LTXFileInfo
    index: FrameIndex
    header: Header | None
    #: The first bytes of the file when they were fetched at open (header and first frames).
    head: bytes | None = None
    #: Its pages' checksums from its sidecar, when it has one that matches it (ltx/pagesums.py).
    sums: PageSums | None = None

    def check_page(self, pos: int, pgno: int, page: bytes, offset: int) -> None:
        """Raise PageChecksumError when the sidecar's checksum for `pos` disagrees with `page`."""
        if self.sums is not None:
            self.sums.check(pos, pgno, page, self.info.key, offset)

    @property
    def key(self) -> str:
        return self.info.key

    @property
    def created_at(self) -> datetime:
        return self.info.created_at

    def frame(self, pos: int) -> tuple[int, int, int]:
        """(pgno, offset, size) of the frame at index position `pos`."""
        index = self.index
        return index.pgnos[pos], index.offsets[pos], index.sizes[pos]


class PageMap:
    """Page locations across the files of one view. Mutated only by the thread that owns it."""

    __slots__ = ("base", "newest", "file_count", "overlay", "commit", "page_size", "base_limit", "_dense",
                 "_lock_pgno")

    def __init__(self, base: SourceFile, page_size: int, commit: int) -> None:
        self.base = base
        self.newest = base
        #: Files applied so far (a file whose pages are all superseded is referenced no more).
        self.file_count = 1
        #: pgno -> (file, position in that file's index), for the files after the base.
        self.overlay: dict[int, tuple[SourceFile, int]] = {}
        self.page_size = page_size
        self.commit = commit
        #: Base pages above this were cut off by a later, smaller commit.
        self.base_limit = commit
        self._lock_pgno = lock_pgno(page_size)
        self._dense = _is_dense(base.index, self._lock_pgno)

    def locate(self, pgno: int) -> tuple[SourceFile, int] | None:
        """The file holding `pgno` and its index position, or None (past the commit, or absent)."""
        if pgno > self.commit:
            return None
        loc = self.overlay.get(pgno)
        if loc is not None:
            return loc
        if pgno > self.base_limit:
            return None
        base = self.base
        pgnos = base.index.pgnos
        if self._dense:
            pos = pgno - 1 if pgno < self._lock_pgno else pgno - 2
            if 0 <= pos < len(pgnos) and pgnos[pos] == pgno:
                return base, pos
            return None
        found = index_position(base.index, pgno)
        return None if found is None else (base, found)

    def is_live(self, source: SourceFile, pos: int) -> bool:
        """Whether the frame at `pos` of `source` is the current version of its page."""
        found = self.locate(source.index.pgnos[pos])
        return found is not None and found[0] is source and found[1] == pos

    def add(self, source: SourceFile, commit: int | None) -> set[int]:
        """Apply a newer file (its pages win) whose header says `commit` (None: header not fetched,
        so no truncation); return the page numbers whose contents changed, dropped pages included."""
        changed: set[int] = set()
        pgnos = source.index.pgnos
        if commit is None:
            commit = max(self.commit, pgnos[-1] if len(pgnos) else 0)
        elif commit < self.commit:
            changed.update(self.truncate(commit))
        self.newest = source
        self.file_count += 1
        overlay = self.overlay
        for pos in range(len(pgnos)):
            pgno = pgnos[pos]
            if pgno <= commit:
                overlay[pgno] = (source, pos)
                changed.add(pgno)
        self.commit = commit
        return changed

    def truncate(self, commit: int) -> list[int]:
        """Drop pages above `commit`; return their page numbers."""
        self.commit = min(self.commit, commit)
        dropped = [p for p in self.overlay if p > commit]
        for p in dropped:
            del self.overlay[p]
        if commit < self.base_limit:
            base = self.base.index.pgnos
            start = bisect_left(base, commit + 1)  # type: ignore[call-overload]
            stop = bisect_left(base, self.base_limit + 1)  # type: ignore[call-overload]
            dropped.extend(base[i] for i in range(start, stop))
            self.base_limit = commit
        return dropped


def _is_dense(index: FrameIndex, lock: int) -> bool:
    """Whether `index` holds every page 1..N but the lock page (a snapshot's shape)."""
    n = len(index)
    if n == 0:
        return False
    last = index.pgnos[n - 1]
    expected = last - 1 if last > lock else last
    return index.pgnos[0] == 1 and n == expected


def build_page_map(files: list[SourceFile], page_size: int, commit: int) -> PageMap:
    """A page map over the files of a restore plan, applied in order."""
    first = files[0]
    if first.header is not None:
        first_commit = first.header.commit
    else:
        first_commit = first.index.pgnos[-1] if len(first.index) else 0
    pages = PageMap(first, page_size, first_commit)
    for f in files[1:]:
        pages.add(f, f.header.commit if f.header is not None else None)
    if commit < pages.commit:
        pages.truncate(commit)
    pages.commit = commit
    return pages
