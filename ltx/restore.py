"""Restore a database from a replica: the restore plan, streamed page by page into `OUT.tmp`.

Each planned file is fetched with parallel range GETs (see `ltx.prefetch`), decoded and
validated as it streams, and its pages written at `(pgno - 1) * page_size`; later files win
because they are applied later. The result is truncated to the last file's commit, fsynced and
renamed over `OUT`. Memory is bounded by the prefetch window, never by the database's size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ltx.dbheader import DB_HEADER_SIZE, check_commit
from ltx.decoder import Decoder
from ltx.errors import LTXHeaderError
from ltx.fsutil import fsync_dir
from ltx.header import Header
from ltx.names import format_txid
from ltx.plan import LTXFileInfo, restore_plan
from ltx.prefetch import DEFAULT_CHUNK_SIZE, DEFAULT_PREFETCH_PARALLELISM, Prefetcher, StoredObject
from ltx.replica import Replica
from ltx.store.base import ObjectStore

#: Range GETs in flight during a restore (the CLI's --parallelism default).
DEFAULT_RESTORE_PARALLELISM = DEFAULT_PREFETCH_PARALLELISM
#: Adjacent pages are gathered up to this many bytes before one write.
WRITE_BATCH_SIZE = 1024 * 1024
#: Files SQLite may keep beside a database; stale ones must not meet a restored database.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
#: Integrity checks a restore can run afterwards, as `litestream restore -integrity-check`.
INTEGRITY_CHECKS = ("none", "quick", "full")

#: Called with (bytes fetched so far, bytes to fetch in all).
ProgressCallback = Callable[[int, int], None]


class RestoreError(Exception):
    """A restore could not be carried out."""


class OutputExistsError(RestoreError):
    """The output (or a WAL/SHM/journal file beside it) exists and `force` was not given."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} already exists (use --force to overwrite it)")


class IntegrityCheckError(RestoreError):
    """The restored database failed SQLite's integrity check; it was removed."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: integrity check failed after restore: {detail}")


class PlanMismatchError(LTXHeaderError):
    """A planned file's header disagrees with its name or with the files before it."""


@dataclass(frozen=True)
class RestoreResult:
    """What a restore produced: the TXID reached, the database's geometry, the files applied."""

    path: str
    txid: int
    page_size: int
    commit: int
    #: The files read (the plan from its last file starting at TXID 1).
    plan: tuple[LTXFileInfo, ...]
    bytes_fetched: int

    @property
    def size(self) -> int:
        return self.page_size * self.commit


class OutputIsDirectoryError(RestoreError):
    """The output names a directory: -o takes the path of the database file to write."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} is a directory (give the path of the database file to write)")


def _check_output(out: Path, force: bool) -> None:
    if out.is_dir():
        raise OutputIsDirectoryError(str(out))
    if force:
        return
    for candidate in (str(out), *(f"{out}{s}" for s in SIDE_FILE_SUFFIXES)):
        if os.path.lexists(candidate):
            raise OutputExistsError(candidate)


class _PageWriter:
    """Writes pages at their offsets, gathering adjacent ones into one pwrite."""

    def __init__(self, fd: int, page_size: int) -> None:
        self._fd = fd
        self._page_size = page_size
        self._buf = bytearray()
        self._start = 0  # pgno of the first page in _buf
        self._next = 0   # pgno that would extend _buf

    def write(self, pgno: int, page: bytes) -> None:
        if pgno != self._next or len(self._buf) >= WRITE_BATCH_SIZE:
            self.flush()
            self._start = pgno
        self._buf += page
        self._next = pgno + 1

    def flush(self) -> None:
        if self._buf:
            offset = (self._start - 1) * self._page_size
            view = memoryview(self._buf)
            while view:
                n = os.pwrite(self._fd, view, offset)
                view = view[n:]
                offset += n
            self._buf = bytearray()


def files_to_read(plan: Sequence[LTXFileInfo]) -> list[LTXFileInfo]:
    """The plan from its last file that starts at TXID 1: such a file (a snapshot, or a compaction
    that reaches back to the first transaction) holds every page, so nothing before it counts.
    Litestream's plan often puts a level-9 snapshot before a level-1 file that starts at 1 too."""
    start = max((i for i, f in enumerate(plan) if f.min_txid == 1), default=0)
    return list(plan[start:])


