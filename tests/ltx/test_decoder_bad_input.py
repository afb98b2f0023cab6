"""Bad input, one case per test: the decoder raises the specific error, naming the file.

Crafted files carry a correct file checksum (see `assemble`) so the check under test, not the
checksum, is what fails.
"""

from __future__ import annotations

import io
import re
import struct
import tracemalloc

import lz4.block
import pytest

from ltx.checksum import CHECKSUM_FLAG
from ltx.decoder import READ_SIZE, Decoder
from ltx.errors import (
    LTXChecksumError,
    LTXCompressionError,
    LTXError,
    LTXFlagsError,
    LTXHeaderError,
    LTXIndexError,
    LTXLockPageError,
    LTXMagicError,
    LTXPageError,
    LTXPageOrderError,
    LTXPageSizeError,
    LTXTrailerError,
    LTXTruncatedError,
)
from ltx.frame import FRAME_PREFIX_SIZE, PAGE_FLAG_SIZE
from ltx.header import HEADER_SIZE, Header
from tests.ltx.ltxfiles import RawFrame, assemble, frames_of, incremental, index_of, make_pages, snapshot, true_index

#: Every test here runs through the C frame loop and through the Python one (tests/ltx/conftest.py).
pytestmark = pytest.mark.usefixtures("frame_loop")

NAME = "s3://bucket/db/0000/0000000000000005-0000000000000005.ltx"


def decode_fails(data: bytes, error: type[LTXError]) -> LTXError:
    """Decode fully; assert it raises exactly `error` (or a subclass) and names the file."""
    with pytest.raises(LTXError) as info:
        dec = Decoder(io.BytesIO(data), NAME)
        for _ in dec.pages():
            pass
    assert isinstance(info.value, error), f"expected {error.__name__}, got {info.value!r}"
    assert info.value.name == NAME and NAME in str(info.value)
    assert 0 <= info.value.offset <= len(data)
    return info.value


def good_file() -> tuple[bytes, dict[int, bytes]]:
    return incremental(4096, commit=20, pgnos=[2, 5, 6, 19], min_txid=5)


def frame_offsets(data: bytes) -> list[int]:
    """Offsets of each page frame, then of the end marker."""
    offsets = [HEADER_SIZE]
    while struct.unpack_from(">I", data, offsets[-1])[0] != 0:
        (size,) = struct.unpack_from(">I", data, offsets[-1] + 6)
        offsets.append(offsets[-1] + FRAME_PREFIX_SIZE + size)
    return offsets


def cut_points() -> list[int]:
    data, _ = good_file()
    frames = frame_offsets(data)
    end = frames[-1]
    return [0, 3, 50, 99, 100, 104, 108, frames[1] + 20, frames[2] - 1, end, end + 3, end + 6, end + 10,
            len(data) - 24, len(data) - 17, len(data) - 16, len(data) - 9, len(data) - 1]


@pytest.mark.parametrize("cut", cut_points())
def test_truncated_file(cut: int) -> None:
    data, _ = good_file()
    err = decode_fails(data[:cut], LTXTruncatedError)
    assert err.offset <= cut


def test_empty_file() -> None:
    decode_fails(b"", LTXTruncatedError)


def test_wrong_magic() -> None:
    data, _ = good_file()
    err = decode_fails(b"LTX2" + data[4:], LTXMagicError)
    assert err.offset == 0


def test_sqlite_file_is_not_ltx() -> None:
    decode_fails(b"SQLite format 3\x00" + bytes(200), LTXMagicError)


def test_unknown_header_flags() -> None:
    data, _ = good_file()
    err = decode_fails(data[:4] + struct.pack(">I", 0x3) + data[8:], LTXFlagsError)
    assert err.offset == 4


def test_invalid_page_size() -> None:
    data, _ = good_file()
    decode_fails(data[:8] + struct.pack(">I", 3000) + data[12:], LTXPageSizeError)


def test_zero_min_txid() -> None:
    data, _ = good_file()
    decode_fails(data[:16] + struct.pack(">Q", 0) + data[24:], LTXHeaderError)


def test_unknown_page_flags() -> None:
    pages = make_pages(1, 1024, [3, 4])
    frames = frames_of(pages)
    frames[1].flags = PAGE_FLAG_SIZE | 0x4
    data = assemble(Header(page_size=1024, commit=4, min_txid=2, max_txid=2), frames)
    err = decode_fails(data, LTXPageError)
    assert "page 4" in str(err) and "flags" in str(err)


