"""Fixtures for VFS tests: recorded histories (cached per session) and fresh replica URLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ltx.replica import Replica
from tests.vfs.replicas import History, record_history


@pytest.fixture(scope="session")
def history_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., History]:
    """Record a seeded history once per (seed, page size, length) for the whole session."""
    made: dict[tuple[int, int, int, int], History] = {}

    def make(seed: int = 1, page_size: int = 4096, transactions: int = 20, grow_rows: int = 12) -> History:
        key = (seed, page_size, transactions, grow_rows)
        if key not in made:
            made[key] = record_history(tmp_path_factory.mktemp("history"), seed, transactions, page_size, grow_rows)
        return made[key]

    return make


@pytest.fixture
def file_replica(tmp_path: Path) -> Iterator[tuple[str, Replica]]:
    """An empty file:// replica and its URL."""
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    yield url, replica
    replica.close()
