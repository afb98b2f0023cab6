"""The metadata database: where it lives, how it is opened, and how an operation runs as one short
transaction.

`connect_meta` is the single seam between blockmap and where its SQLite database lives:

- a replica URL (`file:///dir`, `s3://bucket/path?…`, Litestream's forms) is the default home:
  the database `blockmap.db` opened through the `ltxvfs` VFS on that replica, so every COMMIT
  becomes one LTX file in the object store (`txid=` / `timestamp=` open the past, read-only);
- `sqlite3:///path/meta.db` (or a plain path) is a local SQLite file, the form the `juicefs`
  binary reads directly.

Each operation is one `BEGIN IMMEDIATE ... COMMIT`, and nothing else writes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import apsw

from blockmap.errors import (
    CommitOutcomeUnknownError,
    CommitsLostError,
    CorruptMetadataError,
    InvalidMetaURLError,
    VolumeFormatError,
    WriterFencedError,
)

#: How long SQLite waits for another connection's lock before answering BUSY (ms).
BUSY_TIMEOUT_MS = 5000
#: Journal mode of an ltxvfs writer connection.
WRITER_JOURNAL_MODE = "MEMORY"
#: Pause between looks at a write lock another connection of this process holds (s).
BUSY_POLL = 0.0005
#: An exclusive writer's follower looked at the replica longer ago than this (s): it was stalled,
#: and the next write waits up to FOLLOWER_FRESH_WAIT for a fresh look before it judges (ltxvfs
#: polls every second by default).
FOLLOWER_STALE = 1.5
FOLLOWER_FRESH_WAIT = 10.0
#: Whole-transaction retries after SQLITE_BUSY (a conflicting writer committed first).
TXN_RETRIES = 10
#: First retry back-off (s); it doubles each time, with jitter.
TXN_BACKOFF = 0.005
#: The metadata database's name inside its replica (`apsw.Connection("blockmap.db", vfs="ltxvfs")`).
META_DB_NAME = "blockmap.db"
#: Meta URL schemes that name an ltxvfs replica, and those that name a local SQLite file.
REPLICA_SCHEMES = ("file", "s3")
LOCAL_SCHEMES = ("sqlite3", "sqlite")
#: `sync=` values (ltxvfs's): ship every COMMIT before it returns, or group commit for an interval.
SYNC_COMMIT = "commit"
SYNC_INTERVAL_PREFIX = "interval:"

T = TypeVar("T")


def is_replica_url(meta_url: str) -> bool:
    """Whether `meta_url` names an ltxvfs replica (`file://…`, `s3://…`) rather than a local file."""
    scheme, sep, _ = meta_url.partition("://")
    return bool(sep) and scheme.lower() in REPLICA_SCHEMES


def is_group_commit(sync: str | None) -> bool:
    """Whether a `sync=` value asks for group commit."""
    return sync is not None and sync.strip().lower().startswith(SYNC_INTERVAL_PREFIX)


def effective_sync(meta_url: str, sync: str | None) -> str | None:
    """The `sync=` a writer on `meta_url` gets: `sync`, else ltxvfs's environment default
    (LTXVFS_SYNC), so blockmap always knows whether group commit is on (it must flush before
    deleting blocks); None for a local SQLite file."""
    if not is_replica_url(meta_url):
        return sync
    if sync is not None:
        return sync
    from vfs.options import ENV_SYNC

    return os.environ.get(ENV_SYNC) or SYNC_COMMIT


def meta_path(meta_url: str) -> str:
    """The local database path named by `sqlite3:///abs/path`, `sqlite3://rel/path` or a plain path."""
    if "://" not in meta_url:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", meta_url) and not os.path.exists(meta_url):
            raise InvalidMetaURLError(meta_url, "not a metadata URL: expected file:///dir or s3://bucket/path "
                                                "(a replica), or sqlite3:///path/meta.db")
        return meta_url
    parsed = urllib.parse.urlsplit(meta_url)
    if parsed.scheme.lower() not in LOCAL_SCHEMES:
        raise InvalidMetaURLError(meta_url, "scheme must be file:// or s3:// (a replica), or sqlite3:// "
                                            "(a local SQLite file)")
    path = urllib.parse.unquote(parsed.netloc + parsed.path)
    if not path:
        raise InvalidMetaURLError(meta_url, "no database path")
    return path


def replica_uri(meta_url: str, *, txid: int = 0, timestamp: datetime | str | None = None,
                sync: str | None = None, params: Mapping[str, str] | None = None) -> str:
    """The SQLite URI of `blockmap.db` on the replica `meta_url`, with ltxvfs's parameters
    (`params` adds others: `cache_size`, `poll`, `hydrate`, `compact`...).

    The replica comes from the URI (`replica=`), never from the current directory or a
    process-wide registration, so volumes on different replicas coexist in one process."""
    pairs: list[tuple[str, str]] = [("replica", meta_url)]
    if txid:
        pairs.append(("txid", f"{txid:016x}"))
    if timestamp is not None:
        pairs.append(("timestamp", _format_time(timestamp)))
    if sync is not None:
        pairs.append(("sync", sync))
    pairs.extend((params or {}).items())
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in pairs)
    return f"file:{META_DB_NAME}?{query}"


def _format_time(when: datetime | str) -> str:
    if isinstance(when, str):
        return when
    from ltx.timefmt import format_time

    return format_time(when if when.tzinfo else when.astimezone())


def connect_meta(
    meta_url: str,
    *,
    create: bool = False,
    read_only: bool = False,
    txid: int = 0,
    timestamp: datetime | str | None = None,
    sync: str | None = None,
    params: Mapping[str, str] | None = None,
) -> apsw.Connection:
    """Open the metadata database named by `meta_url` (the one place that knows where it lives).

    On a replica: `txid` / `timestamp` open the state at that TXID / the last before that time
    (read-only); `sync` is ltxvfs's `sync=` (`commit`, or `interval:DURATION` for group commit);
    `params` are further ltxvfs URI parameters."""
    if is_replica_url(meta_url):
        return _connect_replica(meta_url, create=create, read_only=read_only, txid=txid, timestamp=timestamp,
                                sync=sync, params=params)
    if txid or timestamp is not None:
        raise InvalidMetaURLError(meta_url, "reading the past (txid=, timestamp=) needs a replica URL "
                                            "(file:// or s3://), not a local SQLite file")
    if is_group_commit(sync):
        raise InvalidMetaURLError(meta_url, "group commit (sync=interval:…) needs a replica URL (file:// or "
                                            "s3://), not a local SQLite file")
    if params:
        raise InvalidMetaURLError(meta_url, f"ltxvfs parameters ({', '.join(params)}) need a replica URL")
    path = meta_path(meta_url)
    if read_only:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    if not create and not os.path.exists(path):
        raise InvalidMetaURLError(meta_url, f"database {path} does not exist")
    conn = apsw.Connection(path, flags=flags)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    return conn


def _connect_replica(meta_url: str, *, create: bool, read_only: bool, txid: int, timestamp: datetime | str | None,
                     sync: str | None, params: Mapping[str, str] | None) -> apsw.Connection:
    import vfs  # registers ltxvfs; imported here so local-SQLite users never load the VFS

    pinned = bool(txid) or timestamp is not None
    if pinned or read_only:
        flags = apsw.SQLITE_OPEN_READONLY
        sync = None  # a reader ships nothing
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    uri = replica_uri(meta_url, txid=txid, timestamp=timestamp, sync=sync, params=params)
    if flags & apsw.SQLITE_OPEN_READONLY:
        conn = _open_reader(meta_url, uri, flags | apsw.SQLITE_OPEN_URI)
    else:  # a writer on an empty replica starts an empty database (format fills it; open says "no volume")
        conn = apsw.Connection(uri, vfs=vfs.VFS_NAME, flags=flags | apsw.SQLITE_OPEN_URI)
        # The rollback journal only serves ROLLBACK inside this process (ltxvfs never replays one
        # after a crash: an unshipped transaction simply is not in the replica), so it can live in
        # memory: no temporary file per transaction.
        conn.execute(f"PRAGMA journal_mode={WRITER_JOURNAL_MODE}").fetchall()
    conn.setbusyhandler(BusyWait(BUSY_TIMEOUT_MS / 1000))
    return conn


def _open_reader(meta_url: str, uri: str, flags: int) -> apsw.Connection:
    """A read-only open: an empty replica is "no volume here" at once; a gap in the history (a
    replica caught mid-compaction) is waited out as ltxvfs does by default."""
    import vfs
    from ltx.plan import EmptyReplicaError, HistoryGapError
    from vfs.errors import ReplicaOpenError

    try:
        return apsw.Connection(uri + "&wait=0", vfs=vfs.VFS_NAME, flags=flags)
    except ReplicaOpenError as exc:
        if isinstance(exc.__cause__, EmptyReplicaError):
            raise VolumeFormatError(meta_url, "no volume here: the replica holds no LTX files (run format "
                                              "first, or check the URL)") from exc
        if not isinstance(exc.__cause__, HistoryGapError):
            raise
    return apsw.Connection(uri, vfs=vfs.VFS_NAME, flags=flags)


class BusyWait:
    """SQLite busy handler for ltxvfs connections: look again every BUSY_POLL seconds until
    `timeout`. Another connection of this process holds the replica's write lock only for one
    transaction and its PUT (about a millisecond on file://), far shorter than the growing sleeps
    of SQLite's own handler (up to 100 ms each)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started = 0.0

    def __call__(self, count: int) -> bool:
        now = time.monotonic()
        if count == 0:
            self._started = now
        if now - self._started >= self.timeout:
            return False
        time.sleep(BUSY_POLL)
        return True


class MetaDB:
    """One connection and the transaction discipline every operation follows.

    With group commit (`group_commit`, ltxvfs `sync=interval:…`) a COMMIT returns before its LTX
    file is in the store. `flush` ships what is pending; callers flush before anything outside
    the database depends on a commit (deleting blocks the commit stopped referring to, handing
    out IDs it reserved). A group lost to another writer's commit surfaces as CommitsLostError
    (after `on_lost` ran), never as a silent retry."""

    def __init__(self, conn: apsw.Connection, *, url: str = "", group_commit: bool = False,
                 on_lost: Callable[[], None] | None = None, exclusive: bool = False) -> None:
        self.conn = conn
        #: The only writer this process expects (a mount): a commit by anyone else fences it.
        self.exclusive = exclusive
        #: Why this writer was fenced (WriterFencedError for every later write), or None.
        self.fenced: str | None = None
        #: The replica's TXID less the LTX files this connection shipped: constant while nobody
        #: else commits (set at the first write transaction).
        self._own_offset: int | None = None
        self.url = url
        self.group_commit = group_commit
        #: Called when group-committed transactions were lost (the caller drops what it derived from them).
        self.on_lost = on_lost
        self._lock = threading.RLock()
        #: Commits made through `write` that changed rows (each one an LTX file with `sync=commit`;
        #: with group commit, several share one).
        self.commits = 0
        #: Read transactions (`read`, `reading`): no commit, no PUT, but a lock round each.
        self.reads = 0
        self._changes = conn.total_changes()

    @property
    def on_replica(self) -> bool:
        """Whether the database lives in ltxvfs (a replica) rather than in a local file."""
        return str(self.conn.open_vfs) == "ltxvfs"

    def close(self) -> None:
        """Ship what group commit holds, then close (a failure to ship is raised, after closing)."""
        with self._lock:
            try:
                self.flush()
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    self.conn.close()
                raise
            self.conn.close()

    def flush(self) -> None:
        """Group commit: ship every committed transaction now and wait for the store (no-op otherwise)."""
        if not self.group_commit:
            return
        if self.fenced is not None:
            self._fence(self.fenced)
        with self._lock:
            try:
                self.conn.execute("PRAGMA ltxvfs_flush").fetchall()
            except apsw.BusyError as exc:
                self._check_lost(exc)
                raise

    def pragma(self, name: str) -> str | None:
        """The value of a one-value PRAGMA (ltxvfs's `litestream_txid`, `ltxvfs_stats`...)."""
        with self._lock:
            rows = self.conn.execute(f"PRAGMA {name}").fetchall()
        return None if not rows else str(rows[0][0])

    def _check_lost(self, exc: apsw.BusyError) -> None:
        """Raise CommitsLostError when `exc` says group-committed transactions were lost (ltxvfs
        reports that as SQLITE_BUSY_SNAPSHOT under group commit); an exclusive writer is fenced
        by any conflict."""
        conflict = getattr(exc, "extendedresult", 0) == apsw.SQLITE_BUSY_SNAPSHOT
        if conflict and self.exclusive:
            self._fence(f"another writer committed first ({exc})", exc)
        if not self.group_commit or not conflict:
            return
        if self.on_lost is not None:
            self.on_lost()
        raise CommitsLostError(self.url or "metadata", f"group-committed metadata transactions were lost to "
                                                       f"another writer ({exc})") from exc

    def _fence(self, reason: str, cause: BaseException | None = None) -> None:
        """Stop writing for good: this and every later write raise WriterFencedError."""
        if self.fenced is None:
            self.fenced = reason
            if self.on_lost is not None:
                self.on_lost()
        raise WriterFencedError(self.url or "metadata", f"{self.fenced}; this writer no longer writes "
                                                        "(open the volume again to go on)") from cause

    def _position(self) -> tuple[int, int, float, bool]:
        """`PRAGMA ltxvfs_position`: (the follower's staged TXID, LTX files this connection
        shipped, seconds since the follower's last look, whether a commit now skips the store)."""
        text = self.pragma("ltxvfs_position")
        if text is None:  # not an ltxvfs writer: nothing to judge by, so never a silent pass
            raise CorruptMetadataError(self.url or "metadata", "no PRAGMA ltxvfs_position on this connection")
        tip, shipped, age_ms, at_once = text.split()
        return int(tip, 16), int(shipped), int(age_ms) / 1000, at_once == "1"

    def _fresh_position(self) -> tuple[int, int]:
        """(the follower's staged TXID, LTX files this connection shipped) from `PRAGMA
        ltxvfs_position`, once the follower's last look at the replica is recent: after a stall
        (SIGSTOP, a suspended machine) the first write waits, up to FOLLOWER_FRESH_WAIT, for the
        look the follower takes as soon as it runs again, so it judges the replica as it is now."""
        deadline = time.monotonic() + FOLLOWER_FRESH_WAIT
        while True:
            tip, shipped, age, _ = self._position()
            if age <= FOLLOWER_STALE or time.monotonic() >= deadline:
                return tip, shipped
            time.sleep(BUSY_POLL)

    def writes_at_once(self) -> bool:
        """Whether a write transaction now would not wait for the store: a mount's group-commit
        writer whose follower looked recently (no fresh look to wait for), with no failed ship to
        retry first and room for another group. The mount then runs it in its event loop."""
        if not (self.group_commit and self.exclusive and self.on_replica) or self.fenced is not None:
            return False
        _, _, age, at_once = self._position()
        return at_once and age <= FOLLOWER_STALE

    def _own_position(self) -> int:
        """The replica's TXID as this connection's follower knows it (the staged tip: another
        writer's commits count as soon as a poll saw them; this connection's own files as soon as
        they are shipped, right after they are counted) less the LTX files this connection
        shipped (see `_own_offset`)."""
        tip, shipped = self._fresh_position()
        return tip - shipped

    def _check_exclusive(self) -> None:
        """Inside a write transaction (the lock just showed the latest state): fence when the
        replica moved by commits that are not this connection's."""
        position = self._own_position()
        if self._own_offset is None:
            self._own_offset = position
        elif position > self._own_offset:
            # Only another writer's commit moves the TXID past this writer's own files. Below the
            # offset is this writer's own file caught between being counted and being staged by
            # the group-commit thread: no fence (fencing there stopped a healthy mount for good,
            # its unshipped commits lost: "TXID moved -1" under mdtest-style load).
            self._fence(f"another writer committed to the replica (TXID moved {position - self._own_offset} "
                        f"past this writer's own commits)")

    def write(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` inside BEGIN IMMEDIATE ... COMMIT, retrying the whole function when another
        writer holds or took the lock first. Any exception from `fn` rolls back and propagates; a
        COMMIT that failed otherwise is CommitOutcomeUnknownError."""
        if self.fenced is not None:
            self._fence(self.fenced)
        delay = TXN_BACKOFF
        for attempt in range(TXN_RETRIES + 1):
            with self._lock:
                try:
                    return self._attempt(fn)
                except apsw.BusyError as exc:  # not committed: another writer holds the lock or was first
                    self._check_lost(exc)
                    if attempt == TXN_RETRIES:
                        raise
            time.sleep(delay * (1 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def _attempt(self, fn: Callable[[apsw.Cursor], T]) -> T:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if self.exclusive and self.on_replica:
                self._check_exclusive()
            result = fn(cur)
        except BaseException:
            self._rollback(cur)
            raise
        changed = self.conn.total_changes()
        try:
            cur.execute("COMMIT")
        except apsw.BusyError:
            self._rollback(cur)
            raise
        except apsw.Error as exc:
            self._rollback(cur)
            raise CommitOutcomeUnknownError(self.url or "metadata", str(exc)) from exc
        if changed != self._changes:  # a transaction that changed nothing ships nothing
            self._changes = changed
            self.commits += 1
        return result

    def read(self, fn: Callable[[apsw.Cursor], T]) -> T:
        """Run `fn` inside one read transaction, so it sees a single consistent state."""
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            self.reads += 1
            try:
                return fn(cur)
            finally:
                self._rollback(cur)

    @contextmanager
    def held_if_free(self) -> Iterator[bool]:
        """Hold the connection for a block of calls if no other thread holds it (True), else
        nothing (False): a caller that must not wait (the mount's event loop) runs its work
        itself when the answer is True and hands it to a thread otherwise. `read` and `write`
        inside the block re-enter the hold."""
        got = self._lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                self._lock.release()

    @contextmanager
    def reading(self) -> Iterator[apsw.Cursor]:
        """A read transaction held open by a `with` block (for iterators that fetch in batches)."""
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            self.reads += 1
            try:
                yield cur
            finally:
                self._rollback(cur)

    def _rollback(self, cur: apsw.Cursor) -> None:
        if not self.conn.getautocommit():
            cur.execute("ROLLBACK")


def as_int(value: Any) -> int:
    """A column value known to be an INTEGER (apsw types row values as a union)."""
    return int(value)


def as_bytes(value: Any) -> bytes:
    """A BLOB column value; TEXT (which SQL `||` can produce) is turned back into its bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if value is None:
        return b""
    return bytes(value)
