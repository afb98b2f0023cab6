"""`ltxctl hydrate`: the command as registered into a typer app, and as a process with --follow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from hydrator.cli import register
from hydrator.state import load_state
from ltx.replica import Replica
from tests.hydrator.builder import ReplicaBuilder
from tests.litestream import wait_for

DEADLINE = 30.0
ROOT = Path(__file__).resolve().parents[2]


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def root() -> None:
        """Stand-in for ltxctl."""

    register(app)
    return app


def test_hydrate_command(builder: ReplicaBuilder, replica: Replica, replica_url: str, tmp_path: Path) -> None:
    builder.run(builder.steps(8))
    out = tmp_path / "cli.db"
    result = CliRunner().invoke(_app(), ["hydrate", replica_url, str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"to TXID {builder.txid:016x}" in result.stdout
    assert out.read_bytes() == builder.images[builder.txid]


def test_hydrate_command_progress_bar(builder: ReplicaBuilder, replica_url: str, tmp_path: Path) -> None:
    builder.run(builder.steps(4))
    result = CliRunner().invoke(_app(), ["hydrate", replica_url, str(tmp_path / "p.db"), "--progress"])
    assert result.exit_code == 0, result.output
    assert "hydrating" in result.stderr  # click draws the bar itself only on a terminal
    quiet = CliRunner().invoke(_app(), ["hydrate", replica_url, str(tmp_path / "q.db"), "--no-progress"])
    assert quiet.exit_code == 0 and "hydrating" not in quiet.stderr


def test_hydrate_command_errors_are_one_line(builder: ReplicaBuilder, replica: Replica, replica_url: str,
                                            tmp_path: Path) -> None:
    builder.run(builder.steps(4))
    key = builder.files[1].key
    data = bytearray(replica.store.get(key))
    data[len(data) // 2] ^= 1
    replica.store.delete(key)
    replica.store.put(key, bytes(data))
    result = CliRunner().invoke(_app(), ["hydrate", replica_url, str(tmp_path / "x.db"), "--no-progress"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltxctl: error: ") and key in lines[0], result.stderr
    assert "Traceback" not in result.output

    empty = tmp_path / "empty-replica"
    result = CliRunner().invoke(_app(), ["hydrate", f"file://{empty}", str(tmp_path / "y.db"), "--no-progress"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "no LTX files" in result.stderr


def test_hydrate_follow_until_interrupted(builder: ReplicaBuilder, replica_url: str, tmp_path: Path) -> None:
    steps = builder.steps(10)
    builder.run(steps[:4])
    out = tmp_path / "follow.db"
    proc = subprocess.Popen([sys.executable, "-m", "hydrator.cli", "hydrate", replica_url, str(out), "--follow",
                             "--poll-interval", "0.02", "--no-progress"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def at(txid: int) -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"hydrate exited: {proc.stderr.read() if proc.stderr else ''}")
            state = load_state(out) if out.exists() else None
            return state is not None and state.complete and state.consistent and state.txid >= txid
        wait_for(lambda: at(4), "the initial hydration", DEADLINE)
        builder.run(steps[4:])
        wait_for(lambda: at(builder.txid), "follow to reach the new TXID", DEADLINE)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "following" in stderr and f"stopped at TXID {builder.txid:016x}" in stderr
    assert "Traceback" not in stderr and "WARNING" not in stderr
    assert out.read_bytes() == builder.images[builder.txid]
