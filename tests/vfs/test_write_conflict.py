"""Conflicts and store failures: another writer taking a TXID first (in another process), two
connections of one process, a store that fails or loses an answer. Nothing in the store is ever
overwritten, a failed COMMIT rolls back, and the connection keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from ltx.replica import Replica
from ltx.store.retry import RetryPolicy
from ltx.store.s3 import S3Store
from tests.s3proxy import Fault, S3Proxy
from tests.s3server import S3Server
from tests.vfs.writing import level_files, open_writer, stats, txid, write_file

ROOT = Path(__file__).parents[2]


def other_process(tmp_path: Path, url: str, *statements: str, env: dict[str, str] | None = None) -> int:
    """Run statements through a writer in another process (another machine, as far as the
    replica can tell); return the TXID it reached."""
    config = {"mode": "sql", "path": str(tmp_path / "other" / "x.db"), "url": url, "statements": list(statements)}
    (tmp_path / "other").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "tests.vfs.write_worker", json.dumps(config)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip(), 16)


def _store_bytes(url: str) -> dict[str, bytes]:
    replica = Replica.open(url)
    try:
        return {f.key: replica.store.get(f.key) for f in replica.list_level(0)}
    finally:
        replica.close()


def test_a_taken_txid_fails_the_commit_with_busy(store_url: str, tmp_path: Path, s3_env: dict[str, str]) -> None:
    conn = open_writer(tmp_path / "x.db", store_url)
    conn.execute("CREATE TABLE t(who TEXT)")
    conn.execute("INSERT INTO t VALUES ('a1')")
    assert txid(conn) == 2
    assert other_process(tmp_path, store_url, "INSERT INTO t VALUES ('b1')", env=s3_env) == 3
    before = _store_bytes(store_url)

    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES ('a2')")
    with pytest.raises(apsw.BusyError) as err:
        conn.execute("COMMIT")
    assert err.value.extendedresult == apsw.SQLITE_BUSY_SNAPSHOT
    assert "0000000000000003" in str(err.value)
    assert conn.getautocommit(), "the transaction was rolled back"
    assert _store_bytes(store_url) == before, "nothing in the store was overwritten or added"
    assert stats(conn)["write_conflicts"] == 1

    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("a1",), ("b1",)], \
        "the next transaction reads the replica's state"
    conn.execute("INSERT INTO t VALUES ('a2')")
    assert txid(conn) == 4
    conn.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(store_url)] == [(n, n) for n in range(1, 5)]


def test_a_conflict_on_the_first_commit_of_a_new_replica(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    assert conn.execute("PRAGMA page_count").fetchall() == [(0,)]
    other_process(tmp_path, file_url, "CREATE TABLE t(who TEXT)", "INSERT INTO t VALUES ('b1')")
    with pytest.raises(apsw.BusyError):
        conn.execute("CREATE TABLE IF NOT EXISTS t(who TEXT)")
    conn.execute("CREATE TABLE IF NOT EXISTS t(who TEXT)")  # the table is there now: no write
    conn.execute("INSERT INTO t VALUES ('a1')")
    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a1",)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_an_autocommit_statement_conflicts_too(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(who TEXT)")
    other_process(tmp_path, file_url, "INSERT INTO t VALUES ('b1')")
    with pytest.raises(apsw.BusyError):
        conn.execute("INSERT INTO t VALUES ('a1')")
    conn.execute("INSERT INTO t VALUES ('a1')")
    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a1",)]
    conn.close()


def test_known_newer_commits_refuse_the_write_lock(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, poll="20ms")
    conn.execute("CREATE TABLE t(who TEXT)")
    conn.execute("BEGIN")
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    other_process(tmp_path, file_url, "INSERT INTO t VALUES ('b1')")
    deadline = time.monotonic() + 10
    while stats(conn)["staged_txid"] != "0000000000000002":
        assert time.monotonic() < deadline, "the follower never saw the other writer's commit"
        time.sleep(0.02)
    puts = stats(conn)["puts"]
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)], "a read transaction keeps its TXID"
    with pytest.raises(apsw.BusyError) as err:
        conn.execute("INSERT INTO t VALUES ('a1')")
    assert err.value.extendedresult == apsw.SQLITE_BUSY, "a plain BUSY: start the transaction again"
    conn.execute("ROLLBACK")
    assert stats(conn)["puts"] == puts, "no request was wasted on a commit bound to fail"
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES ('a1')")
    conn.execute("COMMIT")
    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a1",)]
    assert stats(conn)["write_conflicts"] == 0
    conn.close()


def test_connections_of_one_process_take_turns(store_url: str, tmp_path: Path) -> None:
    one = open_writer(tmp_path / "one.db", store_url)
    two = open_writer(tmp_path / "two.db", store_url)
    one.execute("CREATE TABLE t(who TEXT)")
    one.execute("BEGIN IMMEDIATE")
    two.setbusytimeout(0)
    with pytest.raises(apsw.BusyError):
        two.execute("BEGIN IMMEDIATE")
    one.execute("INSERT INTO t VALUES ('one')")
    one.execute("COMMIT")
    lists = stats(two)["lists"]
    two.setbusytimeout(5000)
    two.execute("BEGIN IMMEDIATE")  # catches up with one's commit (handed over in-process) first
    two.execute("INSERT INTO t VALUES ('two')")
    two.execute("COMMIT")
    for conn in (one, two):
        assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("one",), ("two",)]
    assert stats(one)["write_conflicts"] == stats(two)["write_conflicts"] == 0
    assert stats(two)["lists"] == lists, "the other connection's commit came without a LIST"
    one.close()
    two.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(store_url)] == [(n, n) for n in range(1, 4)]


def _through(url: str, server: S3Server, proxy: S3Proxy) -> str:
    return url.replace(server.endpoint, proxy.url)


def test_a_failing_store_fails_the_commit_with_ioerr(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    failing = {"on": False}

    def plan(method: str, path: str, index: int) -> Fault:
        return Fault.status(503, "ServiceUnavailable") if failing["on"] and method == "PUT" else Fault.forward()

    with S3Proxy(s3_server.endpoint, plan) as proxy:
        url = _through(s3_url, s3_server, proxy)
        conn = open_writer(tmp_path / "x.db", url)
        store = write_file(url).replica.store
        assert isinstance(store, S3Store)
        store._policy = RetryPolicy(max_retries=2, backoff_base_s=0.01)
        conn.execute("CREATE TABLE t(n)")
        conn.execute("INSERT INTO t VALUES (1)")
        failing["on"] = True
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(apsw.IOError) as err:
            conn.execute("COMMIT")
        assert err.value.extendedresult == apsw.SQLITE_IOERR_WRITE
        assert "0000000000000003" in str(err.value) and "503" in str(err.value)
        assert conn.getautocommit(), "rolled back"
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
        failing["on"] = False
        conn.execute("INSERT INTO t VALUES (3)")
        assert conn.execute("SELECT n FROM t").fetchall() == [(1,), (3,)]
        assert txid(conn) == 3
        conn.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(s3_url)] == [(1, 1), (2, 2), (3, 3)]


def test_a_lost_answer_to_the_commit_put_is_no_failure(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    drop = {"next_put": False}

    def plan(method: str, path: str, index: int) -> Fault:
        if method == "PUT" and drop["next_put"]:
            drop["next_put"] = False
            return Fault.drop_after_forward()
        return Fault.forward()

    with S3Proxy(s3_server.endpoint, plan) as proxy:
        url = _through(s3_url, s3_server, proxy)
        conn = open_writer(tmp_path / "x.db", url)
        conn.execute("CREATE TABLE t(n)")
        drop["next_put"] = True
        conn.execute("INSERT INTO t VALUES (1)")  # the server created the file; its answer was lost
        assert drop["next_put"] is False
        assert txid(conn) == 2
        conn.execute("INSERT INTO t VALUES (2)")
        conn.close()
        counts: dict[str, Any] = proxy.counts()
    assert counts["PUT"] >= 4, counts
    assert [(f.min_txid, f.max_txid) for f in level_files(s3_url)] == [(1, 1), (2, 2), (3, 3)]


def test_group_commit_lost_to_a_conflict_is_reported(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="interval:1h")
    conn.execute("CREATE TABLE t(who TEXT)")
    assert conn.execute("PRAGMA ltxvfs_flush").fetchall() == [("0000000000000001",)]
    for i in range(3):
        conn.execute("INSERT INTO t VALUES (?)", (f"a{i}",))
    assert len(level_files(file_url)) == 1, "group commit: nothing shipped yet"
    other_process(tmp_path, file_url, "INSERT INTO t VALUES ('b1')")
    with pytest.raises(apsw.BusyError) as err:
        conn.execute("PRAGMA ltxvfs_flush")
    assert "3 group-committed transaction(s) were lost" in str(err.value)
    assert conn.execute("SELECT who FROM t").fetchall() == [("b1",)]
    assert stats(conn)["write_lost_commits"] == 3
    conn.execute("INSERT INTO t VALUES ('a3')")
    conn.execute("PRAGMA ltxvfs_flush")
    conn.close()
    reader = open_writer(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a3",)]
    reader.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(file_url)] == [(1, 1), (2, 2), (3, 3)]


def test_a_tip_unconfirmed_for_long_is_checked_before_the_put(file_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer's TXID that was compacted to level 1 and removed from level 0 by retention
    leaves no level-0 name to collide with: a writer that has not looked at the replica for a
    while (MAX_UNCONFIRMED_AGE, here 0) lists it first, and so never forks the history."""
    import vfs.writer

    monkeypatch.setattr(vfs.writer, "MAX_UNCONFIRMED_AGE", 0.0)
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(who TEXT)")
    other_process(tmp_path, file_url, "INSERT INTO t VALUES ('b1')")
    from tests.vfs.writing import ltxctl
    ltxctl("compact", file_url, "--level", "1", "--no-retention")
    replica = Replica.open(file_url)
    replica.store.delete(replica.key(0, 2, 2))  # what level-0 retention does, later
    replica.close()
    with pytest.raises(apsw.BusyError, match="the replica is at TXID 0000000000000002"):
        conn.execute("INSERT INTO t VALUES ('a1')")
    assert [(f.min_txid, f.max_txid) for f in level_files(file_url)] == [(1, 1)], "no second file for TXID 2"
    assert stats(conn)["write_tip_checks"] >= 1
    conn.execute("INSERT INTO t VALUES ('a1')")
    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a1",)]
    conn.close()
    assert [(f.min_txid, f.max_txid) for f in level_files(file_url)] == [(1, 1), (3, 3)]


