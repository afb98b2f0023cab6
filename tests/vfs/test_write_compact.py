"""`compact=auto` (the default): the writer's process compacts the replica by `ltxctl compact`'s
rules while it writes (here on a schedule of seconds instead of Litestream's minutes), and
readers, restores and the writer itself keep working as level-0 files are compacted away; the
file-count trigger keeps a cold reader's plan bounded however fast the writer commits."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from ltx.compaction import DEFAULT_COMPACTION_FILE_COUNT
from ltx.plan import SNAPSHOT_LEVEL, restore_plan
from ltx.replica import Replica
from tests.vfs.replicas import connect
from tests.vfs.replicas import stats as reader_stats
from tests.vfs.writing import dump_file, level_files, ltxctl, open_reader, open_writer, stats
from vfs import autocompact, process

FAST = autocompact.Schedule(
    intervals={1: timedelta(seconds=0.5), 2: timedelta(seconds=1), SNAPSHOT_LEVEL: timedelta(seconds=2)},
    l0_retention=timedelta(seconds=0.5), snapshot_retention=timedelta(hours=1))


def test_compact_auto_compacts_while_writing(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             s3_env: dict[str, str]) -> None:
    monkeypatch.setattr(autocompact, "DEFAULT_SCHEDULE", FAST)
    conn = open_writer(tmp_path / "x.db", store_url, compact="auto", poll="100ms")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    deadline = time.monotonic() + 30
    i = 0
    while not (level_files(store_url, 1) and level_files(store_url, 2) and level_files(store_url, SNAPSHOT_LEVEL)
               and stats(conn)["compact_files_deleted"]):
        assert time.monotonic() < deadline, f"no compaction: {stats(conn)}"
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
        i += 1
        time.sleep(0.02)
    for _ in range(5):  # and the writer goes on after its level-0 files were compacted away
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
        i += 1
    assert stats(conn)["compact_errors"] == 0
    conn.close()
    assert min(f.min_txid for f in level_files(store_url)) > 1, "retention removed the oldest level-0 files"
    ltxctl("verify", store_url, env=s3_env)
    ltxctl("restore", store_url, "-o", str(tmp_path / "restored.db"), env=s3_env)
    assert dump_file(tmp_path / "restored.db", ("t",))["t"] == [(n + 1, f"row {n}") for n in range(i)]
    reader = open_reader(tmp_path / "x.db", store_url)
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(i,)]
    reader.close()


def test_writers_of_one_replica_share_one_compactor(file_url: str, tmp_path: Path) -> None:
    one = open_writer(tmp_path / "one.db", file_url, compact="auto")
    two = open_writer(tmp_path / "two.db", file_url, compact="auto")
    assert process.sizes()["compactors"] == 1
    one.close()
    assert process.sizes()["compactors"] == 1
    two.close()
    assert process.sizes()["compactors"] == 0


def test_writers_compact_by_default_and_bound_the_plan(file_url: str, tmp_path: Path) -> None:
    """Defaults only, 300 commits as fast as they go (no time passes for Litestream's schedule):
    the file-count trigger compacts, and after the writer closes a cold reader's plan holds at most
    the snapshot and (count - 1) files per level, fetched in a handful of requests."""
    commits = 300
    conn = open_writer(tmp_path / "x.db", file_url)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(commits - 1):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
    assert stats(conn)["compact_errors"] == 0
    conn.close()
    replica = Replica.open(file_url)
    levels = replica.list_levels()
    plan = restore_plan(levels, url=file_url)
    replica.close()
    assert max(f.max_txid for f in levels[0]) == commits
    assert levels[1] and levels[2], "no compaction by file count"
    assert len(plan) <= 1 + (DEFAULT_COMPACTION_FILE_COUNT - 1) * 4, [f.key for f in plan]
    reader = connect(tmp_path / "x.db", file_url, poll=0)
    assert reader.execute("SELECT count(*) FROM t").fetchall() == [(commits - 1,)]
    assert reader.execute("SELECT v FROM t ORDER BY id DESC LIMIT 1").fetchall() == [(f"row {commits - 2}",)]
    got = reader_stats(reader)
    reader.close()
    assert got["gets"] <= len(plan) + 2, got


def test_compact_off_opts_out(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, compact="off")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for i in range(DEFAULT_COMPACTION_FILE_COUNT * 3):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
    assert "compact_errors" not in stats(conn)
    conn.close()
    assert level_files(file_url, 0) and not level_files(file_url, 1)


def test_compacting_a_replica_with_no_file_yet_is_not_an_error(store_url: str) -> None:
    """A new writer's compactor may look before the first commit lands: nothing to do, no error."""
    compactor = autocompact.AutoCompactor(store_url, FAST)
    compactor.run_once()
    assert compactor.stats.errors == 0 and compactor.last_error is None
