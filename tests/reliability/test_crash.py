"""The crash matrix: `ltxctl compact`, the hydrator, `ltxctl restore` and the ltxvfs writer killed
with SIGKILL at seeded points (just before or just after their N-th store operation, fsync, rename or link; see
crashpoint.py), many times over. After each kill:

- compaction: verify, restore, hydration and reads through the VFS agree on one state, equal to
  the recorded image of the last TXID shipped (every acknowledged commit is there); a second
  compaction then finishes the job and they agree again;
- hydration: whatever the record beside the local file claims is true (a consistent record at
  TXID T means the file is the image of T), and a resumed hydration completes to the latest;
- restore: the output is absent or complete and right, never partial; a new restore succeeds;
- the writer (rowwriter.py, printing each acknowledged COMMIT): verify, restore, hydration and the
  VFS agree, holding every acknowledged row and nothing but those and the one in flight; a new
  writer carries on from there, and they agree again.

20 runs in the default suite, 200 behind the slow marker; file:// and S3.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from hydrator.state import load_state
from ltx import compaction
from ltx.replica import Replica
from ltx.restore import restore
from tests.conftest import unique_prefix
from tests.reliability import tally
from tests.reliability.agreement import Expected, agreed_rows, agreed_state, same
from tests.reliability.crashpoint import ENV_AFTER, ENV_PHASE, STEPS_LINE
from tests.reliability.rowwriter import ACKED, open_writer, write_rows
from tests.s3server import S3Server
from tests.vfs.replicas import History

ROOT = Path(__file__).resolve().parents[2]
#: TXIDs compacted into level 1 before the compaction runs (the rest is a level-0 tail).
COMPACTED = 8
#: TXIDs shipped only after a killed compaction (then compacted by the next one).
LATE = 3
#: Options of every `ltxctl compact` run: retention with no grace, so files get deleted too.
COMPACT_OPTIONS = ("--l0-retention", "1ms", "--snapshot-retention", "1ms")
#: Runs per (tool, backend) in the default suite (20 in all) and behind the slow marker (200).
RUNS = {("compact", "file"): 4, ("compact", "s3"): 1, ("hydrate", "file"): 3, ("hydrate", "s3"): 1,
        ("restore", "file"): 3, ("restore", "s3"): 1, ("writer", "file"): 6, ("writer", "s3"): 1}
#: Rows the killed writer sets out to commit, and rows the next writer adds.
WRITER_ROWS = 12
WRITER_MORE = 3
#: TXIDs of the recorded history under the writer's rows (it continues someone's replica).
WRITER_BASE = 5
SLOW_RUNS = {key: n * 10 for key, n in RUNS.items()}
#: How long one child may take before the test fails (a hang is a failure too).
CHILD_DEADLINE_S = 60.0


@dataclass
class Scenario:
    """How to lay out a fresh replica for a tool, and the command that works on it."""

    tool: str
    backend: str
    history: History
    workdir: Path
    s3: S3Server | None
    prefix: str

    def fresh(self, name: str) -> str:
        """A replica in the tool's starting shape; returns its URL."""
        if self.backend == "s3":
            assert self.s3 is not None
            url = self.s3.url(f"{self.prefix}-{name}")
        else:
            url = f"file://{self.workdir / name / 'replica'}"
        replica = Replica.open(url)
        try:
            if self.tool == "compact":
                self.history.ship(replica, 1, COMPACTED)
                compaction.compact_level(replica, 1)
                self.history.ship(replica, COMPACTED + 1, self.history.last_txid - LATE)
            elif self.tool == "writer":
                self.history.ship(replica, 1, WRITER_BASE)
            else:  # many files in the plan: more points to stop at
                self.history.ship(replica, 1, self.history.last_txid)
        finally:
            replica.close()
        return url

    def command(self, url: str, run_dir: Path) -> list[str]:
        if self.tool == "compact":
            return ["ltxctl", "compact", url, *COMPACT_OPTIONS]
        if self.tool == "hydrate":
            return ["hydrate", url, str(run_dir / "hydrated.db")]
        if self.tool == "writer":
            return ["writer", url, str(run_dir / "writer.db"), str(WRITER_ROWS)]
        return ["ltxctl", "restore", url, "-o", str(run_dir / "restored.db")]


def run_child(command: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_AFTER, ENV_PHASE)}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "tests.reliability.crashpoint", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=CHILD_DEADLINE_S)


def count_steps(scenario: Scenario) -> int:
    """Steps of a whole, uninterrupted run of the tool (on a replica of its own)."""
    run_dir = scenario.workdir / "count"
    run_dir.mkdir(parents=True)
    done = run_child(scenario.command(scenario.fresh("count"), run_dir), {})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(STEPS_LINE)]
    return int(lines[-1].removeprefix(STEPS_LINE))


