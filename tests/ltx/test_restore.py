"""ltx.restore: restore at every TXID and time of a scripted history, through compacted levels;
the output protocol (tmp file, refusal to overwrite, integrity check); bad files fail loudly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltx.compaction import compact_level, snapshot
from ltx.errors import LTXChecksumError, LTXError
from ltx.plan import HistoryGapError, TXIDNotAvailableError
from ltx.replica import Replica
from ltx.restore import OutputExistsError, PlanMismatchError, integrity_check, restore
from tests.ltx.history import History, record_history

#: Compaction steps the property test may run after a transaction is shipped.
ACTIONS = ("l1", "l2", "snapshot")


def _file_replica(root: Path) -> Replica:
    return Replica.open(f"file://{root}")


def _fresh(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.unlink(missing_ok=True)
    return path


def _ship_with_compactions(history: History, replica: Replica, actions: dict[int, list[str]]) -> None:
    for txid in range(1, history.last_txid + 1):
        history.ship(replica, txid, txid)
        for action in actions.get(txid, []):
            if action == "l1":
                compact_level(replica, 1)
            elif action == "l2":
                compact_level(replica, 2)
            else:
                snapshot(replica)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), page_size=st.sampled_from([1024, 4096]),
       schedule=st.dictionaries(st.integers(1, 16), st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3),
                                max_size=8))
def test_restore_at_every_txid_and_time(tmp_path_factory: pytest.TempPathFactory, seed: int, page_size: int,
                                        schedule: dict[int, list[str]]) -> None:
    tmp = tmp_path_factory.mktemp("history")
    history = record_history(tmp, seed, transactions=16, page_size=page_size)
    replica = _file_replica(tmp / "replica")
    _ship_with_compactions(history, replica, schedule)
    out = tmp / "out.db"
    for txid in range(1, history.last_txid + 1):
        result = restore(replica, _fresh(tmp, "out.db"), txid=txid)
        assert result.txid == txid
        assert out.read_bytes() == history.images[txid], f"TXID {txid} (schedule {schedule})"
        # Any time after TXID n's commit and before TXID n+1's gives state n.
        restore(replica, _fresh(tmp, "out.db"), timestamp=history.time(txid, plus_ms=500))
        assert out.read_bytes() == history.images[txid], f"time after TXID {txid}"
    restore(replica, _fresh(tmp, "out.db"))
    assert out.read_bytes() == history.images[-1]
    assert integrity_check(out) is None
    with pytest.raises(TXIDNotAvailableError):
        restore(replica, _fresh(tmp, "out.db"), timestamp=history.time(1, plus_ms=-1))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=7, transactions=20)


def test_restore_with_levels_on_both_backends(history: History, store_url: str, tmp_path: Path) -> None:
    """Both backends: a replica with levels 1, 2 and 9 restores to the latest state and to a past
    TXID, with small chunks so every file spans several range GETs."""
    replica = Replica.open(store_url)
    _ship_with_compactions(history, replica, {5: ["l1"], 9: ["l1", "l2", "snapshot"], 14: ["l1"]})
    levels = replica.list_levels()
    assert levels[1] and levels[2] and levels[9]
    out = tmp_path / "latest.db"
    result = restore(replica, out, chunk_size=1000, parallelism=3)
    assert out.read_bytes() == history.images[-1]
    assert [f.level for f in result.plan][0] == 9
    past = tmp_path / "past.db"
    restore(replica, past, txid=7, chunk_size=777, parallelism=2)
    assert past.read_bytes() == history.images[7]
    assert integrity_check(out, "full") is None


def test_refuses_to_overwrite(history: History, tmp_path: Path) -> None:
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 3)
    out = tmp_path / "out.db"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        restore(replica, out)
    assert out.read_bytes() == b"precious"
    out.unlink()
    Path(f"{out}-wal").write_bytes(b"stale wal")
    with pytest.raises(OutputExistsError):
        restore(replica, out)
    out.write_bytes(b"old")
    restore(replica, out, force=True)
    assert out.read_bytes() == history.images[3]
    assert not Path(f"{out}-wal").exists(), "a stale WAL beside a restored database would corrupt it"
    assert not Path(f"{out}.tmp").exists()


def test_corrupt_file_fails_and_leaves_nothing(history: History, tmp_path: Path) -> None:
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 6)
    victim = tmp_path / "r" / "ltx" / "0" / f"{4:016x}-{4:016x}.ltx"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    out = tmp_path / "out.db"
    with pytest.raises(LTXError) as info:
        restore(replica, out)
    assert info.value.name.endswith(victim.name)
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    # Cut a valid file short: truncation is caught too.
    history.ship(_file_replica(tmp_path / "r2"), 1, 3)
    victim2 = tmp_path / "r2" / "ltx" / "0" / f"{3:016x}-{3:016x}.ltx"
    victim2.write_bytes(victim2.read_bytes()[:-9])
    with pytest.raises(LTXError):
        restore(_file_replica(tmp_path / "r2"), out)
    assert not out.exists()


def test_file_under_wrong_name_is_refused(history: History, tmp_path: Path) -> None:
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 3)
    level0 = tmp_path / "r" / "ltx" / "0"
    (level0 / f"{4:016x}-{4:016x}.ltx").write_bytes((level0 / f"{3:016x}-{3:016x}.ltx").read_bytes())
    with pytest.raises(PlanMismatchError, match="header holds TXIDs"):
        restore(replica, tmp_path / "out.db")


def test_gap_names_missing_range(history: History, tmp_path: Path) -> None:
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 8)
    for txid in (4, 5):
        os.unlink(tmp_path / "r" / "ltx" / "0" / f"{txid:016x}-{txid:016x}.ltx")
    with pytest.raises(HistoryGapError) as info:
        restore(replica, tmp_path / "out.db")
    assert (info.value.missing_from, info.value.missing_to) == (4, 5)
    # Before the gap, the past is still there.
    restore(replica, tmp_path / "three.db", txid=3)
    assert (tmp_path / "three.db").read_bytes() == history.images[3]


def test_checksum_error_class(history: History, tmp_path: Path) -> None:
    """A flipped byte inside a page's data is caught by the file checksum, not accepted."""
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 1)
    victim = tmp_path / "r" / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01  # inside the file checksum itself (the last 8 bytes)
    victim.write_bytes(bytes(data))
    with pytest.raises(LTXChecksumError):
        restore(replica, tmp_path / "out.db")


