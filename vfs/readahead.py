"""Which pages to fetch along with a missing one, so scans cost few round trips and point
queries cost few bytes.

- A random miss fetches exactly its frame, or, when the connection asks for neighbours
  (`neighbours=BYTES`), also the frames of the same file within that many bytes on either side:
  rows written in one transaction (a file system's entry, inode and chunk rows) sit in pages
  close together, and one GET of a few KB more saves the round trips of their own misses.
- A scan is recognised two ways: SQLite missing page p+1 right after p (or p-1: descending), or
  missing the next child of a b-tree interior page whose previous child it just read (the
  interior pages seen on the way down are remembered). Each further step of the same scan doubles
  the window, up to a byte budget, so a long scan fetches ever larger batches.
- A small file (a level-0 commit, typically) is fetched whole on its first miss: its pages are
  the ones that just changed and SQLite is about to read them.
- The wanted frames become runs: one Range GET per stretch of a file, bridging small gaps
  (frames already cached or superseded) rather than paying for another request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Sequence

from ltx.btree import interior_children
from vfs.fetch import Run
from vfs.options import DEFAULT_NEIGHBOUR_BYTES
from vfs.pagemap import PageMap, SourceFile
from vfs.sparseindex import SparseIndex

#: Largest compressed batch one miss may fetch.
DEFAULT_READAHEAD_BYTES = 1024 * 1024
#: Largest window of a scan, in pages.
MAX_WINDOW_PAGES = 256
#: A file whose frames span at most this many bytes is fetched whole on its first miss.
SMALL_FILE_BYTES = 64 * 1024
#: Bytes of unwanted frames one GET may carry to join two wanted stretches of a file.
MAX_GAP_BYTES = 32 * 1024
#: Interior b-tree pages remembered for spotting sibling scans.
RECENT_PARENTS = 32

class ReadAhead:
    """The read-ahead policy of one connection (touched only by SQLite's thread)."""

    def __init__(self, max_bytes: int = DEFAULT_READAHEAD_BYTES, small_file_bytes: int = SMALL_FILE_BYTES,
                 gap_bytes: int = MAX_GAP_BYTES, neighbour_bytes: int = DEFAULT_NEIGHBOUR_BYTES) -> None:
        self.max_bytes = max_bytes
        self.neighbour_bytes = neighbour_bytes
        self.small_file_bytes = small_file_bytes
        self.gap_bytes = gap_bytes
        self._window = 1
        self._fwd_next = 0
        self._bwd_next = 0
        self._parents: OrderedDict[int, list[int]] = OrderedDict()
        #: (parent, child index) a forward / backward sibling scan would miss next.
        self._sib_fwd: tuple[int, int] | None = None
        self._sib_bwd: tuple[int, int] | None = None

    def observe(self, pgno: int, page: bytes) -> None:
        """Remember an interior page's children (called for each page decoded from the store)."""
        children = interior_children(pgno, page)
        if children is not None:
            self._remember(pgno, children)

    def observe_all(self, pages: Sequence[tuple[int, bytes]]) -> None:
        """`observe` each page in order, parsing only the pages that stay remembered: the last
        RECENT_PARENTS interior pages (a hint preloads hundreds at a large database's open)."""
        last: dict[int, list[int]] = {}
        for pgno, page in reversed(pages):
            if len(last) == RECENT_PARENTS:
                break
            if pgno in last:
                continue
            children = interior_children(pgno, page)
            if children is not None:
                last[pgno] = children
        for pgno in reversed(last):
            self._remember(pgno, last[pgno])

    def _remember(self, pgno: int, children: list[int]) -> None:
        self._parents[pgno] = children
        self._parents.move_to_end(pgno)
        while len(self._parents) > RECENT_PARENTS:
            self._parents.popitem(last=False)

    @property
    def parents(self) -> list[int]:
        """The interior pages remembered, oldest first."""
        return list(self._parents)

    def forget(self) -> None:
        """Drop remembered interior pages (the view changed under them)."""
        self._parents.clear()
        self._sib_fwd = self._sib_bwd = None

    def _grow(self) -> int:
        self._window = min(self._window * 2, MAX_WINDOW_PAGES)
        return self._window

    def predict(self, pgno: int, commit: int) -> list[int]:
        """Pages likely wanted soon after a miss of `pgno`, nearest first (not including it)."""
        if pgno == self._fwd_next:
            w = self._grow()
            extra = list(range(pgno + 1, min(pgno + w, commit + 1)))
            self._fwd_next = pgno + w
            self._bwd_next = 0
            return extra
        if pgno == self._bwd_next:
            w = self._grow()
            extra = list(range(pgno - 1, max(pgno - w, 0), -1))
            self._bwd_next = pgno - w
            self._fwd_next = 0
            return extra
        for parent, children in reversed(self._parents.items()):
            if pgno not in children:
                continue
            i = children.index(pgno)
            if self._sib_fwd is not None and self._sib_fwd == (parent, i) or (
                    i == 0 and self._sib_fwd is not None and self._sib_fwd[1] == -1):
                w = self._grow()
                extra = children[i + 1:i + w]
                self._sib_fwd = (parent, i + w) if i + w < len(children) else (parent, -1)
                self._sib_bwd = None
                return extra
            if self._sib_bwd is not None and self._sib_bwd == (parent, i):
                w = self._grow()
                extra = children[max(i - w + 1, 0):i][::-1]
                self._sib_bwd = (parent, i - w)
                self._sib_fwd = None
                return extra
            self._window = 1
            self._sib_fwd = (parent, i + 1) if i + 1 < len(children) else (parent, -1)
            self._sib_bwd = (parent, i - 1)
            self._fwd_next, self._bwd_next = pgno + 1, pgno - 1
            return []
        self._window = 1
        self._fwd_next, self._bwd_next = pgno + 1, pgno - 1
        return []

    def plan(self, pgno: int, pages: PageMap, cached: Container[int]) -> list[Run]:
        """Runs to fetch for a miss of `pgno` (which `pages` must locate)."""
        found = pages.locate(pgno)
        assert found is not None
        source, pos = found
        chosen: dict[int, tuple[SourceFile, set[int]]] = {id(source): (source, {pos})}
        budget = self.max_bytes - source.index.sizes[pos]
        predicted = self.predict(pgno, pages.commit)
        if not predicted and self.neighbour_bytes > 0:
            self._neighbours(source, pos, pages, cached, chosen[id(source)][1])
        for p in predicted:
            if p in cached:
                continue
            loc = pages.locate(p)
            if loc is None:
                continue
            size = loc[0].index.sizes[loc[1]]
            if size > budget:
                break
            budget -= size
            chosen.setdefault(id(loc[0]), (loc[0], set()))[1].add(loc[1])
        index = source.index
        n = len(index)
        if n > 1 and index.offsets[n - 1] + index.sizes[n - 1] - index.offsets[0] <= self.small_file_bytes:
            wanted = chosen[id(source)][1]
            for i in range(n):
                if i not in wanted and index.pgnos[i] not in cached and pages.is_live(source, i):
                    wanted.add(i)
        runs: list[Run] = []
        for src, positions in chosen.values():
            runs.extend(self._runs(src, sorted(positions)))
        return runs

    def _neighbours(self, source: SourceFile, pos: int, pages: PageMap, cached: Container[int],
                    wanted: set[int]) -> None:
        """Add to `wanted` the live, uncached frames of `source` within `neighbour_bytes` of the
        frame at `pos` (a random miss), and move the scan marks past them: a scan that starts
        here misses the page after the neighbours next, and is recognised as one."""
        index = source.index
        if isinstance(index, SparseIndex) and index.stride > 1:
            return  # a large snapshot's page comes with its span of frames already
        offsets, sizes, pgnos = index.offsets, index.sizes, index.pgnos
        low = offsets[pos] - self.neighbour_bytes
        high = offsets[pos] + sizes[pos] + self.neighbour_bytes
        first = last = pos
        i = pos - 1
        while i >= 0 and offsets[i] >= low:
            first = i
            i -= 1
        i = pos + 1
        while i < len(index) and offsets[i] + sizes[i] <= high:
            last = i
            i += 1
        for i in range(first, last + 1):
            if i != pos and pgnos[i] not in cached and pages.is_live(source, i):
                wanted.add(i)
        self._fwd_next, self._bwd_next = pgnos[last] + 1, pgnos[first] - 1

    def _runs(self, source: SourceFile, positions: list[int]) -> list[Run]:
        """Group a file's wanted positions into runs, bridging gaps of at most `gap_bytes`."""
        offsets, sizes = source.index.offsets, source.index.sizes
        runs: list[Run] = []
        cur: Run | None = None
        for pos in positions:
            if cur is not None:
                end = offsets[cur.last] + sizes[cur.last]
                if offsets[pos] - end <= self.gap_bytes:
                    cur.last = pos
                    cur.wanted.append(pos)
                    continue
            cur = Run(source, pos, pos, [pos])
            runs.append(cur)
        return runs
