"""Reading the past: txid= and timestamp= at open, PRAGMA litestream_time on an open connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from ltx.replica import Replica
from ltx.timefmt import format_time
from tests.vfs.replicas import History, connect, plain, pragma, run_queries


def expected(history: History, txid: int, workdir: Path) -> list[list[tuple[object, ...]]]:
    conn = plain(history.write_image(txid, workdir / f"expected-{txid}.db"))
    try:
        return run_queries(conn)
    finally:
        conn.close()


@pytest.fixture
def shipped(history_factory: Callable[..., History], file_replica: tuple[str, Replica]) -> tuple[History, str]:
    history = history_factory(seed=21, page_size=4096, transactions=12)
    url, replica = file_replica
    history.ship(replica)
    return history, url


def test_timestamp_at_open_reads_the_state_before_it(shipped: tuple[History, str], tmp_path: Path) -> None:
    history, url = shipped
    for txid in (2, 6, history.last_txid - 1):
        when = history.time(txid, plus_ms=500)
        conn = connect(tmp_path / "x.db", url, timestamp=format_time(when))
        try:
            assert pragma(conn, "litestream_txid") == f"{txid:016x}"
            assert pragma(conn, "litestream_time") == format_time(when)
            assert run_queries(conn) == expected(history, txid, tmp_path)
        finally:
            conn.close()


def test_pragma_moves_an_open_connection_and_back(shipped: tuple[History, str], tmp_path: Path) -> None:
    history, url = shipped
    last = history.last_txid
    conn = connect(tmp_path / "x.db", url, poll=0.05)
    try:
        assert pragma(conn, "litestream_time") == format_time(history.time(last))
        latest = run_queries(conn)
        when = history.time(5, plus_ms=1)
        conn.execute(f"PRAGMA litestream_time = '{format_time(when)}'")
        assert pragma(conn, "litestream_txid") == f"{5:016x}"
        assert pragma(conn, "litestream_time") == format_time(when)
        assert run_queries(conn) == expected(history, 5, tmp_path)
        conn.execute("PRAGMA litestream_time = 'LATEST'")
        assert pragma(conn, "litestream_txid") == f"{last:016x}"
        assert run_queries(conn) == latest
    finally:
        conn.close()


def test_a_move_inside_a_transaction_lands_after_it(shipped: tuple[History, str], tmp_path: Path) -> None:
    history, url = shipped
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        latest = run_queries(conn)
        conn.execute("BEGIN")
        assert run_queries(conn) == latest
        conn.execute(f"PRAGMA litestream_time = '{format_time(history.time(3, plus_ms=1))}'")
        assert run_queries(conn) == latest
        conn.execute("COMMIT")
        assert run_queries(conn) == expected(history, 3, tmp_path)
    finally:
        conn.close()


def test_times_the_replica_cannot_serve_are_errors(shipped: tuple[History, str], tmp_path: Path) -> None:
    history, url = shipped
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        before = run_queries(conn)
        with pytest.raises(apsw.SQLError, match="cannot restore"):
            conn.execute(f"PRAGMA litestream_time = '{format_time(history.time(0, plus_ms=-5000))}'")
        with pytest.raises(apsw.SQLError, match="invalid time"):
            conn.execute("PRAGMA litestream_time = 'yesterday-ish'")
        with pytest.raises(apsw.SQLError, match="read-only"):
            conn.execute("PRAGMA litestream_txid = '0000000000000001'")
        assert run_queries(conn) == before
    finally:
        conn.close()
    with pytest.raises(apsw.CantOpenError, match="cannot restore"):
        connect(tmp_path / "x.db", url, txid=f"{history.last_txid + 5:x}")