def test_lock_page_present() -> None:
    header = Header(page_size=512, commit=2097160, min_txid=7, max_txid=7)
    lock = header.lock_pgno
    pages = make_pages(2, 512, [5, lock, lock + 1])
    data = assemble(header, frames_of(pages))
    err = decode_fails(data, LTXLockPageError)
    assert str(lock) in str(err)


def test_pages_out_of_order() -> None:
    pages = make_pages(3, 1024, [4, 9])
    frames = frames_of(pages)[::-1]
    err = decode_fails(assemble(Header(page_size=1024, commit=9, min_txid=2, max_txid=2), frames), LTXPageOrderError)
    assert "page 4 follows page 9" in str(err)


def test_page_repeated() -> None:
    pages = make_pages(3, 1024, [4])
    frames = frames_of(pages) * 2
    decode_fails(assemble(Header(page_size=1024, commit=9, min_txid=2, max_txid=2), frames), LTXPageOrderError)


def test_snapshot_with_a_gap() -> None:
    pages = make_pages(4, 1024, [1, 2, 4])
    data = assemble(Header(page_size=1024, commit=4, min_txid=1, max_txid=1), frames_of(pages))
    assert "page 4 where 3 was due" in str(decode_fails(data, LTXPageOrderError))


def test_snapshot_missing_its_last_pages() -> None:
    pages = make_pages(4, 1024, [1, 2])
    data = assemble(Header(page_size=1024, commit=4, min_txid=1, max_txid=1), frames_of(pages))
    assert "commit is 4" in str(decode_fails(data, LTXPageOrderError))


def test_page_beyond_the_commit() -> None:
    pages = make_pages(5, 1024, [2, 11])
    data = assemble(Header(page_size=1024, commit=10, min_txid=2, max_txid=2), frames_of(pages))
    assert "beyond the commit" in str(decode_fails(data, LTXPageError))


@pytest.mark.parametrize(("lie", "says"), [
    ("offset", "entry 2 .* must start at"),  # the entry that breaks contiguity is named
    ("size", "entry 3 .* must start at"),  # a wrong size moves the next entry's expected start
    ("pgno", "other page numbers"),
    ("missing", "lists 2 pages, the file holds 3"),
    ("extra", "4 or more entries"),
    ("sizes", "other frame sizes"),  # two sizes swapped: contiguous, same extent, still wrong
    ("order", "out of order"),
])
def test_index_disagrees_with_frames(lie: str, says: str) -> None:
    header = Header(page_size=1024, commit=30, min_txid=2, max_txid=2)
    frames = frames_of(make_pages(6, 1024, [3, 10, 20]))
    triples = true_index(frames)
    p, o, s = triples[1]
    if lie == "offset":
        triples[1] = (p, o + 1, s)
    elif lie == "size":
        triples[1] = (p, o, s - 1)
    elif lie == "pgno":
        triples[1] = (11, o, s)
    elif lie == "missing":
        del triples[2]
    elif lie == "extra":
        triples.append((25, triples[2][1] + triples[2][2], 12))
    elif lie == "sizes":
        (p0, o0, s0), (p1, _, s1) = triples[0], triples[1]
        assert s0 != s1
        triples[0], triples[1] = (p0, o0, s1), (p1, o0 + s1, s0)
    else:
        triples[1] = (2, o, s)
    err = decode_fails(assemble(header, frames, index=index_of(triples)), LTXIndexError)
    assert re.search(says, str(err)), str(err)


def test_index_length_field_wrong() -> None:
    header = Header(page_size=1024, commit=30, min_txid=2, max_txid=2)
    frames = frames_of(make_pages(6, 1024, [3, 10]))
    raw = index_of(true_index(frames))
    bad = raw[:-8] + struct.pack(">Q", len(raw) - 8 + 2)
    decode_fails(assemble(header, frames, index=bad), LTXIndexError)


def test_checksum_mismatch_in_trailer() -> None:
    data, _ = good_file()
    (stored,) = struct.unpack(">Q", data[-8:])
    err = decode_fails(data[:-8] + struct.pack(">Q", stored ^ 0x10), LTXChecksumError)
    assert isinstance(err, LTXChecksumError) and err.expected == stored ^ 0x10 and err.actual == stored


