"""A snapshot we wrote is read by the spans at the start of its sidecar (the sparse index of its
page index): a cold open fetches that prefix instead of the page index and the whole sidecar,
and a page comes with its span in one GET. Spans that are stale, damaged or at odds with the file
are never used to serve a page; Litestream's files and old sidecars keep the whole-index path."""

from __future__ import annotations

import logging
import random
import shutil
from array import array
from pathlib import Path

import apsw
import pytest

from ltx.errors import LTXIndexError
from ltx.hint import HINT_KEY
from ltx.importer import import_database
from ltx.pagesums import FULL_SPANS_PAGES, MIN_SPAN_STRIDE, FrameSpans, PageSums, SpanPrefix, prefix_size, sums_layout
from ltx.plan import LTXFileInfo, restore_plan
from ltx.reader import decode_tail
from ltx.replica import Replica
from tests.litestream import Replicator, write_config
from tests.ltx.test_hint import build_db
from tests.s3proxy import Request, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import connect, plain, stats
from tests.vfs.writing import open_writer
from vfs.opening import open_file
from vfs.options import OpenOptions
from vfs.sparseindex import SparseIndex
from vfs.view import index_fetch_size

QUERY = "SELECT id, k, v FROM t WHERE id = ?"
KEYS = (93456, 17, 29999)


def answers(conn: apsw.Connection) -> list[list[tuple[object, ...]]]:
    return [[tuple(r) for r in conn.execute(QUERY, (key,))] for key in KEYS]


def snapshot_of(replica: Replica) -> LTXFileInfo:
    plan = restore_plan(replica.list_all(), url=replica.url)
    assert plan[0].min_txid == 1 and index_fetch_size(plan[0].size, plan[0].sums_size) < plan[0].size
    return plan[0]


