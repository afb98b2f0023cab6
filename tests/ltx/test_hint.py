"""The hint file: its format, `ltxctl import` and `ltxctl compact` writing it, refreshes that advance
it or rebuild it, and Litestream restoring a replica that has one."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import apsw
import pytest

from ltx import hint as hint_module
from ltx.btree import interior_children, schema_roots
from ltx.cli import main as ltxctl
from ltx.encoder import Encoder
from ltx.errors import LTXError
from ltx.header import Header
from ltx.hint import (
    HINT_HEADER_SIZE,
    HINT_KEY,
    HINT_TRAILER_SIZE,
    HintHeader,
    decode_hint,
    encode_hint,
    hint_pages_of_image,
    hint_roots,
    is_hint_page,
    read_hint,
    refresh_hint,
    select_hint_pages,
    write_hint,
)
from ltx.importer import import_database
from ltx.replica import Replica
from tests.litestream import restore as litestream_restore

PAGE = 4096


def build_db(path: Path, rows: int = 30000) -> Path:
    """A table deep enough to have interior pages below its root, and a secondary index."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {PAGE}")
    conn.execute("PRAGMA journal_mode = delete")
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)",
                         ((i, f"k{(i * 7919) % 100003:06d}", f"value {i} " + "x" * (i % 200)) for i in range(rows)))
        conn.execute("CREATE INDEX t_k ON t(k)")
    conn.close()
    return path


def ship_change(replica: Replica, db: Path, txid: int, sql: str) -> None:
    """Apply `sql` to the local `db` and ship the pages it changed as the level-0 file `txid`."""
    before = db.read_bytes()
    conn = apsw.Connection(str(db))
    with conn:
        conn.execute(sql)
    conn.close()
    after = db.read_bytes()
    commit = len(after) // PAGE
    out = io.BytesIO()
    stamp = 1_700_000_000_000 + txid
    enc = Encoder(out, Header(page_size=PAGE, commit=commit, min_txid=txid, max_txid=txid, timestamp=stamp))
    for pgno in range(1, commit + 1):
        page = after[(pgno - 1) * PAGE:pgno * PAGE]
        if page != before[(pgno - 1) * PAGE:pgno * PAGE]:
            enc.write_page(pgno, page)
    enc.close()
    replica.put_file(0, txid, txid, out.getvalue(), timestamp_ms=stamp)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return build_db(tmp_path / "source.db")


