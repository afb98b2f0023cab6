"""Slice records and the visible view of a chunk, checked against a byte-array model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockmap.errors import CorruptMetadataError
from blockmap.slices import (
    CHUNK_SIZE,
    MIN_SKIP_LENGTH,
    SliceRecord,
    build_view,
    chunk_span,
    decode_records,
    encode_records,
    hole,
    plan_compaction,
)


def test_record_layout_is_big_endian_24_bytes() -> None:
    r = SliceRecord(pos=0x01020304, id=0x1122334455667788, size=0x0A0B0C0D, off=5, len=6)
    data = r.encode()
    assert len(data) == 24
    assert data == bytes.fromhex("01020304" "1122334455667788" "0a0b0c0d" "00000005" "00000006")
    assert SliceRecord.decode(data) == r


def test_decode_rejects_partial_records() -> None:
    with pytest.raises(CorruptMetadataError, match="not a multiple of 24"):
        decode_records(b"\0" * 25, "chunk 5:0")


def test_decode_accepts_text_typed_values() -> None:
    # SQL `||` can leave a slices value typed TEXT; its bytes are what count.
    r = SliceRecord(0, 7, 10, 0, 10)
    assert decode_records(r.encode().decode("utf-8", "surrogateescape")) == [r]


def test_validate_rejects_records_past_the_chunk_or_slice() -> None:
    with pytest.raises(CorruptMetadataError):
        SliceRecord(CHUNK_SIZE - 1, 1, 10, 0, 2).encode()
    with pytest.raises(CorruptMetadataError):
        SliceRecord(0, 1, 10, 5, 6).encode()


def _model(records: list[SliceRecord]) -> list[tuple[int, int]]:
    """Per byte: (slice id, offset in slice), or (0, 0) for zeros. Later records win."""
    end = max((r.end for r in records), default=0)
    out = [(0, 0)] * end
    for r in records:
        for i in range(r.len):
            out[r.pos + i] = (r.id, r.off + i) if r.id else (0, 0)
    return out


def _render(records: list[SliceRecord]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seg in build_view(records):
        for i in range(seg.len):
            out.append((seg.id, seg.off + i) if seg.id else (0, 0))
    return out


records_st = st.lists(
    st.builds(
        lambda pos, ln, sid, extra, hole_: (
            hole(pos, ln) if hole_ else SliceRecord(pos, sid, ln + extra, extra, ln)
        ),
        st.integers(0, 60),
        st.integers(1, 20),
        st.integers(1, 5),
        st.integers(0, 3),
        st.booleans(),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(records_st)
def test_view_matches_byte_model(records: list[SliceRecord]) -> None:
    view = build_view(records)
    assert _render(records) == _model(records)
    # Segments are ordered, contiguous from 0, with no two adjacent holes.
    at = 0
    for a, b in zip(view, view[1:], strict=False):
        assert not (a.id == 0 and b.id == 0)
    for seg in view:
        assert seg.pos == at and seg.len > 0
        at = seg.end


@settings(max_examples=200, deadline=None)
@given(records_st)
def test_compaction_plan_preserves_the_view(records: list[SliceRecord]) -> None:
    plan = plan_compaction(records)
    if plan is None:
        return
    merged = SliceRecord(plan.pos, 999, plan.size, 0, plan.size)
    new_records = records[: plan.skipped] + [merged] + records[plan.skipped + plan.count :]
    # Byte i of the merged slice is whatever the plan's segments showed at pos + i.
    expected = _model(records)
    got = _model(new_records)
    segs = {}
    for seg in plan.segments:
        for i in range(seg.len):
            segs[seg.pos + i] = (seg.id, seg.off + i) if seg.id else (0, 0)
    for i, (sid, off) in enumerate(got):
        actual = segs[plan.pos + off] if sid == 999 else (sid, off)
        assert actual == expected[i]
    assert len(got) <= len(expected) or all(x == (0, 0) for x in expected[len(got) :])


def test_compaction_leaves_a_large_leading_slice_alone() -> None:
    big = SliceRecord(0, 1, 8 << 20, 0, 8 << 20)
    small = [SliceRecord((8 << 20) + i * 100, 10 + i, 100, 0, 100) for i in range(5)]
    plan = plan_compaction([big, *small])
    assert plan is not None
    assert plan.skipped == 1 and plan.count == 5
    assert plan.pos == 8 << 20 and plan.size == 500
    assert MIN_SKIP_LENGTH <= big.len


def test_compaction_needs_two_records() -> None:
    assert plan_compaction([SliceRecord(0, 1, 10, 0, 10)]) is None


def test_chunk_span_cuts_at_64_mib() -> None:
    assert chunk_span(CHUNK_SIZE - 10, 30) == [(0, CHUNK_SIZE - 10, 10), (1, 0, 20)]
    assert chunk_span(3 * CHUNK_SIZE, CHUNK_SIZE) == [(3, 0, CHUNK_SIZE)]


def test_encode_records_concatenates() -> None:
    rs = [SliceRecord(0, 1, 4, 0, 4), hole(4, 4)]
    assert decode_records(encode_records(rs)) == rs
