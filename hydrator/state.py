"""The hydration record kept beside the local file: what the file holds and what is left to apply.

The record is JSON, replaced atomically (temporary file, fsync, rename, fsync of the directory),
so after a crash it describes either the state before or the state after a step, never a mix.
It holds the TXID the file reached (with that transaction's header timestamp and commit, to
recognise the same history later), the replica's credential-free URL, the page size, the files
of the current plan not yet applied (so an interrupted hydration resumes without refetching what
it applied) and, while pages of a file are being written, the TXID that file reaches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydrator.errors import HydrationStateError
from ltx.fsutil import fsync_dir
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo

#: Appended to the database path to name its record (SQLite's own side files use -wal, -shm, -journal).
STATE_SUFFIX = "-hydrator.json"
#: Layout version of the record; a record of another version is ignored (hydration starts over).
STATE_VERSION = 1


def state_path(db_path: str | os.PathLike[str]) -> Path:
    """Where the record of `db_path` lives."""
    return Path(f"{os.fspath(db_path)}{STATE_SUFFIX}")


@dataclass(frozen=True)
class PlannedFile:
    """One LTX file of a plan, as recorded: level, TXID range and listed size."""

    level: int
    min_txid: int
    max_txid: int
    size: int

    @classmethod
    def of(cls, info: LTXFileInfo) -> PlannedFile:
        return cls(info.level, info.min_txid, info.max_txid, info.size)

    def matches(self, info: LTXFileInfo) -> bool:
        return (self.level, self.min_txid, self.max_txid, self.size) == (
            info.level, info.min_txid, info.max_txid, info.size)

    def validate(self, where: str) -> None:
        if not 0 <= self.level <= SNAPSHOT_LEVEL:
            raise ValueError(f"{where}: level {self.level} out of range")
        if not 1 <= self.min_txid <= self.max_txid:
            raise ValueError(f"{where}: TXIDs {self.min_txid}-{self.max_txid} out of order")
        if self.size <= 0:
            raise ValueError(f"{where}: size {self.size} is not positive")


@dataclass
class HydrationState:
    """What the local file holds (`txid`, consistent unless `dirty_until`) and what is pending."""

    replica_url: str
    page_size: int = 0
    #: TXID of the last file fully applied (0: nothing applied yet).
    txid: int = 0
    #: Header timestamp (ms) and commit (pages) of the file that reached `txid`.
    timestamp: int = 0
    commit: int = 0
    #: Non-zero while pages of a file reaching this TXID may be partly written.
    dirty_until: int = 0
    #: Files of the current plan not yet applied, in order.
    pending: list[PlannedFile] = field(default_factory=list)
    #: The current plan's bytes, in all and already applied (progress across restarts).
    bytes_total: int = 0
    bytes_done: int = 0
    #: The first plan was applied in full: the file has been complete at least once.
    complete: bool = False
    version: int = STATE_VERSION

    @property
    def consistent(self) -> bool:
        """The file holds the database exactly as of `txid`."""
        return self.txid > 0 and self.dirty_until == 0

    def encode(self) -> bytes:
        body = asdict(self)
        body["pending"] = [asdict(p) for p in self.pending]
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes, where: str = "") -> HydrationState:
        """Parse a record; HydrationStateError names `where` when it is malformed."""
        try:
            body: Any = json.loads(data)
            if not isinstance(body, dict):
                raise TypeError("not a JSON object")
            if body.get("version") != STATE_VERSION:
                raise HydrationStateError(where, f"record version {body.get('version')!r}, "
                                                 f"expected {STATE_VERSION}")
            pending = [PlannedFile(**p) for p in body.pop("pending", [])]
            state = cls(pending=pending, **body)
        except HydrationStateError:
            raise
        except (ValueError, TypeError) as exc:
            raise HydrationStateError(where, f"malformed hydration record: {exc}") from exc
        state.validate(where)
        return state

    def validate(self, where: str = "") -> None:
        """Check field ranges and that pending files form a chain beyond `txid`."""
        try:
            for name in ("page_size", "txid", "timestamp", "commit", "dirty_until", "bytes_total", "bytes_done"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{name} is not an integer")
                if value < 0 and name != "timestamp":
                    raise ValueError(f"{name} is negative")
            if not isinstance(self.replica_url, str) or not self.replica_url:
                raise ValueError("replica_url is missing")
            if self.txid and not self.page_size:
                raise ValueError("a TXID without a page size")
            if self.dirty_until and self.dirty_until <= self.txid:
                raise ValueError(f"dirty_until {self.dirty_until} is not past txid {self.txid}")
            current = self.txid
            for i, p in enumerate(self.pending):
                p.validate(f"pending[{i}]")
                if not (p.min_txid <= current + 1 and p.max_txid > current):
                    raise ValueError(f"pending[{i}] ({p.min_txid}-{p.max_txid}) does not continue TXID {current}")
                current = p.max_txid
        except ValueError as exc:
            raise HydrationStateError(where, f"invalid hydration record: {exc}") from exc

    def pending_infos_match(self, listed: Sequence[LTXFileInfo]) -> bool:
        """Whether every pending file appears in `listed` with the same level, TXIDs and size."""
        keys = {(f.level, f.min_txid, f.max_txid): f for f in listed}
        for p in self.pending:
            f = keys.get((p.level, p.min_txid, p.max_txid))
            if f is None or not p.matches(f):
                return False
        return True


def load_state(db_path: str | os.PathLike[str]) -> HydrationState | None:
    """The record beside `db_path`, or None when there is none."""
    path = state_path(db_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HydrationStateError(str(path), f"cannot read the hydration record: {exc}") from exc
    return HydrationState.decode(data, str(path))


def save_state(db_path: str | os.PathLike[str], state: HydrationState) -> None:
    """Replace the record atomically: write a temporary file, fsync, rename, fsync the directory."""
    state.validate(str(state_path(db_path)))
    path = state_path(db_path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = state.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_state(db_path: str | os.PathLike[str]) -> None:
    state_path(db_path).unlink(missing_ok=True)

