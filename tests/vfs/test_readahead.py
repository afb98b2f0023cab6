"""The read-ahead policy: interior pages parsed, scans recognised, runs grouped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import apsw

from ltx.btree import interior_children
from ltx.index import PageIndex
from ltx.plan import LTXFileInfo
from vfs.pagemap import PageMap, SourceFile
from vfs.readahead import MAX_WINDOW_PAGES, RECENT_PARENTS, ReadAhead


def _database(tmp_path: Path) -> tuple[list[bytes], int]:
    """A table big enough for a two-level b-tree; returns its pages and the root page number."""
    path = tmp_path / "t.db"
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 4096").fetchall()
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(2000)])
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 't'").fetchall()[0][0]
    assert isinstance(root, int)
    conn.close()
    data = path.read_bytes()
    return [data[i:i + 4096] for i in range(0, len(data), 4096)], root


def test_interior_children_match_sqlite_structure(tmp_path: Path) -> None:
    pages, root = _database(tmp_path)
    children = interior_children(root, pages[root - 1])
    assert children is not None and len(children) > 10
    assert len(set(children)) == len(children)
    for child in children:
        assert pages[child - 1][0] == 0x0D, "every child of the root is a table leaf here"
    assert interior_children(children[0], pages[children[0] - 1]) is None
    assert interior_children(1, pages[0]) is None, "page 1 is the schema's leaf here"


def test_observe_all_remembers_what_observing_each_would(tmp_path: Path) -> None:
    """A hint preloads hundreds of interior pages: observe_all parses only the last
    RECENT_PARENTS of them, and remembers exactly what observing each in turn would."""
    path = tmp_path / "many.db"
    conn = apsw.Connection(str(path))
    with conn:
        for n in range(RECENT_PARENTS + 8):  # more two-level b-trees than are remembered
            conn.execute(f"CREATE TABLE t{n}(id INTEGER PRIMARY KEY, v TEXT)")
            conn.executemany(f"INSERT INTO t{n} VALUES (?, ?)", [(i, "x" * 200) for i in range(60)])
    conn.close()
    data = path.read_bytes()
    pages = [(i // 4096 + 1, data[i:i + 4096]) for i in range(0, len(data), 4096)]
    interior = [p for p in pages if interior_children(*p) is not None]
    assert len(interior) > RECENT_PARENTS
    order = pages + interior[:5] + pages[:3]  # pages seen twice move to the end
    one, every = ReadAhead(), ReadAhead()
    for pgno, page in order:
        one.observe(pgno, page)
    every.observe_all(order)
    assert every.parents == one.parents and len(one.parents) == RECENT_PARENTS


def test_sibling_scan_grows_its_window(tmp_path: Path) -> None:
    pages, root = _database(tmp_path)
    ra = ReadAhead()
    ra.observe(root, pages[root - 1])
    children = interior_children(root, pages[root - 1])
    assert children is not None
    assert ra.predict(children[0], 10_000) == []
    assert ra.predict(children[1], 10_000) == children[2:3]
    assert ra.predict(children[3], 10_000) == children[4:7]
    assert ra.predict(children[7], 10_000) == children[8:15]
    assert ra.predict(children[20], 10_000) == [], "a jump ends the scan"


def test_sequential_and_descending_scans() -> None:
    ra = ReadAhead()
    assert ra.predict(100, 10_000) == []
    assert ra.predict(101, 10_000) == [102]
    assert ra.predict(103, 10_000) == [104, 105, 106]
    window = 4
    pgno = 107
    while window < MAX_WINDOW_PAGES:
        window *= 2
        got = ra.predict(pgno, 10_000)
        assert got == list(range(pgno + 1, pgno + window))
        pgno += window
    assert len(ra.predict(pgno, 10_000)) == MAX_WINDOW_PAGES - 1, "the window stops growing"
    ra = ReadAhead()
    assert ra.predict(50, 100) == []
    assert ra.predict(49, 100) == [48]
    assert ra.predict(47, 100) == [46, 45, 44]
    assert ra.predict(99, 100) == []
    assert ra.predict(100, 100) == [], "nothing is predicted past the commit"


def _file(pgnos: list[int], size: int) -> SourceFile:
    index = PageIndex()
    offset = 100
    for p in pgnos:
        index.append(p, offset, size)
        offset += size
    info = LTXFileInfo(9, 1, 1, offset + 30, datetime.now(UTC), "snap")
    return SourceFile(info, index, None)


def test_plan_groups_runs_and_bridges_small_gaps() -> None:
    big = _file(list(range(1, 2001)), 3000)
    pages = PageMap(big, 4096, 2000)
    ra = ReadAhead(gap_bytes=10_000)
    runs = ra.plan(500, pages, set())
    assert [(r.first, r.last, r.wanted) for r in runs] == [(499, 499, [499])]
    runs = ra.plan(501, pages, set())
    assert [(r.first, r.last, r.wanted) for r in runs] == [(500, 501, [500, 501])]
    runs = ra.plan(503, pages, {504, 505})
    assert [(r.first, r.last, r.wanted) for r in runs] == [(502, 505, [502, 505])]
    assert runs[0].length == 4 * 3000, "cached pages inside the run are bridged"
    ra = ReadAhead(gap_bytes=0)
    ra.plan(700, pages, set())
    runs = ra.plan(701, pages, {702})
    assert [(r.first, r.last) for r in runs] == [(700, 700)]


def test_small_files_are_fetched_whole() -> None:
    snap = _file(list(range(1, 101)), 3000)
    pages = PageMap(snap, 4096, 100)
    small = _file([3, 7, 8, 50], 400)
    pages.add(small, 100)
    runs = ReadAhead().plan(7, pages, {50})
    assert [(r.source is small, r.wanted) for r in runs] == [(True, [0, 1, 2])]


def test_a_random_miss_brings_its_neighbours_when_asked() -> None:
    """neighbours=BYTES: a random miss fetches the live, uncached frames of its file within that
    many bytes on either side, in the same run; without it, exactly its frame."""
    snap = _file(list(range(1, 101)), 3000)
    pages = PageMap(snap, 4096, 100)
    newer = _file([52], 3000)
    pages.add(newer, 100)  # page 52's frame in the snapshot is superseded
    assert [(r.first, r.last, r.wanted) for r in ReadAhead().plan(50, pages, set())] == [(49, 49, [49])]
    ra = ReadAhead(neighbour_bytes=7000)  # two frames of 3000 bytes either side
    runs = ra.plan(50, pages, {49})
    assert [(r.source is snap, r.first, r.last, r.wanted) for r in runs] == [(True, 47, 50, [47, 49, 50])]
    # a scan starting there misses the page after the neighbours next, and is recognised as one
    assert ra.predict(53, 100) == [54]


def test_neighbours_stay_in_the_file_of_the_miss() -> None:
    snap = _file(list(range(1, 101)), 3000)
    pages = PageMap(snap, 4096, 100)
    runs = ReadAhead(neighbour_bytes=10_000).plan(1, pages, set())
    assert [(r.first, r.last) for r in runs] == [(0, 3)], "no frames before the file's first"
    runs = ReadAhead(neighbour_bytes=10_000).plan(100, pages, set())
    assert [(r.first, r.last) for r in runs] == [(96, 99)]
