"""ROLLBACK, savepoints, journal modes, VACUUM and shrinking, and the local journal: every script
runs through an ltxvfs writer and through plain SQLite, and must leave the same rows; nothing
that was rolled back ever reaches the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.ltx.sqlgen import workload
from tests.vfs.writing import level_files, open_reader, open_writer, plain_run, read_file, replay, stats

Script = Callable[[apsw.Connection], None]

#: Pages SQLite may keep dirty in memory before it writes them to the database file mid-transaction.
SMALL_CACHE = 10


def _rows(conn: apsw.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute("SELECT id, k, length(v), hex(substr(v, 1, 8)) FROM t ORDER BY id")]


def _setup(conn: apsw.Connection) -> None:
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    conn.execute("CREATE INDEX t_k ON t(k)")
    with conn:
        for i in range(50):
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"k{i:04d}", bytes([i]) * 700))


def _big_insert(conn: apsw.Connection, start: int, n: int = 400) -> None:
    for i in range(start, start + n):
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i, f"b{i:05d}", bytes([i % 251]) * 900))


def _script(conn: apsw.Connection) -> None:
    """Commits, a rollback, one that spills pages to the file first, and savepoints."""
    _setup(conn)
    conn.execute("BEGIN; UPDATE t SET v = zeroblob(5) WHERE id < 20; DELETE FROM t WHERE id > 40; ROLLBACK")
    conn.execute(f"PRAGMA cache_size = {SMALL_CACHE}")
    conn.execute("BEGIN")
    _big_insert(conn, 1000)
    conn.execute("UPDATE t SET k = 'gone' WHERE id < 10")
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (100, 'kept', x'01')")
    conn.execute("SAVEPOINT a")
    _big_insert(conn, 2000, 150)
    conn.execute("SAVEPOINT b")
    conn.execute("DELETE FROM t WHERE id BETWEEN 2000 AND 2100")
    conn.execute("ROLLBACK TO b")
    conn.execute("UPDATE t SET k = 'in a' WHERE id = 2001")
    conn.execute("RELEASE b")
    conn.execute("SAVEPOINT c")
    conn.execute("DELETE FROM t WHERE id < 25")
    conn.execute("ROLLBACK TO c")
    conn.execute("RELEASE c")
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT d")
    _big_insert(conn, 3000, 300)
    conn.execute("ROLLBACK TO d")
    conn.execute("INSERT INTO t VALUES (101, 'after d', x'02')")
    conn.execute("COMMIT")


def _plain_rows(tmp_path: Path, script: Script, journal_mode: str = "delete") -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(tmp_path / "plain.db"))
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    script(conn)
    rows = _rows(conn)
    conn.close()
    return rows


def test_rollback_ships_nothing(store_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", store_url)
    _setup(conn)
    files = level_files(store_url)
    before = _rows(conn)
    conn.execute("BEGIN; UPDATE t SET v = zeroblob(5); DELETE FROM t WHERE id > 10; ROLLBACK")
    conn.execute(f"PRAGMA cache_size = {SMALL_CACHE}")
    conn.execute("BEGIN")
    _big_insert(conn, 1000)
    assert stats(conn)["write_pending_groups"] == 0
    conn.execute("ROLLBACK")
    assert stats(conn)["write_rollbacks"] >= 1, "the spilled transaction reached the VFS, then was dropped"
    assert level_files(store_url) == files, "nothing rolled back reaches the store"
    assert _rows(conn) == before
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.execute("INSERT INTO t VALUES (999, 'next', x'00')")
    conn.close()
    reader = open_reader(tmp_path / "x.db", store_url)
    assert _rows(reader) == [*before, (999, "next", 1, "00")]
    reader.close()


@pytest.mark.parametrize("journal_mode", ["delete", "truncate", "persist", "memory"])
def test_journal_modes_rollbacks_and_savepoints(file_url: str, tmp_path: Path, journal_mode: str) -> None:
    expected = _plain_rows(tmp_path, _script, journal_mode)
    conn = open_writer(tmp_path / "x.db", file_url)
    assert conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchall() == [(journal_mode,)]
    _script(conn)
    assert _rows(conn) == expected
    commits = stats(conn)["write_ltx_files"]
    conn.close()
    assert commits == len(level_files(file_url)) == 5, "schema, setup, 2 commits of the script"
    reader = open_reader(tmp_path / "x.db", file_url)
    assert _rows(reader) == expected
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()
    assert [n for n in os.listdir(tmp_path) if n.startswith("x.db")] == [], "no journal or other file beside the name"


def test_savepoints_with_s3(s3_url: str, tmp_path: Path) -> None:
    expected = _plain_rows(tmp_path, _script)
    conn = open_writer(tmp_path / "x.db", s3_url)
    _script(conn)
    conn.close()
    reader = open_reader(tmp_path / "x.db", s3_url)
    assert _rows(reader) == expected
    reader.close()


def test_wal_is_refused(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(n)")
    with pytest.raises(apsw.IOError, match="WAL"):
        conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA locking_mode = exclusive")
    with pytest.raises(apsw.IOError, match="WAL"):
        conn.execute("PRAGMA journal_mode = wal")
    conn.execute("INSERT INTO t VALUES (1)")
    assert len(level_files(file_url)) == 2
    conn.close()


def test_vacuum_and_shrinking(store_url: str, tmp_path: Path) -> None:
    steps = workload(seed=11, transactions=24, grow_rows=45)
    assert any(s.is_vacuum for s in steps)
    expected = plain_run(tmp_path / "plain.db", steps)
    plain = apsw.Connection(str(tmp_path / "plain.db"))
    plain_pages = plain.execute("PRAGMA page_count").fetchall()[0][0]
    plain.close()
    conn = open_writer(tmp_path / "x.db", store_url)
    replay(conn, steps)
    conn.close()
    commits = [read_file(store_url, f)[0].commit for f in level_files(store_url)]
    assert commits[-1] == plain_pages < max(commits), "the database grew, then shrank"
    reader = open_reader(tmp_path / "x.db", store_url)
    from tests.ltx.sqlgen import dump_rows
    assert dump_rows(reader) == expected
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()


def test_auto_vacuum_shrinks_at_every_commit(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("PRAGMA auto_vacuum = FULL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    with conn:
        conn.executemany("INSERT INTO t(v) VALUES (randomblob(3000))", [()] * 60)
    grown = conn.execute("PRAGMA page_count").fetchall()[0][0]
    conn.execute("DELETE FROM t WHERE id > 5")
    shrunk = conn.execute("PRAGMA page_count").fetchall()[0][0]
    assert shrunk < grown // 4
    conn.execute("INSERT INTO t(v) VALUES (zeroblob(10))")
    conn.close()
    commits = [read_file(file_url, f)[0].commit for f in level_files(file_url)]
    assert commits[-3:] == [grown, shrunk, shrunk]
    reader = open_reader(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(6,)]
    assert reader.execute("PRAGMA page_count").fetchall() == [(shrunk,)]
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()


def test_exclusive_locking_mode(file_url: str, tmp_path: Path) -> None:
    expected = _plain_rows(tmp_path, _script)
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("PRAGMA locking_mode = exclusive")
    _script(conn)
    assert _rows(conn) == expected
    conn.close()
    reader = open_reader(tmp_path / "x.db", file_url)
    assert _rows(reader) == expected
    reader.close()


def _hot_journal(tmp_path: Path) -> bytes:
    """A real hot journal: plain SQLite is killed inside a transaction that spilled pages."""
    code = f"""
