"""The PRAGMAs of an ltxvfs connection, with the meanings of Litestream's VFS:

- `litestream_txid`: the TXID the connection reads, 16 hex digits (read-only).
- `litestream_lag`: whole seconds since the replica was last looked at successfully (the open
  or a poll); -1 when never (read-only).
- `litestream_time`: the time being read, RFC 3339 with nanoseconds: the target time when one is
  set, else the creation time of the newest applied file. Setting it to a time (RFC 3339 or
  '5 minutes ago') reads the state before that time; 'LATEST' returns to the latest and follows.
- `litestream_hydration_progress`: percent of the hydration done, one decimal ("100.0" once the
  local copy is complete); "0" without hydrate= (read-only).
- `ltxvfs_stats`: JSON counters of requests, bytes, cache and round trips (read-only).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ltx.timefmt import TimeFormatError, format_time, parse_time
from vfs.errors import TimeTravelError

if TYPE_CHECKING:
    from vfs.file import LTXFile

#: What `PRAGMA litestream_hydration_progress` answers without hydration (as Litestream does).
NO_HYDRATION_PROGRESS = "0"
READ_ONLY = ("litestream_txid", "litestream_lag", "litestream_hydration_progress", "ltxvfs_stats")
PRAGMAS = (*READ_ONLY, "litestream_time")


def current_time(file: LTXFile) -> str:
    """What `PRAGMA litestream_time` reports."""
    if file.target_time is not None:
        return format_time(file.target_time)
    return format_time(file.view.created_at)


def lag_seconds(file: LTXFile) -> int:
    last = file.follower.last_success
    if not last:
        return -1
    return max(0, math.floor(time.time() - last))


def handle_pragma(file: LTXFile, name: str, value: str | None) -> tuple[str | None] | None:
    """The pragma's result as a 1-tuple, or None when the pragma is not ours (SQLite handles it)."""
    if name not in PRAGMAS:
        return None
    if value is not None and name in READ_ONLY:
        raise TimeTravelError(f"ltxvfs: {name} is read-only")
    if name == "litestream_txid":
        return (f"{file.txid:016x}",)
    if name == "litestream_lag":
        return (str(lag_seconds(file)),)
    if name == "litestream_hydration_progress":
        return (file.hydration.progress_text() if file.hydration is not None else NO_HYDRATION_PROGRESS,)
    if name == "ltxvfs_stats":
        return (file.stats_json(),)
    if value is None:
        return (current_time(file),)
    if value.strip().lower() == "latest":
        file.move_to(None)
        return (None,)
    try:
        when = parse_time(value)
    except TimeFormatError as exc:
        raise TimeTravelError(f"ltxvfs: litestream_time: {exc}") from exc
    file.move_to(when)
    return (None,)
