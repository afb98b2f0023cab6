"""Small durability helpers for local files shared by the store, restore and the hydrator."""

from __future__ import annotations

import os


def fsync_dir(path: str | os.PathLike[str], best_effort: bool = True) -> None:
    """Make a create, link or rename in directory `path` durable. With `best_effort`, platforms
    or file systems that cannot open or sync a directory are tolerated."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(fd)
