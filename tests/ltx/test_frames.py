"""The C frame loop (ltx/_frames.c): its LZ4 block decoder against the lz4 package, and the
decoder's C and Python loops against each other on good and damaged files."""

from __future__ import annotations

import io
import random
from array import array

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ltx.decoder
from ltx import _frames  # type: ignore[attr-defined]
from ltx.decoder import Decoder, native_frames
from ltx.errors import LTXError
from ltx.header import Header
from ltx.prefetch import _ViewStream
from tests.ltx.ltxfiles import encode, make_pages, snapshot

PAGE_SIZES = [512, 1024, 4096, 8192, 65536]


def test_the_extension_is_built() -> None:
    """CI must build it: a missing compiler would otherwise silently fall back to the slow loop."""
    assert native_frames()


def test_patterns_lz4_encodes_decode_exactly() -> None:
    rng = random.Random(7)
    for i in range(400):
        size = PAGE_SIZES[i % len(PAGE_SIZES)]
        kind = i % 4
        if kind == 0:
            page = rng.randbytes(size)
        elif kind == 1:
            page = bytes([rng.randrange(256)]) * size
        elif kind == 2:  # short repeating patterns: overlapping matches of every small offset
            pattern = rng.randbytes(rng.randrange(1, 40))
            page = (pattern * (size // len(pattern) + 1))[:size]
        else:
            cut = rng.randrange(size + 1)
            page = rng.randbytes(cut) + bytes(size - cut)
        for mode in ("default", "high_compression", "fast"):
            block = lz4.block.compress(page, store_size=False, mode=mode)
            assert _frames.decode_block(block, size) == page


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=5000))
def test_any_bytes_round_trip(page: bytes) -> None:
    block = lz4.block.compress(page, store_size=False)
    assert _frames.decode_block(block, len(page)) == page


def test_a_block_of_another_size_is_refused() -> None:
    page = make_pages(3, 4096, [1])[1]
    block = lz4.block.compress(page, store_size=False)
    for size in (0, 4095, 4097, 8192):
        with pytest.raises(ValueError):
            _frames.decode_block(block, size)


def test_offset_zero_is_refused() -> None:
    """lz4's decoder accepts a match at offset 0 (it copies bytes not yet written); the format
    forbids it, and this decoder refuses it (the Python loop then decides, as before)."""
    block = bytes([0x1F, 0x41, 0x00, 0x00, 0xFF, 0xFF, 0x00])  # 1 literal, offset 0, long match
    with pytest.raises(ValueError):
        _frames.decode_block(block, 1 + 15 + 4 + 255 + 255)


def test_damaged_blocks_never_give_other_bytes_than_lz4() -> None:
    """Seeded flips: the C decoder never crashes, and whatever it accepts lz4 decodes the same way."""
    rng = random.Random(11)
    accepted = refused = 0
    for _ in range(4000):
        size = rng.choice(PAGE_SIZES[:3])
        cut = rng.randrange(size + 1)
        block = bytearray(lz4.block.compress(rng.randbytes(cut) + bytes(size - cut), store_size=False))
        for _ in range(rng.randrange(1, 4)):
            block[rng.randrange(len(block))] = rng.randrange(256)
        try:
            mine = _frames.decode_block(bytes(block), size)
        except ValueError:
            refused += 1
            continue
        accepted += 1
        assert lz4.block.decompress(bytes(block), uncompressed_size=size) == mine
    assert accepted and refused


def test_decode_frames_refuses_bad_arguments() -> None:
    data, _ = snapshot(4096, commit=3, seed=1)
    slots = array("Q", bytes(16))
    with pytest.raises(ValueError):  # buffers too small
        _frames.decode_frames(data, 100, 4096, 0, 3, bytearray(10), slots, slots, 0, 10, True)
    with pytest.raises(ValueError):
        _frames.decode_frames(data, len(data) + 1, 4096, 0, 1, bytearray(4106), slots, slots, 0, 10, True)
    with pytest.raises(ValueError):  # a page size no SQLite database has
        _frames.decode_frames(data, 100, 1 << 17, 0, 1, bytearray((1 << 17) + 10), slots, slots, 0, 10, True)
    with pytest.raises(TypeError):  # an output it may not write to
        _frames.decode_frames(data, 100, 4096, 0, 1, bytes(4106), slots, slots, 0, 10, True)