def test_a_group_committer_of_the_same_process_ships_first(store_url: str, tmp_path: Path) -> None:
    group = open_writer(tmp_path / "group.db", store_url, sync="interval:1h")
    group.execute("CREATE TABLE t(who TEXT)")
    group.execute("PRAGMA ltxvfs_flush")
    other = open_writer(tmp_path / "other.db", store_url)
    for i in range(3):
        group.execute("INSERT INTO t VALUES (?)", (f"g{i}",))
    assert len(level_files(store_url)) == 1
    other.execute("INSERT INTO t VALUES ('o1')")  # the write lock makes the group ship first
    assert [(f.min_txid, f.max_txid) for f in level_files(store_url)] == [(1, 1), (2, 2), (3, 3)]
    for conn in (group, other):
        assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("g0",), ("g1",), ("g2",), ("o1",)]
    assert stats(group)["write_lost_commits"] == 0 and stats(other)["write_conflicts"] == 0
    group.close()
    other.close()


def test_a_group_lost_while_writing_fails_the_next_commit(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="interval:50ms")
    conn.execute("CREATE TABLE t(who TEXT)")
    conn.execute("PRAGMA ltxvfs_flush")
    other_process(tmp_path, file_url, "INSERT INTO t VALUES ('b1')")
    conn.execute("INSERT INTO t VALUES ('a1')")  # acknowledged locally; its group will conflict
    deadline = time.monotonic() + 10
    while stats(conn)["write_conflicts"] == 0:
        assert time.monotonic() < deadline, "the group never shipped"
        time.sleep(0.01)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES ('a2')")
    with pytest.raises(apsw.BusyError, match=r"1 group-committed transaction\(s\) were lost"):
        conn.execute("COMMIT")
    assert conn.getautocommit()
    assert conn.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",)]
    conn.execute("INSERT INTO t VALUES ('a3')")
    conn.close()
    reader = open_writer(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT who FROM t ORDER BY rowid").fetchall() == [("b1",), ("a3",)]
    reader.close()
