"""Group commit (`sync=interval:DURATION`): the commits of an interval ship as one LTX file at one
TXID, the connection reads its own unshipped commits, closing (or exiting) ships what is left,
and a crash loses at most the last interval, never a part of a transaction, never a hole."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.vfs.test_write_crash import ROOT, START_DEADLINE, Child
from tests.vfs.writing import level_files, ltxctl, open_reader, open_writer, read_file, stats

#: Generous allowance for the shipper to be scheduled and its PUT to return, on a loaded machine.
SHIP_SLACK = 2.0


def test_commits_of_an_interval_ship_as_one_file(store_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", store_url, sync="interval:50ms")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    commits = 200
    for i in range(commits):
        conn.execute("INSERT INTO t(v) VALUES (?)", (f"v{i}",))
    assert conn.execute("SELECT count(*) FROM t").fetchall() == [(commits,)], "reads see unshipped commits"
    conn.execute("PRAGMA ltxvfs_flush")
    st = stats(conn)
    conn.close()
    files = level_files(store_url)
    assert st["write_commits"] == commits + 1
    assert st["write_ltx_files"] == len(files) < commits / 4, "several commits per file"
    assert [(f.min_txid, f.max_txid) for f in files] == [(n, n) for n in range(1, len(files) + 1)], \
        "one TXID per file, contiguous"
    for f in files:
        header, _ = read_file(store_url, f)
        assert header.min_txid == header.max_txid == f.min_txid
    reader = open_reader(tmp_path / "x.db", store_url)
    assert reader.execute("SELECT count(*), min(v), max(id) FROM t").fetchall() == [(commits, "v0", commits)]
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    reader.close()


def test_nothing_ships_before_the_interval_and_close_ships_the_rest(file_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="interval:1h")
    conn.execute("CREATE TABLE t(n)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.execute("DELETE FROM t WHERE n % 2 = 0")
    conn.execute("BEGIN; DELETE FROM t; ROLLBACK")
    assert conn.execute("SELECT count(*), sum(n) FROM t").fetchall() == [(500, 250000)]
    assert level_files(file_url) == [], "within the interval nothing is shipped"
    assert stats(conn)["write_pending_groups"] == 1
    conn.close()
    files = level_files(file_url)
    assert [(f.min_txid, f.max_txid) for f in files] == [(1, 1)], "closing ships the group as one snapshot"
    reader = open_reader(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT count(*), sum(n) FROM t").fetchall() == [(500, 250000)]
    reader.close()


def test_an_exiting_process_ships_its_last_interval(file_url: str, tmp_path: Path) -> None:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.vfs.writing import open_writer\n"
            f"conn = open_writer({str(tmp_path / 'x.db')!r}, {file_url!r}, sync='interval:1h')\n"
            "conn.execute('CREATE TABLE t(n)')\n"
            "conn.execute('INSERT INTO t VALUES (7)')\n")  # exits without closing the connection
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reader = open_reader(tmp_path / "x.db", file_url)
    assert reader.execute("SELECT n FROM t").fetchall() == [(7,)]
    reader.close()


def test_a_crash_loses_at_most_the_last_interval(store_url: str, tmp_path: Path, s3_env: dict[str, str]) -> None:
    interval = 0.05
    config = {"mode": "ledger", "path": str(tmp_path / "w.db"), "url": store_url, "rows": 3, "seed": 4,
              "params": {"sync": f"interval:{int(interval * 1000)}ms"}}
    child = Child(config, s3_env)
    try:
        child.wait_line(lambda line: line.startswith("ack "), START_DEADLINE)
        time.sleep(SHIP_SLACK + 1.0)
    finally:
        killed_at = time.monotonic()
        child.kill()
    acks = dict(zip(child.acks(), child.ack_times(), strict=True))
    reader = open_reader(tmp_path / "check.db", store_url)
    present = dict(reader.execute("SELECT seq, count(*) FROM ledger GROUP BY seq").fetchall())
    reader.close()
    assert set(present.values()) == {3}, "no partial transaction"
    assert sorted(present) == list(range(len(present))), "a prefix of the commits: no hole"
    assert set(present) <= set(acks), "only acknowledged commits (group commit acknowledges locally)"
    old = {seq for seq, at in acks.items() if at < killed_at - interval - SHIP_SLACK}
    assert old, "the run was long enough to test the bound"
    assert old <= set(present), f"commits older than the interval were lost: {sorted(old - set(present))[:5]}"
    ltxctl("verify", store_url, env=s3_env)


@pytest.mark.parametrize("interval", ["interval:0", "interval:x", "sometimes"])
def test_bad_sync_values_are_refused(file_url: str, tmp_path: Path, interval: str) -> None:
    import apsw
    with pytest.raises(apsw.CantOpenError, match="sync"):
        open_writer(tmp_path / "x.db", file_url, sync=interval)


def test_group_commit_acknowledges_without_waiting_for_the_store(s3_url: str, tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "x.db", s3_url, sync="interval:1h")
    conn.execute("CREATE TABLE t(n)")
    puts = stats(conn)["puts"]
    for i in range(50):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
    assert stats(conn)["puts"] == puts, "no request per commit"
    assert json.loads(conn.execute("PRAGMA ltxvfs_stats").fetchall()[0][0])["write_pending_groups"] == 1
    conn.close()
    assert len(level_files(s3_url)) == 1


def test_position_pragma_agrees_with_the_stats(file_url: str, tmp_path: Path) -> None:
    """`PRAGMA ltxvfs_position` (what blockmap's fence reads before each write transaction) gives
    the staged TXID, the files shipped and the follower's age that `ltxvfs_stats` gives, and
    whether a commit now returns without the store: under group commit yes, with `sync=commit`
    (every commit ships before it returns) no."""
    conn = open_writer(tmp_path / "x.db", file_url, sync="interval:1h")
    conn.execute("CREATE TABLE t(n)")
    for shipped in (1, 2):
        conn.execute("INSERT INTO t VALUES (?)", (shipped,))
        conn.execute("PRAGMA ltxvfs_flush")
        tip, files, age_ms, at_once = conn.execute("PRAGMA ltxvfs_position").fetchall()[0][0].split()
        assert at_once == "1"
        st = stats(conn)
        assert (tip, int(files)) == (st["staged_txid"], st["write_ltx_files"]) == (f"{shipped:016x}", shipped)
        assert 0 <= int(age_ms) <= st["staged_age_ms"] + 1000
    conn.close()
    reader = open_reader(tmp_path / "x.db", file_url)
    assert reader.execute("PRAGMA ltxvfs_position").fetchall() == [], "a reader has no writer's position"
    reader.close()
    conn = open_writer(tmp_path / "y.db", file_url, sync="commit")
    assert conn.execute("PRAGMA ltxvfs_position").fetchall()[0][0].split()[3] == "0"
    conn.close()
