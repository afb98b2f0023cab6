"""Fixtures for blockmap tests: a fresh volume whose metadata lives in an ltxvfs replica
(`file://`, the default home) or in a local SQLite file (what the juicefs binary reads directly),
with a file:// data store."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from blockmap.meta import connect_meta
from blockmap.volume import Volume

#: Small blocks so multi-block slices appear with little data.
TEST_BLOCK_SIZE = 64 << 10
#: Where the `vol` fixture keeps its metadata.
META_HOMES = ("replica", "sqlite")


def meta_url_for(home: str, tmp_path: Path) -> str:
    if home == "replica":
        return f"file://{tmp_path}/meta"
    return f"sqlite3://{tmp_path}/meta.db"


@pytest.fixture(params=META_HOMES)
def vol_paths(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(meta URL, data URL) under the test's directory, for each metadata home."""
    (tmp_path / "data").mkdir()
    return meta_url_for(request.param, tmp_path), f"file://{tmp_path}/data"


@pytest.fixture
def vol(vol_paths: tuple[str, str]) -> Iterator[Volume]:
    """A freshly formatted volume with 64 KiB blocks and dir stats on."""
    meta, data = vol_paths
    v = Volume.format(meta, data, "testvol", block_size=TEST_BLOCK_SIZE)
    try:
        yield v
    finally:
        v.close()


def meta_conn(vol: Volume) -> apsw.Connection:
    """A second connection to the volume's metadata (through ltxvfs for a replica: the volume
    sees its commits), for checks and for changes made behind blockmap's back."""
    return connect_meta(vol.meta_url)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded by the test's name, so failures replay."""
    return random.Random(request.node.nodeid)