@pytest.mark.parametrize(("block", "size"), [
    (bytes([0x1F, 0x41, 0x01, 0x00, 0x00, 0x00]), 20),  # a match up to the end, then no literals
    (bytes([0x10, 0x41, 0x01, 0x00, 0x10, 0x42]), 6),  # a match ending 1 byte before the end
    (bytes([0x1F, 0x41, 0x01, 0x00, 0xFF, 0xE9, 0x40]) + b"BCDE", 512),  # 4 literals after the last match
])
def test_blocks_breaking_the_end_of_block_rules_are_refused_as_lz4_refuses_them(block: bytes, size: int) -> None:
    """lz4 refuses a match reaching into a block's last 5 bytes; so must the C decoder."""
    with pytest.raises(lz4.block.LZ4BlockError):
        lz4.block.decompress(block, uncompressed_size=size)
    with pytest.raises(ValueError):
        _frames.decode_block(block, size)


def stream_outcome(stream: object, read_size: int, how: str) -> tuple[str, object]:
    """What decoding `stream` gives (through batches or slot_batches): its pages, or
    the error's class and message."""
    try:
        dec = Decoder(stream, "f.ltx", read_size=read_size)  # type: ignore[arg-type]
        if how == "slots":
            batches = ((slots.pgnos, slots.pages()) for slots in dec.slot_batches())
        else:
            batches = dec.batches()  # type: ignore[assignment]
        pages = [(p, bytes(page)) for pgnos, pages in batches for p, page in zip(pgnos, pages, strict=True)]
        return "ok", (pages, dec.trailer, dec.n)
    except LTXError as exc:
        return type(exc).__name__, str(exc)


def outcome(data: bytes, how: str = "batches") -> tuple[str, object]:
    return stream_outcome(io.BytesIO(data), 4096, how)


def both_loops(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, object], tuple[str, object]]:
    native = outcome(data)
    with monkeypatch.context() as m:
        m.setattr(ltx.decoder, "_frames", None)
        python = outcome(data)
    return native, python


def sample_files() -> list[bytes]:
    files = []
    for seed, ps in enumerate([512, 1024, 4096]):
        files.append(snapshot(ps, commit=40, seed=seed, max_txid=3)[0])
        header = Header(page_size=ps, commit=90, min_txid=5, max_txid=6)
        files.append(encode(header, make_pages(seed, ps, [2, 3, 9, 40, 41, 77, 90])))
    # Pages on both sides of the lock page (16385 at 64 KiB pages), which the C loop leaves to Python.
    lock_header = Header(page_size=65536, commit=16387, min_txid=7, max_txid=7)
    files.append(encode(lock_header, make_pages(9, 65536, [16383, 16384, 16386, 16387])))
    return files


def test_the_c_and_python_loops_agree_on_good_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for data in sample_files():
        native, python = both_loops(data, monkeypatch)
        assert native[0] == "ok"
        assert native == python
        assert outcome(data, "slots") == native
        with monkeypatch.context() as m:
            m.setattr(ltx.decoder, "_frames", None)
            assert outcome(data, "slots") == native


