"""Fixtures for hydrator tests: a fresh replica (file:// and S3) and a builder shipping into it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx.replica import Replica
from tests.hydrator.builder import ReplicaBuilder


@pytest.fixture(params=["file", "s3"])
def replica_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty replica, on the local file system and on the session's S3 server."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_url"))
    return f"file://{tmp_path / 'replica'}"


@pytest.fixture
def replica(replica_url: str) -> Iterator[Replica]:
    r = Replica.open(replica_url)
    yield r
    r.close()


@pytest.fixture
def builder(replica: Replica, tmp_path: Path) -> Iterator[ReplicaBuilder]:
    b = ReplicaBuilder(replica, tmp_path, seed=7)
    yield b
    b.close()
