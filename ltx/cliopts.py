"""The options `ltxctl` and `blockmap` take before their command, declared once: the typer
metadata of `--version` and `--log-level` (`-v` keeps its own help: it says what each CLI shows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from ltx.clifmt import LOG_LEVELS, version


def version_flag(prog: str, echo: Callable[[str], None] = typer.echo) -> Any:
    """`--version`: print `prog` and the installed version, exit 0."""

    def show(value: bool) -> None:
        if value:
            echo(f"{prog} {version()}")
            raise typer.Exit(0)

    return typer.Option("--version", is_eager=True, callback=show, help="Print the version and exit.")


def log_level_flag() -> Any:
    """`--log-level LEVEL`: log to stderr at that level (ltx.clifmt.start_logging applies it)."""
    return typer.Option("--log-level", help=f"Log to stderr at this level: {', '.join(LOG_LEVELS)}.")
