"""Which files continue a local TXID; whether the history still holds it; seek hints."""

from __future__ import annotations

from datetime import UTC, datetime

from hydrator.chain import SeekHints, continuation, ending_at, history_holds
from ltx.plan import LTXFileInfo

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def f(level: int, lo: int, hi: int, size: int = 100) -> LTXFileInfo:
    return LTXFileInfo(level, lo, hi, size, T0, f"{level}/{lo}-{hi}")


def levels(*files: LTXFileInfo) -> dict[int, list[LTXFileInfo]]:
    out: dict[int, list[LTXFileInfo]] = {}
    for x in files:
        out.setdefault(x.level, []).append(x)
    for v in out.values():
        v.sort(key=lambda x: (x.min_txid, x.max_txid))
    return out


def test_continuation_takes_the_furthest_step() -> None:
    lv = levels(*(f(0, t, t) for t in range(1, 11)), f(1, 1, 4), f(1, 5, 8), f(2, 1, 8), f(9, 1, 10))
    assert [(x.level, x.min_txid, x.max_txid) for x in continuation(lv, 4)] == [(1, 5, 8), (0, 9, 9), (0, 10, 10)]
    # A file that starts before the position but reaches past it continues it too.
    assert [(x.level, x.min_txid, x.max_txid) for x in continuation(lv, 6)] == [(1, 5, 8), (0, 9, 9), (0, 10, 10)]
    # Ties on the end: the fewest bytes, then the latest start.
    lv2 = levels(f(0, 3, 3), f(1, 2, 3), f(2, 2, 3))
    assert [(x.level, x.min_txid) for x in continuation(lv2, 2)] == [(0, 3)]
    lv3 = levels(f(0, 3, 3, size=500), f(1, 2, 3, size=200))
    assert [(x.level, x.min_txid) for x in continuation(lv3, 2)] == [(1, 2)]
    assert continuation(lv, 10) == []


def test_continuation_stops_at_a_gap_and_ignores_snapshots() -> None:
    lv = levels(f(0, 5, 5), f(0, 6, 6), f(0, 9, 9), f(9, 1, 9))
    assert [x.max_txid for x in continuation(lv, 4)] == [5, 6]
    assert continuation(lv, 2) == []


def test_history_holds() -> None:
    lv = levels(f(0, 5, 5), f(0, 6, 6), f(1, 1, 4))
    assert history_holds(lv, 4, "u").holds
    assert history_holds(lv, 6, "u").holds
    short = history_holds(lv, 7, "u")
    assert not short.holds and "ends at TXID 0000000000000006" in short.reason
    gap = history_holds(levels(f(0, 8, 8), f(9, 1, 8)), 4, "u")
    assert not gap.holds and "no file continues" in gap.reason
    assert ending_at(lv, 4) == f(1, 1, 4) and ending_at(lv, 3) is None


def test_seek_hints() -> None:
    hints = SeekHints()
    assert hints.seek(0) == 1
    hints.observe([f(0, 1, 1), f(0, 2, 2), f(1, 1, 2), f(1, 3, 6)], 4)
    assert hints.seek(0) == 3 and hints.seek(1) == 3  # 3..6 reaches past 4: it must still be listed
    hints.observe([f(1, 3, 6)], 6)
    assert hints.seek(1) == 7
    hints.reset()
    assert hints.seek(1) == 1
