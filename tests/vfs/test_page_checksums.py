"""Pages read by range are checked against the file's page checksum sidecar: a changed byte
inside an LZ4 block (which still decodes to a page of the right size) is refused, never handed
to SQLite. A stale or damaged sidecar is ignored (the file reads as a Litestream file does)."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import apsw
import pytest

from ltx.errors import LTXError
from ltx.frame import FRAME_PREFIX_SIZE, decode_frame
from ltx.importer import import_database
from ltx.pagesums import PageSums, needs_sums, prefix_size
from ltx.plan import LTXFileInfo, restore_plan
from ltx.reader import decode_tail
from ltx.replica import Replica
from tests.ltx.test_hint import build_db
from tests.reliability import tally
from tests.vfs.replicas import connect, plain, stats
from tests.vfs.writing import open_reader, open_writer
from vfs.errors import PageCorruptError
from vfs.opening import open_file
from vfs.options import OpenOptions
from vfs.view import index_fetch_size

#: Seeded flips per store in the default suite.
FLIPS = {"file": 40, "s3": 8}
QUERIES = ("SELECT id, k, v FROM t ORDER BY id", "SELECT k, id FROM t ORDER BY k")


def everything(conn: apsw.Connection) -> list[list[tuple[object, ...]]]:
    """Every row by the table and by the index: every page of the database is read."""
    return [[tuple(r) for r in conn.execute(q)] for q in QUERIES]


def ranged_file(replica: Replica) -> LTXFileInfo:
    """The planned file the VFS reads by ranges (the import's snapshot)."""
    plan = restore_plan(replica.list_all(), url=replica.url)
    ranged = [f for f in plan if index_fetch_size(f.size, f.sums_size) < f.size]
    assert len(ranged) == 1 and ranged[0].sums_key is not None and needs_sums(ranged[0].size), plan
    return ranged[0]


def changed_pages(original: bytes, damaged: bytes, key: str, page_size: int) -> bool:
    """Whether any frame of `damaged` fails to decode or decodes to other bytes than `original`'s."""
    index = decode_tail(original, len(original), key).index
    for e in index:
        want = decode_frame(original[e.offset:e.offset + e.size], page_size, key, e.offset, e.pgno)
        try:
            got = decode_frame(damaged[e.offset:e.offset + e.size], page_size, key, e.offset, e.pgno)
        except LTXError:
            return True
        if got != want:
            return True
    return False


@pytest.mark.parametrize("store_url", ["file", "s3"], indirect=True)
def test_a_changed_lz4_byte_is_refused_on_a_ranged_read(store_url: str, tmp_path: Path) -> None:
    source = build_db(tmp_path / "source.db", rows=8000)
    want = everything(plain(source))
    replica = Replica.open(store_url)
    import_database(source, replica)
    info = ranged_file(replica)
    original = replica.store.get(info.key)
    payloads = [(e.offset + FRAME_PREFIX_SIZE, e.offset + e.size)
                for e in decode_tail(original, len(original), info.key).index]
    rng = random.Random(7)
    outcomes = {"refused": 0, "right": 0}
    flips = FLIPS["s3" if store_url.startswith("s3") else "file"]
    try:
        for n in range(flips):
            start, end = payloads[rng.randrange(len(payloads))]
            pos = rng.randrange(start, end)
            damaged = bytearray(original)
            damaged[pos] ^= 1 << rng.randrange(8)
            replica.store.put(info.key, bytes(damaged))
            tally.add(tally.CORRUPT)
            must_refuse = changed_pages(original, bytes(damaged), info.key, 4096)
            conn = connect(tmp_path / f"x{n}.db", store_url, poll=0)
            try:
                got = everything(conn)
            except (apsw.CorruptError, apsw.IOError):
                outcomes["refused"] += 1
                continue
            finally:
                conn.close()
            assert not must_refuse, f"a flip at byte {pos} of {info.key} changed a page, yet the VFS served it"
            assert got == want
            outcomes["right"] += 1
    finally:
        replica.store.put(info.key, original)
    assert outcomes["refused"] >= flips // 2, outcomes
    conn = connect(tmp_path / "after.db", store_url, poll=0)
    assert everything(conn) == want
    conn.close()
    replica.close()


def test_the_error_names_the_file_and_its_sidecar(tmp_path: Path) -> None:
    """A literal byte changed in place: the page decodes to the right size, the sidecar tells."""
    source = build_db(tmp_path / "source.db", rows=8000)
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    import_database(source, replica)
    info = ranged_file(replica)
    data = bytearray(replica.store.get(info.key))
    index = decode_tail(bytes(data), len(data), info.key).index
    e = list(index)[len(index) // 2]
    page = decode_frame(bytes(data[e.offset:e.offset + e.size]), 4096, info.key, e.offset, e.pgno)[1]
    data[e.offset + e.size - 1] ^= 0x01  # an LZ4 block's last five bytes are always literals
    replica.store.put(info.key, bytes(data))
    damaged = decode_frame(bytes(data[e.offset:e.offset + e.size]), 4096, info.key, e.offset, e.pgno)[1]
    assert len(damaged) == 4096 and damaged != page, "without the sidecar this page would pass"
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        with pytest.raises(PageCorruptError) as caught:
            f.xRead(4096, (e.pgno - 1) * 4096)
        assert caught.value.key == info.key
        # Read by span (the sidecar's sparse index): the span holding the page is refused.
        assert f"{info.key}.sum" in str(caught.value)
        first, last = re.search(r"pages (\d+)\.\.(\d+)", str(caught.value)).groups()  # type: ignore[union-attr]
        assert int(first) <= e.pgno <= int(last)
        assert f.xRead(4096, 0)[:16] == b"SQLite format 3\x00", "other pages still read"
    finally:
        f.xClose()


@pytest.mark.parametrize("how", ["stale", "stale-v1", "damaged"])
def test_a_stale_or_damaged_sidecar_is_ignored(how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = build_db(tmp_path / "source.db", rows=8000)
    want = everything(plain(source))
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    import_database(source, replica)
    info = ranged_file(replica)
    assert info.sums_key is not None
    sums = PageSums.decode(replica.store.get(info.sums_key), info.sums_key)
    if how == "stale":  # a sidecar of another file of this name: well formed, other file
        other = Replica.open(f"file://{tmp_path / 'other'}")
        import_database(build_db(tmp_path / "other.db", rows=9000), other)
        replica.store.put(info.sums_key, other.store.get(info.sums_key))
    elif how == "stale-v1":  # an old replica's sidecar (no spans) of another file of this name
        sums.file_checksum ^= 1
        sums.spans = None
        replica.store.put(info.sums_key, sums.encode())
    else:
        data = bytearray(sums.encode())
        data[prefix_size(len(sums)) // 2] ^= 0xFF  # in the spans: what a reader of this snapshot fetches
        replica.store.put(info.sums_key, bytes(data))
    with caplog.at_level(logging.WARNING, logger="vfs.view"):
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            assert everything(conn) == want
        finally:
            conn.close()
    assert info.sums_key in caplog.text and "ignoring" in caplog.text


def test_a_writers_large_commit_ships_a_sidecar_a_reader_checks(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    writer = open_writer(tmp_path / "w.db", url)
    with writer:
        writer.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT)")
    rng = random.Random(3)
    with writer:
        writer.executemany("INSERT INTO t VALUES (?, ?, ?)",
                           ((i, f"k{i:06d}", "".join(rng.choice("abcdefgh") for _ in range(300))) for i in range(2000)))
    want = [tuple(r) for r in writer.execute("SELECT * FROM t ORDER BY id")]
    writer.close()
    replica = Replica.open(url)
    big = [f for f in replica.list_level(0) if needs_sums(f.size)]
    assert big and all(f.sums_key is not None for f in big), replica.list_level(0)
    info = big[-1]
    original = replica.store.get(info.key)
    e = list(decode_tail(original, len(original), info.key).index)[5]
    damaged = bytearray(original)
    damaged[e.offset + e.size - 3] ^= 0x04  # an LZ4 block's last five bytes are always literals
    replica.store.put(info.key, bytes(damaged))
    reader = open_reader(tmp_path / "r.db", url)
    with pytest.raises((apsw.CorruptError, apsw.IOError)):
        [tuple(r) for r in reader.execute("SELECT * FROM t ORDER BY id")]
    reader.close()
    replica.store.put(info.key, original)
    reader = open_reader(tmp_path / "r2.db", url)
    assert [tuple(r) for r in reader.execute("SELECT * FROM t ORDER BY id")] == want
    assert stats(reader)["gets"] > 0
    reader.close()
    replica.close()
