"""The compactor: merging contiguous files, latest page wins, header rules, refusals."""

from __future__ import annotations

import io
import random

import pytest

from ltx.checksum import CHECKSUM_FLAG
from ltx.compactor import LTXCompactionError, compact, is_contiguous
from ltx.errors import LTXChecksumError, LTXError
from ltx.header import FLAG_NO_CHECKSUM, Header
from tests.ltx.ltxfiles import Pages, decode, encode, make_pages


def ltx(min_txid: int, max_txid: int, commit: int, pages: Pages, page_size: int = 1024,
        timestamp: int = 0, post_apply: int = 0, **extra: int) -> bytes:
    header = Header(page_size=page_size, commit=commit, min_txid=min_txid, max_txid=max_txid,
                    timestamp=timestamp or 1000 * max_txid, **extra)
    return encode(header, pages, post_apply=post_apply)


def run(files: list[bytes], timestamp: int | None = None) -> tuple[Header, Header, Pages]:
    """Compact `files`; return the returned header and the decoded output (header, pages)."""
    out = io.BytesIO()
    header = compact([(io.BytesIO(f), f"in{i}.ltx") for i, f in enumerate(files)], out, timestamp, "out.ltx")
    got_header, pages = decode(out.getvalue(), "out.ltx")
    return header, got_header, pages


def apply_in_order(files: list[bytes]) -> Pages:
    """The model: apply files one after another, truncating to each commit."""
    state: Pages = {}
    for f in files:
        header, pages = decode(f)
        state.update(pages)
        state = {p: v for p, v in state.items() if p <= header.commit}
    return state


def test_latest_page_wins() -> None:
    snap = make_pages(1, 1024, range(1, 6))
    a = make_pages(2, 1024, [2, 4])
    b = make_pages(3, 1024, [4, 5])
    files = [ltx(1, 1, 5, snap), ltx(2, 2, 5, a), ltx(3, 3, 5, b)]
    _, header, pages = run(files)
    assert pages == {1: snap[1], 2: a[2], 3: snap[3], 4: b[4], 5: b[5]}
    assert header.is_snapshot and header.max_txid == 3


def test_pages_beyond_the_final_commit_are_dropped() -> None:
    snap = make_pages(4, 1024, range(1, 11))
    shrink = make_pages(5, 1024, [1, 3])
    _, header, pages = run([ltx(1, 1, 10, snap), ltx(2, 2, 6, shrink)])
    assert header.commit == 6
    assert sorted(pages) == [1, 2, 3, 4, 5, 6]
    assert pages == {**{p: snap[p] for p in range(1, 7)}, 1: shrink[1], 3: shrink[3]}


def test_shrink_then_grow_keeps_the_new_pages() -> None:
    a = make_pages(6, 1024, [2, 9, 10])
    b = make_pages(7, 1024, [1])
    c = make_pages(8, 1024, [5, 6, 7, 8])
    files = [ltx(4, 4, 10, a), ltx(5, 5, 4, b), ltx(6, 7, 8, c)]
    _, header, pages = run(files)
    assert header.commit == 8
    assert pages == {1: b[1], 2: a[2], 5: c[5], 6: c[6], 7: c[7], 8: c[8]}
    assert pages == apply_in_order(files)


def test_header_rules() -> None:
    files = [ltx(5, 6, 40, make_pages(9, 1024, [3]), timestamp=111),
             ltx(7, 7, 50, make_pages(10, 1024, [45]), timestamp=222),
             ltx(8, 12, 30, make_pages(11, 1024, [1]), timestamp=333, wal_offset=32, wal_size=1056,
                 wal_salt1=1, wal_salt2=2, node_id=9)]
    returned, header, _ = run(files)
    assert returned == header
    assert (header.page_size, header.min_txid, header.max_txid, header.commit, header.timestamp) == (
        1024, 5, 12, 30, 333)
    assert header.flags == FLAG_NO_CHECKSUM and header.pre_apply_checksum == 0
    assert (header.wal_offset, header.wal_size, header.wal_salt1, header.wal_salt2, header.node_id) == (0, 0, 0, 0, 0)


