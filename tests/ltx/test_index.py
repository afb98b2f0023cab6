"""The page index: LEB128 varints, the terminator and length field, and the in-memory form."""

from __future__ import annotations

import struct

import pytest

from ltx.errors import LTXIndexError, LTXTruncatedError
from ltx.index import IndexEntry, PageIndex, append_uvarint, read_uvarint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (16384, b"\x80\x80\x01"), ((1 << 64) - 1, b"\xff" * 9 + b"\x01")],
)
def test_uvarint_matches_go(value: int, encoded: bytes) -> None:
    out = bytearray()
    append_uvarint(out, value)
    assert bytes(out) == encoded
    assert read_uvarint(encoded + b"junk", 0, "", 0) == (value, len(encoded))


def test_uvarint_cut_short() -> None:
    with pytest.raises(LTXTruncatedError, match="i.ltx") as info:
        read_uvarint(b"\x01\x80\x80", 1, "i.ltx", 1000)
    assert info.value.offset == 1003


def test_uvarint_overflowing_64_bits() -> None:
    with pytest.raises(LTXIndexError, match="overflows"):
        read_uvarint(b"\xff" * 9 + b"\x02", 0, "i.ltx", 0)


def test_uvarint_longer_than_ten_bytes() -> None:
    with pytest.raises(LTXIndexError, match="i.ltx"):
        read_uvarint(b"\x80" * 10 + b"\x00", 0, "i.ltx", 0)


def sample() -> PageIndex:
    index = PageIndex()
    for pgno, offset, size in [(1, 100, 50), (2, 150, 4106), (700, 4256, 300), (262146, 4556, 12)]:
        index.append(pgno, offset, size)
    return index


def test_encode_layout() -> None:
    raw = sample().encode()
    body = bytearray()
    for e in sample():
        for v in (e.pgno, e.offset, e.size):
            append_uvarint(body, v)
    body.append(0)
    assert raw == bytes(body) + struct.pack(">Q", len(body))


def test_empty_index_is_terminator_and_length() -> None:
    assert PageIndex().encode() == b"\x00" + struct.pack(">Q", 1)
    assert len(PageIndex.decode(PageIndex().encode())) == 0


def test_round_trip_and_lookup() -> None:
    index = PageIndex.decode(sample().encode(), "i.ltx", 4562)
    assert index == sample()
    assert list(index)[2] == IndexEntry(700, 4256, 300)
    assert index.find(700) == IndexEntry(700, 4256, 300)
    assert index.find(3) is None and index.find(0) is None and index.find(10**7) is None


def test_length_field_disagrees() -> None:
    raw = bytearray(sample().encode())
    raw[-1] += 1
    with pytest.raises(LTXIndexError, match="length field"):
        PageIndex.decode(bytes(raw), "i.ltx")


def entries(*triples: tuple[int, int, int]) -> bytes:
    body = bytearray()
    for t in triples:
        for v in t:
            append_uvarint(body, v)
    body.append(0)
    return bytes(body) + struct.pack(">Q", len(body))


@pytest.mark.parametrize("triples", [((5, 100, 20), (4, 120, 20)), ((5, 100, 20), (5, 120, 20))])
def test_entries_out_of_order(triples: tuple[tuple[int, int, int], ...]) -> None:
    with pytest.raises(LTXIndexError, match="out of order"):
        PageIndex.decode(entries(*triples), "i.ltx")


def test_page_number_beyond_32_bits() -> None:
    with pytest.raises(LTXIndexError, match="i.ltx"):
        PageIndex.decode(entries((1 << 32, 100, 20)), "i.ltx")


def test_stray_bytes_after_terminator() -> None:
    body = entries((1, 100, 20))[:-8] + b"\x07"
    with pytest.raises(LTXIndexError, match="stray"):
        PageIndex.decode(body + struct.pack(">Q", len(body)), "i.ltx")


def test_missing_terminator_is_an_index_error() -> None:
    body = entries((1, 100, 20))[:-9]
    with pytest.raises(LTXIndexError, match="no terminator"):
        PageIndex.decode(body + struct.pack(">Q", len(body)), "i.ltx")


def test_too_short_for_terminator_and_length() -> None:
    with pytest.raises(LTXTruncatedError, match="i.ltx"):
        PageIndex.decode(b"\x00" * 8, "i.ltx")


def test_validate_accepts_contiguous_frames() -> None:
    index = PageIndex()
    index.append(1, 100, 50)
    index.append(2, 150, 10)
    index.validate("i.ltx", 160, 100)


@pytest.mark.parametrize(
    "triples",
    [((1, 99, 50),),                  # starts inside the header
     ((1, 100, 50), (2, 140, 20)),    # overlaps the previous frame
     ((1, 100, 61),),                 # runs past the index start
     ((1, 100, 9),)],                 # shorter than a frame prefix
)
def test_validate_rejects_frames_outside_the_page_block(triples: tuple[tuple[int, int, int], ...]) -> None:
    index = PageIndex()
    for t in triples:
        index.append(*t)
    with pytest.raises(LTXIndexError, match="i.ltx"):
        index.validate("i.ltx", 160, 100)
