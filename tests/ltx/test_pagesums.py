"""The page checksum sidecar: its wire format, what the encoder records, and where it is written."""

from __future__ import annotations

import io
import random
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ltx.compaction import DEFAULT_SNAPSHOT_RETENTION, compact_level, enforce_snapshot_retention, snapshot
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.importer import import_database
from ltx.pagesums import (
    FULL_SPANS_PAGES,
    MIN_SPAN_STRIDE,
    SPAN_RATIO,
    SUMS_MIN_FILE_SIZE,
    PageChecksumError,
    PageSums,
    PageSumsError,
    SpanPrefix,
    needs_sums,
    page_sum,
    prefix_size,
    span_stride,
    sums_key,
    sums_layout,
)
from ltx.reader import decode_tail
from ltx.replica import Replica
from ltx.restore import restore
from tests import litestream
from tests.ltx.history import History, record_history
from tests.ltx.test_hint import build_db

PAGE = 4096


def encoded_file(pages: int, seed: int) -> tuple[bytes, PageSums]:
    """A snapshot of `pages` seeded pages, and the checksums the encoder kept for it."""
    rng = random.Random(seed)
    out = io.BytesIO()
    enc = Encoder(out, Header(page_size=PAGE, commit=pages, min_txid=1, max_txid=1, timestamp=1), "f", with_sums=True)
    for pgno in range(1, pages + 1):
        enc.write_page(pgno, rng.randbytes(64) * (PAGE // 64))
    enc.close()
    return out.getvalue(), enc.page_sums


@given(sums=st.lists(st.integers(0, 0xFFFFFFFF), max_size=300),
       min_txid=st.integers(1, 2**63), span=st.integers(0, 1000), checksum=st.integers(0, 2**64 - 1))
def test_round_trip(sums: list[int], min_txid: int, span: int, checksum: int) -> None:
    original = PageSums(PAGE, min_txid, min_txid + span, checksum, array("I", sums))
    data = original.encode()
    assert len(data) == original.encoded_size
    back = PageSums.decode(data, "k")
    assert back == original


def test_every_changed_byte_is_refused() -> None:
    _, sums = encoded_file(20, seed=1)
    data = sums.encode()
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0x10
        with pytest.raises(PageSumsError) as caught:
            PageSums.decode(bytes(damaged), "ltx/9/x.ltx.sum")
        assert "ltx/9/x.ltx.sum" in str(caught.value)
    for cut in (0, 10, len(data) - 1):
        with pytest.raises(PageSumsError):
            PageSums.decode(data[:cut], "k")


def test_encoder_sums_are_the_decoded_pages_sums() -> None:
    data, sums = encoded_file(50, seed=2)
    dec = Decoder(io.BytesIO(data), "f")
    pages = list(dec.pages())
    assert dec.trailer is not None
    assert list(sums.sums) == [page_sum(pgno, page) for pgno, page in pages]
    assert sums.describes(1, 1, dec.trailer.file_checksum, len(pages))
    assert not sums.describes(1, 1, dec.trailer.file_checksum ^ 1, len(pages))
    assert not sums.describes(1, 2, dec.trailer.file_checksum, len(pages))


def test_check_refuses_a_changed_page_and_a_moved_one() -> None:
    data, sums = encoded_file(10, seed=3)
    pages = list(Decoder(io.BytesIO(data), "f").pages())
    pgno, page = pages[4]
    sums.check(4, pgno, page, "f")
    changed = bytearray(page)
    changed[100] ^= 1
    with pytest.raises(PageChecksumError) as caught:
        sums.check(4, pgno, bytes(changed), "ltx/1/f.ltx", 1234)
    err = caught.value
    assert err.pgno == pgno and err.offset == 1234 and err.expected != err.actual
    assert "ltx/1/f.ltx.sum" in str(err)
    with pytest.raises(PageChecksumError):
        sums.check(5, pages[5][0], page, "f")  # another page's bytes at that position


def test_import_puts_a_sidecar_beside_each_large_file(tmp_path: Path) -> None:
    replica = Replica.open(f"file://{tmp_path / 'replica'}")
    import_database(build_db(tmp_path / "source.db", rows=3000), replica)
    levels = replica.list_all()
    files = [f for files in levels.values() for f in files]
    assert files and all(needs_sums(f.size) for f in files)
    for f in files:
        assert f.sums_key == sums_key(f.key)
        sums = PageSums.decode(replica.store.get(f.sums_key), f.sums_key)
        dec = Decoder(io.BytesIO(replica.store.get(f.key)), f.key)
        pages = list(dec.pages())
        assert dec.trailer is not None
        assert sums.describes(f.min_txid, f.max_txid, dec.trailer.file_checksum, len(pages))
        assert list(sums.sums) == [page_sum(p, b) for p, b in pages]
    assert replica.list_level(9) == levels[9]  # a level's listing attaches sidecars as the whole one does


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=21, transactions=24, grow_rows=40)


def test_compaction_puts_sidecars_and_retention_deletes_them(history: History, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'replica'}"
    replica = Replica.open(url)
    history.ship(replica, 1, 12)  # shipped as Litestream ships: no sidecars
    assert all(f.sums_key is None for f in replica.list_level(0))
    made = [compact_level(replica, 1).file, snapshot(replica).file]
    history.ship(replica, 13, history.last_txid)
    made += [compact_level(replica, 1).file, snapshot(replica).file]
    for info in made:
        assert info is not None
        assert needs_sums(info.size) == (info.sums_key is not None)
        assert [f for f in replica.list_level(info.level) if f.key == info.key] == [info]
    snapshots = replica.list_level(9)
    assert len(snapshots) == 2 and all(f.sums_key for f in snapshots), (
        f"the snapshots should be over {SUMS_MIN_FILE_SIZE} bytes: {snapshots}")
    # Restore reads past sidecars; the real litestream lists past them too.
    restore(replica, tmp_path / "ours.db")
    assert (tmp_path / "ours.db").read_bytes() == history.images[history.last_txid]
    litestream.restore(url, tmp_path / "theirs.db")
    assert (tmp_path / "theirs.db").read_bytes() == history.images[history.last_txid]
    # Retention (the history's times are long past) deletes the older snapshot and its sidecar.
    gone = enforce_snapshot_retention(replica, DEFAULT_SNAPSHOT_RETENTION)
    assert gone == snapshots[:1]
    keys = {o.key for o in replica.store.list("")}
    assert snapshots[0].key not in keys and sums_key(snapshots[0].key) not in keys
    assert snapshots[1].key in keys and sums_key(snapshots[1].key) in keys


@pytest.mark.parametrize("pages", [100, FULL_SPANS_PAGES + 100])
def test_version_2_round_trip_and_prefix(pages: int) -> None:
    """Writers write version 2: the spans first, checked alone, then the per-page checksums. A
    small file has a span per frame (its whole index), a larger one spans of MIN_SPAN_STRIDE."""
    data, sums = encoded_file(pages, seed=9)
    assert sums.spans is not None and sums.file_size == len(data)
    raw = sums.encode()
    assert len(raw) == sums.encoded_size and len(raw) % 4 == 2
    assert PageSums.decode(raw, "k") == sums
    assert sums_layout(len(raw)) == (pages, prefix_size(pages))
    spans = SpanPrefix.decode(raw[:prefix_size(pages)], "k")
    assert (spans.pages, spans.file_size, spans.timestamp) == (pages, len(data), 1)
    stride = 1 if pages <= FULL_SPANS_PAGES else MIN_SPAN_STRIDE
    assert spans.spans.stride == stride
    entries = list(decode_tail(data, len(data), "f").index)
    assert [e.pgno for e in entries[::stride]] == list(spans.spans.first_pgnos)
    assert [sum(e.size for e in entries[i:i + stride]) for i in range(0, pages, stride)] == list(
        spans.spans.lengths)
    with pytest.raises(PageSumsError):
        SpanPrefix.decode(raw[:prefix_size(pages) - 1], "k")


@given(pages=st.integers(1, 3_000_000))
def test_a_listed_size_bounds_the_page_count_and_prefix(pages: int) -> None:
    """A reader sizes its GETs from the listed sidecar size: never below the true values (and
    exact but for the rare sizes two counts of different strides share)."""
    stride = span_stride(pages)
    size = prefix_size(pages) + 4 * pages + 4
    assert size % 4 == 2
    if pages <= FULL_SPANS_PAGES:
        assert stride == 1
    else:
        assert pages <= SPAN_RATIO * stride * stride
        assert stride == MIN_SPAN_STRIDE or pages > SPAN_RATIO * stride * stride // 4
    found = sums_layout(size)
    assert found is not None and found[0] >= pages and found[1] >= prefix_size(pages)
    assert sums_layout(44 + 4 * pages) == (pages, 0), "version 1"
