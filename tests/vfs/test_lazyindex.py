"""The lazily decoded page index: the same entries as the eager decoder, damage still detected,
and a large snapshot read through it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ltx.errors import LTXError
from ltx.index import PageIndex, append_uvarint
from ltx.replica import Replica
from tests.vfs.replicas import big_table_history, connect, stats
from vfs.lazyindex import BLOCK_ENTRIES, LAZY_INDEX_BYTES, LazyIndex
from vfs.opening import open_file
from vfs.options import OpenOptions

FRAMES_END_SLACK = 16


def _index(count: int, seed: int) -> tuple[PageIndex, int]:
    rng = random.Random(seed)
    index = PageIndex()
    offset = 100
    pgno = 0
    for _ in range(count):
        pgno += rng.choice((1, 1, 1, 2, 300))
        size = rng.randrange(11, 70_000)
        index.append(pgno, offset, size)
        offset += size
    return index, offset


@pytest.mark.parametrize("count", [1, 2, BLOCK_ENTRIES - 1, BLOCK_ENTRIES, BLOCK_ENTRIES + 1, 3 * BLOCK_ENTRIES + 17])
def test_same_entries_as_the_eager_decoder(count: int) -> None:
    eager, end = _index(count, seed=count)
    lazy = LazyIndex(eager.encode()[:-8], "f", 0, end + FRAMES_END_SLACK)
    assert len(lazy) == len(eager)
    assert list(lazy) == list(eager)
    for pos in (0, count // 2, count - 1):
        assert (lazy.pgnos[pos], lazy.offsets[pos], lazy.sizes[pos]) == \
               (eager.pgnos[pos], eager.offsets[pos], eager.sizes[pos])
        assert lazy.position(eager.pgnos[pos]) == pos
        assert lazy.find(eager.pgnos[pos]) == eager.find(eager.pgnos[pos])
    assert lazy.position(eager.pgnos[-1] + 1) is None
    with pytest.raises(IndexError):
        lazy.pgnos[count]


def _encode(entries: list[tuple[int, int, int]], terminator: bytes = b"\x00") -> bytes:
    out = bytearray()
    for triple in entries:
        for v in triple:
            append_uvarint(out, v)
    return bytes(out) + terminator


def test_damage_is_detected_where_it_is_decoded() -> None:
    good = [(p, 100 + 20 * (p - 1), 20) for p in range(1, 2 * BLOCK_ENTRIES + 5)]
    end = 100 + 20 * len(good) + FRAMES_END_SLACK
    swapped = list(good)
    swapped[10], swapped[11] = swapped[11], swapped[10]
    lazy = LazyIndex(_encode(swapped), "f", 0, end)
    with pytest.raises(LTXError, match="out of order"):
        lazy.pgnos[10]
    assert lazy.pgnos[BLOCK_ENTRIES + 3] == BLOCK_ENTRIES + 4, "other blocks still read"
    overlapping = list(good)
    overlapping[5] = (6, overlapping[5][1] - 5, 20)
    with pytest.raises(LTXError, match="outside the page block"):
        LazyIndex(_encode(overlapping), "f", 0, end).sizes[5]
    with pytest.raises(LTXError, match="cut short|terminator"):
        LazyIndex(_encode(good, terminator=b""), "f", 0, end)
    with pytest.raises(LTXError, match="stray bytes"):
        LazyIndex(_encode(good, terminator=b"\x00\x01"), "f", 0, end)
    with pytest.raises(LTXError, match="outside the page block"):
        LazyIndex(_encode(good), "f", 0, 100 + 20 * len(good) - 10)
    with pytest.raises(LTXError, match="longer than 10 bytes"):
        LazyIndex(b"\x81" * 11 + b"\x01" + _encode(good[1:5]), "f", 0, end)


def test_a_large_snapshot_reads_through_the_lazy_index(tmp_path: Path) -> None:
    history = big_table_history(tmp_path, rows=12_000, page_size=1024)
    pages = history.pages(1)
    assert len(pages) * 9 > LAZY_INDEX_BYTES, "the index must be large enough to be decoded lazily"
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    history.ship(replica, 1, 1)
    replica.close()
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        assert isinstance(f.view.pages.base.index, LazyIndex)
        assert f.xRead(1024, 1024 * (len(pages) - 1)) == pages[-1]
    finally:
        f.xClose()
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        for rowid in (0, 5_000, 11_999):
            length = conn.execute("SELECT length(v) FROM t WHERE id = ?", (rowid,)).fetchall()[0][0]
            assert isinstance(length, int) and length > 100
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert stats(conn)["commit"] == len(pages)
    finally:
        conn.close()


@pytest.mark.parametrize("count", [1, BLOCK_ENTRIES, BLOCK_ENTRIES + 1, 5 * BLOCK_ENTRIES + 3])
def test_the_c_scan_finds_the_blocks_the_regex_finds(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """ltx/_frames.c index_blocks and the pure-Python regex loop agree on every block's start and
    first entry; a first varint longer than 9 bytes is left to the Python loop (None)."""
    import vfs.lazyindex as lazyindex

    assert lazyindex.FRAMES is not None, "ltx/_frames.c is not built (python setup.py build_ext --inplace)"
    assert hasattr(lazyindex.FRAMES, "index_blocks"), "ltx._frames is older than its source: rebuild it"
    eager, end = _index(count, seed=7 + count)
    body = eager.encode()[:-8]
    native = LazyIndex(body, "f", 0, end + FRAMES_END_SLACK)
    monkeypatch.setattr(lazyindex, "INDEX_BLOCKS", None)
    python = LazyIndex(body, "f", 0, end + FRAMES_END_SLACK)
    assert len(native) == len(python) == count
    assert list(native) == list(python) == list(eager)
    for pos in range(0, count, BLOCK_ENTRIES // 2):  # the first entries of blocks and mid-block ones
        assert native.position(eager.pgnos[pos]) == python.position(eager.pgnos[pos]) == pos
    monkeypatch.undo()
    long_first = bytes([0x81] * 9 + [0x01]) + bytes(3 * BLOCK_ENTRIES)
    assert lazyindex.FRAMES.index_blocks(long_first, BLOCK_ENTRIES) is None