def apply_plan(store: ObjectStore, plan: Sequence[LTXFileInfo], fd: int, *,
               parallelism: int = DEFAULT_RESTORE_PARALLELISM, chunk_size: int = DEFAULT_CHUNK_SIZE,
               progress: ProgressCallback | None = None) -> Header:
    """Apply every planned file in order to the open file `fd`; return the last file's header.

    Each file is validated in full (checksums included) as it streams; its header must match
    its name, and page sizes must agree. The file is left untruncated and unsynced."""
    if not plan:
        raise ValueError("empty restore plan")
    total = sum(f.size for f in plan)
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    objects = [StoredObject(f.key, f.size) for f in plan]
    last: Header | None = None
    writer: _PageWriter | None = None
    with Prefetcher(store, objects, parallelism, chunk_size, on_bytes) as prefetcher:
        for info, (_, stream) in zip(plan, prefetcher.streams(), strict=True):
            dec = Decoder(stream, info.key)
            hdr = dec.header
            if (hdr.min_txid, hdr.max_txid) != (info.min_txid, info.max_txid):
                raise PlanMismatchError(info.key, 16, f"header holds TXIDs {format_txid(hdr.min_txid)}-"
                                                      f"{format_txid(hdr.max_txid)}, its name says "
                                                      f"{format_txid(info.min_txid)}-{format_txid(info.max_txid)}")
            if last is not None and hdr.page_size != last.page_size:
                raise PlanMismatchError(info.key, 8, f"page size {hdr.page_size} differs from the "
                                                     f"{last.page_size} of the files before it")
            if writer is None:
                writer = _PageWriter(fd, hdr.page_size)
            for pgno, page in dec.pages():
                writer.write(pgno, page)
            writer.flush()
            last = hdr
    assert last is not None
    return last


def integrity_check(path: str | os.PathLike[str], mode: str = "full") -> str | None:
    """Run PRAGMA integrity_check (or quick_check); None when SQLite says ok, else its report."""
    if mode not in INTEGRITY_CHECKS or mode == "none":
        raise ValueError(f"unknown integrity check {mode!r}")
    import apsw

    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        pragma = "integrity_check" if mode == "full" else "quick_check"
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}")]
    finally:
        conn.close()
    return None if rows == ["ok"] else "; ".join(rows[:5])


def restore_file(replica: Replica, plan: Sequence[LTXFileInfo], out: str | os.PathLike[str], *,
                 force: bool = False, parallelism: int = DEFAULT_RESTORE_PARALLELISM,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, progress: ProgressCallback | None = None,
                 integrity: str = "none") -> RestoreResult:
    """Write the database that `plan` describes to `out` via `out.tmp`, fsync and rename. The last
    file's commit must agree with the database size page 1 records (CommitSizeError otherwise),
    unless `force` (which also overwrites an existing `out`)."""
    out_path = Path(out)
    _check_output(out_path, force)
    if integrity not in INTEGRITY_CHECKS:
        raise ValueError(f"unknown integrity check {integrity!r}")
    tmp = Path(f"{out_path}.tmp")
    with _naming(out_path, tmp):
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return _restore_via(tmp, replica, plan, out_path, force=force, parallelism=parallelism,
                            chunk_size=chunk_size, progress=progress, integrity=integrity)


@contextmanager
def _naming(out_path: Path, tmp: Path) -> Iterator[None]:
    """An OSError about the temporary file names the output the user gave instead."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and os.fspath(exc.filename) == str(tmp):
            raise OSError(exc.errno, exc.strerror, str(out_path)) from exc
        raise


def _restore_via(tmp: Path, replica: Replica, plan: Sequence[LTXFileInfo], out_path: Path, *, force: bool,
                 parallelism: int, chunk_size: int, progress: ProgressCallback | None,
                 integrity: str) -> RestoreResult:
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            last = apply_plan(replica.store, files_to_read(plan), fd, parallelism=parallelism,
                              chunk_size=chunk_size, progress=progress)
            if not force:  # before the cut: a hostile commit would make a file of terabytes
                check_commit(plan[-1].key, last.commit, os.pread(fd, DB_HEADER_SIZE, 0),
                             "a damaged or hostile header: --force restores to its commit anyway")
            os.ftruncate(fd, last.commit * last.page_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            for suffix in SIDE_FILE_SUFFIXES:
                Path(f"{out_path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out_path.parent)
    if integrity != "none":
        problem = integrity_check(out_path, integrity)
        if problem is not None:
            for candidate in (str(out_path), *(f"{out_path}{s}" for s in SIDE_FILE_SUFFIXES)):
                Path(candidate).unlink(missing_ok=True)
            raise IntegrityCheckError(str(out_path), problem)
    read = files_to_read(plan)
    return RestoreResult(str(out_path), plan[-1].max_txid, last.page_size, last.commit, tuple(read),
                         sum(f.size for f in read))


def restore(replica: Replica, out: str | os.PathLike[str], *, txid: int = 0, timestamp: datetime | None = None,
            force: bool = False, parallelism: int = DEFAULT_RESTORE_PARALLELISM,
            chunk_size: int = DEFAULT_CHUNK_SIZE, progress: ProgressCallback | None = None,
            integrity: str = "none") -> RestoreResult:
    """Restore `replica` to `out` at `txid` (0: the latest) or as of `timestamp`, as `litestream
    restore` would: same plan, same bytes."""
    _check_output(Path(out), force)
    levels = replica.list_levels(parallelism=max(parallelism, 1))
    plan = restore_plan(levels, txid, timestamp, replica.url)
    return restore_file(replica, plan, out, force=force, parallelism=parallelism, chunk_size=chunk_size,
                        progress=progress, integrity=integrity)


