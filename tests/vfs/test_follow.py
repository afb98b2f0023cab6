"""Following a replica written by our encoder: each commit becomes visible, a read transaction
keeps its snapshot, gaps never wedge the follower, files removed by retention are replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw

from ltx.replica import Replica
from tests.litestream import wait_for
from tests.vfs.replicas import History, connect, plain, pragma, run_queries, stats

POLL = 0.05
DEADLINE = 10.0


def expected(history: History, txid: int, workdir: Path) -> list[list[tuple[object, ...]]]:
    conn = plain(history.write_image(txid, workdir / f"expected-{txid}.db"))
    try:
        return run_queries(conn)
    finally:
        conn.close()


def reaches(conn: apsw.Connection, txid: int) -> Callable[[], bool]:
    return lambda: pragma(conn, "litestream_txid") == f"{txid:016x}"


def staged(conn: apsw.Connection, txid: int) -> Callable[[], bool]:
    return lambda: stats(conn)["staged_txid"] == f"{txid:016x}"


def test_follower_sees_each_commit(history_factory: Callable[..., History], file_replica: tuple[str, Replica],
                                   tmp_path: Path) -> None:
    history = history_factory(seed=11, page_size=4096, transactions=14)
    url, replica = file_replica
    history.ship(replica, 1, 2)
    conn = connect(tmp_path / "x.db", url, poll=POLL)
    try:
        assert run_queries(conn) == expected(history, 2, tmp_path)
        for txid in range(3, history.last_txid + 1):
            history.ship(replica, txid, txid)
            wait_for(reaches(conn, txid), f"TXID {txid}", DEADLINE, interval=0.01)
            assert run_queries(conn) == expected(history, txid, tmp_path), f"TXID {txid}"
        s = stats(conn)
        assert s["files_applied"] == history.last_txid - 2
        assert s["lists"] <= 10 + s["polls"], "one LIST per poll while level 0 is anchored"
    finally:
        conn.close()


def test_long_read_transaction_keeps_its_snapshot(history_factory: Callable[..., History],
                                                  file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=12, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica, 1, 4)
    conn = connect(tmp_path / "x.db", url, poll=POLL)
    try:
        before = expected(history, 4, tmp_path)
        conn.execute("BEGIN")
        assert run_queries(conn) == before
        history.ship(replica, 5, history.last_txid)
        wait_for(staged(conn, history.last_txid), "the follower to stage the new files", DEADLINE, interval=0.01)
        assert pragma(conn, "litestream_txid") == f"{4:016x}"
        assert run_queries(conn) == before, "the open transaction still reads TXID 4"
        conn.execute("COMMIT")
        assert pragma(conn, "litestream_txid") == f"{history.last_txid:016x}"
        assert run_queries(conn) == expected(history, history.last_txid, tmp_path)
        assert stats(conn)["pages_evicted"] > 0, "replaced pages left the cache"
    finally:
        conn.close()


def test_gap_in_level0_is_crossed_by_a_straddling_level1_file(history_factory: Callable[..., History],
                                                              file_replica: tuple[str, Replica],
                                                              tmp_path: Path) -> None:
    """Level 0 lacks TXID 6; a level-1 file 4..7 straddles the reader's TXID 5 (issue #1460)."""
    history = history_factory(seed=13, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica, 1, 5)
    conn = connect(tmp_path / "x.db", url, poll=POLL)
    try:
        assert pragma(conn, "litestream_txid") == f"{5:016x}"
        history.ship(replica, 7, 9)
        wait_for(lambda: stats(conn)["polls"] >= 3, "a few polls over the gap", DEADLINE, interval=0.01)
        assert pragma(conn, "litestream_txid") == f"{5:016x}", "nothing past a gap is applied"
        history.ship_range(replica, 4, 7, level=1)
        wait_for(reaches(conn, 9), "TXID 9 through the level-1 file", DEADLINE, interval=0.01)
        assert run_queries(conn) == expected(history, 9, tmp_path)
        history.ship(replica, 10, 10)
        wait_for(reaches(conn, 10), "TXID 10 after the gap", DEADLINE, interval=0.01)
        assert run_queries(conn) == expected(history, 10, tmp_path)
    finally:
        conn.close()


def test_unbridgeable_gap_is_left_through_a_new_snapshot(history_factory: Callable[..., History],
                                                         file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=14, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica, 1, 3)
    conn = connect(tmp_path / "x.db", url, poll=POLL)
    try:
        history.ship(replica, 6, 7)
        wait_for(lambda: stats(conn)["polls"] >= 3, "a few polls over the gap", DEADLINE, interval=0.01)
        assert pragma(conn, "litestream_txid") == f"{3:016x}"
        replica.put_file(9, 1, 8, history.encode(8, 1), timestamp_ms=history.timestamp_ms(8))
        history.ship(replica, 9, 9)
        wait_for(reaches(conn, 9), "TXID 9 past the snapshot", DEADLINE, interval=0.01)
        assert run_queries(conn) == expected(history, 9, tmp_path)
        assert stats(conn)["replans"] >= 1
    finally:
        conn.close()


def test_files_removed_by_retention_are_replaced_by_their_compaction(
        history_factory: Callable[..., History], file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=15, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica)
    last = history.last_txid
    conn = connect(tmp_path / "x.db", url, poll=0, cache_size=4096)
    try:
        conn.execute("PRAGMA cache_size = 0")
        assert pragma(conn, "litestream_txid") == f"{last:016x}"
        replica.put_file(1, 1, last, history.encode(last, 1), timestamp_ms=history.timestamp_ms(last))
        for f in replica.list_level(0):
            replica.delete_file(f)
        assert run_queries(conn) == expected(history, last, tmp_path)
        assert stats(conn)["replans"] >= 1
        assert pragma(conn, "litestream_txid") == f"{last:016x}"
    finally:
        conn.close()


def test_history_that_moved_past_level1_is_found(history_factory: Callable[..., History],
                                                 file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    """Level 0 emptied by retention and only a newer snapshot left: no gap to see, yet the
    periodic deep poll finds the snapshot and moves there."""
    history = history_factory(seed=16, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica, 1, 3)
    conn = connect(tmp_path / "x.db", url, poll=POLL)
    try:
        assert pragma(conn, "litestream_txid") == f"{3:016x}"
        replica.put_file(9, 1, 8, history.encode(8, 1), timestamp_ms=history.timestamp_ms(8))
        for f in replica.list_level(0):
            replica.delete_file(f)
        wait_for(reaches(conn, 8), "TXID 8 from the snapshot", DEADLINE, interval=0.01)
        assert run_queries(conn) == expected(history, 8, tmp_path)
    finally:
        conn.close()