def test_timestamp_can_be_given() -> None:
    _, header, _ = run([ltx(2, 2, 3, make_pages(1, 1024, [1])), ltx(3, 3, 3, {})], timestamp=42)
    assert header.timestamp == 42


def test_checksummed_inputs_give_a_file_without_checksums() -> None:
    first = ltx(2, 2, 3, make_pages(1, 1024, [1]), flags=0, pre_apply_checksum=CHECKSUM_FLAG | 77,
                post_apply=CHECKSUM_FLAG | 78)
    _, header, _ = run([first, ltx(3, 3, 3, {})])
    assert header.no_checksum and header.pre_apply_checksum == 0


@pytest.mark.parametrize(("second", "ok"), [((5, 5), True), ((5, 9), True), ((2, 9), True), ((1, 7), True),
                                           ((6, 9), False), ((2, 4), False), ((3, 3), False)])
def test_contiguity_rule(second: tuple[int, int], ok: bool) -> None:
    """After a chain reaching TXID 4, a file continues it if it starts by 5 and ends past 4."""
    assert is_contiguous(4, *second) == ok


def test_non_contiguous_inputs_are_refused() -> None:
    files = [ltx(1, 3, 2, make_pages(1, 1024, [1, 2])), ltx(5, 5, 2, make_pages(2, 1024, [2]))]
    with pytest.raises(LTXCompactionError, match="in1.ltx") as info:
        run(files)
    assert "do not continue" in str(info.value)


def test_inputs_going_backwards_are_refused() -> None:
    files = [ltx(4, 6, 2, make_pages(1, 1024, [1])), ltx(3, 5, 2, make_pages(2, 1024, [2]))]
    with pytest.raises(LTXCompactionError, match="in1.ltx"):
        run(files)


def test_mixed_page_sizes_are_refused() -> None:
    files = [ltx(2, 2, 2, make_pages(1, 1024, [1])), ltx(3, 3, 2, make_pages(2, 4096, [2]), page_size=4096)]
    with pytest.raises(LTXCompactionError, match="page size"):
        run(files)


def test_no_inputs_is_an_error() -> None:
    with pytest.raises(ValueError):
        compact([], io.BytesIO())


def test_corrupt_input_is_refused_naming_it() -> None:
    good = ltx(2, 2, 8, make_pages(1, 1024, [1, 2]))
    bad = bytearray(ltx(3, 3, 8, make_pages(2, 1024, [3, 8])))
    bad[len(bad) - 3] ^= 0x40  # inside the stored file checksum
    with pytest.raises(LTXChecksumError) as info:
        run([good, bytes(bad)])
    assert info.value.name == "in1.ltx"


def test_truncated_input_is_refused() -> None:
    good = ltx(2, 2, 8, make_pages(1, 1024, [1, 2]))
    cut = ltx(3, 3, 8, make_pages(2, 1024, [3, 8]))[:-30]
    with pytest.raises(LTXError) as info:
        run([good, cut])
    assert info.value.name == "in1.ltx"


def test_random_chains_match_applying_in_order() -> None:
    rng = random.Random(2024)
    for _ in range(20):
        page_size = rng.choice([512, 4096])
        commit = rng.randint(1, 40)
        files = [ltx(1, 1, commit, make_pages(rng.randrange(1 << 30), page_size, range(1, commit + 1)), page_size)]
        txid = 1
        for _ in range(rng.randint(1, 6)):
            new_commit = max(1, commit + rng.randint(-10, 15))
            # A transaction writes some pages and every page past the old end.
            touched = {p for p in range(1, new_commit + 1) if p > commit or rng.random() < 0.2}
            width = rng.randint(1, 3)
            files.append(ltx(txid + 1, txid + width, new_commit,
                             make_pages(rng.randrange(1 << 30), page_size, sorted(touched)), page_size))
            txid += width
            commit = new_commit
        start = rng.randrange(len(files))  # compact a suffix too (an incremental output)
        for chain in (files, files[start:]):
            _, header, pages = run(chain)
            assert header.is_snapshot == (chain[0] is files[0])
            assert pages == apply_in_order(chain)