def after_compaction(url: str, run_dir: Path, expected: Expected, stdout: str) -> None:
    """Agreement right after the kill; then commits go on and the next compaction finishes what
    the killed one started, and everything still agrees, new commits included."""
    last = expected.history.last_txid
    agreed_state(url, expected, run_dir / "after-crash", last - LATE)
    replica = Replica.open(url)
    try:
        expected.history.ship(replica, last - LATE + 1, last)
        compaction.run(replica, [1, 2, 3, 9], l0_retention=timedelta(milliseconds=1),
                       snapshot_retention=timedelta(milliseconds=1))
    finally:
        replica.close()
    agreed_state(url, expected, run_dir / "after-rerun", last)


def after_hydration(url: str, run_dir: Path, expected: Expected, stdout: str) -> None:
    local = run_dir / "hydrated.db"
    state = load_state(local) if local.exists() or Path(f"{local}-hydrator.json").exists() else None
    if state is not None and state.txid and state.consistent:
        same(local.read_bytes()[:state.commit * state.page_size], expected.image(state.txid),
             f"killed hydration's file, which its record says holds TXID {state.txid:x}")
        same(local.stat().st_size, state.commit * state.page_size, "killed hydration's file size")
    agreed_state(url, expected, run_dir / "after-crash", expected.history.last_txid, hydrate_at=local)


def after_restore(url: str, run_dir: Path, expected: Expected, stdout: str) -> None:
    out = run_dir / "restored.db"
    last = expected.history.last_txid
    if out.exists():
        same(out.read_bytes(), expected.image(last), "output of a killed restore")
        out.unlink()
    replica = Replica.open(url)
    try:
        result = restore(replica, out)
    finally:
        replica.close()
    same(out.read_bytes(), expected.image(result.txid), "restore after a killed one")
    same(result.txid, last, "restored TXID")


def after_writer(url: str, run_dir: Path, expected: Expected, stdout: str) -> None:
    acked = {int(line.removeprefix(ACKED)) for line in stdout.splitlines() if line.startswith(ACKED)}
    in_flight = {max(acked) + 1 if acked else 0}
    rows = agreed_rows(url, run_dir / "after-crash", acked, in_flight)
    more: set[int] = set()
    conn = open_writer(run_dir / "next-writer.db", url)
    try:
        write_rows(conn, WRITER_MORE, more.add)
    finally:
        conn.close()
    assert min(more) == max(rows, default=-1) + 1, "the next writer does not carry on after the last row"
    agreed_rows(url, run_dir / "after-next-writer", acked | more, in_flight)


CHECKS: dict[str, Callable[[str, Path, Expected, str], None]] = {
    "compact": after_compaction, "hydrate": after_hydration, "restore": after_restore, "writer": after_writer}


def crash_matrix(tool: str, backend: str, runs: int, seed: int, expected: Expected, tmp_path: Path,
                 request: pytest.FixtureRequest) -> None:
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    scenario = Scenario(tool, backend, expected.history, tmp_path, s3, unique_prefix(request))
    total = count_steps(scenario)
    assert total >= 5, f"only {total} steps: too few points to stop at"
    rng = random.Random(f"{tool}-{backend}-{seed}")
    killed = 0
    for run in range(runs):
        point = rng.randint(1, total)
        phase = rng.choice(("before", "after"))
        run_dir = tmp_path / f"run-{run}"
        run_dir.mkdir()
        url = scenario.fresh(f"run-{run}")
        done = run_child(scenario.command(url, run_dir), {ENV_AFTER: str(point), ENV_PHASE: phase})
        tally.add(tally.CRASHES)
        assert done.returncode in (0, -signal.SIGKILL), done.stderr
        killed += done.returncode == -signal.SIGKILL
        try:
            CHECKS[tool](url, run_dir, expected, done.stdout)
        except AssertionError as exc:
            raise AssertionError(f"{tool} on {backend} killed {phase} step {point} of {total}: {exc}") from exc
        shutil.rmtree(run_dir, ignore_errors=True)
    assert killed >= runs * 3 // 4, f"only {killed} of {runs} runs were stopped"


@pytest.mark.parametrize("tool,backend", sorted(RUNS))
def test_killed_at_random_points(tool: str, backend: str, expected: Expected, tmp_path: Path,
                                 request: pytest.FixtureRequest) -> None:
    crash_matrix(tool, backend, RUNS[(tool, backend)], 1, expected, tmp_path, request)


@pytest.mark.slow
@pytest.mark.parametrize("tool,backend", sorted(SLOW_RUNS))
def test_killed_at_many_random_points(tool: str, backend: str, expected: Expected, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    crash_matrix(tool, backend, SLOW_RUNS[(tool, backend)], 2, expected, tmp_path, request)