def test_checksum_catches_a_changed_page_byte() -> None:
    """An LZ4 literal changed in place still decodes to a full page: only the checksum can tell."""
    page = bytes(range(256)) * 4
    block = lz4.block.compress(page, store_size=False)
    data = bytearray(assemble(Header(page_size=1024, commit=1, min_txid=3, max_txid=3), [RawFrame(1, page, block)]))
    literal = HEADER_SIZE + FRAME_PREFIX_SIZE + block.index(bytes(range(100, 108)))
    data[literal] ^= 0xFF
    decode_fails(bytes(data), LTXChecksumError)


def test_lz4_block_decodes_to_the_wrong_size() -> None:
    page = make_pages(7, 4096, [1])[1]
    short_block = lz4.block.compress(page[:4000], store_size=False)
    data = assemble(Header(page_size=4096, commit=2, min_txid=4, max_txid=4), [RawFrame(2, page, short_block)])
    err = decode_fails(data, LTXCompressionError)
    assert "page 2" in str(err)


def test_lz4_block_is_garbage() -> None:
    page = bytes(1024)
    data = assemble(Header(page_size=1024, commit=2, min_txid=4, max_txid=4), [RawFrame(2, page, b"\xf0" * 30)])
    decode_fails(data, LTXCompressionError)


def test_absurd_compressed_size_is_refused_without_allocating_it() -> None:
    page = bytes(4096)
    frame = RawFrame(2, page, size_field=0xFFFFFFF0)
    data = assemble(Header(page_size=4096, commit=2, min_txid=4, max_txid=4), [frame])
    tracemalloc.start()
    try:
        err = decode_fails(data, LTXPageError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "compressed size" in str(err)
    assert peak < 1 << 20


def test_absurd_index_length_is_refused_without_reading_it() -> None:
    header = Header(page_size=1024, commit=3, min_txid=2, max_txid=2)
    frames = frames_of(make_pages(8, 1024, [3]))
    raw = index_of(true_index(frames))
    bad = raw[:-8] + struct.pack(">Q", 1 << 62)
    decode_fails(assemble(header, frames, index=bad), LTXIndexError)


class ReadRecorder(io.BytesIO):
    """A stream that remembers the largest read asked of it."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.largest = max(self.largest, (1 << 62) if size is None or size < 0 else size)
        return super().read(size)


def test_huge_index_is_refused_after_a_bounded_read() -> None:
    """An index listing far more entries than there are frames (about a megabyte of them) is refused
    from its first read: no read asks more than the read size, and most of it is never read."""
    header = Header(page_size=1024, commit=3, min_txid=2, max_txid=2)
    frames = frames_of(make_pages(8, 1024, [3]))
    triples = true_index(frames)
    offset = triples[0][1] + triples[0][2]
    for pgno in range(4, 150_000):
        triples.append((pgno, offset, 11))
        offset += 11
    data = assemble(header, frames, index=index_of(triples))
    src = ReadRecorder(data)
    with pytest.raises(LTXIndexError, match="or more entries, the file holds 1 pages"):
        Decoder(src, NAME).verify()
    assert src.largest <= READ_SIZE
    assert src.tell() <= len(data) // 2


def test_bytes_after_the_trailer() -> None:
    data, _ = good_file()
    err = decode_fails(data + b"\x00", LTXTrailerError)
    assert err.offset == len(data)


def test_many_bytes_after_the_trailer() -> None:
    data, _ = good_file()
    decode_fails(data + bytes(10_000), LTXTrailerError)


def test_post_apply_checksum_in_a_file_without_checksums() -> None:
    pages = make_pages(9, 1024, [1])
    data = assemble(Header(page_size=1024, commit=1, min_txid=2, max_txid=2), frames_of(pages),
                    post_apply=CHECKSUM_FLAG | 5)
    decode_fails(data, LTXTrailerError)


def test_file_checksum_without_its_flag_bit() -> None:
    data, _ = snapshot(1024, commit=2)
    (stored,) = struct.unpack(">Q", data[-8:])
    decode_fails(data[:-8] + struct.pack(">Q", stored & ~CHECKSUM_FLAG), LTXTrailerError)
