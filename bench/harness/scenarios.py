"""The queries of the cold-boot scenarios, as functions of the database's shape (keys are
computed, not read), and their expected answers from a local reference file."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.harness.keys import t_key

if TYPE_CHECKING:
    import apsw

POINT = "point"
RANGE = "range100"
INDEX = "index"
POINTS = "points20"
WARM = "warm"
SCENARIOS = (POINT, RANGE, INDEX, POINTS, WARM)
DESCRIPTIONS = {
    POINT: "new process to the first row of a point query",
    RANGE: "new process, a 100-row range query",
    INDEX: "new process, a secondary-index query",
    POINTS: "new process, 20 point queries at random keys",
    WARM: "the warm repeat of the point query",
}
SEED = 99
RANGE_ROWS = 100
POINT_QUERIES = 20

Query = tuple[str, tuple[Any, ...]]


class Workload:
    """The statements one scenario runs, in order. (A plain class: a benchmark child loads no more
    than its peer needs before the open is timed, and `dataclasses` costs ~10 ms to load.)"""

    __slots__ = ("scenario", "queries")

    def __init__(self, scenario: str, queries: tuple[Query, ...]) -> None:
        self.scenario = scenario
        self.queries = queries


def workload(scenario: str, t_rows: int) -> Workload:
    point: Query = ("SELECT id, k, length(v) FROM t WHERE id = ?", (t_rows * 7 // 10,))
    if scenario in (POINT, WARM):
        return Workload(scenario, (point,))
    if scenario == RANGE:
        start = t_rows * 3 // 10
        return Workload(scenario, (("SELECT id, k, length(v) FROM t WHERE id BETWEEN ? AND ?",
                                    (start, start + RANGE_ROWS - 1)),))
    if scenario == INDEX:
        return Workload(scenario, (("SELECT id, k, length(v) FROM t WHERE k = ?", (t_key(t_rows * 4 // 10),)),))
    if scenario == POINTS:
        rng = random.Random(SEED)
        return Workload(scenario, tuple(("SELECT id, k, length(v) FROM t WHERE id = ?", (rng.randrange(1, t_rows + 1),))
                                        for _ in range(POINT_QUERIES)))
    raise ValueError(f"unknown scenario {scenario!r}")


def run(conn: apsw.Connection, work: Workload) -> list[list[Any]]:
    """Run every statement; return all rows (lists, as JSON gives them back)."""
    out: list[list[Any]] = []
    for sql, args in work.queries:
        out.extend(list(r) for r in conn.execute(sql, args).fetchall())
    return out


def expected(reference: str, work: Workload, opener: Callable[[str], apsw.Connection] | None = None) -> list[list[Any]]:
    """The answers from the local reference database."""
    import apsw

    conn = (opener or (lambda p: apsw.Connection(p, flags=apsw.SQLITE_OPEN_READONLY)))(reference)
    try:
        return run(conn, work)
    finally:
        conn.close()