import apsw, os, signal
conn = apsw.Connection({str(tmp_path / 'crashed.db')!r})
conn.execute("PRAGMA journal_mode = delete")
conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
conn.execute("PRAGMA cache_size = 5")
conn.execute("BEGIN")
for i in range(300):
    conn.execute("INSERT INTO t(v) VALUES (randomblob(900))")
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    journal = tmp_path / "crashed.db-journal"
    assert journal.stat().st_size > 0
    return journal.read_bytes()


def test_a_journal_left_beside_the_name_is_never_played_back(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url)
    _setup(conn)
    expected = _rows(conn)
    conn.close()
    stale = _hot_journal(tmp_path)
    (tmp_path / "x.db-journal").write_bytes(stale)
    conn = open_writer(tmp_path / "x.db", file_url)
    assert _rows(conn) == expected, "the replica is the truth: no rollback from a local journal"
    conn.execute("INSERT INTO t VALUES (500, 'new', x'05')")
    conn.execute("BEGIN; DELETE FROM t; ROLLBACK")
    conn.close()
    assert (tmp_path / "x.db-journal").read_bytes() == stale, "and it is left alone"
    reader = open_reader(tmp_path / "x.db", file_url)
    assert _rows(reader) == [*expected, (500, "new", 1, "05")]
    reader.close()


