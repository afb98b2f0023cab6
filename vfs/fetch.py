"""Fetching page frames: one Range GET per run of adjacent frames, runs in parallel, every frame
checked (page header, size field, LZ4 block decoding to exactly one page) before SQLite sees it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ltx.errors import LTXError
from ltx.frame import decode_frame
from ltx.store.base import ObjectNotFoundError, ObjectStore, StoreError
from vfs.errors import PageCorruptError, PageReadError
from vfs.pagemap import SourceFile
from vfs.parallel import run_all
from vfs.sparseindex import SparseIndex


@dataclass
class Run:
    """Frames `first`..`last` (index positions) of one file, fetched by one GET; `wanted` are the
    positions to decode (the others are in the range only to keep it one request)."""

    source: SourceFile
    first: int
    last: int
    wanted: list[int]

    @property
    def offset(self) -> int:
        index = self.source.index
        if isinstance(index, SparseIndex):
            return index.span_range(self.first, self.last)[0]
        return index.offsets[self.first]

    @property
    def length(self) -> int:
        index = self.source.index
        if isinstance(index, SparseIndex):
            return index.span_range(self.first, self.last)[1]
        return index.offsets[self.last] + index.sizes[self.last] - index.offsets[self.first]


class FileGoneError(PageReadError):
    """A planned file is no longer in the store (retention removed it after compaction)."""


class PageFetcher:
    """Fetch runs of frames for SQLite's thread: one run inline, several in parallel."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def fetch(self, runs: Sequence[Run], page_size: int) -> list[tuple[int, bytes]]:
        """Return (pgno, page) for every wanted frame of `runs`."""
        results = run_all([self._caller(r, page_size) for r in runs])
        out: list[tuple[int, bytes]] = []
        for pages in results:
            out.extend(pages)
        return out

    def _caller(self, run: Run, page_size: int) -> Callable[[], list[tuple[int, bytes]]]:
        return lambda: self._fetch_run(run, page_size)

    def _fetch_run(self, run: Run, page_size: int) -> list[tuple[int, bytes]]:
        store = self.store
        key = run.source.key
        offset, length = run.offset, run.length
        try:
            data = store.get_range(key, offset, length)
        except ObjectNotFoundError as exc:
            raise FileGoneError(store.url, key, f"file is gone from the replica ({exc.reason})") from exc
        except StoreError as exc:
            raise PageReadError(store.url, key, f"cannot read bytes {offset}..{offset + length}: "
                                                f"{exc.reason}") from exc
        except OSError as exc:
            raise PageReadError(store.url, key, f"cannot read bytes {offset}..{offset + length}: {exc}") from exc
        if len(data) != length:
            raise PageReadError(store.url, key, f"asked for {length} bytes at {offset}, got {len(data)}")
        index = run.source.index
        if isinstance(index, SparseIndex):
            try:
                found = index.decode_spans(data, index.span_range(run.first, run.last)[2], run.wanted, page_size)
            except LTXError as exc:
                raise PageCorruptError(store.url, key, str(exc.reason) + f" (at offset {exc.offset})") from exc
            return [(pgno, page) for _, pgno, page in found]
        view = memoryview(data)
        out = []
        for pos in run.wanted:
            start = index.offsets[pos] - offset
            size = index.sizes[pos]
            try:
                pgno, page = decode_frame(view[start:start + size], page_size, key, index.offsets[pos],
                                          index.pgnos[pos])
                run.source.check_page(pos, pgno, page, index.offsets[pos])
            except LTXError as exc:
                raise PageCorruptError(store.url, key, str(exc.reason) + f" (frame at offset {exc.offset})") from exc
            out.append((pgno, page))
        return out
