"""The streaming encoder: file layout, the file checksum as LTX.md defines it, and its refusals."""

from __future__ import annotations

import io
import struct

import lz4.block
import pytest

from ltx.checksum import CHECKSUM_FLAG, crc64_update
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.errors import LTXEncodeError, LTXHeaderError
from ltx.frame import END_OF_PAGES, FRAME_PREFIX_SIZE, PAGE_FLAG_SIZE
from ltx.header import HEADER_SIZE, Header
from ltx.index import PageIndex
from ltx.trailer import TRAILER_SIZE
from tests.ltx.ltxfiles import decode, encode, make_pages, snapshot_pgnos


def test_crc64_go_iso_check_value_and_continuation() -> None:
    assert crc64_update(0, b"123456789") == 0xB90956C775A41001
    assert crc64_update(crc64_update(0, b"1234"), b"56789") == 0xB90956C775A41001


def split_file(data: bytes) -> tuple[bytes, list[tuple[int, int, bytes]], bytes, bytes, bytes]:
    """Walk a file by hand: header, frames (pgno, flags, block), end marker, index, trailer."""
    header = data[:HEADER_SIZE]
    pos = HEADER_SIZE
    frames = []
    while True:
        pgno, flags = struct.unpack_from(">IH", data, pos)
        if pgno == 0 and flags == 0:
            break
        (size,) = struct.unpack_from(">I", data, pos + 6)
        frames.append((pgno, flags, data[pos + FRAME_PREFIX_SIZE:pos + FRAME_PREFIX_SIZE + size]))
        pos += FRAME_PREFIX_SIZE + size
    end = data[pos:pos + 6]
    index = data[pos + 6:len(data) - TRAILER_SIZE]
    return header, frames, end, index, data[-TRAILER_SIZE:]


@pytest.mark.parametrize("page_size", [512, 4096, 16384])
def test_snapshot_layout_and_checksum(page_size: int) -> None:
    header = Header(page_size=page_size, commit=7, min_txid=1, max_txid=3, timestamp=1_700_000_000_123)
    pages = make_pages(page_size, page_size, snapshot_pgnos(header))
    data = encode(header, pages)
    raw_header, frames, end, raw_index, trailer = split_file(data)
    assert raw_header == header.encode()
    assert [f[0] for f in frames] == list(range(1, 8))
    assert all(flags == PAGE_FLAG_SIZE for _, flags, _ in frames)
    for pgno, _, block in frames:
        assert lz4.block.decompress(block, uncompressed_size=page_size) == pages[pgno]
    assert end == END_OF_PAGES

    index = PageIndex.decode(raw_index)
    offset = HEADER_SIZE
    for entry, (pgno, _, block) in zip(index, frames, strict=True):
        assert (entry.pgno, entry.offset, entry.size) == (pgno, offset, FRAME_PREFIX_SIZE + len(block))
        offset += entry.size
    (index_size,) = struct.unpack(">Q", raw_index[-8:])
    assert len(data) - TRAILER_SIZE - 8 - index_size == offset + 6

    # The file checksum: header, each frame prefix with the decompressed page, end marker, index,
    # post-apply checksum; stored with bit 63 set.
    post, stored = struct.unpack(">QQ", trailer)
    crc = crc64_update(0, raw_header)
    for pgno, flags, block in frames:
        crc = crc64_update(crc, struct.pack(">IHI", pgno, flags, len(block)) + pages[pgno])
    crc = crc64_update(crc, end + raw_index + struct.pack(">Q", post))
    assert post == 0
    assert stored == CHECKSUM_FLAG | crc


def test_close_returns_the_trailer_and_is_idempotent() -> None:
    out = io.BytesIO()
    enc = Encoder(out, Header(page_size=1024, commit=1, min_txid=1, max_txid=1), "c.ltx")
    enc.write_page(1, bytes(1024))
    trailer = enc.close()
    size = len(out.getvalue())
    assert enc.close() == trailer
    assert len(out.getvalue()) == size == enc.n
    assert struct.unpack(">Q", out.getvalue()[-8:])[0] == trailer.file_checksum
    assert enc.page_count == 1 and enc.index.find(1) is not None


