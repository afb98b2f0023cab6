"""Replicas written by the real `litestream replicate` (0.5.17): ltxvfs reads them like the source,
at several page sizes, on file:// and S3, across compaction levels, and follows new commits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from ltx.replica import Replica
from tests.litestream import Replicator, wait_for, write_config
from tests.ltx.sqlgen import open_database, workload
from tests.vfs.replicas import connect, pragma, run_queries

#: Litestream compacts level 1 and 2 this often in these tests, so plans cross levels.
TEST_LEVELS = ("300ms", "1s")
DEADLINE = 30.0


def _latest_results(url: str, workdir: Path) -> Callable[[], list[list[tuple[object, ...]]] | None]:
    """A fresh ltxvfs connection's query results (None while the replica is still empty)."""
    def read() -> list[list[tuple[object, ...]]] | None:
        try:
            conn = connect(workdir / "fresh.db", url, poll=0, wait=0)
        except apsw.CantOpenError:
            return None
        try:
            return run_queries(conn)
        finally:
            conn.close()
    return read


def _replicate_workload(tmp_path: Path, url: str, page_size: int, seed: int) -> None:
    db = tmp_path / "source.db"
    conn = open_database(db, page_size=page_size, journal_mode="wal")
    config = write_config(tmp_path / "litestream.json", db, url, levels=TEST_LEVELS)
    steps = workload(seed, transactions=16, page_size=page_size, grow_rows=12)
    with Replicator(config) as litestream:
        for step in steps[:3]:
            step.apply(conn)
        expected = run_queries(conn)
        litestream.wait_for(lambda: _latest_results(url, tmp_path)() == expected, "the first commits")
        follower = connect(tmp_path / "follower.db", url, poll=0.1)
        try:
            for step in steps[3:]:
                step.apply(conn)
            expected = run_queries(conn)
            read = _latest_results(url, tmp_path)
            litestream.wait_for(lambda: read() == expected, "a fresh connection to read the final state", DEADLINE)
            litestream.wait_for(lambda: run_queries(follower) == expected, "the follower to reach the final state",
                                DEADLINE)
            replica = Replica.open(url)
            try:
                def compacted() -> bool:
                    newest = [files[-1].max_txid if files else 0 for files in
                              (replica.list_level(0), replica.list_level(2))]
                    return newest[0] > 0 and newest[0] == newest[1]
                litestream.wait_for(compacted, "level 2 to cover every commit", DEADLINE)
            finally:
                replica.close()
            fresh = connect(tmp_path / "compacted.db", url, poll=0)
            try:
                assert run_queries(fresh) == expected, "a plan through the compacted levels"
            finally:
                fresh.close()
        finally:
            follower.close()
        conn.close()


@pytest.mark.parametrize("page_size", [1024, 4096, 65536])
def test_reads_a_litestream_file_replica(tmp_path: Path, page_size: int) -> None:
    _replicate_workload(tmp_path, f"file://{tmp_path / 'replica'}", page_size, seed=page_size)


def test_reads_a_litestream_s3_replica(tmp_path: Path, s3_url: str) -> None:
    _replicate_workload(tmp_path, s3_url, 4096, seed=77)


def _newer_than(newest: Callable[[], int], before: int) -> Callable[[], int]:
    """The newest TXID once it passed `before` (0 until then)."""
    def check() -> int:
        txid = newest()
        return txid if txid > before else 0
    return check


def _applied(conn: apsw.Connection, txid: int) -> Callable[[], bool]:
    return lambda: int(pragma(conn, "litestream_txid"), 16) >= txid


def _reads(conn: apsw.Connection, expected: list[list[tuple[object, ...]]]) -> Callable[[], bool]:
    return lambda: run_queries(conn) == expected


def test_follower_sees_each_litestream_commit_within_two_polls(tmp_path: Path) -> None:
    poll = 0.5
    url = f"file://{tmp_path / 'replica'}"
    db = tmp_path / "source.db"
    conn = open_database(db, page_size=4096, journal_mode="wal")
    steps = workload(5, transactions=14, page_size=4096, grow_rows=6)
    replica = Replica.open(url)

    def newest_l0() -> int:
        files = replica.list_level(0)
        return files[-1].max_txid if files else 0

    config = write_config(tmp_path / "litestream.json", db, url)
    with Replicator(config) as litestream:
        steps[0].apply(conn)
        litestream.wait_for(newest_l0, "litestream's first file")
        follower = connect(tmp_path / "x.db", url, poll=poll)
        try:
            for step in steps[1:12]:
                before = newest_l0()
                step.apply(conn)
                landed = litestream.wait_for(_newer_than(newest_l0, before), "the commit to land")
                started = time.monotonic()
                wait_for(_applied(follower, landed), f"the follower to apply TXID {landed:x} within two poll "
                         "intervals", deadline=2 * poll, interval=0.01)
                assert time.monotonic() - started <= 2 * poll + 0.05
                expected = run_queries(conn)
                wait_for(_reads(follower, expected), "the follower's rows", DEADLINE)
        finally:
            follower.close()
            replica.close()
        conn.close()
