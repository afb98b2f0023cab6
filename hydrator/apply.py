"""Verify an LTX file in full, then apply its pages to the local database file.

A file is decoded once: its pages go to a spill (memory up to a limit, then a temporary file)
while the decoder checks frames, index, trailer and the file checksum. Only a file that passed
every check is applied: each page written at `(pgno - 1) * page_size` (applying files in TXID
order makes the latest page win), then the file truncated to the file's commit. A snapshot that
starts a hydration is decoded straight into a fresh file that later replaces the database.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from dataclasses import dataclass
from typing import IO, BinaryIO

from ltx.decoder import Decoder
from ltx.errors import LTXHeaderError
from ltx.header import Header
from ltx.names import format_txid
from ltx.plan import LTXFileInfo

#: Decoded pages of one file stay in memory up to this many bytes, then spill to a temporary file.
DEFAULT_SPILL_MEMORY = 8 * 1024 * 1024
#: Adjacent pages are gathered up to this many bytes into one write.
WRITE_BATCH_SIZE = 1024 * 1024


class HeaderMismatchError(LTXHeaderError):
    """A file's header disagrees with its name or with the database it is applied to."""


class PageWriter:
    """Writes pages at their offsets in `fd`, gathering adjacent ones into one pwrite."""

    def __init__(self, fd: int, page_size: int) -> None:
        self._fd = fd
        self._page_size = page_size
        self._buf = bytearray()
        self._start = 0
        self._next = 0
        self.pages = 0

    def write(self, pgno: int, page: bytes | memoryview) -> None:
        if pgno != self._next or len(self._buf) >= WRITE_BATCH_SIZE:
            self.flush()
            self._start = pgno
        self._buf += page
        self._next = pgno + 1
        self.pages += 1

    def flush(self) -> None:
        if not self._buf:
            return
        offset = (self._start - 1) * self._page_size
        view = memoryview(self._buf)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n
        self._buf = bytearray()


def check_header(header: Header, name: str, info: LTXFileInfo | None, page_size: int) -> None:
    """The header must carry the TXIDs of its name, and the page size of the database (if known)."""
    if info is not None and (header.min_txid, header.max_txid) != (info.min_txid, info.max_txid):
        raise HeaderMismatchError(name, 16, f"header holds TXIDs {format_txid(header.min_txid)}-"
                                            f"{format_txid(header.max_txid)}, its name says "
                                            f"{format_txid(info.min_txid)}-{format_txid(info.max_txid)}")
    if page_size and header.page_size != page_size:
        raise HeaderMismatchError(name, 8, f"page size {header.page_size} differs from the local "
                                           f"database's {page_size}")


@dataclass
class VerifiedFile:
    """A fully verified LTX file's pages, waiting in a spill to be applied."""

    name: str
    header: Header
    pgnos: array[int]
    spill: IO[bytes]
    size: int

    @property
    def page_count(self) -> int:
        return len(self.pgnos)

    def apply(self, fd: int) -> int:
        """Write the pages into `fd`, then cut it to the commit; return the pages written."""
        ps = self.header.page_size
        writer = PageWriter(fd, ps)
        self.spill.seek(0)
        for pgno in self.pgnos:
            page = self.spill.read(ps)
            if len(page) != ps:
                raise OSError(f"{self.name}: spill file lost page {pgno}")
            writer.write(pgno, page)
        writer.flush()
        os.ftruncate(fd, self.header.commit * ps)
        return writer.pages

    def close(self) -> None:
        self.spill.close()


def verify_to_spill(stream: BinaryIO, name: str, *, info: LTXFileInfo | None = None, page_size: int = 0,
                    spill_dir: str | None = None, spill_memory: int = DEFAULT_SPILL_MEMORY) -> VerifiedFile:
    """Decode the whole of `stream` (every check, checksum included) into a spill; raise LTXError
    (naming `name`) when anything is wrong, in which case nothing is kept."""
    dec = Decoder(stream, name)
    check_header(dec.header, name, info, page_size)
    spill: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=spill_memory, dir=spill_dir)
    pgnos: array[int] = array("L")
    try:
        for pgno, page in dec.pages():
            pgnos.append(pgno)
            spill.write(page)
    except BaseException:
        spill.close()
        raise
    return VerifiedFile(name, dec.header, pgnos, spill, dec.n)


def verify_snapshot_into(stream: BinaryIO, name: str, fd: int, *, info: LTXFileInfo | None = None) -> Header:
    """Decode a snapshot straight into the empty file `fd` and verify it; the caller renames the file
    into place only after this returns. Truncates to the commit and fsyncs."""
    dec = Decoder(stream, name)
    check_header(dec.header, name, info, 0)
    if not dec.header.is_snapshot:
        raise HeaderMismatchError(name, 16, "a hydration must start from a snapshot (min TXID 1)")
    writer = PageWriter(fd, dec.header.page_size)
    for pgno, page in dec.pages():
        writer.write(pgno, page)
    writer.flush()
    os.ftruncate(fd, dec.header.commit * dec.header.page_size)
    os.fsync(fd)
    return dec.header
