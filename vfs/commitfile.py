"""One commit as an LTX file: the changed pages of a transaction (or of a group of them) encoded
for level 0, in memory when small and in an anonymous local temporary file when large.

The file's `commit` is the database size SQLite recorded in page 1 (bytes 28..31, valid when the
change counter at 24 equals the version-valid-for number at 92): SQLite shrinks the file itself
only after the journal is finalized, so at the commit point the file may still be longer than the
database. Pages above the commit are left out; pages between the lowest truncation and the commit
that the transaction did not write are zeros (a real file reads so) and are written as such, and
a snapshot (TXID 1) holds every page 1..commit.
"""

from __future__ import annotations

import io
import struct
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from ltx.dbheader import header_db_size
from ltx.encoder import Encoder
from ltx.header import Header, lock_pgno
from ltx.index import PageIndex
from ltx.names import format_filename
from ltx.pagesums import PageSums, needs_sums
from vfs.dirty import DirtyPages

#: Encoded commits whose pages total more than this go to a temporary file instead of memory.
MEMORY_LIMIT = 8 * 1024 * 1024

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class PageSizeChangeError(ValueError):
    """A transaction changed the page size of a database that already has one (LTX files of one
    replica share a page size)."""

    def __init__(self, old: int, new: int) -> None:
        self.old = old
        self.new = new
        super().__init__(f"the page size cannot change from {old} to {new} (VACUUM after PRAGMA page_size "
                         f"is not supported on an ltxvfs database)")


def header_page_size(page1: bytes) -> int:
    """The page size recorded in a database header (bytes 16..17; 1 means 65536)."""
    value = _U16.unpack_from(page1, 16)[0]
    return 65536 if value == 1 else value


def header_commit(page1: bytes | None, fallback: int) -> int:
    """The in-header database size of page 1 when SQLite marked it valid, else `fallback`."""
    size = header_db_size(page1)
    return fallback if size is None else size


@dataclass
class EncodedCommit:
    """An encoded LTX file, ready to put, and what the view needs to read from it afterwards."""

    header: Header
    index: PageIndex
    size: int
    #: The bytes (small files) or an open temporary file positioned anywhere (large ones).
    data: bytes | BinaryIO
    #: The page checksum sidecar to put before the file (None: small enough to be read whole).
    sums: PageSums | None = None

    @property
    def name(self) -> str:
        return format_filename(self.header.min_txid, self.header.max_txid)

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.header.timestamp / 1000, UTC)

    def stream(self) -> bytes | BinaryIO:
        """What to hand to a store's put (a file is rewound first)."""
        if not isinstance(self.data, bytes):
            self.data.seek(0)
        return self.data

    def close(self) -> None:
        if not isinstance(self.data, bytes):
            self.data.close()


def commit_pgnos(pages: DirtyPages, commit: int, snapshot: bool) -> list[int]:
    """Page numbers the file must hold, ascending (never the lock page, never past `commit`)."""
    lock = lock_pgno(pages.page_size)
    if snapshot:
        return [p for p in range(1, commit + 1) if p != lock]
    held = [p for p in pages.pgnos() if p <= commit]
    if pages.cut >= commit:
        return [p for p in held if p != lock]
    holes = [p for p in range(pages.cut + 1, commit + 1) if p not in pages]
    return sorted({*held, *holes} - {lock})


def encode_commit(pages: DirtyPages, *, commit: int, txid: int, timestamp_ms: int, snapshot: bool,
                  spill_dir: str | None = None) -> EncodedCommit:
    """Encode the pages of one commit (TXID `txid`, database size `commit`) as an LTX file."""
    ps = pages.page_size
    header = Header(page_size=ps, commit=commit, min_txid=txid, max_txid=txid, timestamp=timestamp_ms)
    pgnos = commit_pgnos(pages, commit, snapshot)
    out: BinaryIO
    if len(pgnos) * ps <= MEMORY_LIMIT:
        out = io.BytesIO()
    else:
        # Named, so that the hydrator can open it too; deleted when closed.
        out = tempfile.NamedTemporaryFile(  # type: ignore[assignment]  # noqa: SIM115 - returned open
            prefix="ltxvfs-commit-", suffix=".ltx", dir=spill_dir)
    name = format_filename(txid, txid)
    try:
        enc = Encoder(out, header, name, with_sums=True)
        zero = bytes(ps)
        for pgno in pgnos:
            page = pages.get(pgno)
            enc.write_page(pgno, zero if page is None else page)
        enc.close()
    except BaseException:
        out.close()
        raise
    data: bytes | BinaryIO = out.getvalue() if isinstance(out, io.BytesIO) else out
    sums = enc.page_sums if needs_sums(enc.n) else None
    return EncodedCommit(header=header, index=enc.index, size=enc.n, data=data, sums=sums)