def test_progress_reports_every_byte(history: History, tmp_path: Path) -> None:
    replica = _file_replica(tmp_path / "r")
    history.ship(replica, 1, 10)
    seen: list[tuple[int, int]] = []
    result = restore(replica, tmp_path / "out.db", chunk_size=512, progress=lambda d, t: seen.append((d, t)))
    total = sum(f.size for f in result.plan)
    assert seen and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_files_before_a_full_file_are_not_read(history: History, file_url: str, tmp_path: Path) -> None:
    """Litestream's plan here is the level-9 snapshot 1-3, then the level-1 file 1-6; that second
    file holds every page, so the snapshot need not be fetched."""
    replica = Replica.open(file_url)
    history.ship(replica, 1, 3)
    snapshot(replica)
    history.ship(replica, 4, 6)
    compact_level(replica, 1)
    history.ship(replica, 7, 8)
    reads_before = replica.store.stats.bytes_read
    result = restore(replica, tmp_path / "out.db")
    assert [(f.level, f.min_txid, f.max_txid) for f in result.plan] == [(1, 1, 6), (0, 7, 7), (0, 8, 8)]
    assert replica.store.stats.bytes_read - reads_before == sum(f.size for f in result.plan)
    assert (tmp_path / "out.db").read_bytes() == history.images[8]
