"""Reading replicas written by our encoder: every TXID of a scripted workload gives the same query
results through ltxvfs as the source database gave, at several page sizes; page 1 is presented in
rollback-journal form; requests are counted and exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from ltx.reader import read_file_index
from ltx.replica import Replica
from tests.vfs.replicas import (
    History,
    big_table_history,
    big_value,
    connect,
    plain,
    pragma,
    run_queries,
    stats,
)
from vfs.opening import open_file
from vfs.options import OpenOptions


def expected_results(history: History, txid: int, workdir: Path) -> list[list[tuple[object, ...]]]:
    conn = plain(history.write_image(txid, workdir / f"expected-{history.page_size}-{txid}.db"))
    try:
        return run_queries(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("page_size", [1024, 4096, 65536])
def test_every_txid_reads_like_the_source(history_factory: Callable[..., History], file_replica: tuple[str, Replica],
                                          tmp_path: Path, page_size: int) -> None:
    history = history_factory(seed=page_size, page_size=page_size, transactions=14)
    url, replica = file_replica
    history.ship(replica)
    for txid in range(1, history.last_txid + 1):
        conn = connect(tmp_path / "x.db", url, txid=f"{txid:x}")
        try:
            assert pragma(conn, "litestream_txid") == f"{txid:016x}"
            assert run_queries(conn) == expected_results(history, txid, tmp_path), f"TXID {txid}"
        finally:
            conn.close()


def test_latest_view_over_compacted_levels(history_factory: Callable[..., History],
                                           file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    """A snapshot, a level-2 and a level-1 compaction and level-0 files: the plan crosses levels."""
    history = history_factory(seed=5, page_size=4096, transactions=16)
    url, replica = file_replica
    last = history.last_txid
    replica.put_file(9, 1, 4, history.encode(4, 1), timestamp_ms=history.timestamp_ms(4))
    history.ship_range(replica, 5, 9, level=2)
    history.ship_range(replica, 10, 12, level=1)
    history.ship(replica, 13, last)
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        assert pragma(conn, "litestream_txid") == f"{last:016x}"
        assert run_queries(conn) == expected_results(history, last, tmp_path)
        assert stats(conn)["files"] == 3 + (last - 12)
    finally:
        conn.close()


def test_page_one_reads_in_rollback_form_with_txid_counter(history_factory: Callable[..., History],
                                                            file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=3, page_size=4096, transactions=10)
    url, replica = file_replica
    history.ship(replica)
    seen = {}
    for txid in (3, 4, history.last_txid):
        f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, txid=txid, poll=0))
        try:
            header = f.xRead(100, 0)
            assert header[18] == 1 and header[19] == 1
            counter = int.from_bytes(header[24:28], "big")
            assert counter == int.from_bytes(header[92:96], "big")
            assert int.from_bytes(header[28:32], "big") == len(history.pages(txid))
            assert f.xRead(16, 24) == header[24:40]
            raw = history.images[txid][:100]
            assert header[:18] == raw[:18] and header[20:24] == raw[20:24] and header[32:92] == raw[32:92]
            seen[txid] = counter
        finally:
            f.xClose()
    assert len(set(seen.values())) == len(seen), "the change counter must differ when the TXID does"
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, txid=3, poll=0))
    try:
        assert int.from_bytes(f.xRead(4, 24), "big") == seen[3], "same TXID, same counter"
    finally:
        f.xClose()


def test_wal_is_not_offered(history_factory: Callable[..., History], file_replica: tuple[str, Replica],
                            tmp_path: Path) -> None:
    history = history_factory(seed=3, page_size=4096, transactions=10)
    url, replica = file_replica
    history.ship(replica)
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        answer = pragma(conn, "journal_mode=wal")
        assert answer != "wal"
        assert pragma(conn, "journal_mode") == answer
        assert run_queries(conn) == expected_results(history, history.last_txid, tmp_path)
        assert not (tmp_path / "x.db-wal").exists()
        with pytest.raises(apsw.ReadOnlyError):
            conn.execute("INSERT INTO events(at, body) VALUES (1, 'x')")
    finally:
        conn.close()


def test_a_cold_page_costs_one_get_of_exactly_its_frame(tmp_path: Path, file_replica: tuple[str, Replica]) -> None:
    """Build a snapshot far larger than what the open fetches, then read pages one by one."""
    url, replica = file_replica
    history = big_table_history(tmp_path, rows=3000)
    history.ship(replica, 1, 1)
    key = replica.key(0, 1, 1)
    index = read_file_index(replica.store, key).index
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0, cache_size=1 << 30))
    try:
        store = f.replica.store.stats
        for pgno in (len(history.pages(1)) - 3, len(history.pages(1)) // 2, 40):
            entry = index.find(pgno)
            assert entry is not None
            before = (store.gets, store.bytes_read)
            page = f.xRead(4096, (pgno - 1) * 4096)
            assert page == history.pages(1)[pgno - 1]
            assert (store.gets - before[0], store.bytes_read - before[1]) == (1, entry.size)
            assert f.xRead(4096, (pgno - 1) * 4096) == page
            assert (store.gets - before[0]) == 1, "the second read is a cache hit"
    finally:
        f.xClose()


def test_scans_coalesce_into_few_requests(tmp_path: Path, file_replica: tuple[str, Replica]) -> None:
    url, replica = file_replica
    history = big_table_history(tmp_path, rows=3000)
    history.ship(replica, 1, 1)
    pages = len(history.pages(1))
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        conn.execute("PRAGMA cache_size = 0")
        total = conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchall()
        assert total == [(3000, sum(len(big_value(i)) for i in range(3000)))]
        s = stats(conn)
        assert s["pages_fetched"] + s["preloaded_pages"] >= pages // 2
        assert s["round_trips"] < pages // 8, s
        before = s["gets"]
        desc = conn.execute("SELECT id FROM t ORDER BY id DESC LIMIT 5").fetchall()
        assert desc == [(i,) for i in range(2999, 2994, -1)]
        assert stats(conn)["gets"] == before, "pages read by the scan are cached"
    finally:
        conn.close()

