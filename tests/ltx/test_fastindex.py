"""The vectorised page-index check (ltx.fastindex) accepts exactly what the decoder's streaming
check accepts, with the same errors.

Each case decodes the same bytes both ways: a good file gives the same pages, trailer and page
count (and the fast path really ran: the streaming check is never reached); a bad file gives the
same error class and message.
"""

from __future__ import annotations

import io
import struct

import pytest

from ltx import fastindex
from ltx.decoder import Decoder
from ltx.errors import LTXError
from ltx.header import Header
from tests.ltx.ltxfiles import assemble, frames_of, incremental, index_of, make_pages, snapshot, true_index

#: Every test here runs through the C frame loop and through the Python one (tests/ltx/conftest.py).
pytestmark = pytest.mark.usefixtures("frame_loop")

NAME = "s3://bucket/db/0000/0000000000000002-0000000000000002.ltx"


def run(data: bytes, fast_index: bool = True) -> tuple[str, object]:
    """('ok', (pages, trailer, count, n)) or ('error', (class, message, offset))."""
    try:
        dec = Decoder(io.BytesIO(data), NAME, fast_index=fast_index)
        pages = list(dec.pages())
    except LTXError as exc:
        return "error", (type(exc), str(exc), exc.offset)
    return "ok", (pages, dec.trailer, dec.page_count, dec.n)


def run_streaming(data: bytes) -> tuple[str, object]:
    """`run` with the decoder's default, streaming check."""
    return run(data, fast_index=False)


def streaming_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the streaming index check ran")
    monkeypatch.setattr(Decoder, "_finish_streaming", refuse)


@pytest.mark.parametrize("window", [1, 2, 7, fastindex.FAST_INDEX_WINDOW])
@pytest.mark.parametrize("data", [snapshot(1024, 300, seed=3)[0], incremental(4096, 5000, [1, 2, 700, 4999],
                                                                              min_txid=2)[0]])
def test_good_files_pass_the_fast_check_alone(data: bytes, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = run_streaming(data)
    assert expected[0] == "ok"
    monkeypatch.setattr(fastindex, "FAST_INDEX_WINDOW", window)
    streaming_never_runs(monkeypatch)
    assert run(data) == expected


def test_an_index_over_the_memory_limit_is_checked_by_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    data = snapshot(1024, 200, seed=4)[0]
    expected = run_streaming(data)
    monkeypatch.setattr(fastindex, "FAST_INDEX_MAX_BYTES", 16)
    calls = []
    real = Decoder._finish_streaming

    def spy(self: Decoder, *args: object) -> None:
        calls.append(args)
        real(self, *args)  # type: ignore[arg-type]
    monkeypatch.setattr(Decoder, "_finish_streaming", spy)
    assert run(data) == expected
    assert len(calls) == 1


def bad_files() -> dict[str, bytes]:
    header = Header(page_size=1024, commit=30, min_txid=2, max_txid=2)
    frames = frames_of(make_pages(6, 1024, [3, 10, 20]))
    good = true_index(frames)
    (p0, o0, s0), (p1, o1, s1), (p2, o2, s2) = good
    cases = {
        "offset": [good[0], (p1, o1 + 1, s1), good[2]],
        "size": [good[0], (p1, o1, s1 - 1), good[2]],
        "pgno": [good[0], (11, o1, s1), good[2]],
        "missing": good[:2],
        "extra": [*good, (25, o2 + s2, 12)],
        "sizes": [(p0, o0, s1), (p1, o0 + s1, s0), good[2]],
        "order": [good[0], (2, o1, s1), good[2]],
        "first_offset": [(p0, o0 + 5, s0), (p1, o1 + 5, s1), (p2, o2 + 5, s2)],
    }
    out = {name: assemble(header, frames, index=index_of(triples)) for name, triples in cases.items()}
    raw = index_of(good)
    out["length_field"] = assemble(header, frames, index=raw[:-8] + struct.pack(">Q", len(raw) - 8 + 2))
    body = raw[:-8]
    # A non-canonical terminator (0x80 0x00) and an over-long varint: decided by the base decoder.
    out["long_terminator"] = assemble(header, frames, index=body[:-1] + b"\x80\x00" + struct.pack(">Q", len(body) + 1))
    ten = bytes([0x83] + [0x80] * 8 + [0x00])  # page 3 in ten bytes
    long_first = ten + body[1:]
    out["ten_byte_varint"] = assemble(header, frames, index=long_first + struct.pack(">Q", len(long_first)))
    good_file = assemble(header, frames)
    (stored,) = struct.unpack(">Q", good_file[-8:])
    out["checksum"] = good_file[:-8] + struct.pack(">Q", stored ^ 0x10)
    out["trailing_bytes"] = good_file + b"\x00"
    out["trailer_flag"] = good_file[:-8] + struct.pack(">Q", stored & ~(1 << 63))
    out["cut_in_index"] = good_file[:-30]
    return out


@pytest.mark.parametrize("case", sorted(bad_files()))
def test_bad_files_fail_as_in_the_streaming_check(case: str) -> None:
    data = bad_files()[case]
    expected = run_streaming(data)
    assert run(data) == expected
    # Unusual but valid encodings are left to the streaming check, which accepts them.
    assert expected[0] == ("ok" if case in ("long_terminator", "ten_byte_varint") else "error"), case
