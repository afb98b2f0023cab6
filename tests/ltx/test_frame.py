"""Page frames: the 6-byte page header, the size field, and the raw LZ4 block."""

from __future__ import annotations

import random
import struct

import lz4.block
import pytest

from ltx.errors import LTXCompressionError, LTXPageError, LTXTruncatedError
from ltx.frame import (
    END_OF_PAGES,
    FRAME_PREFIX_SIZE,
    PAGE_FLAG_SIZE,
    PageHeader,
    decode_frame,
    decompress_page,
    encode_frame,
    lz4_bound,
)
from tests.ltx.ltxfiles import make_page


def test_page_header_layout() -> None:
    assert PageHeader(0x01020304).encode() == b"\x01\x02\x03\x04\x00\x01"
    assert PageHeader.decode(b"\x00\x00\x00\x07\x00\x01") == PageHeader(7, PAGE_FLAG_SIZE)


def test_end_marker_is_six_zero_bytes() -> None:
    assert END_OF_PAGES == bytes(6)
    assert PageHeader.decode(END_OF_PAGES).is_end
    assert not PageHeader(1).is_end


def test_short_page_header() -> None:
    with pytest.raises(LTXTruncatedError, match="f.ltx"):
        PageHeader.decode(b"\x00\x00\x00", "f.ltx", 100)


@pytest.mark.parametrize(
    ("header", "reason"),
    [(PageHeader(0, PAGE_FLAG_SIZE), "page number 0"),
     (PageHeader(3, PAGE_FLAG_SIZE | 0x2), "unknown page flags"),
     (PageHeader(3, 0x8000), "unknown page flags"),
     (PageHeader(3, 0), "legacy")],
)
def test_invalid_page_headers(header: PageHeader, reason: str) -> None:
    with pytest.raises(LTXPageError, match=reason) as info:
        header.validate("p.ltx", 1234)
    assert info.value.name == "p.ltx" and info.value.offset == 1234


@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_frame_round_trip(page_size: int) -> None:
    page = make_page(random.Random(page_size), page_size)
    frame = encode_frame(42, page)
    pgno, flags, size = struct.unpack_from(">IHI", frame)
    assert (pgno, flags, size) == (42, PAGE_FLAG_SIZE, len(frame) - FRAME_PREFIX_SIZE)
    assert lz4.block.decompress(frame[FRAME_PREFIX_SIZE:], uncompressed_size=page_size) == page
    assert decode_frame(frame, page_size, expect_pgno=42) == (42, page)


def test_incompressible_page_fits_the_lz4_bound() -> None:
    page = random.Random(7).randbytes(4096)
    frame = encode_frame(1, page)
    assert len(frame) - FRAME_PREFIX_SIZE <= lz4_bound(4096)
    assert lz4_bound(4096) == 4096 + 4096 // 255 + 16


def test_decode_frame_checks_the_expected_page_number() -> None:
    frame = encode_frame(5, bytes(1024))
    with pytest.raises(LTXPageError, match="index says 6"):
        decode_frame(frame, 1024, "f.ltx", 300, expect_pgno=6)


@pytest.mark.parametrize("delta", [-1, 1])
def test_decode_frame_checks_size_field_against_frame_length(delta: int) -> None:
    frame = encode_frame(5, bytes(1024))
    body = frame + b"\0" if delta > 0 else frame[:-1]
    with pytest.raises((LTXPageError,), match="size field"):
        decode_frame(body, 1024, "f.ltx", 300)


def test_decode_frame_too_short() -> None:
    with pytest.raises(LTXTruncatedError, match="f.ltx"):
        decode_frame(b"\0\0\0\1\0\1\0", 1024, "f.ltx")


def test_block_of_a_smaller_page_is_a_size_error() -> None:
    block = lz4.block.compress(bytes(512), store_size=False)
    with pytest.raises(LTXCompressionError, match="f.ltx") as info:
        decompress_page(block, 1024, "f.ltx", 555, 9)
    assert info.value.offset == 555 and "page 9" in str(info.value)


def test_block_of_a_larger_page_is_an_error() -> None:
    block = lz4.block.compress(bytes(2048), store_size=False)
    with pytest.raises(LTXCompressionError, match="page 9"):
        decompress_page(block, 1024, "f.ltx", 555, 9)


def test_garbage_block_is_a_compression_error() -> None:
    with pytest.raises(LTXCompressionError, match="corrupt LZ4 block"):
        decompress_page(b"\xff" * 40, 1024, "f.ltx", 0, 3)
