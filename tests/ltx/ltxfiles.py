"""Build LTX files in code for the codec tests: seeded pages, encoded files, hand-assembled ones.

`assemble` writes a file byte by byte without the encoder's checks (so tests can craft a lock
page, pages out of order, a lying index) and still computes a correct file checksum, so that the
decoder's specific check, not the checksum, is what a test sees fail.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lz4.block

from ltx.checksum import crc64_update, file_checksum
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.frame import END_OF_PAGES, FRAME_PREFIX_SIZE, PAGE_FLAG_SIZE
from ltx.header import HEADER_SIZE, Header
from ltx.index import PageIndex
from ltx.replica import Replica

Pages = dict[int, bytes]


def make_page(rng: random.Random, page_size: int) -> bytes:
    """A page that is part noise, part runs: compresses somewhat, like real pages."""
    cut = rng.randrange(page_size + 1)
    return rng.randbytes(cut) + bytes([rng.randrange(256)]) * (page_size - cut)


def make_pages(seed: int, page_size: int, pgnos: Iterable[int]) -> Pages:
    rng = random.Random(seed)
    return {p: make_page(rng, page_size) for p in pgnos}


def snapshot_pgnos(header: Header) -> list[int]:
    """Every page a snapshot with this header holds: 1..commit without the lock page."""
    return [p for p in range(1, header.commit + 1) if p != header.lock_pgno]


def encode(header: Header, pages: Pages, name: str = "test.ltx", post_apply: int = 0) -> bytes:
    """Encode `pages` (written in page order) under `header` with the real encoder."""
    out = io.BytesIO()
    enc = Encoder(out, header, name)
    for pgno in sorted(pages):
        enc.write_page(pgno, pages[pgno])
    enc.close(post_apply)
    return out.getvalue()


def decode(data: bytes, name: str = "test.ltx") -> tuple[Header, Pages]:
    """Decode a whole file (every check runs); return its header and pages."""
    dec = Decoder(io.BytesIO(data), name)
    pages = dict(dec.pages())
    return dec.header, pages


def snapshot(page_size: int, commit: int, seed: int = 1, max_txid: int = 1,
             timestamp: int = 1000) -> tuple[bytes, Pages]:
    header = Header(page_size=page_size, commit=commit, min_txid=1, max_txid=max_txid, timestamp=timestamp)
    pages = make_pages(seed, page_size, snapshot_pgnos(header))
    return encode(header, pages), pages


def incremental(page_size: int, commit: int, pgnos: Iterable[int], min_txid: int, max_txid: int | None = None,
                seed: int = 2, timestamp: int = 2000) -> tuple[bytes, Pages]:
    header = Header(page_size=page_size, commit=commit, min_txid=min_txid,
                    max_txid=min_txid if max_txid is None else max_txid, timestamp=timestamp)
    pages = make_pages(seed, page_size, pgnos)
    return encode(header, pages), pages


@dataclass
class RawFrame:
    """One page frame as it will be written: page number, flags, LZ4 block, and the page the
    checksum covers (normally what the block decompresses to)."""

    pgno: int
    page: bytes
    block: bytes | None = None
    flags: int = PAGE_FLAG_SIZE
    size_field: int | None = None

    def raw_block(self) -> bytes:
        return self.block if self.block is not None else lz4.block.compress(self.page, store_size=False)


def assemble(header: Header | bytes, frames: Sequence[RawFrame], index: bytes | None = None,
             post_apply: int = 0, checksum: int | None = None) -> bytes:
    """Write a file by hand: header, frames, end marker, index (from the frames unless given),
    trailer with a correct file checksum (unless `checksum` is given)."""
    raw_header = header.encode() if isinstance(header, Header) else header
    out = bytearray(raw_header)
    crc = crc64_update(0, raw_header)
    built = PageIndex()
    for f in frames:
        block = f.raw_block()
        prefix = struct.pack(">IHI", f.pgno, f.flags, len(block) if f.size_field is None else f.size_field)
        built.append(f.pgno, len(out), len(prefix) + len(block))
        out += prefix + block
        crc = crc64_update(crc64_update(crc, prefix), f.page)
    tail = END_OF_PAGES + (built.encode() if index is None else index)
    post = struct.pack(">Q", post_apply)
    crc = crc64_update(crc64_update(crc, tail), post)
    out += tail + post + struct.pack(">Q", file_checksum(crc) if checksum is None else checksum)
    return bytes(out)


def frames_of(pages: Pages) -> list[RawFrame]:
    return [RawFrame(p, pages[p]) for p in sorted(pages)]


def index_of(triples: list[tuple[int, int, int]]) -> bytes:
    """An encoded page index of (pgno, offset, size) entries, right or wrong."""
    index = PageIndex()
    for t in triples:
        index.append(*t)
    return index.encode()


def true_index(frames: list[RawFrame]) -> list[tuple[int, int, int]]:
    """The (pgno, offset, size) entries that `frames`, laid out after a header, really have."""
    out, offset = [], HEADER_SIZE
    for f in frames:
        size = FRAME_PREFIX_SIZE + len(f.raw_block())
        out.append((f.pgno, offset, size))
        offset += size
    return out


def two_page_database(path: Path, page_size: int = 4096) -> list[bytes]:
    """A real SQLite database of 2 pages (page 1 records 2 pages, validly); its pages."""
    import apsw

    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {page_size}; PRAGMA journal_mode = delete; CREATE TABLE t(x)").fetchall()
    conn.execute("INSERT INTO t VALUES (42)")
    conn.close()
    data = path.read_bytes()
    assert len(data) == 2 * page_size
    return [data[:page_size], data[page_size:]]


def lying_commit_replica(replica: Replica, pages: list[bytes], commit: int, *, with_page1: bool = True) -> str:
    """TXID 1: a snapshot of `pages`; TXID 2: a well-formed, checksummed file whose header says the
    database has `commit` pages, holding page 1 unchanged (or, without `with_page1`, page 2).
    Return TXID 2's key."""
    page_size = len(pages[0])
    first = Header(page_size=page_size, commit=len(pages), min_txid=1, max_txid=1, timestamp=1000)
    replica.put_file(0, 1, 1, encode(first, dict(enumerate(pages, 1))), timestamp_ms=1000)
    lying = Header(page_size=page_size, commit=commit, min_txid=2, max_txid=2, timestamp=2000)
    held = {1: pages[0]} if with_page1 else {2: pages[1]}
    return replica.put_file(0, 2, 2, encode(lying, held), timestamp_ms=2000)
