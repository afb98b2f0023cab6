"""Seed a replica from an existing SQLite database: one snapshot at TXID 1, at level 0 and 9.

A consistent image of a live database (WAL mode included) is taken with SQLite's online backup
API into a temporary file, in one step, so the source is read under a single read transaction.
That image is then streamed page by page through the encoder; memory stays bounded.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import apsw

from ltx.clifmt import Progress, ProgressReader
from ltx.encoder import Encoder
from ltx.header import FLAG_NO_CHECKSUM, Header, is_valid_page_size, lock_pgno
from ltx.hint import HintHeader, hint_pages_of_image, select_hint_pages, write_hint
from ltx.pagesums import PageSums, needs_sums
from ltx.plan import SNAPSHOT_LEVEL
from ltx.replica import LEVELS, Replica

#: The TXID an imported snapshot gets (the first transaction of a new history).
IMPORT_TXID = 1
#: Levels an import writes its snapshot to: level 0 (the history) and level 9 (snapshots).
IMPORT_LEVELS = (0, SNAPSHOT_LEVEL)
#: Bytes read from the image per chunk.
READ_CHUNK_PAGES = 256
SQLITE_HEADER = b"SQLite format 3\x00"


class DatabaseImportError(Exception):
    """The database cannot be imported."""


class SourceDatabaseError(DatabaseImportError):
    """The source is missing or not a usable SQLite database."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ReplicaNotEmptyError(DatabaseImportError):
    """The replica already holds LTX files and `force` was not given."""

    def __init__(self, url: str, files: int) -> None:
        self.url = url
        self.files = files
        super().__init__(f"{url}: replica is not empty ({files} LTX files; use --force to replace them)")


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote."""

    keys: tuple[str, ...]
    page_size: int
    commit: int
    file_size: int
    deleted: int


def backup_image(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy a consistent image of `source` (committed state, WAL applied) into the file `dest`."""
    path = str(source)
    if not os.path.isfile(path):
        raise SourceDatabaseError(path, "no such database file")
    try:
        src = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        raise SourceDatabaseError(path, f"cannot open: {exc}") from exc
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        if src.execute("PRAGMA page_count").fetchall()[0][0] == 0:
            raise SourceDatabaseError(path, "the database is empty (no pages)")
        dst = apsw.Connection(str(dest))
        try:
            with dst.backup("main", src, "main") as backup:
                backup.step(-1)  # all pages in one step: one read transaction on the source
        finally:
            dst.close()
    except apsw.NotADBError as exc:
        raise SourceDatabaseError(path, "not a SQLite database") from exc
    except apsw.Error as exc:
        raise SourceDatabaseError(path, f"cannot read: {exc}") from exc
    finally:
        src.close()


def image_page_size(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(SQLITE_HEADER):
        raise SourceDatabaseError(str(path), "the database image has no SQLite header")
    (raw,) = struct.unpack_from(">H", head, 16)
    page_size = 65536 if raw == 1 else raw
    if not is_valid_page_size(page_size):
        raise SourceDatabaseError(str(path), f"invalid page size {page_size} in the header")
    return page_size


def encode_snapshot(image: str | os.PathLike[str], out: str | os.PathLike[str],
                    timestamp_ms: int) -> tuple[Header, PageSums]:
    """Encode the database file `image` as a TXID-1 snapshot into the file `out`; return its
    header and page checksums."""
    page_size = image_page_size(image)
    size = os.path.getsize(image)
    if size % page_size:
        raise SourceDatabaseError(str(image), f"size {size} is not a multiple of the page size {page_size}")
    commit = size // page_size
    header = Header(page_size=page_size, commit=commit, min_txid=IMPORT_TXID, max_txid=IMPORT_TXID,
                    timestamp=timestamp_ms, flags=FLAG_NO_CHECKSUM)
    lock = lock_pgno(page_size)
    with open(image, "rb") as src, open(out, "wb") as dst:
        enc = Encoder(dst, header, str(out), with_sums=True)
        pgno = 1
        while True:
            chunk = src.read(page_size * READ_CHUNK_PAGES)
            if not chunk:
                break
            view = memoryview(chunk)
            for off in range(0, len(chunk), page_size):
                if pgno != lock:
                    enc.write_page(pgno, view[off:off + page_size])
                pgno += 1
        enc.close()
        dst.flush()
        os.fsync(dst.fileno())
    return header, enc.page_sums


def _offset_progress(progress: Progress, before: int, total: int) -> Progress:
    """`progress` for one of several uploads: its bytes counted after `before`, out of `total`."""
    return lambda done, _size: progress(before + done, total)


def import_database(source: str | os.PathLike[str], replica: Replica, *, force: bool = False,
                    tmpdir: str | None = None, timestamp_ms: int | None = None,
                    progress: Progress | None = None) -> ImportResult:
    """Write a snapshot of `source` as TXID 1 to levels 0 and 9 of an empty `replica` (with
    `force`, every file already there is deleted first). `progress` is called with the bytes
    uploaded so far and in all."""
    existing = [f for files in replica.list_levels(LEVELS).values() for f in files]
    if existing and not force:
        raise ReplicaNotEmptyError(replica.url, len(existing))
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    with tempfile.TemporaryDirectory(prefix="ltxctl-import-", dir=tmpdir) as work:
        image = Path(work) / "image.db"
        backup_image(source, image)
        if os.path.getsize(image) == 0:
            raise SourceDatabaseError(str(source), "the database is empty (no pages)")
        snapshot = Path(work) / "snapshot.ltx"
        header, sums = encode_snapshot(image, snapshot, ts)
        hint_pages = select_hint_pages(hint_pages_of_image(image, header.page_size))
        image.unlink()
        for f in existing:
            replica.delete_file(f)
        keys = []
        size = os.path.getsize(snapshot)
        total = size * len(IMPORT_LEVELS)
        for n, level in enumerate(IMPORT_LEVELS):
            if needs_sums(size):
                replica.put_sums(replica.key(level, IMPORT_TXID, IMPORT_TXID), sums, ts)
            with open(snapshot, "rb") as data:
                body: BinaryIO = data
                if progress is not None:
                    body = ProgressReader(data, _offset_progress(progress, n * size, total), size)  # type: ignore[assignment]
                keys.append(replica.put_file(level, IMPORT_TXID, IMPORT_TXID, body, timestamp_ms=ts, if_absent=True))
    # The hint (page 1 and the top levels of every b-tree) lets a cold reader start any descent at once.
    write_hint(replica.store, HintHeader(header.page_size, header.commit, IMPORT_TXID, ts, len(hint_pages)),
               hint_pages)
    return ImportResult(tuple(keys), header.page_size, header.commit, size, len(existing))
