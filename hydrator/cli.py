"""`ltxctl hydrate URL PATH [--follow]`: build (and with --follow keep up to date) a local copy.

Loaded by `ltxctl` through the `ltxctl.commands` entry-point group (`register(app)`), so `ltx`
never imports `hydrator`. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from hydrator.errors import HydrationError
from hydrator.hydrator import DEFAULT_HYDRATION_PARALLELISM, DEFAULT_POLL_INTERVAL, Hydrator
from ltx.clifmt import store_error_line
from ltx.errors import LTXError
from ltx.names import format_txid
from ltx.plan import RestorePlanError
from ltx.store import InvalidURLError, StoreError

PROG = "ltxctl"
EXIT_FAILURE = 1
#: Seconds between progress-bar updates.
PROGRESS_REFRESH = 0.2


def describe(exc: BaseException) -> str:
    """The one line an error becomes on stderr."""
    if isinstance(exc, StoreError):
        text = store_error_line(exc)
    elif isinstance(exc, HydrationError | InvalidURLError | RestorePlanError):
        text = str(exc)
    elif isinstance(exc, LTXError):
        text = f"corrupt LTX file {exc.name} at offset {exc.offset}: {exc.reason}"
    elif isinstance(exc, OSError):
        text = f"{exc.filename}: {exc.strerror}" if exc.filename is not None else str(exc.strerror or exc)
    else:
        text = f"unexpected error: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _fail(exc: BaseException) -> typer.Exit:
    sys.stderr.write(f"{PROG}: error: {describe(exc)}\n")
    sys.stderr.flush()
    return typer.Exit(EXIT_FAILURE)


@contextmanager
def _bar(show: bool, hydrator: Hydrator) -> Iterator[Any]:
    """A progress bar over the plan's bytes (stderr), or nothing when not shown."""
    if not show:
        yield lambda: None
        return
    shown = 0
    with typer.progressbar(length=1, label="hydrating", file=sys.stderr) as bar:
        def update() -> None:
            nonlocal shown
            p = hydrator.progress
            bar.length = max(p.bytes_total, 1)
            done = p.bytes_total if p.complete else p.bytes_done
            bar.update(done - shown)
            shown = done
        yield update
        update()


def hydrate_cmd(
    url: Annotated[str, typer.Argument(help="Replica URL (file:///path or s3://bucket/path?endpoint=...).")],
    path: Annotated[Path, typer.Argument(help="Local database file to build; a record is kept beside it.")],
    follow: Annotated[bool, typer.Option("--follow", help="Keep applying new files until interrupted.")] = False,
    parallelism: Annotated[int, typer.Option("--parallelism", min=1, help="GETs in flight at once.")]
    = DEFAULT_HYDRATION_PARALLELISM,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.01, help="Seconds between polls "
                                                                                   "with --follow.")]
    = DEFAULT_POLL_INTERVAL,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on "
                                                                                   "a terminal).")] = None,
) -> None:
    """Download the replica's database into PATH in parallel, resuming where a previous run stopped."""
    show = sys.stderr.isatty() if progress is None else progress
    try:
        hydrator = Hydrator(url, path, follow=follow, parallelism=parallelism, poll_interval=poll_interval)
    except (InvalidURLError, StoreError, ValueError) as exc:
        raise _fail(exc) from None
    try:
        with hydrator:
            hydrator.start()
            with _bar(show, hydrator) as update:
                done = hydrator.wait_complete if follow else hydrator.join
                while not done(PROGRESS_REFRESH):
                    update()
            p = hydrator.progress
            typer.echo(f"hydrated {path} to TXID {format_txid(hydrator.txid)}: {hydrator.commit} pages of "
                       f"{hydrator.page_size} bytes ({p.files_done} files, {hydrator.stats['bytes_read']} "
                       "bytes fetched)")
            if hydrator.restarts:
                typer.echo(f"started over: {hydrator.restart_reason}", err=True)
            if follow:
                typer.echo("following new transactions (interrupt to stop)", err=True)
                try:
                    while not hydrator.join(PROGRESS_REFRESH * 5):
                        pass
                except KeyboardInterrupt:
                    hydrator.stop()
                    typer.echo(f"stopped at TXID {format_txid(hydrator.txid)}", err=True)
    except KeyboardInterrupt:
        hydrator.stop()
        sys.stderr.write(f"{PROG}: interrupted at TXID {format_txid(hydrator.txid)}; run again to resume\n")
        raise typer.Exit(130) from None
    except (HydrationError, StoreError, RestorePlanError, LTXError, OSError) as exc:
        raise _fail(exc) from None


def register(app: typer.Typer) -> None:
    """Add `hydrate` to a typer app (the `ltxctl.commands` entry point)."""
    app.command("hydrate")(hydrate_cmd)


def main(argv: list[str] | None = None) -> int:
    """`python -m hydrator.cli hydrate URL PATH ...`: the command without the rest of ltxctl."""
    app = typer.Typer(name=PROG, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """Hydrate a local database file from an LTX replica."""

    register(app)
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        sys.stderr.write(f"{PROG}: error: {' '.join(exc.format_message().split())}\n")
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