def test_the_c_and_python_loops_agree_on_every_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded single-byte changes anywhere in a file: both loops give the same pages or the same
    error, word for word."""
    rng = random.Random(5)
    refused = 0
    for data in sample_files():
        for _ in range(60):
            bad = bytearray(data)
            at = rng.randrange(len(bad))
            bad[at] ^= 1 << rng.randrange(8)
            native, python = both_loops(bytes(bad), monkeypatch)
            assert native == python, at
            refused += native[0] != "ok"
    assert refused > 0


def test_slot_batches_hold_each_batch_in_one_buffer() -> None:
    data, pages = snapshot(4096, commit=64, seed=2)
    got = {}
    for slots in Decoder(io.BytesIO(data), "v.ltx").slot_batches():
        views = slots.pages()
        assert all(view.obj is slots.buf for view in views)  # no copy per page
        got.update(zip(slots.pgnos, map(bytes, views), strict=True))
    assert got == pages


def chunked_outcome(data: bytes, cuts: list[int], read_size: int, how: str) -> tuple[str, object]:
    """Decode `data` from a stream that hands out memoryviews of chunks cut at `cuts` (as the
    prefetcher's view streams do), `read_size` at most per read."""
    view = memoryview(data)
    bounds = [0, *cuts, len(data)]
    chunks = iter([view[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a])
    return stream_outcome(_ViewStream(lambda: next(chunks), len(data)), read_size, how)


def test_views_of_chunks_cut_anywhere_decode_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames cut between chunks (and the end marker, index and trailer after a cut) decode from
    views exactly as from one buffer, good files and damaged ones alike."""
    rng = random.Random(3)
    for data in sample_files()[:4]:
        for trial in range(40):
            bad = bytearray(data)
            if trial % 2:
                bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
            cuts = sorted(rng.sample(range(1, len(bad)), rng.randrange(1, 12)))
            if trial % 5 == 0:  # a cut in the last few hundred bytes: end marker, index, trailer
                cuts = sorted({*cuts, len(bad) - rng.randrange(1, 300)})
            want = outcome(bytes(bad))
            with monkeypatch.context() as m:
                m.setattr(ltx.decoder, "_frames", None)
                assert chunked_outcome(bytes(bad), cuts, 4096, "batches") == want
            for read_size in (1, 7, 4096, 1 << 20):
                for how in ("batches", "slots"):
                    assert chunked_outcome(bytes(bad), cuts, read_size, how) == want, (trial, read_size, how)


def random_block(rng: random.Random) -> tuple[bytes, int]:
    """A token stream built at random near LZ4's end-of-block limits (not from a compressor): short
    literal runs, matches that reach close to the end, offsets up to just past the output, and a
    last sequence of 0-20 literals; with the size it decodes to if every step is taken."""
    out = bytearray()
    produced = 0

    def length_bytes(extra: int) -> bytes:
        ext = bytearray()
        while extra >= 255:
            ext.append(255)
            extra -= 255
        return bytes(ext + bytes([extra]))

    for _ in range(rng.randrange(0, 4)):
        lit = rng.choice([0, 1, 3, 8, 14, 15, 16, 40])
        mlen = rng.choice([4, 5, 12, 18, 19, 20, 300])
        token = (min(lit, 15) << 4) | min(mlen - 4, 15)
        out.append(token)
        if lit >= 15:
            out += length_bytes(lit - 15)
        out += rng.randbytes(lit)
        produced += lit
        offset = rng.choice([0, 1, 2, 7, 8, max(1, produced), produced + 1])
        out += offset.to_bytes(2, "little")
        if mlen - 4 >= 15:
            out += length_bytes(mlen - 4 - 15)
        produced += mlen
    last = rng.choice([0, 1, 4, 5, 6, 11, 12, 13, 15, 20])
    out.append(min(last, 15) << 4)
    if last >= 15:
        out += length_bytes(last - 15)
    out += rng.randbytes(last)
    return bytes(out), produced + last


def test_built_blocks_near_the_end_rules_are_never_accepted_against_lz4() -> None:
    """Whatever the C decoder accepts, lz4 (the Python loop's decoder) accepts with the same bytes;
    it may refuse more (offset 0, lz4's lenient shortcuts): the Python loop then decides."""
    rng = random.Random(17)
    agree = stricter = 0
    for _ in range(20000):
        block, size = random_block(rng)
        for n in (size, size - 1, size + 1):
            if n <= 0:
                continue
            try:
                mine = _frames.decode_block(block, n)
            except ValueError:
                mine = None
            try:
                ref = lz4.block.decompress(block, uncompressed_size=n)
                ref = ref if len(ref) == n else None
            except lz4.block.LZ4BlockError:
                ref = None
            if mine is not None:
                assert ref == mine, (block.hex(), n)
            agree += mine == ref
            stricter += mine is None and ref is not None
    assert agree > 0 and stricter < agree