#: Rows of a database whose snapshot has more than FULL_SPANS_PAGES pages (spans of 16 frames).
BIG_ROWS = 120_000
_SOURCES: dict[int, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _sources(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Databases built once for the module (by row count)."""
    _SOURCES.clear()
    _SOURCES[0] = tmp_path_factory.mktemp("sources")


def source_db(rows: int) -> Path:
    if rows not in _SOURCES:
        _SOURCES[rows] = build_db(_SOURCES[0] / f"source-{rows}.db", rows=rows)
    return _SOURCES[rows]


def imported(tmp_path: Path, url: str, rows: int = BIG_ROWS) -> tuple[Replica, Path, LTXFileInfo]:
    source = source_db(rows)
    replica = Replica.open(url)
    import_database(source, replica)
    return replica, source, snapshot_of(replica)


def ranges_of(log: list[Request], key: str) -> list[str | None]:
    """The Range headers of the GETs of `key` (None: a whole-object GET)."""
    return [r.range for r in log if r.method == "GET" and r.path.split("?")[0].endswith("/" + key)]


def test_a_snapshot_is_read_by_span(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        base = f.view.pages.base
        assert isinstance(base.index, SparseIndex) and base.sums is None
        assert base.index.count == len(PageSums.decode(replica.store.get(snap.sums_key or ""), "k"))
    finally:
        f.xClose()
    conn = connect(tmp_path / "y.db", url, poll=0)
    try:
        assert answers(conn) == answers(plain(source))
        assert [tuple(r) for r in conn.execute("PRAGMA integrity_check")] == [("ok",)]
    finally:
        conn.close()


def test_open_and_point_query_fetch_the_spans_not_the_index(s3_server: S3Server, s3_url: str,
                                                            tmp_path: Path) -> None:
    """Three round trips, seven requests, as with the whole index; the snapshot's sidecar is
    fetched as its prefix (the spans) only, its page index never, and each page by whole spans."""
    replica, source, snap = imported(tmp_path, s3_url)
    sums_size = snap.sums_size
    pages, prefix = sums_layout(sums_size) or (0, 0)
    assert prefix == prefix_size(pages) and prefix < sums_size // 4
    replica.close()
    want = [tuple(r) for r in plain(source).execute(QUERY, (KEYS[0],))]
    with S3Proxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            assert [tuple(r) for r in conn.execute(QUERY, (KEYS[0],))] == want
            counts, waited, log = proxy.counts(), stats(conn)["round_trips"], proxy.seen
        finally:
            conn.close()
    assert counts.get("LIST") == 2 and counts["requests"] <= 7, counts
    assert waited == 3
    assert ranges_of(log, snap.sums_key or "") == [f"bytes=0-{prefix - 1}"]
    snap_ranges = ranges_of(log, snap.key)
    assert all(r is not None and not r.startswith("bytes=-") for r in snap_ranges), snap_ranges  # no index tail
    fetched = [int(b) - int(a) + 1 for a, b in (r[len("bytes="):].split("-") for r in snap_ranges if r)]
    # The bare header (the hint holds page 1 and the roots), then the leaf by whole spans: far
    # less than the index and sidecar took before.
    assert snap_ranges[0] == "bytes=0-99", snap_ranges
    index_bytes = index_fetch_size(snap.size, sums_size)
    assert sum(fetched[1:]) < index_bytes, (fetched, index_bytes)


def test_stale_spans_are_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The sidecar of another snapshot of the same name (another import): ignored with a warning,
    the page index is fetched (one more round trip) and the answers are right."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    other = Replica.open(f"file://{tmp_path / 'other'}")
    import_database(source_db(BIG_ROWS - 5000), other)
    assert snap.sums_key is not None
    replica.store.put(snap.sums_key, other.store.get(snap.sums_key))
    with caplog.at_level(logging.WARNING, logger="vfs.view"):
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            assert answers(conn) == answers(plain(source))
            assert stats(conn)["round_trips"] >= 3
        finally:
            conn.close()
    assert "stale" in caplog.text and snap.sums_key in caplog.text


def rewrite_spans(replica: Replica, info: LTXFileInfo, change: int) -> None:
    """Rewrite the sidecar with span `change`'s check value altered (well formed, prefix CRC right)."""
    assert info.sums_key is not None
    sums = PageSums.decode(replica.store.get(info.sums_key), info.sums_key)
    assert sums.spans is not None
    sums.spans.checks[change] ^= 0x5A5A
    replica.store.put(info.sums_key, sums.encode())


def test_a_span_that_does_not_match_its_frames_is_refused(tmp_path: Path) -> None:
    """Spans that pass every check at open but not the frames they describe: the pages of that
    span are SQLITE_CORRUPT naming the sidecar, never served; the other pages read."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    replica.store.delete(HINT_KEY)
    f = open_file(OpenOptions(path=str(tmp_path / "probe.db"), replica_url=url, poll=0))
    index = f.view.pages.base.index
    f.xClose()
    assert isinstance(index, SparseIndex)
    last = len(index.lengths) - 1
    rewrite_spans(replica, snap, last)
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        assert [tuple(r) for r in conn.execute(QUERY, (17,))] == [tuple(r) for r in plain(source).execute(QUERY, (17,))]
        with pytest.raises(apsw.CorruptError):
            conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    f = open_file(OpenOptions(path=str(tmp_path / "y.db"), replica_url=url, poll=0))
    try:
        with pytest.raises(Exception) as caught:
            f.xRead(4096, (index.pgnos[last * index.stride] - 1) * 4096)
        assert f"{snap.sums_key}" in str(caught.value) and "differ" in str(caught.value)
    finally:
        f.xClose()


def test_a_first_span_that_does_not_match_the_head_falls_back(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Without a hint, the first span is checked against the head fetched beside the spans (with
    one, the head is the bare header: the hint holds its pages): a mismatch there means the spans
    are not this file's; the whole index and sidecar are read instead."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    replica.store.delete(HINT_KEY)
    rewrite_spans(replica, snap, 0)
    with caplog.at_level(logging.WARNING, logger="vfs.view"):
        f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
        try:
            assert not isinstance(f.view.pages.base.index, SparseIndex)
            assert f.view.pages.base.sums is not None, "the whole sidecar describes the file: pages are checked"
        finally:
            f.xClose()
    assert snap.sums_key in caplog.text and "differ" in caplog.text
    conn = connect(tmp_path / "y.db", url, poll=0)
    try:
        assert answers(conn) == answers(plain(source))
    finally:
        conn.close()


def test_a_damaged_or_cut_sidecar_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A flipped byte in the spans, a sidecar cut inside them: ignored with a warning, answers
    right. A sidecar cut after its spans may still have good spans (they are all a reader
    fetches, if its listed size still leads to them): either way the answers are right."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    want = answers(plain(source))
    assert snap.sums_key is not None
    original = replica.store.get(snap.sums_key)
    end = prefix_size(len(PageSums.decode(original, "k")))
    for n, (damaged, warned) in enumerate([(original[:7] + bytes([original[7] ^ 1]) + original[8:], True),
                                           (original[:end // 2] + bytes([original[end // 2] ^ 4])
                                            + original[end // 2 + 1:], True),
                                           (original[:end - 3], True),
                                           (original[:-4], None)]):
        replica.store.put(snap.sums_key, damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vfs.view"):
            conn = connect(tmp_path / f"x{n}.db", url, poll=0)
            try:
                assert answers(conn) == want
            finally:
                conn.close()
        if warned is not None:
            assert (snap.sums_key in caplog.text and "ignoring" in caplog.text) == warned, (n, caplog.text)


def test_an_old_sidecar_keeps_the_whole_index_path(tmp_path: Path) -> None:
    """A version-1 sidecar (an older ltxvfs wrote it): the index and the whole sidecar at open,
    pages checked one by one as before."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url)
    assert snap.sums_key is not None
    sums = PageSums.decode(replica.store.get(snap.sums_key), snap.sums_key)
    sums.spans = None
    replica.store.put(snap.sums_key, sums.encode())
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        base = f.view.pages.base
        assert not isinstance(base.index, SparseIndex) and base.sums is not None
    finally:
        f.xClose()
    conn = connect(tmp_path / "y.db", url, poll=0)
    try:
        assert answers(conn) == answers(plain(source))
    finally:
        conn.close()


def test_the_spans_are_the_frames(tmp_path: Path) -> None:
    """What the encoder records: span k starts at the k*stride-th frame; its check value is of
    the frames' stored bytes."""
    url = f"file://{tmp_path / 'replica'}"
    replica, _, snap = imported(tmp_path, url)
    assert snap.sums_key is not None
    raw = replica.store.get(snap.sums_key)
    pages, prefix = sums_layout(len(raw)) or (0, 0)
    spans = SpanPrefix.decode(raw[:prefix], snap.sums_key)
    assert spans.pages == pages and spans.file_size == snap.size
    data = replica.store.get(snap.key)
    assert spans.spans.stride == MIN_SPAN_STRIDE
    index = SparseIndex(spans.spans, pages, 262145, snap.size, snap.key)
    got = index.decode_spans(data[index.starts[0]:index.starts[-1]], 0, range(pages), 4096)
    assert [pgno for _, pgno, _ in got] == [index.pgnos[i] for i in range(pages)]
    damaged = bytearray(data)
    damaged[index.starts[3] + 20] ^= 1
    with pytest.raises(Exception, match="differ"):
        index.decode_spans(bytes(damaged[index.starts[0]:index.starts[-1]]), 0, [3 * index.stride], 4096)


def test_a_small_snapshot_has_a_span_per_frame(tmp_path: Path) -> None:
    """Up to FULL_SPANS_PAGES pages the spans are the whole index: pages are read by exactly
    their frame, each checked against its own value."""
    url = f"file://{tmp_path / 'replica'}"
    replica, source, snap = imported(tmp_path, url, rows=30000)
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        index = f.view.pages.base.index
        assert isinstance(index, SparseIndex) and index.stride == 1 and index.count <= FULL_SPANS_PAGES
        pos = index.count // 2
        assert index.span_range(pos, pos)[1] == index.sizes[pos] < 2 * 4096
        assert f.xRead(4096, (index.pgnos[pos] - 1) * 4096) == plain_page(source, index.pgnos[pos])
    finally:
        f.xClose()


def plain_page(path: Path, pgno: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek((pgno - 1) * 4096)
        return fh.read(4096)


def test_a_writers_compacted_files_are_read_by_their_spans(s3_server: S3Server, s3_url: str,
                                                           tmp_path: Path) -> None:
    """The files between the snapshot and the newest (a writer's compaction outputs) are not asked
    for their index, bytes or whole sidecar at open: one GET of their sidecar's spans each. A
    damaged frame in one of them is refused when read."""
    writer = open_writer(tmp_path / "w.db", s3_url, compact="auto")
    with writer:
        writer.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        writer.executemany("INSERT INTO t VALUES (?, ?)", ((i, random.Random(i).randbytes(900)) for i in range(4000)))
    writer.close()  # its compaction leaves a snapshot; the commits below go to levels 0 and 1
    writer = open_writer(tmp_path / "w2.db", s3_url, compact="auto")
    rng = random.Random(5)
    for _ in range(20):
        with writer:
            for _ in range(12):
                writer.execute("UPDATE t SET v = ? WHERE id = ?", (rng.randbytes(900), rng.randrange(4000)))
    want = [tuple(r) for r in writer.execute("SELECT id, v FROM t ORDER BY id")]
    writer.close()
    replica = Replica.open(s3_url)
    plan = restore_plan(replica.list_all(), url=replica.url)
    middle = [f for f in plan[1:-1] if f.sums_size and (sums_layout(f.sums_size) or (0, 0))[1]]
    assert middle, plan
    with S3Proxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            log = proxy.seen
            for f in middle:  # at most the header a hint of an earlier state is checked against
                assert [r for r in ranges_of(log, f.key) if r != "bytes=0-99"] == [], f.key
                prefix = (sums_layout(f.sums_size) or (0, 0))[1]
                assert ranges_of(log, f.sums_key or "") == [f"bytes=0-{prefix - 1}"], f.key
            assert [tuple(r) for r in conn.execute("SELECT id, v FROM t ORDER BY id")] == want
        finally:
            conn.close()
    target = middle[0]
    data = bytearray(replica.store.get(target.key))
    index = decode_tail(bytes(data), len(data), target.key).index
    e = list(index)[len(index) // 2]
    data[e.offset + e.size - 1] ^= 0x01  # a literal: the page still decodes to 4096 bytes
    replica.store.put(target.key, bytes(data))
    conn = connect(tmp_path / "y.db", s3_url, poll=0)
    try:
        with pytest.raises(apsw.CorruptError):
            conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    replica.close()


def test_a_litestream_replica_keeps_the_whole_index_path(tmp_path: Path) -> None:
    """Files the real Litestream writes have no sidecar: their index is fetched whole."""
    work = tmp_path / "ls.db"
    shutil.copyfile(source_db(BIG_ROWS), work)
    conn = apsw.Connection(str(work))
    conn.execute("PRAGMA journal_mode = wal").fetchall()
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    config = write_config(tmp_path / "ls.yml", work, url)
    with Replicator(config) as rep:
        rep.wait_for(lambda: replica.list_level(0), "litestream's first level-0 file")
        rep.stop()
    conn.close()
    assert not any(f.sums_size for files in replica.list_all().values() for f in files)
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        base = f.view.pages.base
        assert not isinstance(base.index, SparseIndex) and base.sums is None and len(base.index) > FULL_SPANS_PAGES
    finally:
        f.xClose()
    reader = connect(tmp_path / "y.db", url, poll=0)
    try:
        assert answers(reader) == answers(plain(source_db(BIG_ROWS)))
    finally:
        reader.close()


def test_a_snapshots_spans_skip_the_lock_page() -> None:
    """Past the lock page a snapshot's positions are one page further on: spans must start there."""
    lengths = array("I", [16 * 4200, 16 * 4200, 8 * 4200])
    good = FrameSpans(16, array("I", [1, 17, 34]), lengths, array("I", [0, 0, 0]))
    index = SparseIndex(good, 40, 20, 10**7, "f")
    assert [index.pgnos[p] for p in (0, 17, 18, 19, 32, 39)] == [1, 18, 19, 21, 34, 41]
    assert index.position(20) is None and index.position(21) == 19 and index.position(41) == 39
    for firsts in ([1, 17, 33], [1, 18, 34], [2, 17, 34]):
        with pytest.raises(LTXIndexError):
            SparseIndex(FrameSpans(16, array("I", firsts), lengths, array("I", [0, 0, 0])), 40, 20, 10**7, "f")
    with pytest.raises(LTXIndexError):  # frames past what the file leaves before its index
        SparseIndex(good, 40, 20, sum(lengths), "f")
