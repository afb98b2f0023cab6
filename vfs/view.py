"""A view: the database as of one TXID, built from a restore plan in two round trips.

Round trip 1 lists the replica (S3: one LIST of the levels above 0 and one of level 0's first
page, so thousands of level-0 files awaiting retention cost one more round trip, not one per
1000 keys; file://: one walk) and, beside it, GETs the hint file (page 1 and
the top levels of every b-tree of one state within 256 KiB, ltx/hint.py); round trip 2 fetches every planned file's
page index at once (one suffix GET each, sized from the listed file size) and, for a large first or newest
file, its head (header and first frames: page 1 and the low pages). Only an index longer than
the guess costs a third, exactly sized, GET. The frames that came along (small files whole, the
heads) are decoded into the connection's cache when it adopts the view, and so are the hint's
pages when the hint is of exactly the view's state: a point query then waits only for the levels
of its b-tree that the hint did not hold, and its leaf.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import cast

from ltx.btree import schema_roots
from ltx.errors import LTXError
from ltx.frame import FRAME_PREFIX_SIZE, decode_frame, lz4_bound
from ltx.header import HEADER_SIZE, MAX_PAGE_SIZE, Header, lock_pgno
from ltx.hint import Hint
from ltx.index import INDEX_SIZE_FIELD
from ltx.pagesums import (
    SUMS_MAGIC,
    SUMS_VERSION_SPANS,
    PageSums,
    PageSumsError,
    SpanPrefix,
    pages_of_sums_size,
    prefix_size,
    span_stride,
    sums_layout,
)
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo, RestorePlanError, restore_plan
from ltx.reader import DEFAULT_INDEX_FETCH_SIZE, decode_tail, tail_length_needed
from ltx.replica import Replica
from ltx.store.base import InvalidURLError, ObjectNotFoundError, StoreError
from ltx.trailer import TRAILER_SIZE, Trailer
from vfs.errors import PageCorruptError, ReplicaOpenError
from vfs.firstlook import LEVEL0_HEAD_FILES, FirstLook
from vfs.hint import (
    HintOutcome,
    fetch_hint,
    hint_from_answer,
    hint_pages,
    hint_probe,
    may_apply,
    older_hint_pages,
)
from vfs.lazyindex import LAZY_INDEX_BYTES, decode_tail_lazy
from vfs.pagemap import FrameIndex, PageMap, SourceFile, build_page_map
from vfs.parallel import run_all
from vfs.sparseindex import SparseIndex, check_sparse_header
from vfs.stats import ReadStats

log = logging.getLogger(__name__)

ALL_LEVELS = tuple(range(SNAPSHOT_LEVEL + 1))
#: Suffix fetched to find a large file's index: its size divided by this (an index entry is ~9
#: bytes per 4 KiB page compressing to ~2 KiB), so one GET usually suffices.
INDEX_GUESS_DIVISOR = 200
#: Beyond this guess (an index this long takes longer to transfer than a round trip), the file's
#: size divided by LARGE_INDEX_GUESS_DIVISOR instead: the index of pages that do not compress
#: (~10 bytes per ~4.1 KB frame), fetched in one GET without doubling the bytes; a file of pages
#: that do compress has a longer index, and the rest costs a second, exact GET.
LARGE_INDEX_GUESS = 4 * 1024 * 1024
LARGE_INDEX_GUESS_DIVISOR = 400
#: The most fetched on a guess; a longer index costs a second, exact GET.
MAX_INDEX_FETCH_SIZE = 64 * 1024 * 1024
#: Bytes fetched from the start of a large file instead of its bare header: enough for page 1
#: at any page size (header + frame prefix + LZ4 bound of 64 KiB), and several low pages at 4 KiB.
HEAD_FETCH_SIZE = HEADER_SIZE + FRAME_PREFIX_SIZE + lz4_bound(MAX_PAGE_SIZE)
#: The first file's head when the replica's hint lacks the low pages an open reads (`long_heads`):
#: a schema over several pages has its leaves after the roots of its tables and indexes (a blockmap
#: volume's: pages 28 and 29, ~90 KB into its snapshot), and one-page tables are low too.
LOW_PAGES_HEAD_SIZE = 2 * HEAD_FETCH_SIZE


#: Files up to this size are fetched whole at open: one GET, checked by the file checksum, where a
#: suffix GET of the index would need a second one for the page checksum sidecar (a writer's
#: level-1 chunks of small commits are just above the sidecar threshold, 32 KiB).
WHOLE_FETCH_SIZE = 64 * 1024


#: Most bytes of one index entry: page number (5), offset (5: files up to 32 GiB), size (3).
MAX_INDEX_ENTRY_BYTES = 13
#: The index's terminator, length field and the trailer after the entries.
INDEX_TAIL_BYTES = 1 + INDEX_SIZE_FIELD + TRAILER_SIZE


def index_fetch_size(file_size: int, sums_size: int = 0) -> int:
    """Bytes of a file's tail to fetch in one GET to hold its index (the whole file if small).
    A file listed with a page checksum sidecar (one we wrote) tells its page count by the
    sidecar's size, so the GET is sized to the longest index of that many pages; otherwise it
    is guessed from the file's size."""
    if file_size <= WHOLE_FETCH_SIZE:
        return file_size
    pages = pages_of_sums_size(sums_size) if sums_size else None
    if pages is not None:
        return min(file_size, pages * MAX_INDEX_ENTRY_BYTES + INDEX_TAIL_BYTES)
    guess = min(file_size // INDEX_GUESS_DIVISOR, max(LARGE_INDEX_GUESS, file_size // LARGE_INDEX_GUESS_DIVISOR))
    return max(DEFAULT_INDEX_FETCH_SIZE, min(guess, MAX_INDEX_FETCH_SIZE))


@dataclass
class View:
    """What a connection reads: the pages as of `txid`, and where the history was last seen."""

    txid: int
    page_size: int
    pages: PageMap
    #: Creation time of the newest applied file (what `PRAGMA litestream_time` shows at latest).
    created_at: datetime
    #: Per level, the min TXID of the newest file seen there: a real file boundary to list from.
    seeks: dict[int, int] = field(default_factory=dict)
    #: The plan's files until their fetched bytes have been preloaded into a cache.
    fresh: list[SourceFile] = field(default_factory=list)
    #: Pages of a hint of exactly this state, until preloaded into a cache.
    hint_pages: list[tuple[int, bytes]] = field(default_factory=list)
    #: What became of the replica's hint at this view's load (vfs.hint.HintOutcome).
    hint_outcome: str = ""

    def take_hint_pages(self) -> list[tuple[int, bytes]]:
        """The hint's pages, once (the cache that takes them owns them from then on)."""
        pages, self.hint_pages = self.hint_pages, []
        return pages

    @property
    def commit(self) -> int:
        return self.pages.commit


class ReplicaReader:
    """The VFS's requests to one replica: parallel level listings and index fetches."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.store = replica.store
        #: Sidecars found damaged or stale (their files are read without per-page checksums).
        self.sums_ignored = 0
        #: Page indexes fetched after the spans that stood in for them were refused (a round trip each).
        self.index_refetches = 0

    @property
    def url(self) -> str:
        return self.replica.url

    def list_all(self) -> dict[int, list[LTXFileInfo]]:
        """Every level from one listing of the whole replica (one round trip up to 1000 files)."""
        return self.replica.list_all()

    def list_split(self) -> list[Callable[[], object]]:
        """The calls of a listing in one round trip however many level-0 files wait for retention
        (a fast writer leaves thousands, and a whole-replica LIST pages through them one round
        trip per 1000): every level above 0, and level 0's first LIST page. `finish_split` then
        lists level 0 from where the levels above end, when that page did not hold all of it."""
        return [lambda: self.replica.list_all(self.replica.above_level_0),
                lambda: list(islice(self.replica.iter_level(0), LEVEL0_HEAD_FILES))]

    def first_looked(self, first: FirstLook) -> tuple[list[object], int]:
        """`list_split`'s answers from a first look, and the round trips it cost beyond the first
        (one when level 0's first keys held fewer files than their count: other keys among them)."""
        first.settle()
        above = self.replica.levels_of(first.above())
        objects, more = first.head()
        head = list(islice(self.replica.level_files(0, objects), LEVEL0_HEAD_FILES))
        if more and len(head) < LEVEL0_HEAD_FILES:
            head = list(islice(self.replica.iter_level(0), LEVEL0_HEAD_FILES))
            return [above, head], 1
        return [above, head], 0

    def finish_split(self, above: dict[int, list[LTXFileInfo]],
                     head: list[LTXFileInfo]) -> tuple[dict[int, list[LTXFileInfo]], bool]:
        """The levels from `list_split`'s answers, listing the rest of level 0 (past the TXID the
        levels above reach) when its first page was full; True when level 0 was cut short so."""
        levels = dict(above)
        levels[0] = head
        if len(head) < LEVEL0_HEAD_FILES:
            return levels, False
        reach = max((f.max_txid for lvl, files in above.items() if lvl > 0 for f in files), default=0)
        seek = max(reach + 1, head[-1].min_txid + 1)
        levels[0] = head + self.replica.list_level(0, seek)
        return levels, seek > head[-1].min_txid + 1

    def list_levels(self, levels: Sequence[int], seeks: dict[int, int] | None = None) -> dict[int, list[LTXFileInfo]]:
        """List levels in parallel (one round trip), each from its seek TXID."""
        seeks = seeks or {}

        def lister(level: int) -> Callable[[], list[LTXFileInfo]]:
            return lambda: self.replica.list_level(level, seeks.get(level, 0))

        return dict(zip(levels, run_all([lister(lvl) for lvl in levels]), strict=True))

    def read_index(self, info: LTXFileInfo) -> tuple[FrameIndex, Header | None, bytes | None, Trailer]:
        """One suffix GET sized from the listed size; a second only when the index is longer.
        Returns the index (decoded lazily when large), the header when the suffix reached it,
        the file's bytes when the suffix was the whole file, and the trailer."""
        store = self.store
        key = info.key
        guess = index_fetch_size(info.size, info.sums_size)
        tail, size = store.get_suffix(key, guess)
        need = tail_length_needed(tail, size, key)
        if need > len(tail):
            tail = store.get_range(key, size - need, need - len(tail)) + tail
        if len(tail) < size and need >= LAZY_INDEX_BYTES:
            lazy = decode_tail_lazy(tail, size, key)
            assert lazy.trailer is not None
            return lazy, None, None, lazy.trailer
        decoded = decode_tail(tail, size, key)
        return decoded.index, decoded.header, (tail if len(tail) == size else None), decoded.trailer

    def read_sums(self, info: LTXFileInfo) -> PageSums | None:
        """A file's sidecar (one GET), or None when it is gone or unreadable as a sidecar (the
        file's pages are then checked as a Litestream file's are: structure and LZ4 size)."""
        key = info.sums_key
        assert key is not None
        try:
            data = self.store.get(key)
        except ObjectNotFoundError:
            return None
        try:
            return PageSums.decode(data, key)
        except LTXError as exc:
            self.sums_ignored += 1
            log.warning("%s: ignoring a damaged page checksum file: %s", self.url, exc)
            return None

    def read_spans(self, info: LTXFileInfo, length: int) -> SpanPrefix | None:
        """The spans at the start of a file's version-2 sidecar (one GET of `length` bytes, an
        upper bound from the listed size), or None when it is gone or damaged (with a warning)."""
        key = info.sums_key
        assert key is not None
        try:
            data = self.store.get_range(key, 0, length)
        except ObjectNotFoundError:
            return None
        try:
            layout = sums_prefix_length(data)
            if layout is None or layout > len(data):
                raise PageSumsError(key, len(data), "not the start of a version-2 page checksum file")
            return SpanPrefix.decode(data[:layout], key)
        except LTXError as exc:
            self.sums_ignored += 1
            log.warning("%s: ignoring a damaged page checksum file: %s", self.url, exc)
            return None

    def read_head(self, info: LTXFileInfo, length: int = HEAD_FETCH_SIZE) -> bytes:
        """The first bytes of a file: its header and the frames after it (one GET)."""
        return self.store.get_range(info.key, 0, min(length, info.size))

    def load_files(self, infos: Sequence[LTXFileInfo], heads: bool = True) -> list[SourceFile]:
        """`load_files_probing` without a probe."""
        return self.load_files_probing(infos, heads)[0]

    def load_files_probing(self, infos: Sequence[LTXFileInfo], heads: bool = True,
                           probe: LTXFileInfo | None = None, sparse: bool = False,
                           meanwhile: Callable[[], object] | None = None,
                           bare: Container[int] = (),
                           long: Container[int] = ()) -> tuple[list[SourceFile], Header | None]:
        """Fetch the indexes of `infos` in parallel and return them as source files, and the header
        of `probe` (a file not in `infos`, fetched in the same round trip) when one is asked for.

        The newest file's header is needed (page size, commit); a small file's suffix GET holds
        the whole file, header included. For a large newest file, and a large first file (the
        snapshot, usually), a head GET in the same round trip brings the header and the first
        frames: page 1 and the low pages where schemas and table roots live. The bytes of small
        files and heads are kept on the source files (`head`) for `head_pages`.

        With `sparse`, files with a version-2 sidecar (ours) are not asked for their page index
        nor their whole sidecar (nor, when small, their bytes): the sidecar's spans come instead
        (a small GET), and their pages are read by span (vfs/sparseindex.py). That is a large
        first file (the snapshot), and every other one but the newest whose spans are its whole
        index (a span per frame: up to FULL_SPANS_PAGES pages). Spans that are damaged, stale or
        disagree with the file are ignored with a warning, and those files' indexes and sidecars
        are then fetched (one more round trip) and read as before.

        `bare`: positions in `infos` whose head is the bare header (the hint holds the pages
        their first frames would bring); `long`: positions whose head is LOW_PAGES_HEAD_SIZE."""
        span_of: dict[int, int] = {}
        if sparse and heads:
            for i, info in enumerate(infos):
                if length := _spans_prefix_length(info, i, len(infos)):
                    span_of[i] = length
        calls: list[Callable[[], object]] = [self._spans_call(info, span_of[i]) if i in span_of
                                             else self._index_call(info) for i, info in enumerate(infos)]
        head_of: list[int] = []
        if infos:
            for i in sorted({0, len(infos) - 1}):
                big = index_fetch_size(infos[i].size, infos[i].sums_size) < infos[i].size
                if big and (heads or i == len(infos) - 1):
                    head_of.append(i)
                    size = HEADER_SIZE if i in bare else LOW_PAGES_HEAD_SIZE if i in long else HEAD_FETCH_SIZE
                    calls.append(self._head_call(infos[i], size))
        sums_of = [i for i, info in enumerate(infos)
                   if info.sums_key is not None and index_fetch_size(info.size, info.sums_size) < info.size
                   and i not in span_of]
        calls.extend(self._sums_call(infos[i]) for i in sums_of)
        if probe is not None:
            calls.append(self._probe_call(probe))
        try:
            results = run_all(calls, meanwhile)
        except LTXError as exc:
            raise PageCorruptError(self.url, exc.name, exc.reason) from exc
        probed = cast(Header | None, results.pop()) if probe is not None else None
        spans: dict[int, SpanPrefix | None] = {}
        for i in span_of:
            spans[i] = cast(SpanPrefix | None, results[i])
            results[i] = (_PENDING, None, None, Trailer(0, 0))
        files: list[SourceFile] = []
        trailers: list[Trailer] = []
        for info, result in zip(infos, results, strict=False):
            index, header, whole, trailer = cast(tuple[FrameIndex, Header | None, bytes | None, Trailer], result)
            files.append(SourceFile(info, index, header, whole))
            trailers.append(trailer)
        for i, found in zip(sums_of, results[len(infos) + len(head_of):], strict=True):
            sums = cast(PageSums | None, found)
            if sums is None:
                continue
            info = infos[i]
            if sums.describes(info.min_txid, info.max_txid, trailers[i].file_checksum,
                              len(files[i].index)):
                files[i].sums = sums
            else:
                self.sums_ignored += 1
                log.warning("%s: ignoring a stale page checksum file %s (it describes another file)",
                            self.url, info.sums_key)
        for i, head in zip(head_of, results[len(infos):len(infos) + len(head_of)], strict=True):
            assert isinstance(head, bytes)
            f = files[i]
            try:
                header = Header.decode(head, f.key)
                header.validate(f.key)
            except LTXError as exc:
                raise PageCorruptError(self.url, f.key, exc.reason) from exc
            f.header = header
            f.head = head
        if spans:
            self._adopt_spans(files, spans)
        for f in files:
            _check_file(self.url, f)
        return files, probed

    def _adopt_spans(self, files: list[SourceFile], spans: dict[int, SpanPrefix | None]) -> None:
        """Give the files at the positions of `spans` their sparse index, or (spans missing,
        damaged, stale or at odds with the file) their whole page index and sidecar, fetched in
        one more round trip."""
        newest = files[-1].header
        refetch: list[SourceFile] = []
        for i, found in spans.items():
            f = files[i]
            index = self._spans_index(f, found, newest)
            if index is None:
                refetch.append(f)
            else:
                f.index = index
        if refetch:
            self.index_refetches += 1
            self._adopt_whole(refetch)

    def _spans_index(self, f: SourceFile, spans: SpanPrefix | None, newest: Header | None) -> SparseIndex | None:
        """`f`'s index from its spans, or None (with a warning) when they cannot be used."""
        if spans is None:
            return None
        info, header = f.info, f.header
        try:
            timestamp = header.timestamp if header is not None else spans.timestamp
            if not spans.describes(info.min_txid, info.max_txid, info.size, timestamp):
                raise PageSumsError(info.sums_key or "", 0, "describes another file (stale)")
            page_size = header.page_size if header is not None else (
                newest.page_size if newest is not None else spans.page_size)
            if spans.page_size != page_size:
                raise PageSumsError(info.sums_key or "", 8, f"page size {spans.page_size}, the file's is {page_size}")
            if spans.spans.stride > 1 and (header is None or not header.is_snapshot):
                raise PageSumsError(info.sums_key or "", 56, "spans of several frames in a file that is not a "
                                                             "snapshot")
            index = SparseIndex(spans.spans, spans.pages, lock_pgno(page_size), info.size, info.key)
            if header is not None and header.is_snapshot:
                check_sparse_header(index, header.commit, header.lock_pgno, info.key)
            if f.head is not None:
                index.check_head(f.head)
        except LTXError as exc:
            self.sums_ignored += 1
            log.warning("%s: ignoring the spans of page checksum file %s: %s", self.url, info.sums_key, exc)
            return None
        return index

    def _adopt_whole(self, files: Sequence[SourceFile]) -> None:
        """The whole page index and sidecar of each of `files`, in one round trip, as a file
        without spans gets them at open: a sidecar's per-page checksums are used when it
        describes the file (so a file damaged where its spans were checked still fails the
        damaged page)."""
        calls: list[Callable[[], object]] = []
        for f in files:
            calls.append(self._index_call(f.info))
            if f.info.sums_key is not None:
                calls.append(self._sums_call(f.info))
        try:
            results = iter(run_all(calls))
        except LTXError as exc:
            raise PageCorruptError(self.url, exc.name, exc.reason) from exc
        for f in files:
            info = f.info
            index, header, whole, trailer = cast(tuple[FrameIndex, Header | None, bytes | None, Trailer],
                                                 next(results))
            f.index = index
            if f.header is None and header is not None:
                f.header = header
            if whole is not None:
                f.head = whole
            sums = cast(PageSums | None, next(results)) if info.sums_key is not None else None
            if sums is not None and sums.describes(info.min_txid, info.max_txid, trailer.file_checksum, len(index)):
                f.sums = sums

    def _index_call(self, info: LTXFileInfo) -> Callable[[], tuple[FrameIndex, Header | None, bytes | None,
                                                                   Trailer]]:
        return lambda: self.read_index(info)

    def _spans_call(self, info: LTXFileInfo, length: int) -> Callable[[], SpanPrefix | None]:
        return lambda: self.read_spans(info, length)

    def _head_call(self, info: LTXFileInfo, length: int) -> Callable[[], bytes]:
        return lambda: self.read_head(info, length)

    def _sums_call(self, info: LTXFileInfo) -> Callable[[], PageSums | None]:
        return lambda: self.read_sums(info)

    def _probe_call(self, info: LTXFileInfo) -> Callable[[], Header | None]:
        def probe() -> Header | None:
            try:
                header = Header.decode(self.store.get_range(info.key, 0, HEADER_SIZE), info.key)
                header.validate(info.key)
            except (LTXError, StoreError):
                return None  # only a hint's check: without it the hint is not used
            return header if (header.min_txid, header.max_txid) == (info.min_txid, info.max_txid) else None
        return probe


class _Pending:
    """Stands in for the first file's index until its spans are adopted."""

    pgnos: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []

    def __len__(self) -> int:
        return 0


_PENDING = _Pending()


def _spans_prefix_length(info: LTXFileInfo, pos: int, count: int) -> int:
    """Bytes to fetch of the sidecar of the `pos`-th of `count` planned files for its spans, or 0
    when it is not read by span: no version-2 sidecar; first, a snapshot too small for its index
    not to be fetched whole; later, the newest file (its header is needed) or spans longer than a
    frame (only a snapshot's pages are known between span starts)."""
    layout = sums_layout(info.sums_size) if info.sums_size else None
    if layout is None or not layout[1]:
        return 0
    pages, prefix = layout
    if pos == 0:
        big = index_fetch_size(info.size, info.sums_size) < info.size
        return prefix if info.min_txid == 1 and big else 0
    return prefix if pos < count - 1 and span_stride(pages) == 1 else 0


def sums_prefix_length(data: bytes) -> int | None:
    """The exact prefix length a fetched version-2 sidecar start announces (None: not one)."""
    if len(data) < 16 or data[:4] != SUMS_MAGIC:
        return None
    version, _, pages = struct.unpack_from(">III", data, 4)
    return prefix_size(pages) if version == SUMS_VERSION_SPANS else None


def open_reader(url: str) -> ReplicaReader:
    """The replica at `url` behind a ReplicaReader; a bad URL is ReplicaOpenError."""
    try:
        replica = Replica.open(url)
    except InvalidURLError as exc:
        raise ReplicaOpenError(url, str(exc)) from exc
    return ReplicaReader(replica)


def _check_file(url: str, f: SourceFile) -> None:
    """The header (when fetched) must agree with the listed name."""
    h = f.header
    if h is None:
        return
    if (h.min_txid, h.max_txid) != (f.info.min_txid, f.info.max_txid):
        raise PageCorruptError(url, f.key, f"header TXIDs {h.min_txid:x}-{h.max_txid:x} disagree with the name")


def view_from_files(url: str, files: list[SourceFile], seeks: dict[int, int]) -> View:
    """Assemble a view from a plan's loaded files (page size and commit from the newest header)."""
    newest = files[-1]
    if newest.header is None:
        raise PageCorruptError(url, newest.key, "newest file's header was not fetched")
    page_size = newest.header.page_size
    for f in files:
        if f.header is not None and f.header.page_size != page_size:
            raise PageCorruptError(url, f.key, f"page size {f.header.page_size} differs from the newest "
                                               f"file's {page_size}")
    pages = build_page_map(files, page_size, newest.header.commit)
    return View(txid=newest.info.max_txid, page_size=page_size, pages=pages,
                created_at=newest.created_at, seeks=seeks, fresh=files)


def head_pages(pages: PageMap, files: Sequence[SourceFile]) -> list[tuple[int, bytes]]:
    """Pages whose frames lie wholly in the fetched heads of `files` and are still the current
    version in `pages` (decoded and checked like any fetched frame; a damaged one is left out, so
    only a read of that page fails); the heads are then dropped."""
    out: list[tuple[int, bytes]] = []
    for f in files:
        head = f.head
        if head is None:
            continue
        f.head = None
        index = f.index
        if isinstance(index, SparseIndex):
            out.extend((pgno, page) for pos, pgno, page in index.head_pages(head, pages.page_size)
                       if pages.is_live(f, pos))
            continue
        view_bytes = memoryview(head)
        for pos in range(len(index)):
            off, size = index.offsets[pos], index.sizes[pos]
            if off + size > len(head):
                break
            if not pages.is_live(f, pos):
                continue
            try:
                pgno, page = decode_frame(view_bytes[off:off + size], pages.page_size, f.key, off, index.pgnos[pos])
                f.check_page(pos, pgno, page, off)
                out.append((pgno, page))
            except LTXError:
                continue  # not cached: reading that page fetches it again and reports the damage
    return out


def holds_low_pages(hint: Hint) -> bool:
    """Whether `hint` holds the low pages an open reads before any query of its own: page 1 with
    the whole schema on it, and the root of every table and index the schema names. A hint keeps
    page 1 and interior pages only, so a schema over several pages (its leaves) or a table of one
    page (a leaf root) are not there: then a file's first frames must bring them, or every open
    pays a round trip per such page, one after the other (a blockmap volume's schema, settings
    and counters: 6 serial GETs)."""
    page1 = hint.pages.get(1)
    if page1 is None:
        return False
    roots = schema_roots(page1)
    return bool(roots) and all(r in hint.pages for r in roots)


def bare_heads(hint: Hint | None, plan: Sequence[LTXFileInfo]) -> set[int]:
    """Plan positions whose head GET needs only the header: with a hint holding the low pages
    (page 1, schema, roots: `holds_low_pages`), the first file's are the hint's or a later file's;
    the newest file's only when the hint may be of exactly its state."""
    if hint is None or not plan or not holds_low_pages(hint):
        return set()
    bare = {0} if len(plan) > 1 else set()
    if may_apply(hint, plan[-1].max_txid):
        bare.add(len(plan) - 1)
    return bare


def long_heads(hint: Hint | None, plan: Sequence[LTXFileInfo]) -> set[int]:
    """Plan positions whose head GET is LOW_PAGES_HEAD_SIZE: the first file's, when the replica
    has a hint (one of ours) that lacks the low pages an open reads (`holds_low_pages`), so the
    open's reads of the schema's leaves and the one-page tables come with the head."""
    if hint is None or not plan or holds_low_pages(hint):
        return set()
    return {0}


def level_seeks(levels: dict[int, list[LTXFileInfo]]) -> dict[int, int]:
    """Per level, the min TXID of its newest file (where the next listing of that level starts)."""
    return {lvl: files[-1].min_txid for lvl, files in levels.items() if files}


def load_view(reader: ReplicaReader, txid: int = 0, timestamp: datetime | None = None,
              waited: ReadStats | None = None, use_hint: bool = True, first: FirstLook | None = None,
              meanwhile: Callable[[], object] | None = None) -> View:
    """List, plan and load: the latest view, or the one at `txid` / before `timestamp`. When
    SQLite's thread waits for it, `waited` counts its two round trips. `first`: the listing and
    the hint already requested on the reader's store (vfs/firstlook.py); `meanwhile`: work for
    this thread while the page indexes are in flight."""
    found: list[tuple[Hint | None, str]] = []
    split = reader.replica.scheme != "file"  # a local walk has no pages to wait for
    rounds = 2
    if first is not None:
        listed, extra = reader.first_looked(first)
        rounds += extra
        if use_hint:
            found.append(hint_from_answer(*first.hint()))
    else:
        calls: list[Callable[[], object]] = reader.list_split() if split else [reader.list_all]
        if use_hint:
            calls.append(lambda: found.append(fetch_hint(reader.store)))
        listed = run_all(calls)
    if split:
        levels, skipped = reader.finish_split(cast(dict[int, list[LTXFileInfo]], listed[0]),
                                              cast(list[LTXFileInfo], listed[1]))
        rounds += int(len(cast(list[LTXFileInfo], listed[1])) >= LEVEL0_HEAD_FILES)
    else:
        levels, skipped = cast(dict[int, list[LTXFileInfo]], listed[0]), False
    hint, outcome = found[0] if found else (None, HintOutcome.ABSENT)
    try:
        plan = restore_plan(levels, txid=txid, timestamp=timestamp, url=reader.url)
    except RestorePlanError:
        if not skipped:
            raise
        levels = reader.list_all()  # the levels above had a gap the skipped level-0 files fill
        rounds += 1
        plan = restore_plan(levels, txid=txid, timestamp=timestamp, url=reader.url)
    probe = hint_probe(hint, plan, levels)
    refetches = reader.index_refetches
    files, probed = reader.load_files_probing(plan, probe=probe, sparse=True, meanwhile=meanwhile,
                                              bare=bare_heads(hint, plan), long=long_heads(hint, plan))
    rounds += reader.index_refetches - refetches
    if waited is not None:
        waited.round_trips += rounds
    view = view_from_files(reader.url, files, level_seeks(levels))
    if hint is not None:
        newest = files[-1].header
        assert newest is not None
        view.hint_pages = hint_pages(hint, view.txid, newest, view.commit, view.page_size)
        if not view.hint_pages and probed is not None:
            view.hint_pages = older_hint_pages(hint, probed, files, view.commit, view.page_size)
        outcome = HintOutcome.USED if view.hint_pages else HintOutcome.STALE
    view.hint_outcome = outcome
    return view
