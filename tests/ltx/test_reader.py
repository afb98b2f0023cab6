"""Random access through a store: the index from a file's tail (one GET, or two when the guess
is short), then pages by index entry, one ranged GET per run of adjacent frames."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from ltx.errors import LTXCompressionError, LTXError, LTXIndexError, LTXPageError, LTXTruncatedError
from ltx.header import HEADER_SIZE, Header
from ltx.index import IndexEntry
from ltx.reader import adjacent_runs, decode_tail, read_file_index, read_header, read_pages
from ltx.store import ObjectStore, open_store
from tests.ltx.ltxfiles import decode, encode, incremental, make_pages

KEY = "ltx/0/0000000000000007-0000000000000007.ltx"


@pytest.fixture
def store(store_url: str) -> Iterator[ObjectStore]:
    s = open_store(store_url)
    yield s
    s.close()


def put(store: ObjectStore, data: bytes, key: str = KEY) -> None:
    store.put(key, data)
    store.stats.gets = 0


def many_pages_file(count: int = 300) -> tuple[bytes, dict[int, bytes]]:
    header = Header(page_size=512, commit=count * 3, min_txid=7, max_txid=7)
    pages = make_pages(11, 512, range(1, count * 3, 3))
    return encode(header, pages), pages


def index_size(data: bytes) -> int:
    return int(struct.unpack_from(">Q", data, len(data) - 24)[0])


def test_small_file_index_and_header_in_one_get(store: ObjectStore) -> None:
    data, pages = incremental(4096, commit=30, pgnos=[2, 3, 30], min_txid=7)
    put(store, data)
    fi = read_file_index(store, KEY)
    assert store.stats.gets == 1
    assert [e.pgno for e in fi.index] == [2, 3, 30]
    assert fi.size == len(data)
    assert fi.header == decode(data)[0]
    assert fi.trailer.file_checksum == int.from_bytes(data[-8:], "big")


def test_index_larger_than_the_guess_takes_a_second_get(store: ObjectStore) -> None:
    data, pages = many_pages_file()
    need = index_size(data) + 8 + 16
    assert need > 1000
    put(store, data)
    fi = read_file_index(store, KEY, guess=64)
    assert store.stats.gets == 2
    assert fi.header is None
    assert [e.pgno for e in fi.index] == sorted(pages)
    # The same index as a tail guess that covers it.
    whole = read_file_index(store, KEY, guess=len(data))
    assert whole.index == fi.index and whole.header is not None


@pytest.mark.parametrize(("extra", "gets"), [(0, 1), (-1, 2), (1, 1)])
def test_guess_at_the_boundary(store: ObjectStore, extra: int, gets: int) -> None:
    data, pages = many_pages_file(100)
    need = index_size(data) + 8 + 16
    put(store, data)
    fi = read_file_index(store, KEY, guess=need + extra)
    assert store.stats.gets == gets
    assert len(fi.index) == len(pages)


def test_pages_by_entry_one_get_per_adjacent_run(store: ObjectStore) -> None:
    data, pages = many_pages_file(50)
    put(store, data)
    fi = read_file_index(store, KEY)
    entries = list(fi.index)
    wanted = entries[3:7] + entries[10:11] + entries[20:23]  # three runs
    store.stats.gets = 0
    got = read_pages(store, KEY, wanted[::-1], 512)
    assert store.stats.gets == 3
    assert dict(got) == {e.pgno: pages[e.pgno] for e in wanted}


def test_adjacent_runs_group_touching_frames() -> None:
    e = [IndexEntry(1, 100, 50), IndexEntry(2, 150, 20), IndexEntry(5, 170, 30), IndexEntry(9, 300, 10),
         IndexEntry(10, 310, 10), IndexEntry(12, 400, 10)]
    assert adjacent_runs(e) == [e[0:3], e[3:5], e[5:6]]
    assert adjacent_runs([]) == []


def test_read_header(store: ObjectStore) -> None:
    data, _ = many_pages_file(10)
    put(store, data)
    assert read_header(store, KEY) == decode(data)[0]
    assert store.stats.gets == 1


def test_file_too_small(store: ObjectStore) -> None:
    put(store, b"LTX1" + bytes(40))
    with pytest.raises(LTXTruncatedError, match=KEY):
        read_file_index(store, KEY)


def test_absurd_index_length(store: ObjectStore) -> None:
    data, _ = many_pages_file(10)
    bad = data[:-24] + struct.pack(">Q", 1 << 40) + data[-16:]
    put(store, bad)
    with pytest.raises(LTXIndexError, match=KEY):
        read_file_index(store, KEY)


def test_index_entry_pointing_into_the_header() -> None:
    data, _ = many_pages_file(3)
    entries_len = index_size(data)
    start = len(data) - 24 - entries_len
    # Rewrite the first entry's offset (a 1-byte varint after the 1-byte pgno) to 50 (< header).
    assert data[start] == 1 and data[start + 1] & 0x80 == 0
    bad = data[:start + 1] + bytes([50]) + data[start + 2:]
    with pytest.raises(LTXIndexError, match="t.ltx"):
        decode_tail(bad, len(bad), "t.ltx")


def test_corrupt_frame_is_reported_with_the_key(store: ObjectStore) -> None:
    data, pages = many_pages_file(5)
    fi = decode_tail(data, len(data), KEY)
    first = next(iter(fi.index))
    bad = bytearray(data)
    bad[first.offset + 10:first.offset + first.size] = b"\xff" * (first.size - 10)
    put(store, bytes(bad))
    with pytest.raises(LTXCompressionError, match=KEY):
        read_pages(store, KEY, [first], 512)


def test_frame_holding_another_page_than_the_index_says(store: ObjectStore) -> None:
    data, _ = many_pages_file(5)
    fi = decode_tail(data, len(data), KEY)
    first = next(iter(fi.index))
    put(store, data)
    with pytest.raises(LTXPageError, match="index says"):
        read_pages(store, KEY, [IndexEntry(first.pgno + 1, first.offset, first.size)], 512)


def test_whole_tail_checks_the_header_too() -> None:
    data, _ = many_pages_file(5)
    bad = data[:8] + struct.pack(">I", 1000) + data[12:]
    with pytest.raises(LTXError, match="t.ltx"):
        decode_tail(bad, len(bad), "t.ltx")
    assert decode_tail(data[HEADER_SIZE:], len(data), "t.ltx").header is None
