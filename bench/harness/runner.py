"""Run a peer cold in a new process and measure it: wall time from the spawn to the scenario's
last row, and, from the proxy's log, the requests, bytes and round trips waited in sequence that
fell inside that window."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.s3proxy import Request, S3Proxy, sequential_rounds

ROOT = Path(__file__).resolve().parents[2]
#: The project's packages that benchmark children import.
PACKAGES = ("ltx", "vfs", "hydrator", "blockmap", "bench", "tests")
#: Longest a child may take for one scenario (a 500 MB restore included).
CHILD_DEADLINE_S = 600.0


def precompile() -> None:
    """Write the project's bytecode caches, as an installed package has them: with
    PYTHONDONTWRITEBYTECODE set (as on this machine) every new process would otherwise compile
    the sources again (~60 ms), a cost no deployed reader pays."""
    import compileall

    for package in PACKAGES:
        compileall.compile_dir(str(ROOT / package), quiet=2)


@dataclass
class Measurement:
    """One cold run (or one warm repeat) of one peer and scenario."""

    wall_s: float
    requests: int
    bytes: int
    rounds: int
    kinds: dict[str, int] = field(default_factory=dict)
    #: From the peer's open (`apsw.Connection(...)`) to the last row: the time without the process
    #: start and imports (what peers such as turbolite publish); for a warm repeat, its wall time.
    from_connect_s: float = 0.0
    #: For a warm repeat: how many back-to-back repeats its batch ran (its figures are per repeat).
    repeats: int = 1


def measure(log: list[Request], start: float, end: float, wall: float,
            from_connect: float | None = None) -> Measurement:
    """The requests that began inside [start, end]."""
    inside = [r for r in log if start <= r.started <= end]
    kinds = Counter(r.kind for r in inside)
    return Measurement(wall, len(inside), sum(r.bytes_out for r in inside), sequential_rounds(inside), dict(kinds),
                       wall if from_connect is None else from_connect)


class Child:
    """One child process (bench/harness/peers.py) for one peer and scenario."""

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str], proxy: S3Proxy) -> None:
        self.proxy = proxy
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.harness.peers", json.dumps(dict(config))],
                                     cwd=ROOT, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.result: dict[str, Any] = {}

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=CHILD_DEADLINE_S)
            raise RuntimeError(f"benchmark child failed:\n{err[-4000:]}")
        data: dict[str, Any] = json.loads(line)
        return data

    def cold(self) -> Measurement:
        """Wait for the scenario's rows; measure from the spawn."""
        self.result = self._line()
        end = time.monotonic()
        return measure(self.proxy.seen, self.spawned, self.result["done"], end - self.spawned,
                       self.result["done"] - self.result["connect"])

    def warm(self) -> Measurement:
        """One warm repeat inside the child, timed there as a batch of back-to-back repeats
        (peers.WARM_BATCH_S): time, requests and bytes are the batch's divided by its repeats."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("q\n")
        self.proc.stdin.flush()
        got = self._line()
        if not got["same"]:
            raise AssertionError("a warm repeat returned other rows than the cold run")
        n = int(got.get("repeats", 1))
        batch = measure(self.proxy.seen, got["start"], got["end"], got["end"] - got["start"])
        return Measurement(batch.wall_s / n, round(batch.requests / n), round(batch.bytes / n),
                           round(batch.rounds / n), batch.kinds, batch.wall_s / n, repeats=n)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("x\n")
                self.proc.stdin.close()
                self.proc.wait(CHILD_DEADLINE_S)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
