"""ltxctl against the real `litestream` 0.5.17, both ways, on file:// and s3://.

- `ltxctl restore` restores what `litestream replicate` wrote and compacted itself (levels 1, 2
  and 9 present), byte for byte what `litestream restore` gives, rows as in the source.
- `litestream restore` restores replicas after `ltxctl import` and after `ltxctl compact`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from ltx.replica import Replica
from tests.litestream import Replicator, write_config
from tests.litestream import restore as litestream_restore
from tests.ltx.history import History, record_history
from tests.ltx.sqlgen import dump_rows, open_database, run_steps, workload

ROOT = Path(__file__).resolve().parents[2]
LTXCTL = [sys.executable, "-m", "ltx.cli"]
#: Compaction intervals short enough that litestream builds levels 1, 2 and 9 in seconds.
FAST_LEVELS = ("1s", "2s")
FAST_SNAPSHOT = "2s"


def ltxctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*LTXCTL, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, f"ltxctl {' '.join(args)}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return dump_rows(conn)
    finally:
        conn.close()


def test_ltxctl_restores_what_litestream_wrote_and_compacted(store_url: str, s3_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    conn = open_database(src)
    steps = iter(workload(101, transactions=600, grow_rows=30))
    config = write_config(tmp_path / "litestream.yml", src, store_url, levels=FAST_LEVELS,
                          snapshot_interval=FAST_SNAPSHOT)
    replica = Replica.open(store_url)

    def one_more_and_levels_present() -> bool:
        step = next(steps, None)
        if step is not None:
            step.apply(conn)
        levels = replica.list_levels((1, 2, 9))
        return all(levels[lvl] for lvl in (1, 2, 9))

    with Replicator(config, env=s3_env) as litestream:
        litestream.wait_for(one_more_and_levels_present, "litestream to write levels 1, 2 and 9")
        run_steps(conn, [next(steps) for _ in range(3)])  # incrementals on top of the snapshot
        expected = dump_rows(conn)
        assert litestream.stop() == 0, litestream.log()
    conn.close()

    info = json.loads(ltxctl("info", store_url, "--json", env=s3_env).stdout)
    assert {f["level"] for f in info["restore_plan"]} & {1, 2, 9}, "the plan should use compacted files"
    ltxctl("verify", store_url, env=s3_env)
    ours = tmp_path / "ltxctl.db"
    ltxctl("restore", store_url, "-o", str(ours), "--integrity-check", "full", env=s3_env)
    assert rows(ours) == expected
    theirs = tmp_path / "litestream.db"
    litestream_restore(store_url, theirs, env=s3_env)
    assert ours.read_bytes() == theirs.read_bytes()
    # A past TXID too: the one the newest snapshot holds.
    snap_txid = info["newest_snapshot"]["max_txid"]
    ltxctl("restore", store_url, "-o", str(tmp_path / "past.db"), "--txid", snap_txid, env=s3_env)
    litestream_restore(store_url, tmp_path / "past-ls.db", "-txid", snap_txid, env=s3_env)
    assert (tmp_path / "past.db").read_bytes() == (tmp_path / "past-ls.db").read_bytes()


def test_litestream_restores_after_ltxctl_import(store_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    conn = open_database(src)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    run_steps(conn, workload(7, transactions=20, grow_rows=12))
    expected = dump_rows(conn)
    ltxctl("import", str(src), store_url, "--tmpdir", str(tmp_path), env=s3_env)
    out = tmp_path / "restored.db"
    litestream_restore(store_url, out, env=s3_env)
    assert rows(out) == expected
    conn.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=77, transactions=20)


def test_litestream_restores_after_ltxctl_compact(history: History, store_url: str, s3_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    replica = Replica.open(store_url)
    history.ship(replica, 1, 12)
    ltxctl("compact", store_url, env=s3_env)
    levels = replica.list_levels()
    assert all(levels[lvl] for lvl in (1, 2, 3, 9))
    history.ship(replica, 13, history.last_txid)
    ltxctl("compact", store_url, "--level", "1", "--no-retention", env=s3_env)
    ltxctl("verify", store_url, env=s3_env)
    out = tmp_path / "latest.db"
    litestream_restore(store_url, out, env=s3_env)
    assert out.read_bytes() == history.images[-1]
    past = tmp_path / "past.db"
    litestream_restore(store_url, past, "-txid", f"{16:016x}", env=s3_env)
    assert past.read_bytes() == history.images[16]
