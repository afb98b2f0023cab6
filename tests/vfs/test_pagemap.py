"""The page map: base snapshot lookups, later files winning, commits cutting pages off."""

from __future__ import annotations

from datetime import UTC, datetime

from ltx.header import Header, lock_pgno
from ltx.index import PageIndex
from ltx.plan import LTXFileInfo
from vfs.pagemap import PageMap, SourceFile, build_page_map

PAGE = 4096


def source(min_txid: int, max_txid: int, pgnos: list[int], commit: int | None) -> SourceFile:
    index = PageIndex()
    offset = 100
    for p in pgnos:
        index.append(p, offset, 50 + p % 7)
        offset += 50 + p % 7
    info = LTXFileInfo(0, min_txid, max_txid, offset + 30, datetime.now(UTC), f"{min_txid}-{max_txid}")
    header = None if commit is None else Header(page_size=PAGE, commit=commit, min_txid=min_txid, max_txid=max_txid)
    return SourceFile(info, index, header)


def located(pages: PageMap, pgno: int) -> tuple[str, int] | None:
    found = pages.locate(pgno)
    return None if found is None else (found[0].key, found[1])


def test_snapshot_lookup_is_positional_and_skips_the_lock_page() -> None:
    lock = lock_pgno(PAGE)
    pgnos = [p for p in range(1, lock + 3) if p != lock]
    snap = source(1, 1, pgnos, commit=lock + 2)
    pages = PageMap(snap, PAGE, lock + 2)
    assert located(pages, 1) == ("1-1", 0)
    assert located(pages, lock - 1) == ("1-1", lock - 2)
    assert located(pages, lock) is None
    assert located(pages, lock + 1) == ("1-1", lock - 1)
    assert located(pages, lock + 2) == ("1-1", lock)
    assert located(pages, lock + 3) is None


def test_later_files_win_and_report_changed_pages() -> None:
    pages = PageMap(source(1, 1, list(range(1, 11)), 10), PAGE, 10)
    changed = pages.add(source(2, 2, [1, 3, 12], 12), 12)
    assert changed == {1, 3, 12}
    assert located(pages, 1) == ("2-2", 0)
    assert located(pages, 2) == ("1-1", 1)
    assert located(pages, 11) is None, "a page never written is in no file"
    assert located(pages, 12) == ("2-2", 2)
    assert pages.is_live(pages.newest, 0) and not pages.is_live(pages.base, 0)


def test_a_smaller_commit_drops_pages_for_good() -> None:
    pages = PageMap(source(1, 1, list(range(1, 11)), 10), PAGE, 10)
    pages.add(source(2, 2, [2, 9], 10), 10)
    changed = pages.add(source(3, 3, [1], 5), 5)
    assert changed == {1, 6, 7, 8, 9, 10}
    assert pages.commit == 5 and located(pages, 6) is None and located(pages, 9) is None
    pages.add(source(4, 4, [6, 7], 7), 7)
    assert located(pages, 6) == ("4-4", 0)
    assert located(pages, 8) is None, "a base page cut off by a shrink does not come back"


def test_build_from_a_plan_without_intermediate_headers() -> None:
    files = [source(1, 5, list(range(1, 9)), None), source(6, 7, [2, 9, 10], None), source(8, 8, [3], 9)]
    pages = build_page_map(files, PAGE, 9)
    assert pages.commit == 9
    assert located(pages, 2) == ("6-7", 0)
    assert located(pages, 9) == ("6-7", 1)
    assert located(pages, 10) is None
    assert located(pages, 3) == ("8-8", 0)
