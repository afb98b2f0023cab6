"""Check a whole replica: every file decoded in full, each level's contiguity, the restore plan.

Problems are yielded as they are found, each naming the object and what is wrong with it. Files
are decoded in parallel, each streamed (memory per worker is one page plus its index).
"""

from __future__ import annotations

import io
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from ltx.dbheader import commit_problem
from ltx.decoder import Decoder
from ltx.errors import LTXError
from ltx.header import Header
from ltx.hint import HINT_KEY, read_hint
from ltx.names import format_txid
from ltx.pagesums import PageSums, needs_sums, page_sum
from ltx.plan import MAX_COMPACTION_LEVEL, SNAPSHOT_LEVEL, LTXFileInfo, RestorePlanError, restore_plan
from ltx.replica import Replica
from ltx.spanwatch import SpanWatch
from ltx.store.base import ObjectStore, StoreError

#: Files decoded at once.
DEFAULT_VERIFY_PARALLELISM = 8
#: Files up to this size are fetched in one GET; larger ones are streamed.
WHOLE_FETCH_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """Something wrong with `key` (an object key, or '' for the replica as a whole)."""

    url: str
    key: str
    message: str

    @property
    def object(self) -> str:
        return f"{self.url.rstrip('/')}/{self.key}" if self.key else self.url

    def __str__(self) -> str:
        return f"{self.object}: {self.message}"


@dataclass
class VerifyStats:
    """How much was checked."""

    files: int = 0
    bytes: int = 0
    levels: dict[int, int] = field(default_factory=dict)


def level_problems(url: str, levels: Mapping[int, Sequence[LTXFileInfo]]) -> list[Problem]:
    """Gaps and overlaps between neighbouring files of levels 0..8; non-snapshots at level 9."""
    out: list[Problem] = []
    for level in range(MAX_COMPACTION_LEVEL + 1):
        files = levels.get(level, ())
        for prev, cur in zip(files, files[1:], strict=False):
            if cur.min_txid > prev.max_txid + 1:
                out.append(Problem(url, cur.key, f"gap in level {level}: TXIDs {format_txid(prev.max_txid + 1)}.."
                                                  f"{format_txid(cur.min_txid - 1)} are missing after {prev.name}"))
            elif cur.min_txid <= prev.max_txid:
                out.append(Problem(url, cur.key, f"overlaps {prev.name} in level {level}"))
    for f in levels.get(SNAPSHOT_LEVEL, ()):
        if f.min_txid != 1:
            out.append(Problem(url, f.key, f"level {SNAPSHOT_LEVEL} holds snapshots only, but this file starts at "
                                           f"TXID {format_txid(f.min_txid)}"))
    return out


def _open(store: ObjectStore, info: LTXFileInfo) -> BinaryIO:
    if info.size <= WHOLE_FETCH_SIZE:
        return io.BytesIO(store.get(info.key))
    return store.open(info.key)


def read_sums(store: ObjectStore, info: LTXFileInfo) -> tuple[PageSums | None, str]:
    """The file's page checksum sidecar when it has one, or what is wrong with it. A sidecar
    beside a file small enough to be read whole is never used (a writer that crashed between
    putting a sidecar and its file leaves one, and the next file of that TXID may be small)."""
    key = info.sums_key
    if key is None or not needs_sums(info.size):
        return None, ""
    try:
        return PageSums.decode(store.get(key), key), ""
    except LTXError as exc:
        return None, f"page checksum file {key}: {exc.reason}"
    except StoreError as exc:
        return None, f"page checksum file {key}: cannot read: {exc.reason}"


def check_file(store: ObjectStore, info: LTXFileInfo) -> tuple[Header | None, list[str]]:
    """Decode one file in full, and check it against its page checksum sidecar when it has one;
    return its header (None if unreadable) and what is wrong."""
    problems: list[str] = []
    sums, damaged = read_sums(store, info)
    if damaged:
        problems.append(damaged)
    mismatched: list[int] = []
    page1: bytes | None = None
    try:
        with _open(store, info) as src:
            watch = SpanWatch(src, sums.spans, len(sums)) if sums is not None and sums.spans is not None else None
            dec = Decoder(watch or src, info.key)  # type: ignore[arg-type]
            if sums is None:
                for pgnos, pages in dec.batches():
                    if page1 is None and pgnos and pgnos[0] == 1:
                        page1 = pages[0]  # page numbers ascend: page 1 can only come first
            else:
                expected = sums.sums
                for pos, (pgno, page) in enumerate(dec.pages()):
                    if pgno == 1:
                        page1 = page
                    if pos >= len(expected) or page_sum(pgno, page) != expected[pos]:
                        mismatched.append(pgno)
    except LTXError as exc:
        return None, [*problems, f"{exc.reason} (at offset {exc.offset})"]
    except StoreError as exc:
        return None, [*problems, f"cannot read: {exc.reason}"]
    hdr = dec.header
    assert dec.trailer is not None
    spans_stale = sums is not None and sums.spans is not None and (sums.file_size, sums.timestamp) != (
        dec.n, dec.header.timestamp)
    if sums is not None and (spans_stale or not sums.describes(info.min_txid, info.max_txid,
                                                               dec.trailer.file_checksum, dec.page_count or 0)):
        problems.append(f"page checksum file {info.sums_key} describes another file (stale: readers ignore it)")
    elif watch is not None and watch.bad:
        k = watch.bad[0]
        assert sums is not None and sums.spans is not None
        problems.append(f"{len(watch.bad)} spans of page checksum file {info.sums_key} differ from the file's "
                        f"frames (first: the span from page {sums.spans.first_pgnos[k]}; readers refuse its pages)")
    elif mismatched:
        problems.append(f"{len(mismatched)} pages differ from page checksum file {info.sums_key} "
                        f"(first: page {mismatched[0]})")
    if (hdr.min_txid, hdr.max_txid) != (info.min_txid, info.max_txid):
        problems.append(f"header holds TXIDs {format_txid(hdr.min_txid)}-{format_txid(hdr.max_txid)}, "
                        f"not those of its name")
    if dec.n != info.size:
        problems.append(f"listed as {info.size} bytes, read {dec.n}")
    if (db_size := commit_problem(hdr.commit, page1)) is not None:
        problems.append(f"the header's commit says the database has {hdr.commit} pages, its page 1 says {db_size} "
                        f"(restore and hydration refuse this file)")
    return hdr, problems


