"""The hydrator's fast verifying loop agrees with ltx's Decoder: same pages from good files, an
error naming the file for every damaged, truncated or padded one."""

from __future__ import annotations

import io

import pytest

from hydrator import verify as verify_mod
from hydrator.verify import verify_file
from ltx.decoder import Decoder
from ltx.errors import LTXChecksumError, LTXError, LTXIndexError, LTXPageOrderError, LTXTruncatedError
from ltx.header import Header
from ltx.index import PageIndex
from tests.ltx.ltxfiles import assemble, frames_of, incremental, make_pages, snapshot


def pages_of(data: bytes, name: str = "f.ltx") -> tuple[list[tuple[int, bytes]], int]:
    got: list[tuple[int, bytes]] = []
    summary = verify_file(io.BytesIO(data), name, lambda pgnos, pages: got.extend(zip(pgnos, pages, strict=True)))
    assert summary.size == len(data)
    return got, summary.pages


@pytest.mark.parametrize("read_size", [1, 7, 1000, 1 << 20])
def test_same_pages_as_the_decoder(monkeypatch: pytest.MonkeyPatch, read_size: int) -> None:
    monkeypatch.setattr(verify_mod, "READ_SIZE", read_size)
    for data, _ in (snapshot(1024, 40, seed=3), incremental(4096, 90, [2, 5, 6, 7, 80, 90], min_txid=4, max_txid=9),
                    incremental(512, 3, [3], min_txid=2)):
        got, count = pages_of(data)
        assert got == list(Decoder(io.BytesIO(data), "f").pages())
        assert count == len(got)


def test_every_damaged_byte_is_refused() -> None:
    data, _ = incremental(512, 6, [1, 3, 6], min_txid=5, seed=9)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises(LTXError) as err:
            pages_of(bytes(bad), "bad.ltx")
        assert err.value.name == "bad.ltx"


def test_truncation_and_trailing_bytes_are_refused() -> None:
    data, _ = snapshot(512, 4, seed=2)
    for n in range(len(data)):
        with pytest.raises(LTXError):
            pages_of(data[:n])
    with pytest.raises(LTXError, match="bytes after the pages|length field"):
        pages_of(data + b"\0")


def test_lying_index_with_a_good_checksum_is_refused() -> None:
    header = Header(page_size=512, commit=9, min_txid=3, max_txid=3)
    pages = make_pages(5, 512, [2, 4, 9])
    good = assemble(header, frames_of(pages))
    pages_of(good)
    index = PageIndex()
    index.append(2, 100, 50)  # wrong first entry, right count
    index.append(4, 200, 50)
    index.append(9, 300, 50)
    with pytest.raises(LTXIndexError, match="first index entry"):
        pages_of(assemble(header, frames_of(pages), index=index.encode()))
    short = PageIndex()
    short.append(2, 100, 50)
    with pytest.raises(LTXIndexError, match="entries"):
        pages_of(assemble(header, frames_of(pages), index=short.encode()))
    with pytest.raises(LTXChecksumError):
        pages_of(assemble(header, frames_of(pages), checksum=(1 << 63) | 12345))


def test_snapshot_missing_a_page_is_refused() -> None:
    header = Header(page_size=512, commit=3, min_txid=1, max_txid=1)
    with pytest.raises(LTXPageOrderError):
        pages_of(assemble(header, frames_of(make_pages(1, 512, [1, 3]))))
    with pytest.raises(LTXPageOrderError, match="ends at page 2"):
        pages_of(assemble(header, frames_of(make_pages(1, 512, [1, 2]))))
    with pytest.raises(LTXTruncatedError):
        pages_of(b"LTX1")
