"""Running the real `blockmap mount` in a process of its own, for tests.

`mounted(...)` mounts with `-d` (the command returns once the mount answers) and unmounts at the
end with `blockmap umount`, falling back to `fusermount3 -u -z` and SIGKILL so that a failing test
never leaves a mount behind. Tests that need FUSE call `require_fuse()`: a machine without
/dev/fuse skips them with that reason (and only then; .ci/run fails if they were skipped where
/dev/fuse exists).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from blockmap.mount import mounted_here, pid_file

ROOT = Path(__file__).resolve().parents[2]
BLOCKMAP = [sys.executable, "-m", "blockmap.cli"]
#: Bound on one mount or unmount command (the mount hydrates a small database first).
MOUNT_TIMEOUT = 120
#: The reason FUSE tests skip (the only one).
NO_FUSE = "no /dev/fuse on this machine: blockmap mount cannot run"


def fsynced_write(path: Path, data: bytes) -> None:
    """Create or overwrite `path` with `data` and fsync it: when this returns, it is durable."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.skip(NO_FUSE)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def blockmap(*args: str, env: dict[str, str] | None = None, timeout: float = MOUNT_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BLOCKMAP, *args], capture_output=True, text=True, env=cli_env(env), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"blockmap {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@dataclass
class Mounted:
    """A live mount: where, its process, its log."""

    mountpoint: Path
    cache_dir: Path
    log: Path
    pid: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


def mount(meta: str, mountpoint: Path, cache_dir: Path, *options: str,
          env: dict[str, str] | None = None) -> Mounted:
    """`blockmap mount -d`; returns once the mount answers."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    log = cache_dir.parent / f"{cache_dir.name}.log"
    blockmap("mount", "--meta", meta, str(mountpoint), "-d", "--cache-dir", str(cache_dir), "--log", str(log),
             *options, env=env)
    pid = int(pid_file(str(mountpoint)).read_text().strip())
    return Mounted(mountpoint, cache_dir, log, pid)


def force_unmount(mountpoint: Path) -> None:
    """Detach whatever is mounted at `mountpoint` (a dead or stopped mount included)."""
    if mounted_here(str(mountpoint)) is not None:
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, timeout=MOUNT_TIMEOUT)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cleanup(m: Mounted) -> None:
    """Last resort after a failed test: never leave a mount or a mount process behind."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(m.pid, signal.SIGCONT)
    if mounted_here(str(m.mountpoint)) is not None:
        done = blockmap("umount", str(m.mountpoint), check=False, timeout=60)
        if done.returncode != 0:
            force_unmount(m.mountpoint)
    if _pid_alive(m.pid):
        m.kill()


@contextlib.contextmanager
def mounted(meta: str, mountpoint: Path, cache_dir: Path, *options: str,
            env: dict[str, str] | None = None) -> Iterator[Mounted]:
    """A mount for the length of a `with` block, unmounted cleanly at its end (the unmount is
    part of what is tested: it must succeed)."""
    m = mount(meta, mountpoint, cache_dir, *options, env=env)
    try:
        yield m
    except BaseException:
        cleanup(m)
        raise
    try:
        blockmap("umount", str(m.mountpoint), env=env)
    finally:
        cleanup(m)
