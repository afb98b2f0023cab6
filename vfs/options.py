"""The URI parameters of an ltxvfs database, copied out of SQLite's filename during xOpen."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import apsw

from ltx.names import parse_txid
from ltx.timefmt import TimeFormatError, parse_duration, parse_time
from vfs.pagecache import DEFAULT_CACHE_SIZE
from vfs.resolve import resolve_replica

#: Environment variable naming the hydrated file of every connection without `hydrate=`.
ENV_HYDRATE_PATH = "LTXVFS_HYDRATE_PATH"
#: Environment variables giving `sync=` and `compact=` to every writer without them.
ENV_SYNC = "LTXVFS_SYNC"
ENV_COMPACT = "LTXVFS_COMPACT"
#: `sync=` values: ship each COMMIT before it returns (the default), or group commit.
SYNC_COMMIT = "commit"
#: `compact=` of a writer without one: compact in the writer's process (vfs/autocompact.py);
#: `off` leaves compaction to Litestream or a scheduled `ltxctl compact`.
DEFAULT_COMPACT = "auto"
SYNC_INTERVAL_PREFIX = "interval:"

#: `neighbours=`: bytes of neighbouring frames a random miss fetches along (vfs/readahead.py); 0:
#: its frame only. At most MAX_NEIGHBOUR_BYTES, so a random miss stays one small GET.
DEFAULT_NEIGHBOUR_BYTES = 0
MAX_NEIGHBOUR_BYTES = 256 * 1024
#: Seconds between polls of the replica for new files (Litestream's VFS default, 1 s); 0 stops following.
DEFAULT_POLL_INTERVAL = 1.0
#: How long an open waits for a replica caught mid-compaction (a gap in its listing) to hold a
#: usable history again before failing. An empty listing is answered at once unless `wait=` asks
#: to wait for a writer's first commit (`OpenOptions.empty_wait`).
DEFAULT_OPEN_WAIT = 5.0

#: The URI parameters ltxvfs reads; any other one (beside SQLITE_PARAMETERS) refuses the open, so a
#: typo (`txdi=`, `cachesize=`) never silently reads the latest state or the defaults.
LTXVFS_PARAMETERS = ("replica", "txid", "timestamp", "cache_size", "poll", "wait", "hydrate", "sync", "compact",
                     "neighbours")
#: The URI parameters SQLite itself (and its unix VFS: `modeof`) defines.
SQLITE_PARAMETERS = ("mode", "cache", "immutable", "vfs", "psow", "nolock", "modeof")

_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


class OptionError(ValueError):
    """A URI parameter with a value ltxvfs cannot use."""

    def __init__(self, name: str, value: str, reason: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"ltxvfs: URI parameter {name}={value!r}: {reason}")


@dataclass(frozen=True)
class OpenOptions:
    """Everything an open needs to know, independent of SQLite's filename object."""

    path: str
    replica_url: str
    txid: int = 0
    timestamp: datetime | None = None
    cache_size: int = DEFAULT_CACHE_SIZE
    poll: float = DEFAULT_POLL_INTERVAL
    #: `wait=`: how long to wait for an empty replica's first commit or a gap to close; None (not
    #: given): an empty replica fails at once, a gap is waited for DEFAULT_OPEN_WAIT.
    wait: float | None = None
    read_only: bool = True
    #: The local file hydrated from the replica (hydrate= or LTXVFS_HYDRATE_PATH), absolute; None: none.
    hydrate_path: str | None = None
    #: Writers: 0 ships every COMMIT before it returns (`sync=commit`); > 0 is group commit
    #: (`sync=interval:DURATION`), shipping the commits of each interval as one file.
    sync_interval: float = 0.0
    #: Writers: compact the replica in the background with ltxctl compact's rules (`compact=auto`,
    #: the default; `compact=off` opts out).
    compact: bool = True
    #: `neighbours=`: bytes of neighbouring frames of the same file a random miss fetches along
    #: (vfs/readahead.py); 0 fetches its frame only.
    neighbour_bytes: int = DEFAULT_NEIGHBOUR_BYTES

    @property
    def empty_wait(self) -> float:
        """Seconds to wait for an empty replica's first file: only what `wait=` asked for."""
        return self.wait or 0.0

    @property
    def gap_wait(self) -> float:
        """Seconds to wait for a gap in the listing (a compaction under way) to close."""
        return DEFAULT_OPEN_WAIT if self.wait is None else self.wait

    @property
    def pinned(self) -> bool:
        """A view of the past (txid= or timestamp=) does not follow new commits."""
        return bool(self.txid) or self.timestamp is not None