def header_problems(url: str, headers: Mapping[str, tuple[LTXFileInfo, Header]]) -> list[Problem]:
    """Cross-file checks: one page size throughout; files ending at the same TXID agree on the
    database size (commit) there."""
    out: list[Problem] = []
    if not headers:
        return out
    sizes = Counter(h.page_size for _, h in headers.values())
    usual = sizes.most_common(1)[0][0]
    by_max: dict[int, tuple[LTXFileInfo, Header]] = {}
    for key, (info, hdr) in sorted(headers.items(), key=lambda kv: (kv[1][0].max_txid, kv[1][0].level)):
        if hdr.page_size != usual:
            out.append(Problem(url, key, f"page size {hdr.page_size}, other files have {usual}"))
        first = by_max.setdefault(info.max_txid, (info, hdr))
        if first[0] is not info and first[1].commit != hdr.commit:
            out.append(Problem(url, key, f"database size after TXID {format_txid(info.max_txid)} is {hdr.commit} "
                                         f"pages here, {first[1].commit} in {first[0].key}"))
    return out


class Verifier:
    """Verify one replica; iterate `problems()`, then read `stats`."""

    def __init__(self, replica: Replica, parallelism: int = DEFAULT_VERIFY_PARALLELISM) -> None:
        self.replica = replica
        self.parallelism = max(1, parallelism)
        self.stats = VerifyStats()

    def problems(self) -> Iterator[Problem]:
        url = self.replica.url
        levels = self.replica.list_levels()
        self.stats.levels = {lvl: len(files) for lvl, files in levels.items() if files}
        yield from level_problems(url, levels)
        try:
            restore_plan(levels, url=url)
        except RestorePlanError as exc:
            yield Problem(url, "", f"no restore plan: {_plan_reason(exc, url)}")
        headers: dict[str, tuple[LTXFileInfo, Header]] = {}
        files = [f for lvl in sorted(levels) for f in levels[lvl]]
        for info, (hdr, found) in self._decode_all(files):
            self.stats.files += 1
            self.stats.bytes += info.size
            for message in found:
                yield Problem(url, info.key, message)
            if hdr is not None and (hdr.min_txid, hdr.max_txid) == (info.min_txid, info.max_txid):
                headers[info.key] = (info, hdr)
        yield from header_problems(url, headers)
        yield from self._hint_problems()

    def _hint_problems(self) -> Iterator[Problem]:
        """A damaged hint file (a stale one is normal: readers use it only at its own state)."""
        try:
            read_hint(self.replica.store)
        except LTXError as exc:
            yield Problem(self.replica.url, HINT_KEY, f"damaged hint file (readers ignore it; `ltxctl compact` "
                                                      f"rewrites it): {exc.reason}")
        except StoreError as exc:
            yield Problem(self.replica.url, HINT_KEY, f"cannot read the hint file: {exc.reason}")

    def _decode_all(self, files: Sequence[LTXFileInfo]) -> Iterator[tuple[LTXFileInfo, tuple[Header | None,
                                                                                             list[str]]]]:
        """check_file over `files` in parallel, results in order, a bounded number in flight."""
        store = self.replica.store
        window: deque[tuple[LTXFileInfo, Future[tuple[Header | None, list[str]]]]] = deque()
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="ltx-verify") as pool:
            todo = iter(files)
            for info in todo:
                window.append((info, pool.submit(check_file, store, info)))
                if len(window) >= 2 * self.parallelism:
                    first, fut = window.popleft()
                    yield first, fut.result()
            while window:
                first, fut = window.popleft()
                yield first, fut.result()


def _plan_reason(exc: RestorePlanError, url: str) -> str:
    text = str(exc)
    prefix = f"{url}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def verify(replica: Replica, parallelism: int = DEFAULT_VERIFY_PARALLELISM) -> list[Problem]:
    """Every problem of `replica` (empty when all is well)."""
    return list(Verifier(replica, parallelism).problems())
