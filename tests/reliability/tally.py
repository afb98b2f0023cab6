"""Counts kept across the reliability tests and printed at the end of the run: faults injected,
crash points tried, corrupt inputs tried, hostile inputs tried, and runs that ended with lost or
wrong data (which the tests also fail on, so the last must read 0)."""

from __future__ import annotations

import threading
from collections import Counter

FAULTS = "faults injected"
CRASHES = "crash points tried"
CORRUPT = "corrupt inputs tried"
HOSTILE = "hostile inputs tried"
LOST_OR_WRONG = "runs with lost or wrong data"

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def add(what: str, n: int = 1) -> None:
    with _lock:
        _counts[what] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return {k: _counts.get(k, 0) for k in (FAULTS, CRASHES, CORRUPT, HOSTILE, LOST_OR_WRONG)}