def parse_size(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError("expected bytes, optionally with a k, m or g suffix (powers of 1024)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower() if m.group(2) else None]


def check_parameter_names(params: Iterable[tuple[str, str]]) -> None:
    """Refuse a URI parameter (name, value) that neither ltxvfs nor SQLite knows (OptionError
    naming it, the closest known name, and the known ones)."""
    known = LTXVFS_PARAMETERS + SQLITE_PARAMETERS
    for key, value in params:
        if key in known:
            continue
        import difflib  # only on this error path: a read-only open stays light

        close = difflib.get_close_matches(key.lower(), known, n=1)
        hint = f"did you mean {close[0]}=? " if close else ""
        raise OptionError(key, value, f"unknown parameter ({hint}ltxvfs takes {', '.join(LTXVFS_PARAMETERS)}; "
                                   f"SQLite takes {', '.join(SQLITE_PARAMETERS)})")


def options_from_uri(name: apsw.URIFilename, flags: int) -> OpenOptions:
    """Read and check the URI parameters (valid only during xOpen, hence copied here)."""
    path = name.filename()
    check_parameter_names((key, name.uri_parameter(key) or "") for key in name.parameters)

    def param(key: str) -> str | None:
        value = name.uri_parameter(key)
        return value if value else None

    txid = 0
    timestamp = None
    cache_size = DEFAULT_CACHE_SIZE
    poll = DEFAULT_POLL_INTERVAL
    wait: float | None = None
    if (text := param("txid")) is not None:
        try:
            txid = parse_txid(text)
        except ValueError as exc:
            raise OptionError("txid", text, "expected a hexadecimal TXID") from exc
        if txid == 0:
            raise OptionError("txid", text, "TXIDs start at 1")
    if (text := param("timestamp")) is not None:
        try:
            timestamp = parse_time(text)
        except TimeFormatError as exc:
            raise OptionError("timestamp", text, str(exc)) from exc
    if txid and timestamp is not None:
        raise OptionError("timestamp", param("timestamp") or "", "give txid= or timestamp=, not both")
    if (text := param("cache_size")) is not None:
        try:
            cache_size = parse_size(text)
        except ValueError as exc:
            raise OptionError("cache_size", text, str(exc)) from exc
    neighbour_bytes = DEFAULT_NEIGHBOUR_BYTES
    if (text := param("neighbours")) is not None:
        try:
            neighbour_bytes = parse_size(text)
        except ValueError as exc:
            raise OptionError("neighbours", text, str(exc)) from exc
        if neighbour_bytes > MAX_NEIGHBOUR_BYTES:
            raise OptionError("neighbours", text, f"at most {MAX_NEIGHBOUR_BYTES >> 10} KiB")
    for key in ("poll", "wait"):
        if (text := param(key)) is not None:
            try:
                seconds = parse_duration(text).total_seconds()
            except TimeFormatError as exc:
                raise OptionError(key, text, str(exc)) from exc
            if key == "poll":
                poll = seconds
            else:
                wait = seconds
    hydrate_path = param("hydrate") or os.environ.get(ENV_HYDRATE_PATH) or None
    if hydrate_path is not None:
        hydrate_path = os.path.abspath(hydrate_path)
        if os.path.realpath(hydrate_path) == os.path.realpath(path):
            raise OptionError("hydrate", hydrate_path, "is the database's own name, where SQLite keeps its "
                                                       "journal: give the hydrated copy another path")
    sync_interval = parse_sync(param("sync") or os.environ.get(ENV_SYNC) or SYNC_COMMIT)
    compact_text = param("compact") or os.environ.get(ENV_COMPACT) or DEFAULT_COMPACT
    if compact_text not in ("auto", "off"):
        raise OptionError("compact", compact_text, "expected auto or off")
    return OpenOptions(
        path=path,
        replica_url=resolve_replica(path, param("replica")),
        txid=txid,
        timestamp=timestamp,
        cache_size=cache_size,
        poll=poll,
        wait=wait,
        read_only=not flags & apsw.SQLITE_OPEN_READWRITE,
        hydrate_path=hydrate_path,
        sync_interval=sync_interval,
        compact=compact_text == "auto",
        neighbour_bytes=neighbour_bytes,
    )


def parse_sync(text: str) -> float:
    """`commit` -> 0; `interval:DURATION` -> seconds (more than 0)."""
    value = text.strip().lower()
    if value == SYNC_COMMIT:
        return 0.0
    if value.startswith(SYNC_INTERVAL_PREFIX):
        duration = value[len(SYNC_INTERVAL_PREFIX):]
        try:
            seconds = parse_duration(duration).total_seconds()
        except TimeFormatError as exc:
            raise OptionError("sync", text, str(exc)) from exc
        if seconds > 0:
            return seconds
    raise OptionError("sync", text, "expected commit or interval:DURATION (e.g. interval:10ms), with a "
                                    "duration above 0")
