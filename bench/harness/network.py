"""The imitated network between a reader and its object store: a fixed round trip per request
and one shared link of limited bandwidth, both applied by the counting proxy (tests/s3proxy.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.s3proxy import S3Proxy

#: Round trip added to every request: a client in the same region as its S3 bucket.
DEFAULT_RTT_MS = 20.0
#: Bytes per second of the link all answers share (100 MB/s: one instance's S3 throughput).
DEFAULT_BANDWIDTH_MBPS = 100.0
ENV_RTT_MS = "BENCH_RTT_MS"
ENV_BANDWIDTH_MBPS = "BENCH_BANDWIDTH_MBPS"


@dataclass(frozen=True)
class Network:
    """Round trip (seconds) and bandwidth (bytes per second, 0: unlimited)."""

    rtt: float = DEFAULT_RTT_MS / 1000
    bandwidth: float = DEFAULT_BANDWIDTH_MBPS * 1e6

    @classmethod
    def from_env(cls) -> Network:
        rtt = float(os.environ.get(ENV_RTT_MS, DEFAULT_RTT_MS)) / 1000
        bandwidth = float(os.environ.get(ENV_BANDWIDTH_MBPS, DEFAULT_BANDWIDTH_MBPS)) * 1e6
        return cls(rtt, bandwidth)

    def describe(self) -> str:
        bw = f"{self.bandwidth / 1e6:.0f} MB/s" if self.bandwidth else "unlimited bandwidth"
        return f"{self.rtt * 1000:.0f} ms round trip, {bw}"


@contextmanager
def proxied(endpoint: str, network: Network) -> Iterator[S3Proxy]:
    """A counting proxy in front of `endpoint` imposing `network`."""
    with S3Proxy(endpoint, delay=network.rtt, bandwidth=network.bandwidth) as proxy:
        yield proxy
