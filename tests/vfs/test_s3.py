"""ltxvfs on the real S3 server: our replicas read like the source, the open's requests are what
the design says (counted by the server-side proxy), and a store that goes away mid-query is an
SQLITE_IOERR that heals when the store comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from ltx.replica import Replica
from tests.litestream import wait_for
from tests.s3proxy import S3Proxy as CountingProxy
from tests.s3server import S3Server
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
from vfs.errors import PageReadError


def test_our_replica_on_s3_reads_like_the_source(history_factory: Callable[..., History], s3_url: str,
                                                 tmp_path: Path) -> None:
    history = history_factory(seed=4096, page_size=4096, transactions=14)
    replica = Replica.open(s3_url)
    history.ship(replica)
    replica.close()
    for txid in (1, history.last_txid // 2, history.last_txid):
        expected = run_queries(plain(history.write_image(txid, tmp_path / f"e{txid}.db")))
        conn = connect(tmp_path / "x.db", s3_url, txid=f"{txid:x}")
        try:
            assert run_queries(conn) == expected, f"TXID {txid}"
        finally:
            conn.close()


def test_open_and_point_query_requests(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    """A snapshot replica without a hint: the open LISTs the levels above 0 and level 0's first page
    beside a GET of the (absent) hint, then fetches the snapshot's tail and head at once; a point query then costs one
    GET per page it misses, each exactly a frame."""
    history = big_table_history(tmp_path, rows=3000)
    replica = Replica.open(s3_url)
    replica.put_file(9, 1, 1, history.encode(1), timestamp_ms=history.timestamp_ms(1))
    replica.close()
    with CountingProxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0)
        try:
            opened = proxy.counts()
            assert (opened.get("LIST"), opened.get("GET")) == (2, 3), opened
            before = stats(conn)
            assert before["round_trips"] == 2, "one for the LIST and hint GET, one for the tail and head GETs"
            proxy.reset()
            assert conn.execute("SELECT v FROM t WHERE id = 2345").fetchall() == [(big_value(2345),)]
            queried = proxy.counts()
            after = stats(conn)
            assert queried.get("LIST", 0) == 0
            waits = [after[k] - before[k] for k in ("round_trips", "cache_misses", "pages_fetched")]
            assert waits == [queried.get("GET", 0)] * 3, (waits, queried)
            assert 1 <= queried["GET"] <= 3, queried
        finally:
            conn.close()


def test_store_outage_is_an_io_error_and_heals(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    history = big_table_history(tmp_path, rows=3000)
    replica = Replica.open(s3_url)
    history.ship(replica, 1, 1)
    replica.close()
    with CountingProxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0, cache_size=4096)
        try:
            conn.execute("PRAGMA cache_size = 0")
            assert conn.execute("SELECT v FROM t WHERE id = 10").fetchall() == [(big_value(10),)]
            proxy.stop()
            with pytest.raises(apsw.IOError) as info:
                conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchall()
            assert isinstance(info.value, PageReadError)
            assert replica.key(0, 1, 1) in str(info.value)
            proxy.start()
            total = conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchall()
            assert total == [(3000, sum(len(big_value(i)) for i in range(3000)))]
            assert pragma(conn, "litestream_txid") == f"{1:016x}"
        finally:
            conn.close()


def test_follower_rides_out_an_outage(history_factory: Callable[..., History], s3_server: S3Server, s3_url: str,
                                      tmp_path: Path) -> None:
    """While the store is away, polls fail and litestream_lag grows; the connection keeps reading
    what it has; when the store is back the follower catches up with what landed meanwhile."""
    history = history_factory(seed=41, page_size=4096, transactions=10)
    replica = Replica.open(s3_url)
    history.ship(replica, 1, 3)
    with CountingProxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, poll=0.1)
        try:
            at3 = run_queries(conn)
            proxy.stop()
            history.ship(replica, 4, history.last_txid)
            wait_for(lambda: int(pragma(conn, "litestream_lag")) >= 1, "the lag to grow", 30.0, interval=0.05)
            wait_for(lambda: stats(conn)["poll_errors"] >= 1, "a poll to fail", 30.0, interval=0.05)
            assert pragma(conn, "litestream_txid") == f"{3:016x}"
            assert run_queries(conn) == at3, "cached pages still serve the current view"
            proxy.start()
            last = history.last_txid
            wait_for(lambda: pragma(conn, "litestream_txid") == f"{last:016x}", "the follower to catch up", 30.0,
                     interval=0.05)
            assert int(pragma(conn, "litestream_lag")) <= 1
            expected = run_queries(plain(history.write_image(last, tmp_path / "last.db")))
            assert run_queries(conn) == expected
        finally:
            conn.close()
            replica.close()
