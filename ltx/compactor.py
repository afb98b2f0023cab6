"""Merge contiguous LTX files into one: latest page wins, pages beyond the final commit drop.

Header rules (superfly/ltx's compactor): page size and min TXID and pre-apply checksum of the
first input; max TXID, commit and timestamp of the last; flags NoChecksum. Streams every input
at once, holding one read buffer and one decoded batch per input, and verifies every input's checksum as it finishes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.errors import LTXError
from ltx.header import FLAG_NO_CHECKSUM, Header
from ltx.pagesums import PageSums


class LTXCompactionError(LTXError):
    """The inputs cannot be merged: mismatched page sizes or a gap in their TXIDs."""


def is_contiguous(prev_max: int, min_txid: int, max_txid: int) -> bool:
    """Whether a file (min, max) continues a chain that has reached `prev_max` (ltx.IsContiguous)."""
    return min_txid <= prev_max + 1 and max_txid > prev_max


def merged_header(headers: Sequence[Header], names: Sequence[str], timestamp: int | None = None) -> Header:
    """The header of the merge of `headers`, after checking they can be merged."""
    if not headers:
        raise ValueError("compaction needs at least one input")
    for i in range(1, len(headers)):
        prev, cur = headers[i - 1], headers[i]
        if cur.page_size != prev.page_size:
            raise LTXCompactionError(names[i], 8, f"page size {cur.page_size} differs from {names[i - 1]}'s "
                                                  f"{prev.page_size}")
        if not is_contiguous(prev.max_txid, cur.min_txid, cur.max_txid):
            raise LTXCompactionError(names[i], 16, f"TXIDs {cur.min_txid:x}-{cur.max_txid:x} do not continue "
                                                   f"{names[i - 1]} (max {prev.max_txid:x})")
    first, last = headers[0], headers[-1]
    return Header(page_size=first.page_size, commit=last.commit, min_txid=first.min_txid,
                  max_txid=last.max_txid, timestamp=last.timestamp if timestamp is None else timestamp,
                  flags=FLAG_NO_CHECKSUM, pre_apply_checksum=0)


def merge_pages(decoders: Sequence[Decoder]) -> Iterator[tuple[int, bytes]]:
    """Yield (pgno, page) ascending over all decoders, the latest decoder's page winning."""
    def tagged(rank: int, dec: Decoder) -> Iterator[tuple[int, int, bytes]]:
        for pgno, page in dec.pages():
            yield pgno, rank, page

    streams = [tagged(-i, dec) for i, dec in enumerate(decoders)]
    prev = 0
    for pgno, _neg, page in heapq.merge(*streams):
        if pgno != prev:
            prev = pgno
            yield pgno, page


def compact(inputs: Sequence[tuple[BinaryIO, str]], out: BinaryIO, timestamp: int | None = None,
            name: str = "") -> Header:
    """Merge `inputs` (stream, name) in TXID order into `out`; return the output header."""
    return compact_with_sums(inputs, out, timestamp, name)[0]


def compact_with_sums(inputs: Sequence[tuple[BinaryIO, str]], out: BinaryIO, timestamp: int | None = None,
                      name: str = "") -> tuple[Header, PageSums]:
    """`compact`, also returning the output's page checksums (for its sidecar)."""
    decoders = [Decoder(src, src_name) for src, src_name in inputs]
    header = merged_header([d.header for d in decoders], [d.name for d in decoders], timestamp)
    enc = Encoder(out, header, name, with_sums=True)
    for pgno, page in merge_pages(decoders):
        if pgno <= header.commit:
            enc.write_page(pgno, page)
    enc.close()
    return header, enc.page_sums