def test_encode_decode_round_trip_and_damage() -> None:
    pages = {1: b"\x0d" + bytes(PAGE - 1), 7: b"\x05" + bytes(range(256)) * 15 + bytes(PAGE - 3841)}
    header = HintHeader(PAGE, commit=10, txid=3, timestamp=123, page_count=2)
    data = encode_hint(header, pages)
    hint = decode_hint(data)
    assert hint.header == header and hint.pages == pages
    for pos in (0, 20, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x40
        with pytest.raises(LTXError):
            decode_hint(bytes(bad))
    with pytest.raises(LTXError):
        decode_hint(data[:-3])
    with pytest.raises(ValueError):
        encode_hint(HintHeader(PAGE, commit=5, txid=3, timestamp=1, page_count=2), pages)  # page 7 > commit


def test_hint_pages_are_page_one_and_interior_pages() -> None:
    assert is_hint_page(1, bytes(PAGE))
    assert is_hint_page(9, b"\x05" + bytes(PAGE - 1)) and is_hint_page(9, b"\x02" + bytes(PAGE - 1))
    assert not is_hint_page(9, b"\x0d" + bytes(PAGE - 1)) and not is_hint_page(9, b"\x0a" + bytes(PAGE - 1))


def test_import_writes_the_hint(source: Path, tmp_path: Path) -> None:
    replica = Replica.open(f"file://{tmp_path / 'replica'}")
    import_database(source, replica)
    hint = read_hint(replica.store)
    assert hint is not None
    expected = hint_pages_of_image(source, PAGE)
    assert hint.pages.keys() == expected.keys()
    assert all(hint.pages[p] == expected[p] for p in expected if p != 1)
    assert hint.pages[1][100:] == expected[1][100:], "page 1 of the backup image (its header counters differ)"
    assert len(expected) > 4, "the table and index have interior pages below their roots"
    snapshot = replica.list_level(9)[0]
    header = Header.decode(replica.store.get_range(snapshot.key, 0, 100))
    assert hint.header.matches(1, header.timestamp, header.commit, PAGE)
    assert (tmp_path / "replica" / HINT_KEY).exists(), "beside the level directories"


def test_compact_advances_the_hint_and_a_rebuild_agrees(source: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    import_database(source, replica)
    local = tmp_path / "local.db"
    shutil.copyfile(source, local)
    ship_change(replica, local, 2, "INSERT INTO t SELECT id + 100000, k || 'z', v FROM t WHERE id < 4000")
    ship_change(replica, local, 3, "DELETE FROM t WHERE id % 3 = 0")
    assert read_hint(replica.store).header.txid == 1  # type: ignore[union-attr]
    assert ltxctl(["compact", url]) == 0
    advanced = read_hint(replica.store)
    assert advanced is not None and advanced.header.txid == 3
    assert advanced.pages == hint_pages_of_image(local, PAGE)
    write_hint(replica.store, HintHeader(PAGE, advanced.header.commit, 3, 999, 0), {})  # another history's
    rebuilt = refresh_hint(replica)
    assert rebuilt.how == "full", "a hint whose timestamp is not this history's is not advanced"
    assert read_hint(replica.store).pages == advanced.pages  # type: ignore[union-attr]
    assert refresh_hint(replica).how == "current"


def test_refresh_advances_through_level_zero(source: Path, tmp_path: Path) -> None:
    replica = Replica.open(f"file://{tmp_path / 'replica'}")
    import_database(source, replica)
    local = tmp_path / "local.db"
    shutil.copyfile(source, local)
    ship_change(replica, local, 2, "UPDATE t SET v = v || 'more' WHERE id BETWEEN 100 AND 3000")
    result = refresh_hint(replica)
    assert (result.how, result.files_read) == ("incremental", 1)
    assert read_hint(replica.store).pages == hint_pages_of_image(local, PAGE)  # type: ignore[union-attr]


def _levels(pages: dict[int, bytes], roots: set[int]) -> dict[int, int]:
    """Depth of every page reachable from `roots` (and page 1) through `pages`."""
    depth = {p: 0 for p in roots | {1} if p in pages}
    level = list(depth)
    while level:
        below = [c for p in level for c in interior_children(p, pages[p]) or () if c in pages and c not in depth]
        depth.update((c, depth[p] + 1) for p in level for c in interior_children(p, pages[p]) or ()
                     if c in below and c not in depth)
        level = below
    return depth


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of long keys: a few dozen interior pages, three levels of them below its root."""
    path = tmp_path_factory.mktemp("deep") / "deep.db"
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {PAGE}")
    conn.execute("PRAGMA journal_mode = delete")
    with conn:
        conn.execute("CREATE TABLE u(id INTEGER PRIMARY KEY, k TEXT)")
        conn.executemany("INSERT INTO u VALUES (?, ?)", ((i, f"{(i * 7919) % 100003:06d}" + "k" * 150)
                                                         for i in range(20000)))
        conn.execute("CREATE INDEX u_k ON u(k)")
    conn.close()
    return path


def test_schema_roots_are_sqlites(source: Path) -> None:
    conn = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READONLY)
    want = sorted(r for (r,) in conn.execute("SELECT rootpage FROM sqlite_schema WHERE rootpage > 1"))
    conn.close()
    assert sorted(schema_roots(source.read_bytes()[:PAGE])) == want and len(want) == 2


def test_a_hint_within_its_budget_holds_the_top_levels(deep: Path) -> None:
    source = deep
    everything = hint_pages_of_image(source, PAGE)
    depth = _levels(everything, set(schema_roots(everything[1])))
    assert max(depth.values()) >= 2 and depth.keys() == everything.keys()
    full = select_hint_pages(everything, budget=1 << 30)
    assert full == everything, "a budget that fits everything keeps everything"
    small = select_hint_pages(everything, budget=24 * 1024)
    size = len(encode_hint(HintHeader(PAGE, len(source.read_bytes()) // PAGE, 1, 1, len(small)), small))
    assert size <= 24 * 1024 and HINT_HEADER_SIZE + HINT_TRAILER_SIZE < size
    assert 1 in small and 2 < len(small) < len(everything)
    deepest = max(depth[p] for p in small)
    assert all(p in small for p, d in depth.items() if d < deepest), "whole levels from the roots down"
    assert all(small[p] == everything[p] for p in small)
    # A page whose parent is not in the hint (changed deep down, say) joins only through a root.
    tiny = select_hint_pages(everything, budget=8 * 1024)
    parent = {c: p for p, page in everything.items() for c in interior_children(p, page) or ()}
    orphan = next(p for p in everything if p not in tiny and parent.get(p, 1) not in tiny)
    grown = {**tiny, orphan: everything[orphan]}
    assert orphan in select_hint_pages(grown, budget=1 << 30), "inferred, it would pass for a root"
    assert orphan not in select_hint_pages(grown, budget=1 << 30, roots=hint_roots(tiny))


def test_a_budgeted_hint_advances_without_orphans(deep: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Advancing a hint that holds only the top levels keeps to the trees it holds: a changed
    page deeper down (whose parent is not in the hint) does not join it as if it were a root."""
    monkeypatch.setattr(hint_module, "HINT_BUDGET", 24 * 1024)
    replica = Replica.open(f"file://{tmp_path / 'replica'}")
    import_database(deep, replica)
    first = read_hint(replica.store)
    assert first is not None
    local = tmp_path / "local.db"
    shutil.copyfile(deep, local)
    ship_change(replica, local, 2, "UPDATE u SET k = 'a' || k WHERE id % 5 = 0")
    assert refresh_hint(replica).how == "incremental"
    advanced = read_hint(replica.store)
    assert advanced is not None and advanced.header.txid == 2
    now = hint_pages_of_image(local, PAGE)
    assert all(now[p] == page for p, page in advanced.pages.items() if p != 1), "every page is the new state's"
    roots = set(schema_roots(now[1]))
    depth = _levels(now, roots)
    named = {c for p, page in advanced.pages.items() for c in interior_children(p, page) or ()}
    assert all(p == 1 or p in roots or p in named for p in advanced.pages), "every page's parent is in the hint"
    assert {p for p in roots if p in now} <= advanced.pages.keys()
    assert len(roots) < len(advanced.pages) < len(depth), "the budget left part of the lowest level out"


def test_litestream_restores_a_replica_with_a_hint(source: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    import_database(source, replica)
    local = tmp_path / "local.db"
    shutil.copyfile(source, local)
    ship_change(replica, local, 2, "UPDATE t SET k = 'changed' WHERE id < 50")
    assert ltxctl(["compact", url]) == 0
    assert read_hint(replica.store) is not None
    out = tmp_path / "restored.db"
    litestream_restore(url, out)
    assert out.read_bytes() == local.read_bytes()
    assert (tmp_path / "replica" / HINT_KEY).exists(), "litestream leaves the hint alone"
