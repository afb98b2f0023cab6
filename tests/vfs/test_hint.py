"""A cold open with the hint file: its pages are used when it is of exactly the view's state (a
point query then misses only its leaf), and ignored when stale, of another history, or damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

from ltx.hint import HINT_KEY, HintHeader, read_hint, write_hint
from ltx.importer import import_database
from ltx.replica import Replica
from tests.ltx.test_hint import build_db, ship_change
from tests.s3proxy import S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import connect, plain, stats
from vfs.hint import HintOutcome
from vfs.view import load_view, open_reader

QUERY = "SELECT id, k, v FROM t WHERE id = ?"
KEY = 23456


def answer(conn: object, key: int = KEY) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(QUERY, (key,))]  # type: ignore[attr-defined]


def imported(tmp_path: Path, url: str) -> tuple[Replica, Path]:
    source = build_db(tmp_path / "source.db")
    replica = Replica.open(url)
    import_database(source, replica)
    return replica, source


def cold_misses(tmp_path: Path, url: str, key: int = KEY) -> tuple[int, int, list[tuple[object, ...]]]:
    """(cache misses of one point query, pages preloaded at open, its answer) on a new connection."""
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        opened = stats(conn)
        got = answer(conn, key)
        after = stats(conn)
        return after["cache_misses"] - opened["cache_misses"], opened["preloaded_pages"], got
    finally:
        conn.close()


def test_cold_open_uses_the_hint(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica, source = imported(tmp_path, url)
    want = answer(plain(source))
    hint = read_hint(replica.store)
    assert hint is not None
    with_hint = cold_misses(tmp_path, url)
    assert with_hint[2] == want
    assert with_hint[0] == 1, "every page above the leaf came with the hint"
    assert with_hint[1] >= len(hint.pages)
    replica.store.delete(HINT_KEY)
    without = cold_misses(tmp_path, url)
    assert without[2] == want
    assert without[0] >= 2, "without the hint the descent misses an interior page too"


def test_an_older_hint_serves_the_pages_no_later_file_touched(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica, source = imported(tmp_path, url)
    local = tmp_path / "local.db"
    shutil.copyfile(source, local)
    # Moves rows, so interior pages of TXID 2 differ from the hint's (TXID 1).
    ship_change(replica, local, 2, "DELETE FROM t WHERE id < 20000 OR id = 23456; "
                                   "INSERT INTO t VALUES (23456, 'new', 'moved')")
    hint = read_hint(replica.store)
    assert hint is not None and hint.header.txid == 1
    reader = open_reader(url)
    view = load_view(reader)
    assert view.txid == 2 and view.hint_outcome == HintOutcome.USED
    touched = {e.pgno for e in replica.read_index(replica.list_level(0)[-1]).index}
    served = dict(view.hint_pages)
    assert served.keys() == {p for p in hint.pages if p not in touched and p <= view.commit}
    assert served and touched & hint.pages.keys(), "some hint pages were changed by TXID 2, some not"
    now = local.read_bytes()
    assert all(page == now[(p - 1) * 4096:p * 4096] for p, page in served.items() if p != 1)
    reader.replica.close()
    assert cold_misses(tmp_path, url)[2] == answer(plain(local)) == [(KEY, "new", "moved")]
    # The same hint claiming another history (its timestamp): the probe's header disagrees.
    h = hint.header
    write_hint(replica.store, HintHeader(h.page_size, h.commit, h.txid, h.timestamp + 1, len(hint.pages)), hint.pages)
    reader = open_reader(url)
    other = load_view(reader)
    reader.replica.close()
    assert other.hint_pages == [] and other.hint_outcome == HintOutcome.STALE


def test_hint_of_another_history_or_damaged_is_ignored(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica, source = imported(tmp_path, url)
    want = answer(plain(source))
    good = read_hint(replica.store)
    assert good is not None
    h = good.header
    other = build_db(tmp_path / "other.db", rows=31000)
    other_pages = {p: other.read_bytes()[(p - 1) * 4096:p * 4096] for p in good.pages}
    # Same TXID, commit and page size, another history's timestamp and pages: never served.
    write_hint(replica.store, HintHeader(h.page_size, h.commit, h.txid, h.timestamp + 1, len(other_pages)), other_pages)
    misses, _, got = cold_misses(tmp_path, url)
    assert got == want and misses >= 2
    data = bytearray((tmp_path / "replica" / HINT_KEY).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "replica" / HINT_KEY).write_bytes(bytes(data))
    misses, _, got = cold_misses(tmp_path, url)
    assert got == want and misses >= 2


def test_open_and_point_query_on_s3_wait_three_round_trips(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    """Two LISTs (the levels above 0, and level 0's first page) beside the hint GET; the index
    tail beside the head and the page checksum sidecar; the leaf: seven requests in three round
    trips."""
    replica, source = imported(tmp_path, s3_url)
    replica.close()
    want = answer(plain(source))
    with S3Proxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            assert answer(conn) == want
            counts, waited = proxy.counts(), stats(conn)["round_trips"]
        finally:
            conn.close()
    assert counts.get("LIST") == 2 and counts["requests"] <= 7, counts
    assert waited == 3
