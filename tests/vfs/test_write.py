"""The writer's basics: a new replica, one LTX file per COMMIT as Litestream names and shapes
them, catching up with an existing replica, and what a commit costs in requests."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import apsw
import pytest

from ltx.header import FLAG_NO_CHECKSUM
from ltx.replica import Replica
from tests.vfs.replicas import History
from tests.vfs.writing import level_files, open_reader, open_writer, read_file, stats, txid

_U32 = struct.Struct(">I")


def test_new_replica_gets_one_file_per_commit(store_url: str, tmp_path: Path) -> None:
    before = int(time.time() * 1000)
    conn = open_writer(tmp_path / "x.db", store_url)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(3):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i} " + "x" * 3000,))
    pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
    st = stats(conn)
    assert st["write_ltx_files"] == 4 and st["puts"] == 4, "one PUT per commit"
    assert txid(conn) == 4
    conn.close()
    after = int(time.time() * 1000)

    files = level_files(store_url)
    assert [(f.min_txid, f.max_txid) for f in files] == [(n, n) for n in range(1, 5)]
    assert all(f.key.endswith(f"{f.min_txid:016x}-{f.max_txid:016x}.ltx") for f in files)
    for level in range(1, 10):
        assert level_files(store_url, level) == []
    prev_commit = 0
    for f in files:
        header, body = read_file(store_url, f)
        assert header.flags == FLAG_NO_CHECKSUM and header.page_size == 4096
        assert before <= header.timestamp <= after
        assert header.commit >= prev_commit
        prev_commit = header.commit
        if f.min_txid == 1:
            assert sorted(body) == list(range(1, header.commit + 1)), "TXID 1 is a snapshot"
        page1 = body[1]
        assert page1[18] == 1 and page1[19] == 1, "rollback-journal format, as SQLite wrote it"
        assert _U32.unpack_from(page1, 24)[0] == f.min_txid == _U32.unpack_from(page1, 92)[0]
        assert _U32.unpack_from(page1, 28)[0] == header.commit
    assert prev_commit == pages

    reader = open_reader(tmp_path / "x.db", store_url)
    rows = reader.execute("SELECT id, substr(v, 1, 5) FROM t ORDER BY id").fetchall()
    assert rows == [(1, "row 0"), (2, "row 1"), (3, "row 2")]
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()


@pytest.mark.parametrize("page_size", [1024, 65536])
def test_page_size_set_before_the_first_write(file_url: str, tmp_path: Path, page_size: int) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute(f"PRAGMA page_size = {page_size}")
    conn.execute("CREATE TABLE t(v)")
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    assert conn.execute("PRAGMA page_size").fetchall() == [(page_size,)]
    conn.close()
    for f in level_files(file_url):
        header, _ = read_file(file_url, f)
        assert header.page_size == page_size
    reader = open_reader(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT count(*), sum(length(v)) FROM t").fetchall() == [(1, 3000)]
    reader.close()


def test_writer_catches_up_with_an_existing_replica(store_url: str, tmp_path: Path,
                                                     history_factory: object) -> None:
    history: History = history_factory(seed=3)  # type: ignore[operator]
    replica = Replica.open(store_url)
    history.ship(replica)
    replica.close()
    last = history.last_txid
    conn = open_writer(tmp_path / "x.db", store_url)
    assert txid(conn) == last
    conn.execute("INSERT INTO events(at, body) VALUES (1, 'from the writer')")
    assert txid(conn) == last + 1
    conn.close()

    expected_db = history.write_image(last, tmp_path / "expected.db")
    plain = apsw.Connection(str(expected_db))
    plain.execute("INSERT INTO events(at, body) VALUES (1, 'from the writer')")
    expected = plain.execute("SELECT * FROM events ORDER BY id").fetchall()
    plain.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(store_url)][-1] == (last + 1, last + 1)
    reader = open_reader(tmp_path / "x.db", store_url)
    assert reader.execute("SELECT * FROM events ORDER BY id").fetchall() == expected
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()


def test_own_commits_are_read_without_requests(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    with conn:
        conn.executemany("INSERT INTO t(v) VALUES (randomblob(500))", [()] * 200)
    before = stats(conn)
    assert conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchall() == [(200, 100000)]
    conn.execute("UPDATE t SET v = zeroblob(10) WHERE id = 7")
    after = stats(conn)
    assert after["gets"] == before["gets"], "the pages a commit shipped stay in the cache"
    assert after["puts"] == before["puts"] + 1
    conn.close()


def test_reopened_writer_continues_the_history(store_url: str, tmp_path: Path) -> None:
    for round_ in range(3):
        conn = open_writer(tmp_path / "x.db", store_url)
        if round_ == 0:
            conn.execute("CREATE TABLE t(n)")
        conn.execute("INSERT INTO t VALUES (?)", (round_,))
        conn.close()
    files = level_files(store_url)
    assert [(f.min_txid, f.max_txid) for f in files] == [(n, n) for n in range(1, 5)]
    reader = open_reader(tmp_path / "x.db", store_url)
    assert reader.execute("SELECT n FROM t").fetchall() == [(0,), (1,), (2,)]
    reader.close()


@pytest.mark.parametrize("synchronous", ["OFF", "NORMAL", "FULL", "EXTRA"])
def test_every_synchronous_setting_ships_at_commit(file_url: str, tmp_path: Path, synchronous: str) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE t(n)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert len(level_files(file_url)) == 2, "COMMIT returned: its file is in the store"
    conn.close()


def test_a_reader_follows_the_writer(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(n)")
    reader = open_reader(tmp_path / "x.db", file_url, poll="20ms")
    conn.execute("INSERT INTO t VALUES (42)")
    deadline = time.monotonic() + 10
    while reader.execute("SELECT count(*) FROM t").fetchall() != [(1,)]:
        assert time.monotonic() < deadline, "the reader never saw the commit"
        time.sleep(0.02)
    assert txid(reader) == txid(conn) == 2
    reader.close()
    conn.close()