def test_incremental_with_gaps_round_trips() -> None:
    header = Header(page_size=4096, commit=500, min_txid=10, max_txid=12, timestamp=5)
    pages = make_pages(3, 4096, [2, 3, 99, 400, 500])
    got_header, got = decode(encode(header, pages))
    assert got_header == header
    assert got == pages


def decoded_pgnos(data: bytes) -> list[int]:
    """Page numbers of a fully verified file, without holding its pages."""
    return [pgno for pgno, _ in Decoder(io.BytesIO(data), "lock.ltx").pages()]


def test_snapshot_skips_the_lock_page() -> None:
    header = Header(page_size=65536, commit=16386, min_txid=1, max_txid=1)
    assert header.lock_pgno == 16385
    zero = bytes(65536)
    pgnos = snapshot_pgnos(header)
    assert header.lock_pgno not in pgnos and pgnos[-1] == 16386
    data = encode(header, dict.fromkeys(pgnos, zero))
    assert decoded_pgnos(data) == pgnos


def test_snapshot_may_end_just_before_the_lock_page() -> None:
    header = Header(page_size=65536, commit=16385, min_txid=1, max_txid=1)
    pgnos = decoded_pgnos(encode(header, dict.fromkeys(snapshot_pgnos(header), bytes(65536))))
    assert pgnos[-1] == 16384 and len(pgnos) == 16384


def encoder(commit: int = 10, min_txid: int = 2, page_size: int = 1024) -> Encoder:
    return Encoder(io.BytesIO(), Header(page_size=page_size, commit=commit, min_txid=min_txid, max_txid=min_txid),
                   "enc.ltx")


def test_refuses_a_page_of_the_wrong_length() -> None:
    with pytest.raises(LTXEncodeError, match="enc.ltx.*page size"):
        encoder().write_page(1, bytes(1000))


@pytest.mark.parametrize("pgno", [0, -1, 11])
def test_refuses_page_numbers_out_of_range(pgno: int) -> None:
    with pytest.raises(LTXEncodeError, match="enc.ltx.*out of range"):
        encoder().write_page(pgno, bytes(1024))


def test_refuses_the_lock_page() -> None:
    enc = encoder(commit=1_100_000, page_size=1024)
    with pytest.raises(LTXEncodeError, match="lock page"):
        enc.write_page(1048577, bytes(1024))


@pytest.mark.parametrize("second", [3, 2])
def test_incremental_refuses_pages_out_of_order(second: int) -> None:
    enc = encoder()
    enc.write_page(3, bytes(1024))
    with pytest.raises(LTXEncodeError, match=f"page {second} after page 3"):
        enc.write_page(second, bytes(1024))


def test_snapshot_refuses_a_gap() -> None:
    enc = encoder(min_txid=1)
    enc.write_page(1, bytes(1024))
    with pytest.raises(LTXEncodeError, match="snapshot page 3 where 2 was due"):
        enc.write_page(3, bytes(1024))


def test_snapshot_refuses_to_close_short() -> None:
    enc = encoder(min_txid=1, commit=3)
    enc.write_page(1, bytes(1024))
    enc.write_page(2, bytes(1024))
    with pytest.raises(LTXEncodeError, match="snapshot ends at page 2, commit is 3"):
        enc.close()


def test_refuses_pages_after_close() -> None:
    enc = encoder()
    enc.close()
    with pytest.raises(LTXEncodeError, match="closed"):
        enc.write_page(1, bytes(1024))


def test_refuses_an_invalid_header() -> None:
    with pytest.raises(LTXHeaderError, match="enc.ltx"):
        Encoder(io.BytesIO(), Header(page_size=4096, commit=1, min_txid=3, max_txid=2), "enc.ltx")


def test_empty_incremental_is_valid() -> None:
    header = Header(page_size=4096, commit=5, min_txid=4, max_txid=4)
    assert decode(encode(header, {})) == (header, {})
