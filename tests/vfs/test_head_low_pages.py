"""The head GET of a cold open is the bare header only when the hint holds the low pages an open
reads: page 1 with the whole schema, and every root. A hint keeps page 1 and interior pages, so a
table of one page (a leaf root: settings, counters) or a schema over several pages is not in it;
then the head brings the low pages, or each would cost a round trip of its own, one after the
other (a blockmap volume's open paid six)."""

from __future__ import annotations

import random
from pathlib import Path

import apsw

from ltx.btree import interior_children
from ltx.hint import read_hint
from ltx.importer import import_database
from ltx.plan import restore_plan
from ltx.replica import Replica
from tests.ltx.test_hint import build_db
from tests.s3proxy import Request, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import connect, stats
from tests.vfs.test_sparseindex import ranges_of
from vfs.view import LOW_PAGES_HEAD_SIZE, bare_heads, holds_low_pages

ROWS = 60_000


def _with_settings_table(path: Path) -> apsw.Connection:
    """A new 4 KiB-page database at `path` whose first table is `settings`, of one page."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 4096")
    with conn:
        conn.execute("CREATE TABLE settings(name TEXT PRIMARY KEY, value TEXT)")
        conn.executemany("INSERT INTO settings VALUES (?, ?)", [("format", "{...}"), ("data", "s3://b")])
    return conn


def _heads(log: list[Request], key: str) -> list[str | None]:
    """The Range headers of the GETs of `key`'s head (ranges from byte 0)."""
    return [r for r in ranges_of(log, key) if r and r.startswith("bytes=0-")]


def with_settings(path: Path) -> Path:
    """A table of one page (its root is a leaf), made first so its page is low, as a blockmap
    volume's settings and counters are; then a table deep enough for interior pages, and an index."""
    conn = _with_settings_table(path)
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT)")
        rows = ((i, f"k{(i * 7919) % 100003:06d}", f"value {i} " + "x" * (i % 200)) for i in range(ROWS))
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        conn.execute("CREATE INDEX t_k ON t(k)")
    conn.close()
    return path


def test_a_hint_without_a_leaf_root_does_not_make_heads_bare(tmp_path: Path) -> None:
    deep = Replica.open(f"file://{tmp_path / 'deep'}")
    import_database(build_db(tmp_path / "deep.db", rows=ROWS), deep)
    small = Replica.open(f"file://{tmp_path / 'small'}")
    import_database(with_settings(tmp_path / "small.db"), small)
    for replica, holds in ((deep, True), (small, False)):
        hint = read_hint(replica.store)
        assert hint is not None
        assert holds_low_pages(hint) is holds
        plan = restore_plan(replica.list_all(), url=replica.url)
        assert (0 in bare_heads(hint, [*plan, *plan])) is holds  # a first file with later ones after it


def test_an_open_and_a_read_of_a_one_page_table_take_no_extra_round_trip(s3_server: S3Server, s3_url: str,
                                                                        tmp_path: Path) -> None:
    replica = Replica.open(s3_url)
    import_database(with_settings(tmp_path / "src.db"), replica)
    snap = restore_plan(replica.list_all(), url=replica.url)[0]
    replica.close()
    with S3Proxy(s3_server.endpoint) as proxy:
        conn = connect(tmp_path / "x.db", s3_url.replace(s3_server.endpoint, proxy.url), poll=0)
        try:
            opened = len(proxy.seen)
            assert [tuple(r) for r in conn.execute("SELECT value FROM settings WHERE name = 'format'")] == [("{...}",)]
            after, waited = proxy.seen, stats(conn)["round_trips"]
        finally:
            conn.close()
    heads = _heads(after, snap.key)
    assert heads and heads[0] != "bytes=0-99", heads  # the head brought the low pages
    assert len(after) == opened, [(r.method, r.path, r.range) for r in after[opened:]]  # nothing more to fetch
    assert waited <= 3, waited


def with_late_schema(path: Path) -> Path:
    """A one-page table first, then ~90 KB of poorly compressible pages, then enough tables that
    the schema splits: its leaves are allocated there, past the first 64 KiB of frames (as a
    blockmap volume's schema leaves, pages 28 and 29, are); then more such pages."""
    rng = random.Random(5)
    conn = _with_settings_table(path)
    with conn:
        conn.execute("CREATE TABLE filler(id INTEGER PRIMARY KEY, v BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?, ?)", [(i, rng.randbytes(3000)) for i in range(24)])
        for n in range(40):
            cols = ", ".join(f"column_with_a_long_name_{c} TEXT" for c in range(6))
            conn.execute(f"CREATE TABLE table_number_{n}(id INTEGER PRIMARY KEY, {cols})")
        conn.execute("CREATE TABLE more(id INTEGER PRIMARY KEY, v BLOB)")
        conn.executemany("INSERT INTO more VALUES (?, ?)", [(i, rng.randbytes(3000)) for i in range(60)])
    conn.close()
    return path


def test_a_schema_past_the_first_frames_comes_with_the_open(s3_server: S3Server, s3_url: str,
                                                            tmp_path: Path) -> None:
    """A hint without the low pages makes the first file's head LOW_PAGES_HEAD_SIZE: the schema's
    leaves and a one-page table ~90 KB in come with the open, not one GET each afterwards."""
    replica = Replica.open(s3_url)
    import_database(with_late_schema(tmp_path / "src.db"), replica)
    hint = read_hint(replica.store)
    assert hint is not None and not holds_low_pages(hint)
    snap = restore_plan(replica.list_all(), url=replica.url)[0]
    replica.close()
    schema_leaves = interior_children(1, hint.pages[1])
    assert schema_leaves, "the schema spans several pages"
    with S3Proxy(s3_server.endpoint) as proxy:
        conn = connect(tmp_path / "x.db", s3_url.replace(s3_server.endpoint, proxy.url), poll=0)
        try:
            opened = len(proxy.seen)
            assert [tuple(r) for r in conn.execute("SELECT value FROM settings WHERE name = 'data'")] == [("s3://b",)]
            assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchall() == [(44,)]
            after = proxy.seen
        finally:
            conn.close()
    heads = _heads(after, snap.key)
    assert heads == [f"bytes=0-{LOW_PAGES_HEAD_SIZE - 1}"], heads
    assert len(after) == opened, [(r.method, r.path, r.range) for r in after[opened:]]  # nothing more to fetch
