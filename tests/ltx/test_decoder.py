"""The streaming decoder on good files: round trips, short reads, the tail it validates."""

from __future__ import annotations

import io
import tracemalloc

import pytest

from ltx.checksum import CHECKSUM_FLAG
from ltx.decoder import BATCH_BYTES, Decoder
from ltx.encoder import Encoder
from ltx.header import Header
from tests.ltx.ltxfiles import decode, encode, incremental, make_pages, snapshot

#: Every test here runs through the C frame loop and through the Python one (tests/ltx/conftest.py).
pytestmark = pytest.mark.usefixtures("frame_loop")


class TrickleReader(io.RawIOBase):
    """A stream that hands out at most `chunk` bytes per read, like a socket or a pipe."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._chunk if size < 0 else min(size, self._chunk)
        out = bytes(self._data[self._pos:self._pos + n])
        self._pos += len(out)
        return out


@pytest.mark.parametrize("page_size", [512, 1024, 4096, 65536])
def test_snapshot_round_trip(page_size: int) -> None:
    data, pages = snapshot(page_size, commit=9, seed=page_size, max_txid=4, timestamp=-1)
    header, got = decode(data)
    assert header == Header(page_size=page_size, commit=9, min_txid=1, max_txid=4, timestamp=-1)
    assert got == pages


def test_pages_come_in_file_order_and_the_tail_is_checked_at_the_end() -> None:
    data, pages = incremental(4096, commit=100, pgnos=[3, 50, 51, 100], min_txid=5, max_txid=7)
    dec = Decoder(io.BytesIO(data), "inc.ltx")
    seen = []
    for pgno, page in dec.pages():
        assert dec.trailer is None and dec.page_count is None and not dec.verified
        seen.append(pgno)
        assert page == pages[pgno]
    assert seen == [3, 50, 51, 100]
    assert dec.page_count == len(seen) and dec.verified
    assert dec.trailer is not None and dec.trailer.file_checksum & CHECKSUM_FLAG
    assert dec.n == len(data)


@pytest.mark.parametrize("chunk", [1, 7, 4099])
def test_short_reads_are_assembled(chunk: int) -> None:
    data, pages = incremental(4096, commit=40, pgnos=range(1, 40, 3), min_txid=2)
    dec = Decoder(TrickleReader(data, chunk), "trickle.ltx")  # type: ignore[arg-type]
    assert dict(dec.pages()) == pages


@pytest.mark.parametrize("read_size", [1, 7, 1000, 1 << 20])
def test_any_read_size_gives_the_same_batches_of_pages(read_size: int) -> None:
    """Frames and index entries straddle reads of every size; batches carry each page's number."""
    for data, pages in (snapshot(1024, 40, seed=3), incremental(4096, 90, [2, 5, 6, 7, 80, 90], min_txid=4, max_txid=9),
                        incremental(512, 3, [3], min_txid=2)):
        dec = Decoder(io.BytesIO(data), "f.ltx", read_size=read_size)
        got = [(pgno, page) for pgnos, batch in dec.batches() for pgno, page in zip(pgnos, batch, strict=True)]
        assert got == sorted(pages.items())
        assert dec.verified and dec.page_count == len(pages) and dec.n == len(data)


def test_batches_hold_at_most_batch_bytes_of_pages() -> None:
    """Empty pages compress to a few bytes: one read holds megabytes of them, handed over in parts."""
    header = Header(page_size=512, commit=6000, min_txid=1, max_txid=1)
    data = encode(header, {p: bytes(512) for p in range(1, 6001)})
    batches = [sum(map(len, pages)) for _, pages in Decoder(io.BytesIO(data), "zeros.ltx").batches()]
    assert sum(batches) == 6000 * 512
    assert max(batches) <= BATCH_BYTES < 6000 * 512


def test_memory_does_not_grow_with_the_page_count() -> None:
    """Decoding 16 times as many pages takes no more memory: nothing is kept per page (the index is
    checked against running digests, never stored)."""
    pool = make_pages(4, 512, range(64))

    def peak(count: int) -> int:
        header = Header(page_size=512, commit=count, min_txid=1, max_txid=1)
        data = encode(header, {p: pool[p % 64] for p in range(1, count + 1)})
        tracemalloc.start()
        try:
            dec = Decoder(io.BytesIO(data), "mem.ltx", read_size=16 * 1024)
            for _ in dec.batches():
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(1500), peak(24000)
    # Keeping even 8 bytes per page would add 180 KB here.
    assert large - small < 32 * 1024, (small, large)


def test_verify_returns_the_trailer() -> None:
    data, _ = snapshot(1024, commit=3)
    assert Decoder(io.BytesIO(data)).verify().file_checksum == int.from_bytes(data[-8:], "big")


def test_pages_can_be_iterated_once() -> None:
    data, _ = snapshot(1024, commit=3)
    dec = Decoder(io.BytesIO(data), "once.ltx")
    dec.verify()
    with pytest.raises(RuntimeError, match="once.ltx"):
        next(dec.pages())


def test_header_is_read_and_checked_on_open() -> None:
    data, _ = incremental(2048, commit=10, pgnos=[4], min_txid=3, max_txid=8, timestamp=77)
    dec = Decoder(io.BytesIO(data), "h.ltx")
    assert (dec.header.page_size, dec.header.commit, dec.header.min_txid, dec.header.max_txid,
            dec.header.timestamp) == (2048, 10, 3, 8, 77)
    assert dec.n == 100


def test_files_with_database_checksums_are_accepted() -> None:
    """Litestream 0.5 writes NoChecksum files, but the format allows checksums: read both."""
    header = Header(page_size=1024, commit=4, min_txid=3, max_txid=3, flags=0,
                    pre_apply_checksum=CHECKSUM_FLAG | 0x1234)
    out = io.BytesIO()
    enc = Encoder(out, header)
    pages = make_pages(5, 1024, [2, 4])
    for pgno, page in sorted(pages.items()):
        enc.write_page(pgno, page)
    enc.close(post_apply_checksum=CHECKSUM_FLAG | 0x5678)
    dec = Decoder(io.BytesIO(out.getvalue()))
    assert dict(dec.pages()) == pages
    assert dec.trailer is not None and dec.trailer.post_apply_checksum == CHECKSUM_FLAG | 0x5678


def test_encoded_bytes_identical_for_identical_input() -> None:
    header = Header(page_size=4096, commit=6, min_txid=1, max_txid=1)
    pages = make_pages(9, 4096, range(1, 7))
    assert encode(header, pages) == encode(header, pages)
