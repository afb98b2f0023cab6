"""Run `ltxctl` or the hydrator in this process and SIGKILL it at an exact point: just before or
just after its N-th step, a step being a store operation (list, head, get, range, suffix, open,
put, delete) or a durable local one (fsync, rename, link).

    LTXVFS_TEST_CRASH_AFTER=N [LTXVFS_TEST_CRASH_PHASE=before|after] \\
        python -m tests.reliability.crashpoint ltxctl compact URL ...
    ... python -m tests.reliability.crashpoint hydrate URL PATH
    ... python -m tests.reliability.crashpoint writer URL PATH COUNT   (rowwriter.py's workload)

Without LTXVFS_TEST_CRASH_AFTER nothing is killed and the steps taken are printed on stderr as
`crashpoint steps=N`, so a test can pick kill points within a run. The kill is the process
stopping itself (`os.kill(os.getpid(), SIGKILL)`): no handler, no flush, no cleanup runs, as in
a power cut of the process. Counting is deterministic for a given run (parallel fetches may take
their turns in another order, but the N-th step is still the N-th).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from ltx.store import ObjectInfo, ObjectStore

ENV_AFTER = "LTXVFS_TEST_CRASH_AFTER"
ENV_PHASE = "LTXVFS_TEST_CRASH_PHASE"
STEPS_LINE = "crashpoint steps="

T = TypeVar("T")


class Steps:
    """Counts steps; kills the process at the chosen one."""

    def __init__(self, kill_at: int | None, before: bool) -> None:
        self.kill_at = kill_at
        self.before = before
        self.count = 0
        self._lock = threading.Lock()

    def run(self, call: Callable[[], T]) -> T:
        with self._lock:
            self.count += 1
            mine = self.count
        if mine == self.kill_at and self.before:
            os.kill(os.getpid(), signal.SIGKILL)
        result = call()
        if mine == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result


class CrashingStore(ObjectStore):
    """A real store whose every operation is a step."""

    def __init__(self, inner: ObjectStore, steps: Steps) -> None:
        self.inner = inner
        self.steps = steps
        self.url = inner.url
        self.stats = inner.stats

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        return iter(self.steps.run(lambda: list(self.inner.list(prefix, start_after))))

    def head(self, key: str) -> ObjectInfo:
        return self.steps.run(lambda: self.inner.head(key))

    def get(self, key: str) -> bytes:
        return self.steps.run(lambda: self.inner.get(key))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.steps.run(lambda: self.inner.get_range(key, offset, length))

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        return self.steps.run(lambda: self.inner.get_suffix(key, length))

    def open(self, key: str) -> BinaryIO:
        return self.steps.run(lambda: self.inner.open(key))

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        self.steps.run(lambda: self.inner.put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms))

    def delete(self, key: str) -> None:
        self.steps.run(lambda: self.inner.delete(key))

    def close(self) -> None:
        self.inner.close()


def install(steps: Steps) -> None:
    """Route every store the program opens, and its fsyncs, renames and links, through `steps`."""
    import ltx.replica
    import ltx.store

    real_open_store = ltx.store.open_store

    def open_store(url: str, *args: Any, **kwargs: Any) -> ObjectStore:
        return CrashingStore(real_open_store(url, *args, **kwargs), steps)

    ltx.replica.open_store = open_store  # type: ignore[attr-defined]
    ltx.store.open_store = open_store  # type: ignore[attr-defined]
    for name in ("fsync", "replace", "link"):
        real: Any = getattr(os, name)

        def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            return steps.run(lambda: _real(*args, **kwargs))

        setattr(os, name, counted)


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    raw = os.environ.get(ENV_AFTER)
    steps = Steps(int(raw) if raw else None, os.environ.get(ENV_PHASE, "after") == "before")
    if raw is None:
        atexit.register(lambda: sys.stderr.write(f"{STEPS_LINE}{steps.count}\n"))
    install(steps)
    if tool == "ltxctl":
        from ltx.cli import main as ltxctl

        return ltxctl(args)
    if tool == "hydrate":
        from hydrator.cli import main as hydrate

        return hydrate(["hydrate", *args])
    if tool == "writer":
        from tests.reliability.rowwriter import main as write

        write(args[0], args[1], int(args[2]))
        return 0
    raise SystemExit(f"unknown tool {tool!r}: ltxctl, hydrate or writer")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
