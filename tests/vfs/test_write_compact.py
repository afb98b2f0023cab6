"""`compact=auto`: the writer's process compacts the replica by `ltxctl compact`'s rules while it
writes (here on a schedule of seconds instead of Litestream's minutes), and readers, restores and
the writer itself keep working as level-0 files are compacted away."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from ltx.plan import SNAPSHOT_LEVEL
from tests.vfs.writing import dump_file, level_files, ltxctl, open_reader, open_writer, stats
from vfs import autocompact

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
    assert len(autocompact._running) == 1
    one.close()
    assert len(autocompact._running) == 1
    two.close()
    assert autocompact._running == {}
