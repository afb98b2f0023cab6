"""Random access to an LTX file in a store: its page index from the tail, then pages by entry.

The tail of a file is `index | u64 index length | trailer (16)`. A reader fetches a guess of the
tail in one suffix GET and, only when the index is longer, the rest in a second GET.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ltx.decoder import Decoder
from ltx.errors import LTXError, LTXIndexError, LTXTruncatedError
from ltx.frame import PAGE_HEADER_SIZE, decode_frame
from ltx.header import HEADER_SIZE, Header
from ltx.index import INDEX_SIZE_FIELD, IndexEntry, PageIndex
from ltx.store.base import ObjectStore
from ltx.trailer import TRAILER_SIZE, Trailer

#: Bytes of a file's tail fetched to find its index (Litestream's VFS guesses 32 KiB too).
DEFAULT_INDEX_FETCH_SIZE = 32 * 1024
_U64 = struct.Struct(">Q")
_MIN_FILE = HEADER_SIZE + PAGE_HEADER_SIZE + 1 + INDEX_SIZE_FIELD + TRAILER_SIZE


@dataclass(frozen=True)
class FileIndex:
    """A file's page index and trailer, with its header when the fetched tail reached the start."""

    name: str
    size: int
    index: PageIndex
    trailer: Trailer
    header: Header | None


def tail_length_needed(tail: bytes, file_size: int, name: str) -> int:
    """How many tail bytes hold the index, length field and trailer (check before decoding)."""
    if file_size < _MIN_FILE:
        raise LTXTruncatedError(name, file_size, f"{file_size} bytes is too small for an LTX file")
    if len(tail) < INDEX_SIZE_FIELD + TRAILER_SIZE:
        raise LTXTruncatedError(name, file_size - len(tail), "tail too short to hold the index length")
    (index_size,) = _U64.unpack_from(tail, len(tail) - TRAILER_SIZE - INDEX_SIZE_FIELD)
    need = index_size + INDEX_SIZE_FIELD + TRAILER_SIZE
    if index_size < 1 or need > file_size - HEADER_SIZE - PAGE_HEADER_SIZE:
        raise LTXIndexError(name, file_size - TRAILER_SIZE - INDEX_SIZE_FIELD,
                            f"index length {index_size} does not fit a {file_size}-byte file")
    return need


def decode_tail(tail: bytes, file_size: int, name: str) -> FileIndex:
    """Decode index and trailer from a tail of at least `tail_length_needed` bytes. A tail that
    is the whole file is verified whole (every page, the file checksum): its frames are about to
    be used, and a whole file read is always checked (DESIGN.md §5.4)."""
    need = tail_length_needed(tail, file_size, name)
    view = memoryview(tail)[len(tail) - need:]
    index_start = file_size - need
    index = PageIndex.decode(view[:need - TRAILER_SIZE], name, index_start)
    index.validate(name, index_start - PAGE_HEADER_SIZE, HEADER_SIZE)
    trailer = Trailer.decode(bytes(view[need - TRAILER_SIZE:]), name, file_size - TRAILER_SIZE)
    header = Header.decode(tail[:HEADER_SIZE], name) if len(tail) == file_size else None
    if header is not None:
        header.validate(name)
        trailer.validate(header, name, file_size - TRAILER_SIZE)
        _check_whole_file(tail, name, index, header.page_size)
    return FileIndex(name, file_size, index, trailer, header)


def _check_whole_file(data: bytes, name: str, index: PageIndex, page_size: int) -> None:
    """Verify a whole file (every page, the file checksum). Damage that a frame's own checks pin
    on one page (its page header, size field or LZ4 block) is left to whoever reads that page,
    which reports it then; damage only the checksum sees (a changed literal byte) is raised here."""
    try:
        Decoder(io.BytesIO(data), name).verify()
    except LTXError:
        view = memoryview(data)
        for e in index:
            try:
                decode_frame(view[e.offset:e.offset + e.size], page_size, name, e.offset, e.pgno)
            except LTXError:
                return
        raise


def read_file_index(store: ObjectStore, key: str, guess: int = DEFAULT_INDEX_FETCH_SIZE) -> FileIndex:
    """Fetch and decode a file's index: one suffix GET, a second only if the index is longer."""
    tail, size = store.get_suffix(key, guess)
    need = tail_length_needed(tail, size, key)
    if need > len(tail):
        tail = store.get_range(key, size - need, need - len(tail)) + tail
    return decode_tail(tail, size, key)


def read_header(store: ObjectStore, key: str) -> Header:
    """Fetch and validate a file's 100-byte header."""
    header = Header.decode(store.get_range(key, 0, HEADER_SIZE), key)
    header.validate(key)
    return header


def adjacent_runs(entries: Sequence[IndexEntry]) -> list[list[IndexEntry]]:
    """Group index entries (ascending offsets) into runs of frames that touch each other."""
    runs: list[list[IndexEntry]] = []
    for e in entries:
        if runs and runs[-1][-1].offset + runs[-1][-1].size == e.offset:
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def decode_run(data: bytes, run: Sequence[IndexEntry], page_size: int, name: str) -> list[tuple[int, bytes]]:
    """Decode the frames of one fetched run (bytes from run[0].offset)."""
    base = run[0].offset
    view = memoryview(data)
    out = []
    for e in run:
        start = e.offset - base
        if start + e.size > len(data):
            raise LTXTruncatedError(name, e.offset, f"page {e.pgno}: fetched run ends before its frame")
        out.append(decode_frame(view[start:start + e.size], page_size, name, e.offset, e.pgno))
    return out


def read_pages(store: ObjectStore, key: str, entries: Sequence[IndexEntry], page_size: int) -> list[tuple[int, bytes]]:
    """Fetch pages by index entry, one Range GET per run of adjacent frames."""
    out: list[tuple[int, bytes]] = []
    for run in adjacent_runs(sorted(entries, key=lambda e: e.offset)):
        length = run[-1].offset + run[-1].size - run[0].offset
        out.extend(decode_run(store.get_range(key, run[0].offset, length), run, page_size, key))
    return out
