"""The follower and the hydrator, on real replicas, continue a TXID with the files the restore plan
names (ltx.plan.continue_from, the one rule): random multi-level histories past the reader's TXID,
with holes. The follower is made to list every level (level 0 does not anchor its TXID, and every
poll is a deep one); the hydrator's histories live in the levels it lists first (0 and 1)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydrator.hydrator import Hydrator
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.plan import SNAPSHOT_LEVEL, HistoryGapError, RestorePlanError, restore_plan
from ltx.replica import Replica
from tests.ltx.sqlgen import changed_pages
from tests.vfs.replicas import History
from vfs import follower as follower_module
from vfs.follower import Follower, Update
from vfs.stats import ReadStats
from vfs.view import ReplicaReader, load_view

#: Steps of the recorded workload; its history holds a few TXIDs fewer (LAST).
TRANSACTIONS = 16
LAST = 12
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

Spans = list[tuple[int, int, int]]


@st.composite
def histories(draw: st.DrawFn, levels: tuple[int, ...]) -> tuple[int, Spans]:
    """A TXID to follow from and (level, min, max) files past it: each level's files disjoint
    runs with random holes, a level's first file allowed to straddle the TXID (not level 0's)."""
    tip = draw(st.integers(2, LAST - 3))
    spans: Spans = []
    for level in draw(st.sets(st.sampled_from(levels), min_size=1)):
        txid = tip + 2 if level == 0 else draw(st.integers(tip - 1, tip + 2))
        while txid <= LAST:
            end = min(LAST, txid + draw(st.integers(0, 4)))
            if end > tip:
                spans.append((level, txid, end))
            txid = end + 1 + draw(st.sampled_from([0, 0, 0, 1, 2]))
    return tip, spans


def ship(history: History, replica: Replica, spans: Spans) -> None:
    """Each span as a compaction writes it: every page any of its TXIDs changed, at its last
    value (so it continues any TXID inside it, as the plan may use it)."""
    for level, lo, hi in spans:
        after = history.pages(hi)
        touched = sorted({p for t in range(lo, hi + 1) for p in changed_pages(history.pages(t - 1), history.pages(t))
                          if p <= len(after)})
        header = Header(page_size=history.page_size, commit=len(after), min_txid=lo, max_txid=hi,
                        timestamp=history.timestamp_ms(hi))
        out = io.BytesIO()
        enc = Encoder(out, header, f"txids {lo}-{hi}")
        for pgno in touched:
            enc.write_page(pgno, after[pgno - 1])
        enc.close()
        replica.put_file(level, lo, hi, out.getvalue(), timestamp_ms=history.timestamp_ms(hi))


def planned(replica: Replica) -> tuple[list[tuple[int, int, int]], RestorePlanError | None]:
    """The files the latest restore plan applies after its snapshot, or the error it raises."""
    try:
        plan = restore_plan(replica.list_levels())
    except RestorePlanError as exc:
        return [], exc
    assert plan[0].level == SNAPSHOT_LEVEL
    return [(f.level, f.min_txid, f.max_txid) for f in plan[1:]], None


class Recorded:
    """The recorded history, shown briefly in hypothesis's reports."""

    def __init__(self, history: History) -> None:
        self.history = history

    def __repr__(self) -> str:
        return f"Recorded(last_txid={self.history.last_txid})"


@pytest.fixture
def recorded(history_factory: Callable[..., History]) -> Recorded:
    history = history_factory(seed=41, page_size=1024, transactions=TRANSACTIONS)
    assert history.last_txid >= LAST
    return Recorded(history)


@SETTINGS
@given(case=histories(tuple(range(SNAPSHOT_LEVEL))))
def test_the_follower_stages_the_restore_plans_files(recorded: Recorded, case: tuple[int, Spans],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    history, (tip, spans) = recorded.history, case
    monkeypatch.setattr(follower_module, "DEEP_POLL_EVERY", 1)
    with tempfile.TemporaryDirectory() as work:
        replica = Replica.open(f"file://{work}/replica")
        history.ship_range(replica, 1, tip, SNAPSHOT_LEVEL)
        reader = ReplicaReader(replica)
        view = load_view(reader)
        assert view.txid == tip
        follower = Follower(reader, view, 0, ReadStats())
        ship(history, replica, spans)
        want, error = planned(replica)
        staged = follower.poll_once()
        if error is not None:
            assert isinstance(error, HistoryGapError)
            assert not staged and isinstance(follower.last_error, HistoryGapError)
        elif not want:
            assert not staged
        else:
            [update] = follower.take()
            assert isinstance(update, Update)
            assert [(f.info.level, f.info.min_txid, f.info.max_txid) for f in update.files] == want
            assert update.txid == want[-1][2]
        replica.close()


@SETTINGS
@given(case=histories((0, 1)))
def test_the_hydrator_applies_the_restore_plans_files(recorded: Recorded, case: tuple[int, Spans]) -> None:
    history, (tip, spans) = recorded.history, case
    with tempfile.TemporaryDirectory() as work:
        replica = Replica.open(f"file://{work}/replica")
        history.ship_range(replica, 1, tip, SNAPSHOT_LEVEL)
        local = Path(work) / "hydrated.db"
        with Hydrator(replica, local) as hydrator:
            hydrator.run()
            assert hydrator.txid == tip
            ship(history, replica, spans)
            want, error = planned(replica)
            if error is not None:  # the plan stops at a hole: the hydrator takes what precedes it
                assert isinstance(error, HistoryGapError)
                reach = error.missing_from - 1
                if reach > tip:
                    want = [(f.level, f.min_txid, f.max_txid)
                            for f in restore_plan(replica.list_levels(), txid=reach)[1:]]
            if not want:
                if error is not None and error.missing_from == tip + 1:
                    with pytest.raises(HistoryGapError):
                        hydrator.poll_once()
                else:
                    assert hydrator.poll_once() == 0
                replica.close()
                return
            assert hydrator.poll_once() == len(want)
            assert hydrator.txid == want[-1][2]
            assert local.read_bytes() == history.images[want[-1][2]]
        replica.close()
