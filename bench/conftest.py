"""Fixtures every benchmark suite shares (bench/harness/): the real S3 server and store URLs
(the same names as tests/conftest.py: `s3_server`, `s3_url`, `s3_env`), the imitated network
and its counting proxy, and the cold-boot results written to bench/results/ at the end."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness.network import Network, proxied  # noqa: E402
from bench.harness.runner import precompile  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402
from tests.s3server import S3Server  # noqa: E402

#: Volumes the benchmarks' S3 server may create (32 MB each): room for 5 GB replica shapes.
S3_VOLUME_MAX = 2000


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the benchmark session."""
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-s3-") as work, \
            S3Server(Path(work), volume_max=S3_VOLUME_MAX) as server:
        yield server


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty S3 location for one benchmark."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)[:60]
    return s3_server.url(f"{name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    """An environment for subprocesses (litestream…): the server's credentials, no AWS_CA_BUNDLE."""
    return s3_server.env()


@pytest.fixture(scope="session", autouse=True)
def bytecode() -> None:
    """Benchmark children start like an installed package's processes: bytecode already cached."""
    precompile()


@pytest.fixture(scope="session")
def network() -> Network:
    """Round trip and bandwidth of the imitated region (BENCH_RTT_MS, BENCH_BANDWIDTH_MBPS)."""
    return Network.from_env()


@pytest.fixture(scope="session")
def bench_proxy(s3_server: S3Server, network: Network) -> Iterator[S3Proxy]:
    """The counting proxy in front of the server, imposing `network`."""
    with proxied(s3_server.endpoint, network) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def bench_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")
