"""The dirty-page buffer and the encoding of one commit, piece by piece."""

from __future__ import annotations

import io
import random
import struct

import pytest

from ltx.decoder import Decoder
from ltx.header import lock_pgno
from vfs.commitfile import commit_pgnos, encode_commit, header_commit, header_page_size
from vfs.dirty import DirtyPages

PS = 512


def page(n: int) -> bytes:
    return random.Random(n).randbytes(PS)


@pytest.mark.parametrize("memory", [1 << 20, 3 * PS])
def test_pages_in_memory_and_spilled(memory: int) -> None:
    d = DirtyPages(PS, base_size=10, memory_bytes=memory)
    for i, n in enumerate((3, 1, 12, 3, 5)):
        d.put(n, page(n * 100 + i))
    assert d.spilled == (memory < 4 * PS)
    assert d.pgnos() == [1, 3, 5, 12] and d.size == 12 and d.cut == 10
    assert d.get(3) == page(303) and d.get(2) is None, "a rewrite replaces the page"
    d.truncate(4)
    assert d.pgnos() == [1, 3] and d.size == 4 and d.cut == 4
    d.put(7, page(7))
    assert d.size == 7 and d.cut == 4 and d.get(5) is None
    assert dict(d.items()) == {1: page(101), 3: page(303), 7: page(7)}
    with pytest.raises(ValueError):
        d.put(8, b"short")
    d.close()


def test_merge_lays_the_newer_buffer_over_the_older() -> None:
    older = DirtyPages(PS, base_size=20)
    for n in (2, 9, 15):
        older.put(n, page(n))
    newer = DirtyPages(PS, base_size=older.size)
    newer.truncate(8)  # cut below 9 and 15
    newer.put(2, page(200))
    newer.put(12, page(12))
    older.merge(newer)
    assert dict(older.items()) == {2: page(200), 12: page(12)}
    assert older.size == 12 and older.cut == 8


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def test_header_commit_needs_a_valid_in_header_size() -> None:
    page1 = bytearray(100)
    page1[16:18] = struct.pack(">H", 1)
    page1[24:28] = _u32(7)
    page1[28:32] = _u32(42)
    page1[92:96] = _u32(7)
    assert header_commit(bytes(page1), fallback=50) == 42
    assert header_page_size(bytes(page1)) == 65536
    page1[92:96] = _u32(6)
    assert header_commit(bytes(page1), fallback=50) == 50, "counter and version-valid-for differ"
    assert header_commit(None, fallback=3) == 3


def test_commit_pages_zero_fill_holes_and_skip_the_lock_page() -> None:
    d = DirtyPages(PS, base_size=5)
    d.put(2, page(2))
    d.truncate(3)
    d.put(6, page(6))
    assert commit_pgnos(d, commit=6, snapshot=False) == [2, 4, 5, 6], "4 and 5 were cut: they read as zeros"
    assert commit_pgnos(d, commit=4, snapshot=False) == [2, 4], "nothing past the commit"
    big = DirtyPages(4096, base_size=0)
    lock = lock_pgno(4096)
    assert lock not in commit_pgnos(big, commit=lock + 1, snapshot=True)


def test_encoded_commit_decodes_to_the_pages() -> None:
    d = DirtyPages(PS, base_size=0)
    for n in (1, 3):
        d.put(n, page(n))
    enc = encode_commit(d, commit=3, txid=1, timestamp_ms=123, snapshot=True)
    assert isinstance(enc.data, bytes) and enc.size == len(enc.data) and enc.name.startswith("0000000000000001-")
    dec = Decoder(io.BytesIO(enc.data), enc.name)
    assert dict(dec.pages()) == {1: page(1), 2: bytes(PS), 3: page(3)}
    assert dec.header.commit == 3 and dec.header.timestamp == 123 and dec.verified
    assert list(enc.index.pgnos) == [1, 2, 3]
