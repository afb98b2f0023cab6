"""Properties of the codec (hypothesis): round trips, and damage never passing as other data.

LTX's file checksum covers decompressed pages, so a changed byte inside an LZ4 block that still
decodes to the very same page cannot be detected, and need not be: the data is unchanged. The
property is therefore: decoding a damaged file raises an LTXError, or returns exactly the
original header and pages (and that only happens for bytes inside an LZ4 block).
"""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ltx.decoder import Decoder
from ltx.errors import LTXError, LTXTrailerError, LTXTruncatedError
from ltx.frame import FRAME_PREFIX_SIZE
from ltx.header import HEADER_SIZE, Header
from tests.ltx.ltxfiles import Pages, decode, encode, make_page

PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def ltx_files(draw: st.DrawFn, page_sizes: list[int] = PAGE_SIZES, max_pages: int = 12) -> tuple[Header, Pages]:
    """A header and pages: a snapshot (every page 1..commit) or an incremental (any subset)."""
    page_size = draw(st.sampled_from(page_sizes))
    is_snapshot = draw(st.booleans())
    if is_snapshot:
        commit = draw(st.integers(1, max_pages))
        pgnos = list(range(1, commit + 1))
        min_txid = 1
    else:
        pgnos = sorted(draw(st.sets(st.integers(1, 1 << 20), max_size=max_pages)))
        commit = draw(st.integers(max(pgnos, default=1), (1 << 20) + 10))
        min_txid = draw(st.integers(2, 1 << 40))
    max_txid = min_txid + draw(st.integers(0, 1000))
    header = Header(page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
                    timestamp=draw(st.integers(-(1 << 62), 1 << 62)))
    rng = random.Random(draw(st.integers(0, 1 << 32)))
    kinds = draw(st.lists(st.sampled_from(["mixed", "zero", "noise", "pattern"]), min_size=len(pgnos),
                          max_size=len(pgnos)))
    pages: Pages = {}
    for pgno, kind in zip(pgnos, kinds, strict=True):
        if kind == "zero":
            pages[pgno] = bytes(page_size)
        elif kind == "noise":
            pages[pgno] = rng.randbytes(page_size)
        elif kind == "pattern":
            unit = rng.randbytes(rng.randint(1, 64))
            pages[pgno] = (unit * (page_size // len(unit) + 1))[:page_size]
        else:
            pages[pgno] = make_page(rng, page_size)
    return header, pages


@SETTINGS
@given(ltx_files())
def test_encode_decode_round_trip(case: tuple[Header, Pages]) -> None:
    header, pages = case
    got_header, got_pages = decode(encode(header, pages))
    assert got_header == header
    assert got_pages == pages
    assert list(got_pages) == sorted(pages)


def lz4_block_ranges(data: bytes) -> list[range]:
    """Byte ranges of the LZ4 blocks of a (valid) file."""
    out, pos = [], HEADER_SIZE
    while struct.unpack_from(">I", data, pos)[0] != 0:
        (size,) = struct.unpack_from(">I", data, pos + 6)
        out.append(range(pos + FRAME_PREFIX_SIZE, pos + FRAME_PREFIX_SIZE + size))
        pos += FRAME_PREFIX_SIZE + size
    return out


def check_damaged(data: bytes, damaged: bytes, header: Header, pages: Pages, position: int) -> str:
    """Decoding `damaged` raises an LTXError, or gives the original back (only inside a block).
    Returns what happened, for statistics."""
    try:
        got = decode(damaged, "damaged.ltx")
    except LTXError as exc:
        assert exc.name == "damaged.ltx"
        return type(exc).__name__
    assert got == (header, pages), f"byte {position} changed and the decoder returned other data"
    assert any(position in r for r in lz4_block_ranges(data)), f"byte {position} changed and went unnoticed"
    return "same data from an equivalent LZ4 block"


@settings(SETTINGS, max_examples=200)
@given(ltx_files(page_sizes=[512, 1024, 4096], max_pages=6), st.data())
def test_any_changed_byte_raises_or_changes_nothing(case: tuple[Header, Pages], data: st.DataObject) -> None:
    header, pages = case
    raw = encode(header, pages)
    rng = random.Random(data.draw(st.integers(0, 1 << 64), label="seed"))
    position = rng.randrange(len(raw))
    damaged = bytearray(raw)
    damaged[position] ^= rng.randint(1, 255)
    event(check_damaged(raw, bytes(damaged), header, pages, position))


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_byte_of_a_small_file_flipped(mask: int) -> None:
    """Exhaustive over one snapshot and one incremental: every position, three masks."""
    outcomes: set[str] = set()
    for header, seed in [(Header(page_size=512, commit=3, min_txid=1, max_txid=2, timestamp=9), 1),
                         (Header(page_size=512, commit=900, min_txid=5, max_txid=5, timestamp=9), 2)]:
        rng = random.Random(seed)
        pgnos = [1, 2, 3] if header.is_snapshot else [4, 300, 900]
        pages = {p: make_page(rng, 512) for p in pgnos}
        raw = encode(header, pages)
        for position in range(len(raw)):
            damaged = bytearray(raw)
            damaged[position] ^= mask
            outcomes.add(check_damaged(raw, bytes(damaged), header, pages, position))
    # Every part of the file was exercised: header, frames, index, trailer.
    assert {"LTXMagicError", "LTXChecksumError", "LTXIndexError", "LTXTrailerError"} <= outcomes


@SETTINGS
@given(ltx_files(page_sizes=[512, 4096], max_pages=5), st.data())
def test_any_prefix_is_truncation(case: tuple[Header, Pages], data: st.DataObject) -> None:
    header, pages = case
    raw = encode(header, pages)
    cut = random.Random(data.draw(st.integers(0, 1 << 64), label="seed")).randrange(len(raw))
    with pytest.raises(LTXTruncatedError) as info:
        Decoder(io.BytesIO(raw[:cut]), "cut.ltx").verify()
    assert info.value.name == "cut.ltx" and info.value.offset <= cut


@SETTINGS
@given(ltx_files(page_sizes=[512, 4096], max_pages=5), st.binary(min_size=1, max_size=300))
def test_any_bytes_after_the_trailer_are_refused(case: tuple[Header, Pages], extra: bytes) -> None:
    header, pages = case
    raw = encode(header, pages)
    with pytest.raises(LTXTrailerError) as info:
        Decoder(io.BytesIO(raw + extra), "long.ltx").verify()
    assert info.value.offset == len(raw)
