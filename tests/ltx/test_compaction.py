"""ltx.compaction: Litestream's compaction steps, the level-9 snapshot, and retention, including
while a writer ships level-0 files and a reader follows them."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ltx.compaction import (
    DEFAULT_COMPACTION_INTERVALS,
    DEFAULT_L0_RETENTION,
    DEFAULT_SNAPSHOT_RETENTION,
    StepResult,
    backlog,
    compact_chunks,
    compact_level,
    enforce_l0_retention,
    enforce_snapshot_retention,
    is_due,
    l0_expired,
    merge_files,
    run,
    snapshot,
    snapshots_expired,
)
from ltx.compactor import is_contiguous
from ltx.decoder import Decoder
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo, TXIDNotAvailableError, restore_plan
from ltx.replica import Replica
from ltx.restore import restore
from tests.litestream import wait_for
from tests.ltx.history import History, record_history
from tests.ltx.ltxfiles import incremental
from tests.ltx.ltxfiles import snapshot as snapshot_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=21, transactions=24)


def _image_of(replica: Replica, info: LTXFileInfo) -> bytes:
    """The database a snapshot file describes, page by page."""
    dec = Decoder(io.BytesIO(replica.store.get(info.key)), info.key)
    assert dec.header.is_snapshot
    return b"".join(page for _, page in dec.pages())


def _info(level: int, lo: int, hi: int, minutes: float) -> LTXFileInfo:
    return LTXFileInfo(level, lo, hi, 100, T0 + timedelta(minutes=minutes), f"{level}/{lo:016x}-{hi:016x}.ltx")


def test_compact_level_takes_files_after_its_last_txid(history: History, store_url: str) -> None:
    replica = Replica.open(store_url)
    history.ship(replica, 1, 6)
    first = compact_level(replica, 1)
    assert first.file is not None and (first.file.min_txid, first.file.max_txid) == (1, 6)
    assert [f.max_txid for f in first.inputs] == [1, 2, 3, 4, 5, 6]
    history.ship(replica, 7, 9)
    second = compact_level(replica, 1)
    assert second.file is not None and (second.file.min_txid, second.file.max_txid) == (7, 9)
    assert [f.max_txid for f in second.inputs] == [7, 8, 9]
    assert compact_level(replica, 1).file is None, "nothing new: no file"
    up = compact_level(replica, 2)
    assert up.file is not None and (up.file.min_txid, up.file.max_txid) == (1, 9) and len(up.inputs) == 2
    assert _image_of(replica, up.file) == history.images[9]
    hdr = Decoder(io.BytesIO(replica.store.get(second.file.key))).header
    assert hdr.timestamp == history.timestamp_ms(9) and hdr.commit == len(history.pages(9))


def test_snapshot_from_restore_plan(history: History, store_url: str) -> None:
    replica = Replica.open(store_url)
    history.ship(replica, 1, 10)
    compact_level(replica, 1)
    history.ship(replica, 11, 14)
    step = snapshot(replica)
    assert step.file is not None and (step.file.level, step.file.min_txid, step.file.max_txid) == (9, 1, 14)
    assert _image_of(replica, step.file) == history.images[14]
    assert snapshot(replica).file is None, "the newest snapshot already holds the state"
    history.ship(replica, 15, 15)
    again = snapshot(replica)
    assert again.file is not None and again.file.max_txid == 15
    assert [f.level for f in again.inputs] == [9, 0], "a new snapshot starts from the previous one"
    assert _image_of(replica, again.file) == history.images[15]


def test_existing_output_is_a_conflict_not_an_overwrite(history: History, file_url: str) -> None:
    replica = Replica.open(file_url)
    history.ship(replica, 1, 4)
    inputs = replica.list_level(0)
    made, conflict = merge_files(replica, 1, inputs)
    assert made is not None and not conflict
    before = replica.store.get(made.key)
    again, conflict = merge_files(replica, 1, inputs[:3] + inputs[3:])
    assert again is None and conflict
    assert replica.store.get(made.key) == before


def test_l0_expired_rules() -> None:
    l0 = [_info(0, i, i, i) for i in range(1, 11)]
    # Covered up to 6, old up to 8: 1..6 go; 7 and 8 are old but not covered; the scan stops at 9.
    assert [f.max_txid for f in l0_expired(l0, 6, T0 + timedelta(minutes=8.5))] == [1, 2, 3, 4, 5, 6]
    # Everything old and covered: all but the newest.
    assert [f.max_txid for f in l0_expired(l0, 10, T0 + timedelta(minutes=99))] == list(range(1, 10))
    # Nothing covered (level 1 empty): nothing goes, however old.
    assert l0_expired(l0, 0, T0 + timedelta(minutes=99)) == []
    # A young file early on stops the scan: no hole opens behind it.
    l0[2] = _info(0, 3, 3, 50)
    assert [f.max_txid for f in l0_expired(l0, 10, T0 + timedelta(minutes=20))] == [1, 2]


def test_snapshots_expired_floor() -> None:
    snaps = [_info(9, 1, 4, 0), _info(9, 1, 8, 10), _info(9, 1, 12, 20)]
    deleted, floor = snapshots_expired(snaps, T0 + timedelta(minutes=15))
    assert [f.max_txid for f in deleted] == [4, 8] and floor == 8
    deleted, floor = snapshots_expired(snaps, T0 + timedelta(minutes=99))
    assert [f.max_txid for f in deleted] == [4, 8] and floor == 8, "the newest snapshot always stays"
    assert snapshots_expired(snaps, T0) == ([], 0)


def test_retention_on_a_replica(history: History, file_url: str, tmp_path: Path) -> None:
    """History timestamps are in 2023: old enough for the default retentions."""
    replica = Replica.open(file_url)
    history.ship(replica, 1, 8)
    compact_level(replica, 1)
    snapshot(replica)
    history.ship(replica, 9, 12)
    compact_level(replica, 1)
    snapshot(replica)
    history.ship(replica, 13, 14)
    deleted = enforce_l0_retention(replica, DEFAULT_L0_RETENTION)
    assert [f.max_txid for f in deleted] == list(range(1, 13))
    assert [f.max_txid for f in replica.list_level(0)] == [13, 14]
    gone = enforce_snapshot_retention(replica, DEFAULT_SNAPSHOT_RETENTION)
    # The floor is the last deleted snapshot's TXID (8): level-1 files ending before it would go.
    assert [(f.level, f.max_txid) for f in gone] == [(9, 8)]
    assert [f.max_txid for f in replica.list_level(9)] == [12]
    assert [(f.min_txid, f.max_txid) for f in replica.list_level(1)] == [(1, 8), (9, 12)]
    restore(replica, tmp_path / "latest.db")
    assert (tmp_path / "latest.db").read_bytes() == history.images[14]
    with pytest.raises(TXIDNotAvailableError):
        restore(replica, tmp_path / "old.db", txid=5)
    # Young files stay: nothing is older than a retention of 100 years.
    history.ship(replica, 15, 16)
    compact_level(replica, 1)
    assert enforce_l0_retention(replica, timedelta(days=36500)) == []


def test_is_due_follows_litestreams_schedule() -> None:
    interval = DEFAULT_COMPACTION_INTERVALS[1]  # 30 s
    now = datetime(2024, 1, 1, 12, 0, 45, tzinfo=UTC)
    assert is_due([], interval, now)
    assert is_due([LTXFileInfo(1, 1, 2, 1, datetime(2024, 1, 1, 12, 0, 29, tzinfo=UTC), "k")], interval, now)
    assert not is_due([LTXFileInfo(1, 1, 2, 1, datetime(2024, 1, 1, 12, 0, 31, tzinfo=UTC), "k")], interval, now)


def test_run_with_intervals_skips_levels_not_due(history: History, file_url: str) -> None:
    replica = Replica.open(file_url)
    history.ship(replica, 1, 5)
    report = run(replica, [1, 2, 9], retention=False)
    assert [s.file is not None for s in report.steps] == [True, True, True]
    history.ship(replica, 6, 7)
    later = history.time(7)
    report = run(replica, [1, 9], retention=False, intervals={1: timedelta(hours=1), 9: timedelta(days=1)},
                 now=lambda: later)
    assert [s.reason for s in report.steps] == ["not due yet", "not due yet"]


def test_file_count_bounds_the_plan_at_any_commit_rate(file_url: str, tmp_path: Path) -> None:
    """Level-0 files shipped with no time passing (no level is ever due by its schedule), a round
    run whenever `count` have been shipped, as the writer's compactor does: the restore plan never
    exceeds the snapshot and (count - 1) files per level, and restores the latest state. (A count
    of 3 rather than DEFAULT_COMPACTION_FILE_COUNT: a count-triggered snapshot every 3**4 files.)"""
    count = 3
    levels = [1, 2, 3, SNAPSHOT_LEVEL]
    week = {lvl: timedelta(days=7) for lvl in levels}
    replica = Replica.open(file_url)
    data, pages = snapshot_file(4096, 8)
    replica.put_file(0, 1, 1, data, timestamp_ms=1000)
    frozen = datetime.fromtimestamp(2, UTC)  # just after every file's timestamp: nothing due by the week
    run(replica, levels, retention=False, intervals=week, file_count=count, now=lambda: frozen)
    bound = 1 + (count - 1) * 4
    for txid in range(2, 301):
        pgno = 2 + txid % 6
        data, changed = incremental(4096, 8, [pgno], txid, seed=txid, timestamp=1000 + txid)
        replica.put_file(0, txid, txid, data, timestamp_ms=1000 + txid)
        pages.update(changed)
        if txid % count == 0:
            run(replica, levels, retention=False, intervals=week, file_count=count, now=lambda: frozen)
        plan = restore_plan(replica.list_levels(), url=file_url)
        assert len(plan) <= bound, f"after TXID {txid}: {len(plan)} files in the plan"
    levels_now = replica.list_levels()
    assert all(levels_now[lvl] for lvl in (1, 2, 3)) and len(levels_now[SNAPSHOT_LEVEL]) >= 2, \
        "levels 1-3 and a second snapshot, all triggered by file count"
    assert all(backlog(replica, lvl) < count for lvl in levels)
    restore(replica, tmp_path / "out.db")
    image = (tmp_path / "out.db").read_bytes()
    assert all(image[(p - 1) * 4096:p * 4096] == page for p, page in pages.items())


def test_chunks_of_two_compactors_never_overlap(file_url: str) -> None:
    """Two compactors racing over one replica (threads with their own handles): chunks start where
    level 1 ends and hold exactly `count` files, so both write the same keys (one of them gets a
    conflict) and level 1 is a gapless run of aligned chunks; the files left over wait."""
    count = 4
    replica = Replica.open(file_url)
    data, _ = snapshot_file(4096, 8)
    replica.put_file(0, 1, 1, data, timestamp_ms=1000)
    for txid in range(2, 31):
        data, _ = incremental(4096, 8, [2 + txid % 6], txid, seed=txid, timestamp=1000 + txid)
        replica.put_file(0, txid, txid, data, timestamp_ms=1000 + txid)
    handles = [Replica.open(file_url) for _ in range(2)]
    results: list[list[StepResult]] = []
    threads = [threading.Thread(target=lambda r=r: results.append(compact_chunks(r, 1, count))) for r in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level1 = [(f.min_txid, f.max_txid) for f in replica.list_level(1)]
    assert level1 == [(lo, lo + count - 1) for lo in range(1, 29, count)]
    written = [s.file for steps in results for s in steps if s.file is not None]
    assert len(written) == len(level1), "each chunk written once; the other compactor's try was a conflict"
    assert backlog(replica, 1) == 2


def test_safe_while_writer_ships_and_reader_follows(tmp_path: Path) -> None:
    """Retention with no grace period at all (a clock far ahead) while a writer ships level-0
    files: level 0 never gets a hole, every deleted file is covered by level 1, and a follower
    that lists level 0 and then level 1 can always continue from where it is."""
    history = record_history(tmp_path, seed=33, transactions=40, grow_rows=6)
    replica = Replica.open(f"file://{tmp_path / 'r'}")
    history.ship(replica, 1, 1)
    done = threading.Event()
    errors: list[BaseException] = []

    def future() -> datetime:
        return datetime.now(UTC) + timedelta(days=365 * 20)

    rounds: list[int] = []  # files deleted by each compaction round

    def writer() -> None:
        try:
            for txid in range(2, history.last_txid + 1):
                history.ship(replica, txid, txid)
                if txid % 4 == 0:  # let a compaction round start before shipping more
                    seen = len(rounds)

                    def compacted_since(seen: int = seen) -> bool:
                        return len(rounds) > seen or bool(errors)

                    wait_for(compacted_since, "a compaction round")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    def compactor() -> None:
        try:
            while not done.is_set():
                report = run(replica, [1, 2], l0_retention=timedelta(microseconds=1),
                             snapshot_retention=timedelta(days=36500), now=future)
                rounds.append(len(report.deleted))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=compactor)]
    for t in threads:
        t.start()
    position, steps = 0, 0
    deadline = time.monotonic() + 60
    try:
        while not done.is_set() or position < history.last_txid:
            assert time.monotonic() < deadline, f"follower stuck at {position:x}"
            l0 = replica.list_level(0)
            l1 = replica.list_level(1)
            for prev, cur in zip(l0, l0[1:], strict=False):
                assert cur.min_txid == prev.max_txid + 1, f"hole in level 0: {prev.name} then {cur.name}"
            newest = max((f.max_txid for f in l0 + l1), default=0)
            if newest > position:
                nxt = [f for f in l0 + l1 if is_contiguous(position, f.min_txid, f.max_txid)]
                assert nxt, f"follower at {position:x} cannot continue: L0 {[f.name for f in l0]} L1 " \
                            f"{[f.name for f in l1]}"
                position = max(f.max_txid for f in nxt)
            steps += 1
            if done.is_set() and errors:
                break
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert steps > 1 and len(rounds) >= 5 and sum(rounds) > 0, (steps, rounds)
    run(replica, [1, 2], l0_retention=timedelta(microseconds=1), snapshot_retention=timedelta(days=36500),
        now=future)
    assert [f.max_txid for f in replica.list_level(0)] == [history.last_txid], "only the newest L0 file stays"
    restore(replica, tmp_path / "out.db")
    assert (tmp_path / "out.db").read_bytes() == history.images[-1]
