"""Fixtures for the reliability tests: seeded histories recorded once per session, replicas built
from them in a realistic shape (a snapshot, compacted levels, a level-0 tail), and the tally of
faults, crash points and corrupt inputs printed at the end of the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ltx import compaction
from ltx.replica import Replica
from tests.reliability import tally
from tests.reliability.agreement import Expected
from tests.vfs.replicas import History, record_history

#: The history most tests use: about 20 transactions, from a few pages to a few dozen and back.
SEED = 9
TRANSACTIONS = 20


@pytest.fixture(scope="session")
def history_of(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., History]:
    """Record a seeded history once per (seed, transactions) for the session."""
    made: dict[tuple[int, int], History] = {}

    def make(seed: int = SEED, transactions: int = TRANSACTIONS) -> History:
        if (seed, transactions) not in made:
            made[(seed, transactions)] = record_history(tmp_path_factory.mktemp("history"), seed, transactions)
        return made[(seed, transactions)]

    return make


@pytest.fixture(scope="session")
def history(history_of: Callable[..., History]) -> History:
    return history_of()


@pytest.fixture(scope="session")
def expected(history: History, tmp_path_factory: pytest.TempPathFactory) -> Expected:
    return Expected(history, tmp_path_factory.mktemp("expected"))


def build_levels(history: History, replica: Replica, compacted: int) -> None:
    """TXIDs 1..`compacted` shipped at level 0 and compacted into level 1 and a level-9 snapshot
    (with the real compaction code), then the rest of the history as a level-0 tail."""
    history.ship(replica, 1, compacted)
    compaction.compact_level(replica, 1)
    compaction.snapshot(replica)
    history.ship(replica, compacted + 1, history.last_txid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = tally.snapshot()
    if not any(counts.values()):
        return
    terminalreporter.section("reliability tally")
    for name, value in counts.items():
        terminalreporter.write_line(f"{name}: {value}")
