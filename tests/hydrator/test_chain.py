"""Whether the history still holds a local TXID; seek hints (which files continue it: tests/ltx/test_plan.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from hydrator.chain import SeekHints, ending_at, history_holds
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
