"""The 100-byte LTX header: layout, round trip, and every validation rule."""

from __future__ import annotations

import struct

import pytest

from ltx.checksum import CHECKSUM_FLAG
from ltx.errors import LTXFlagsError, LTXHeaderError, LTXMagicError, LTXPageSizeError, LTXTruncatedError
from ltx.header import FLAG_NO_CHECKSUM, HEADER_SIZE, Header, is_valid_page_size, lock_pgno

FULL = Header(page_size=8192, commit=0x01020304, min_txid=0x1112131415161718, max_txid=0x2122232425262728,
              timestamp=-5, flags=0, pre_apply_checksum=CHECKSUM_FLAG | 0x0A0B, wal_offset=0x3132,
              wal_size=0x4142, wal_salt1=0x51525354, wal_salt2=0x61626364, node_id=0x7172737475767778)


def test_encode_places_every_field_at_its_offset() -> None:
    raw = FULL.encode()
    assert len(raw) == HEADER_SIZE
    assert raw[0:4] == b"LTX1"
    assert struct.unpack_from(">I", raw, 4)[0] == 0
    assert struct.unpack_from(">I", raw, 8)[0] == 8192
    assert struct.unpack_from(">I", raw, 12)[0] == 0x01020304
    assert struct.unpack_from(">Q", raw, 16)[0] == 0x1112131415161718
    assert struct.unpack_from(">Q", raw, 24)[0] == 0x2122232425262728
    assert struct.unpack_from(">q", raw, 32)[0] == -5
    assert struct.unpack_from(">Q", raw, 40)[0] == CHECKSUM_FLAG | 0x0A0B
    assert struct.unpack_from(">q", raw, 48)[0] == 0x3132
    assert struct.unpack_from(">q", raw, 56)[0] == 0x4142
    assert struct.unpack_from(">I", raw, 64)[0] == 0x51525354
    assert struct.unpack_from(">I", raw, 68)[0] == 0x61626364
    assert struct.unpack_from(">Q", raw, 72)[0] == 0x7172737475767778
    assert raw[80:100] == bytes(20)


def test_round_trip_keeps_every_field() -> None:
    assert Header.decode(FULL.encode()) == FULL
    FULL.validate("full")


def test_defaults_are_litestreams() -> None:
    h = Header(page_size=4096, commit=1, min_txid=1, max_txid=1)
    assert h.flags == FLAG_NO_CHECKSUM
    assert h.pre_apply_checksum == 0
    assert h.is_snapshot and h.no_checksum


def test_decode_ignores_bytes_after_the_header() -> None:
    h = Header(page_size=4096, commit=3, min_txid=2, max_txid=4)
    assert Header.decode(h.encode() + b"\xff" * 50) == h


@pytest.mark.parametrize("size", [0, 4, 99])
def test_short_buffer_is_truncation(size: int) -> None:
    raw = Header(page_size=4096, commit=1, min_txid=1, max_txid=1).encode()[:size]
    with pytest.raises(LTXTruncatedError, match="short.ltx"):
        Header.decode(raw, "short.ltx")


@pytest.mark.parametrize("magic", [b"LTX0", b"ltx1", b"\0\0\0\0", b"SQLi"])
def test_wrong_magic(magic: bytes) -> None:
    raw = magic + Header(page_size=4096, commit=1, min_txid=1, max_txid=1).encode()[4:]
    with pytest.raises(LTXMagicError, match="bad.ltx") as info:
        Header.decode(raw, "bad.ltx")
    assert info.value.offset == 0 and info.value.name == "bad.ltx"


@pytest.mark.parametrize("page_size", [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536])
def test_valid_page_sizes(page_size: int) -> None:
    assert is_valid_page_size(page_size)
    Header(page_size=page_size, commit=1, min_txid=1, max_txid=1).validate()


@pytest.mark.parametrize("page_size", [0, 256, 511, 1000, 1536, 4097, 131072])
def test_invalid_page_sizes(page_size: int) -> None:
    assert not is_valid_page_size(page_size)
    with pytest.raises(LTXPageSizeError, match="x.ltx"):
        Header(page_size=page_size, commit=1, min_txid=1, max_txid=1).validate("x.ltx")


@pytest.mark.parametrize("flags", [0x1, 0x4, 0x3, 0x80000000])
def test_unknown_flags(flags: int) -> None:
    with pytest.raises(LTXFlagsError, match="flags.ltx") as info:
        Header(page_size=4096, commit=1, min_txid=1, max_txid=1, flags=flags).validate("flags.ltx")
    assert info.value.offset == 4


@pytest.mark.parametrize(
    ("changes", "offset"),
    [
        ({"min_txid": 0}, 16),
        ({"max_txid": 0}, 24),
        ({"min_txid": 5, "max_txid": 4}, 16),
        ({"wal_offset": -1}, 48),
        ({"wal_offset": 32, "wal_size": -1}, 56),
        ({"wal_salt1": 7}, 64),
        ({"wal_size": 4096}, 56),
        ({"pre_apply_checksum": CHECKSUM_FLAG | 1}, 40),
    ],
)
def test_header_rules(changes: dict[str, int], offset: int) -> None:
    h = Header(page_size=4096, commit=1, min_txid=2, max_txid=3).with_(**changes)
    with pytest.raises(LTXHeaderError, match="rules.ltx") as info:
        h.validate("rules.ltx")
    assert info.value.offset == offset


def test_snapshot_must_not_carry_a_pre_apply_checksum() -> None:
    h = Header(page_size=4096, commit=1, min_txid=1, max_txid=1, flags=0, pre_apply_checksum=CHECKSUM_FLAG | 9)
    with pytest.raises(LTXHeaderError, match="snapshot"):
        h.validate()


def test_checksummed_incremental_needs_a_flagged_pre_apply_checksum() -> None:
    base = Header(page_size=4096, commit=1, min_txid=2, max_txid=2, flags=0)
    for bad in (0, 0x1234):
        with pytest.raises(LTXHeaderError, match="pre-apply"):
            base.with_(pre_apply_checksum=bad).validate()
    base.with_(pre_apply_checksum=CHECKSUM_FLAG | 0x1234).validate()


def test_wal_fields_from_a_wal_are_accepted() -> None:
    Header(page_size=4096, commit=9, min_txid=2, max_txid=2, wal_offset=32, wal_size=4120,
           wal_salt1=1, wal_salt2=2).validate()


@pytest.mark.parametrize(("page_size", "pgno"), [(512, 2097153), (1024, 1048577), (4096, 262145), (65536, 16385)])
def test_lock_page_number(page_size: int, pgno: int) -> None:
    assert lock_pgno(page_size) == pgno
    assert Header(page_size=page_size, commit=1, min_txid=1, max_txid=1).lock_pgno == pgno


def test_is_snapshot_means_min_txid_one() -> None:
    assert Header(page_size=4096, commit=1, min_txid=1, max_txid=9).is_snapshot
    assert not Header(page_size=4096, commit=1, min_txid=2, max_txid=9).is_snapshot
