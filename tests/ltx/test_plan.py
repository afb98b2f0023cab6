"""The one continuation rule (ltx.plan.continue_from) and the restore plan built on it.

The property tests draw multi-level histories with gaps and check that `continue_from` follows
the documented rule (a brute-force reading of it), that the restore plan is the snapshot plus
that continuation, and that the follower's way of calling it (one flat listing, level by level)
and the hydrator's (every level, snapshots included) choose the same chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltx.plan import (
    SNAPSHOT_LEVEL,
    HistoryGapError,
    LTXFileInfo,
    TXIDNotAvailableError,
    continue_from,
    restore_plan,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)

Levels = dict[int, list[LTXFileInfo]]


def f(level: int, lo: int, hi: int, size: int = 100, age: int = 0) -> LTXFileInfo:
    return LTXFileInfo(level, lo, hi, size, T0 + timedelta(seconds=age), f"{level}/{lo:016x}-{hi:016x}.ltx")


def levels_of(*files: LTXFileInfo) -> Levels:
    out: Levels = {}
    for x in files:
        out.setdefault(x.level, []).append(x)
    for v in out.values():
        v.sort(key=lambda x: (x.min_txid, x.max_txid))
    return out


def spans(c: Sequence[LTXFileInfo]) -> list[tuple[int, int, int]]:
    return [(x.level, x.min_txid, x.max_txid) for x in c]


@st.composite
def histories(draw: st.DrawFn) -> Levels:
    """Levels 0..9: each level's files are disjoint runs of TXIDs with random holes between them;
    levels overlap one another freely; creation times are random (ties included)."""
    top = draw(st.integers(1, 40))
    files: list[LTXFileInfo] = []
    for level in draw(st.sets(st.integers(0, SNAPSHOT_LEVEL), min_size=1, max_size=6)):
        if level == SNAPSHOT_LEVEL:
            for hi in sorted(draw(st.sets(st.integers(1, top), max_size=3))):
                files.append(f(level, 1, hi, age=draw(st.integers(0, 5))))
            continue
        txid = draw(st.integers(1, 4))
        while txid <= top:
            length = draw(st.integers(1, 8))
            files.append(f(level, txid, txid + length - 1, size=draw(st.integers(1, 500)),
                           age=draw(st.integers(0, 5))))
            txid += length + draw(st.sampled_from([0, 0, 0, 1, 2, 5]))  # a hole now and then
    return levels_of(*files)


def reference(levels: Mapping[int, Sequence[LTXFileInfo]], tip: int) -> list[LTXFileInfo]:
    """The rule as written: from `tip`, the continuation reaching furthest; ties to the smaller
    min, then the higher level, then the older file."""
    every = [x for lvl, fs in levels.items() if lvl != SNAPSHOT_LEVEL for x in fs]
    chain: list[LTXFileInfo] = []
    cur = tip
    while True:
        options = [x for x in every if x.min_txid <= cur + 1 and x.max_txid > cur]
        if not options:
            return chain
        best = max(options, key=lambda x: (x.max_txid, -x.min_txid, x.level, -x.created_at.timestamp()))
        chain.append(best)
        cur = best.max_txid


@SETTINGS
@given(histories(), st.integers(0, 45))
def test_continue_from_follows_the_rule(levels: Levels, tip: int) -> None:
    got = continue_from(levels, tip)
    want = reference(levels, tip)
    assert spans(got.files) == spans(want)
    assert got.txid == (want[-1].max_txid if want else tip)
    later = [x.min_txid for lvl, fs in levels.items() if lvl != SNAPSHOT_LEVEL for x in fs
             if x.min_txid > got.txid + 1]
    assert got.gap_to == min(later, default=0)


@SETTINGS
@given(histories(), st.integers(0, 45))
def test_follower_hydrator_and_restore_choose_the_same_chain(levels: Levels, tip: int) -> None:
    # The hydrator hands over every level as listed (snapshots too).
    hydrator = continue_from(levels, tip)
    # The follower lists level 0 first and adds levels to one flat listing as it needs them.
    listed: Levels = {}
    for lvl in range(SNAPSHOT_LEVEL):
        listed[lvl] = list(levels.get(lvl, []))
    follower = continue_from(listed, tip)
    # Restore: a snapshot ending at `tip`, then the plan to wherever the chain can reach.
    with_snapshot = {lvl: list(fs) for lvl, fs in levels.items() if lvl != SNAPSHOT_LEVEL}
    with_snapshot[SNAPSHOT_LEVEL] = [f(SNAPSHOT_LEVEL, 1, tip)] if tip else []
    if not any(with_snapshot.values()):
        return
    target = hydrator.txid
    if target:
        plan = restore_plan(with_snapshot, txid=target)
        restored = plan[1:] if tip else plan
        assert spans(restored) == spans(hydrator.files) == spans(follower.files)
    if hydrator.gap:  # the latest state lies past a hole: the plan names it
        with pytest.raises(HistoryGapError) as info:
            restore_plan(with_snapshot)
        assert (info.value.missing_from, info.value.missing_to) == (hydrator.txid + 1, hydrator.gap_to - 1)
    elif target:
        assert spans(restore_plan(with_snapshot)) == spans(plan)


def test_ties_go_to_the_smaller_min_then_the_higher_level_then_the_older_file() -> None:
    assert spans(continue_from(levels_of(f(0, 3, 3), f(1, 2, 3), f(2, 2, 3)), 2).files) == [(2, 2, 3)]
    assert spans(continue_from(levels_of(f(0, 3, 3, size=1), f(1, 2, 3, size=900)), 2).files) == [(1, 2, 3)]
    older, newer = f(1, 2, 3, age=0), f(1, 2, 3, age=9)
    assert continue_from({1: [newer, older]}, 2).files == [older]


def test_continue_from_takes_the_furthest_step_and_ignores_snapshots() -> None:
    lv = levels_of(*(f(0, t, t) for t in range(1, 11)), f(1, 1, 4), f(1, 5, 8), f(2, 1, 8), f(9, 1, 10))
    # 1..8 (level 2) and 5..8 (level 1) reach equally far from 4: the earlier start wins. A file
    # that starts before the position but reaches past it continues it.
    assert spans(continue_from(lv, 4).files) == [(2, 1, 8), (0, 9, 9), (0, 10, 10)]
    assert spans(continue_from(lv, 8).files) == [(0, 9, 9), (0, 10, 10)]
    end = continue_from(lv, 10)
    assert end.files == [] and end.txid == 10 and not end.gap


def test_continue_from_stops_at_a_gap() -> None:
    lv = levels_of(f(0, 5, 5), f(0, 6, 6), f(0, 9, 9), f(9, 1, 9))
    got = continue_from(lv, 4)
    assert spans(got.files) == [(0, 5, 5), (0, 6, 6)] and got.gap_to == 9
    stuck = continue_from(lv, 2)
    assert stuck.files == [] and stuck.txid == 2 and stuck.gap_to == 5


def test_eligibility_bounds_the_chain_and_its_gap() -> None:
    lv = levels_of(f(0, 1, 1), f(0, 2, 2), f(0, 5, 5))
    got = continue_from(lv, 0, lambda x: x.max_txid <= 2)
    assert spans(got.files) == [(0, 1, 1), (0, 2, 2)] and not got.gap
    assert restore_plan(lv, txid=2) == got.files
    with pytest.raises(HistoryGapError):
        restore_plan(lv, txid=5)
    with pytest.raises(TXIDNotAvailableError):
        restore_plan(levels_of(f(0, 1, 1)), txid=3)
