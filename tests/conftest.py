"""Session-wide fixtures: the real SeaweedFS S3 server and store URLs on both backends.

- `s3_server`: one server per session (tests/s3server.py); AWS_* point at it for the session.
- `s3_url`: `s3://bucket/<unique per test>?endpoint=…&region=us-east-1&force-path-style=true`.
- `file_url`: `file://<tmp_path>/store`.
- `store_url`: parametrized over both ("file", "s3").
- `s3_env`: a full environment for subprocesses (litestream, ltxctl…) with the server's
  credentials and without AWS_CA_BUNDLE (which breaks litestream's S3 client here).
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import S3Server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the whole session, with one bucket."""
    with tempfile.TemporaryDirectory(prefix="ltxvfs-seaweedfs-") as work, S3Server(Path(work)) as server:
        yield server


def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of the test's name plus random hex: no two tests (or reruns) share one."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:60] or "test"
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty S3 location for this test."""
    return s3_server.url(unique_prefix(request))


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    """A fresh, empty file:// location for this test (the directory does not exist yet)."""
    return f"file://{tmp_path / 'store'}"


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store location on each backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    """os.environ plus the server's AWS credentials and region, minus AWS_CA_BUNDLE: pass as
    `env=` to subprocesses such as litestream."""
    return s3_server.env()
