"""What the command lines (`ltxctl`, its `hydrate`, `blockmap`) share in how they talk: sizes
printed one way (binary units, `12.3 MiB`), counts with the right noun (`1 file`, `2 files`), the
version, and the log level set by `-v` / `--log-level`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, BinaryIO

from ltx.store.base import StoreError

#: Binary units, as every size is printed.
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: `--log-level` values, and what `-v` means.
LOG_LEVELS = ("debug", "info", "warning", "error")
VERBOSE_LEVEL = "debug"
#: The distribution whose version `--version` prints.
DISTRIBUTION = "ltxvfs"


def human_size(n: float) -> str:
    """`512 B`, `1.5 KiB`, `12.3 MiB`, `4.0 GiB`."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_age(seconds: float) -> str:
    """`0.4s`, `12s`, `5m03s`, `2h04m`, `3d05h`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 file`, `2 files` (`many` for irregular plurals: `directories`)."""
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"


def version() -> str:
    """The installed version of the project (or `unknown` when run from a tree not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def configure_logging(level: str) -> None:
    """Send the project's log records at `level` and above to stderr (one line each)."""
    name = level.strip().lower()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r} (use {', '.join(LOG_LEVELS)})")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, name.upper()))


def start_logging(verbose: bool, log_level: str | None) -> None:
    """Apply the global `-v` / `--log-level` options: `--log-level` wins, `-v` means debug, neither
    leaves logging as it is. A bad level raises ValueError naming it."""
    level = log_level or (VERBOSE_LEVEL if verbose else None)
    if level is not None:
        configure_logging(level)


#: Called with (bytes done, bytes in all).
Progress = Callable[[int, int], None]


@contextmanager
def progress_bar(label: str, show: bool) -> Iterator[Progress | None]:
    """A progress bar on stderr fed by the yielded callback, or None when not shown (the caller
    passes None on, so nothing is counted)."""
    if not show:
        yield None
        return
    import typer

    with ExitStack() as stack:
        bar: Any = None
        shown = 0

        def update(done: int, total: int) -> None:
            nonlocal bar, shown
            if bar is None:
                bar = stack.enter_context(typer.progressbar(length=max(total, 1), label=label, file=sys.stderr))
            bar.update(done - shown)
            shown = done

        yield update


class ProgressReader:
    """A readable (and, when the inner one is, seekable) stream reporting its position to
    `progress` after each read: an upload re-reading after a retry moves the bar back, never past
    the end."""

    def __init__(self, inner: BinaryIO, progress: Progress, total: int) -> None:
        self._inner = inner
        self._progress = progress
        self._total = total

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self._progress(min(self._inner.tell(), self._total), self._total)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def seekable(self) -> bool:
        return self._inner.seekable()

    def readable(self) -> bool:
        return True


class ProgressWriter:
    """A writable stream counting what goes through it into `progress`."""

    def __init__(self, inner: BinaryIO, progress: Progress, total: int) -> None:
        self._inner = inner
        self._progress = progress
        self._total = total
        self._done = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        n = self._inner.write(data)
        self._done += len(data)
        self._progress(min(self._done, self._total), self._total)
        return n

    def flush(self) -> None:
        self._inner.flush()


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: After Ctrl-C, how long a command may take to unwind (its temporary files removed) before it
#: exits anyway: a worker thread blocked in a network read would otherwise hold the exit until
#: its socket timed out.
INTERRUPT_GRACE_S = 2.0


class InterruptGuard:
    """Ctrl-C for a command line: the first SIGINT raises KeyboardInterrupt in the main thread (so
    cleanup runs) and starts a timer that, INTERRUPT_GRACE_S later, writes `line` and exits 130
    whatever still runs. `report()` writes `line` once (the command's own handler calls it)."""

    def __init__(self, line: str) -> None:
        self.line = line
        #: A SIGINT arrived (typer turns the KeyboardInterrupt into a silent exit status 130).
        self.fired = False
        self._reported = False
        self._lock = threading.Lock()

    def __enter__(self) -> InterruptGuard:
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def report(self) -> None:
        with self._lock:
            if self._reported:
                return
            self._reported = True
        with suppress(Exception):
            sys.stdout.flush()
        sys.stderr.write(self.line + "\n")
        sys.stderr.flush()

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.fired = True
        timer = threading.Timer(INTERRUPT_GRACE_S, self._force_exit)
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    def _force_exit(self) -> None:
        self.report()
        os._exit(EXIT_INTERRUPTED)


def store_error_line(exc: StoreError) -> str:
    """A store error as a command prints it: naming the object it concerns, but for a LIST (whose
    key is a level's prefix, which nobody typed) the replica's URL alone."""
    if exc.key.endswith("/"):
        return f"{exc.url}: {exc.reason}"
    return str(exc)


def root_cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The innermost exception of one of `kinds` in `exc`'s chain of causes (`exc` included)."""
    found = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            found = current
        current = current.__cause__ or current.__context__
    return found