_CRASH_IN_TXN = """
import sys, apsw
sys.path.insert(0, {root!r})
import vfs
from tests.vfs.writing import open_writer
conn = open_writer({path!r}, {url!r})
conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
conn.execute("INSERT INTO t VALUES (1, x'01')")
conn.execute("PRAGMA cache_size = 5")
conn.execute("BEGIN")
for i in range(2, 400):
    conn.execute("INSERT INTO t VALUES (?, randomblob(900))", (i,))
print("in transaction", flush=True)
sys.stdin.readline()
"""


def test_a_crash_inside_a_transaction_ships_nothing(store_url: str, tmp_path: Path, s3_env: dict[str, str]) -> None:
    code = _CRASH_IN_TXN.format(root=str(Path(__file__).parents[2]), path=str(tmp_path / "x.db"), url=store_url)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=s3_env, cwd=tmp_path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"in transaction\n"
        assert len(level_files(store_url)) == 2
        child.kill()
    finally:
        child.wait(30)
    assert len(level_files(store_url)) == 2, "the open transaction never reached the store"
    conn = open_writer(tmp_path / "x.db", store_url)
    assert conn.execute("SELECT id, hex(v) FROM t").fetchall() == [(1, "01")]
    conn.execute("INSERT INTO t VALUES (2, x'02')")
    conn.close()
    assert [n for n in os.listdir(tmp_path) if n.startswith("x.db")] == [], "the crash left no journal behind"


def test_large_transactions_spill_to_local_files(store_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Dirty pages past the memory budget go to a local temporary file, and so does the encoded
    commit (budgets lowered so a few MB do it); commits and rollbacks come out the same."""
    from vfs import commitfile, dirty
    monkeypatch.setattr(dirty, "DEFAULT_MEMORY_BYTES", 256 * 1024)
    monkeypatch.setattr(commitfile, "MEMORY_LIMIT", 256 * 1024)
    conn = open_writer(tmp_path / "x.db", store_url)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, randomblob(3000))", [(i,) for i in range(1000)])
    expected = conn.execute("SELECT count(*), sum(length(v)), hex(max(v)) FROM t").fetchall()
    assert stats(conn)["write_spilled_transactions"] == 1
    conn.execute(f"PRAGMA cache_size = {SMALL_CACHE}")
    conn.execute("BEGIN")
    conn.execute("UPDATE t SET v = zeroblob(10)")
    conn.execute("INSERT INTO t VALUES (5000, x'00')")
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*), sum(length(v)), hex(max(v)) FROM t").fetchall() == expected
    assert stats(conn)["write_spilled_transactions"] == 2, "the rolled-back one had spilled too"
    conn.close()
    commit = level_files(store_url)[-1]
    assert commit.size > 3_000_000, "the big commit went out whole, from its temporary file"
    reader = open_reader(tmp_path / "x.db", store_url)
    assert reader.execute("SELECT count(*), sum(length(v)), hex(max(v)) FROM t").fetchall() == expected
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()
