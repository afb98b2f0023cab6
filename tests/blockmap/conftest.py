"""Fixtures for blockmap tests: a fresh volume on a local SQLite file and a file:// data store."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockmap.volume import Volume

#: Small blocks so multi-block slices appear with little data.
TEST_BLOCK_SIZE = 64 << 10


@pytest.fixture
def vol_paths(tmp_path: Path) -> tuple[str, str]:
    """(meta URL, data URL) under the test's directory."""
    (tmp_path / "data").mkdir()
    return f"sqlite3://{tmp_path}/meta.db", f"file://{tmp_path}/data"


@pytest.fixture
def vol(vol_paths: tuple[str, str]) -> Iterator[Volume]:
    """A freshly formatted volume with 64 KiB blocks and dir stats on."""
    meta, data = vol_paths
    v = Volume.format(meta, data, "testvol", block_size=TEST_BLOCK_SIZE)
    try:
        yield v
    finally:
        v.close()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded by the test's name, so failures replay."""
    return random.Random(request.node.nodeid)
