"""Run the real `litestream` 0.5.17 binary from the venv: config files, `replicate`, `restore`.

The config is written as JSON, which YAML (and litestream's YAML parser) reads as is. Every run
has AWS_CA_BUNDLE removed from its environment: on this machine it breaks litestream's S3 client.
Waiting is done by polling a condition against a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

LITESTREAM = Path(sys.executable).parent / "litestream"
#: Litestream's own intervals are 1 s; tests shorten them so a run takes a few seconds.
TEST_MONITOR_INTERVAL = "25ms"
TEST_SYNC_INTERVAL = "25ms"
#: How long tests wait for litestream to catch up, start or stop.
DEFAULT_DEADLINE = 60.0
POLL_INTERVAL = 0.02

T = TypeVar("T")


def litestream_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a litestream process: ours without AWS_CA_BUNDLE, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(extra or {})
    return env


def wait_for(condition: Callable[[], T], what: str, deadline: float = DEFAULT_DEADLINE,
             interval: float = POLL_INTERVAL, on_timeout: Callable[[], str] | None = None) -> T:
    """Poll `condition` until it returns something truthy (returned); fail after `deadline` s."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}\n{detail}")
        time.sleep(interval)


def write_config(path: Path, db_path: Path, replica_url: str, *,
                 monitor_interval: str = TEST_MONITOR_INTERVAL, sync_interval: str = TEST_SYNC_INTERVAL,
                 levels: tuple[str, ...] | None = None, snapshot_interval: str | None = None,
                 l0_retention: str | None = None, checkpoint_interval: str | None = None,
                 db_extra: Mapping[str, Any] | None = None,
                 replica_extra: Mapping[str, Any] | None = None) -> Path:
    """Write a litestream config replicating `db_path` to `replica_url`; return its path.

    `levels` sets the compaction intervals of levels 1.. (Litestream's default is 30s, 5m, 1h);
    `snapshot_interval` the level-9 snapshot interval (default 24h); `db_extra` and
    `replica_extra` add settings to the database and replica sections."""
    replica: dict[str, Any] = {"url": replica_url, "sync-interval": sync_interval}
    replica.update(replica_extra or {})
    db: dict[str, Any] = {"path": str(db_path), "monitor-interval": monitor_interval, "replica": replica}
    if checkpoint_interval is not None:
        db["checkpoint-interval"] = checkpoint_interval
    db.update(db_extra or {})
    config: dict[str, Any] = {"dbs": [db]}
    if levels is not None:
        config["levels"] = [{"interval": i} for i in levels]
    if snapshot_interval is not None:
        config["snapshot"] = {"interval": snapshot_interval}
    if l0_retention is not None:
        config["l0-retention"] = l0_retention
    path.write_text(json.dumps(config, indent=2))
    return path


class Replicator:
    """A running `litestream replicate -config PATH` in its own process group, logging to a file."""

    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.log_path = config.with_suffix(".log")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(LITESTREAM), "replicate", "-config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=litestream_env(env), start_new_session=True,
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def check_running(self) -> None:
        """Fail with litestream's log if the process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"litestream exited with {self.proc.returncode}:\n{self.log()}")

    def wait_for(self, condition: Callable[[], T], what: str, deadline: float = DEFAULT_DEADLINE) -> T:
        """`wait_for` that also fails early if litestream dies, showing its log."""
        def check() -> T:
            self.check_running()
            return condition()
        return wait_for(check, what, deadline, on_timeout=lambda: "litestream log:\n" + self.log()[-4000:])

    def stop(self, deadline: float = DEFAULT_DEADLINE) -> int:
        """SIGTERM (litestream then syncs a last time and exits); SIGKILL the group past `deadline`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(deadline)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"litestream ignored SIGTERM for {deadline:.0f}s:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def restore(replica_url: str, output: Path, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = DEFAULT_DEADLINE) -> subprocess.CompletedProcess[str]:
    """Run `litestream restore [args] -o OUTPUT REPLICA_URL`; fail with its output on error."""
    cmd = [str(LITESTREAM), "restore", *args, "-o", str(output), replica_url]
    result = subprocess.run(cmd, capture_output=True, text=True, env=litestream_env(env), timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
