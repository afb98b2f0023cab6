"""Hostile LTX bytes, for every way the code decodes them: the streaming decoder (whole reads and
reads a few bytes at a time), the tail decoders the VFS and restore use (eager and lazy), single
frames. Whatever the bytes — random, a valid file mutated, a header with any field values — each
returns or raises an `ltx.errors` type, within a deadline, and allocates memory in proportion to
the bytes given, never to the sizes they claim (a 4 GB page size, commit, compressed size or
index length allocates nothing of the kind).

Then the same claims end to end: a replica whose newest file says the database has 4 G pages is
read by verify, restore, the hydrator and the VFS with bounded memory.
"""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydrator.errors import CorruptFileError
from hydrator.hydrator import Hydrator
from ltx.dbheader import CommitSizeError
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.errors import LTXError
from ltx.frame import decode_frame
from ltx.header import HEADER_SIZE, Header
from ltx.index import PageIndex
from ltx.reader import decode_tail, read_file_index
from ltx.replica import Replica
from ltx.restore import restore
from ltx.store.file import FileStore
from ltx.verify import verify
from tests.ltx.ltxfiles import incremental, snapshot
from tests.reliability import tally
from tests.vfs.replicas import History, connect, pragma
from vfs.lazyindex import decode_tail_lazy

#: Memory a decode may take beyond a few times its input (buffers, one page, interpreter noise).
MEMORY_SLACK = 4 * 1024 * 1024
#: Hypothesis examples per target, and the most time one may take.
EXAMPLES = 150
EXAMPLES_SLOW = 3000
DEADLINE_MS = 2000
FOUR_GB = 0xFFFF_FFFF
_HEADER = struct.Struct(">4sIIIQQqQqqIIQ20x")


def valid_files() -> list[bytes]:
    """A few real files to mutate: snapshots and incrementals at two page sizes."""
    return [
        snapshot(512, 7, seed=1)[0],
        snapshot(4096, 3, seed=2)[0],
        incremental(512, 9, [2, 5, 9], min_txid=4, seed=3)[0],
        incremental(1024, 4, [1, 4], min_txid=2, max_txid=6, seed=4)[0],
    ]


VALID = valid_files()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with a few random edits: flips, overwrites, insertions, deletions, cuts."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "overwrite", "insert", "delete", "cut", "u32")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "cut":
            del data[pos:]
        elif op == "u32" and len(data) >= pos + 4:  # a size-like field set to something absurd
            data[pos:pos + 4] = struct.pack(">I", draw(st.sampled_from((0, 1, 0x7FFF_FFFF, FOUR_GB))))
    return bytes(data)


@st.composite
def any_header(draw: st.DrawFn) -> bytes:
    """A header with any field values (the magic right, so the other checks are reached), then
    the rest of a valid file or random bytes."""
    u32 = st.integers(0, FOUR_GB)
    u64 = st.integers(0, 2**64 - 1)
    i64 = st.integers(-(2**63), 2**63 - 1)
    raw = _HEADER.pack(b"LTX1", draw(st.sampled_from((0, 2, 1, 3, FOUR_GB))), draw(st.sampled_from((
        512, 4096, 65536, 0, 1, 3000, 131072, FOUR_GB)) | u32), draw(st.sampled_from((1, 2, 9, FOUR_GB)) | u32),
        draw(st.sampled_from((1, 2, 3)) | u64), draw(st.sampled_from((1, 6, 2**64 - 1)) | u64), draw(i64),
        draw(u64), draw(i64), draw(i64), draw(u32), draw(u32), draw(u64))
    rest = draw(st.sampled_from(VALID))[HEADER_SIZE:] if draw(st.booleans()) else draw(st.binary(max_size=2048))
    return raw + rest


hostile = st.one_of(st.binary(max_size=4096), mutated(), any_header())


class Trickle(io.RawIOBase):
    """A stream that hands out at most a few bytes per read (a slow network)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), 7, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def decode_all(data: bytes) -> None:
    Decoder(io.BytesIO(data), "fuzz").verify()


def decode_trickled(data: bytes) -> None:
    for _ in Decoder(Trickle(data), "fuzz").pages():  # type: ignore[arg-type]
        pass


def decode_tails(data: bytes) -> None:
    """The VFS's and restore's way in: the whole file, then only its last bytes."""
    for tail in (data, data[-64:], data[-300:]):
        try:
            decode_tail(tail, len(data), "fuzz")
        except LTXError:
            pass
    lazy = decode_tail_lazy(data, len(data), "fuzz")
    for pgno in (1, 2, 3, 9, FOUR_GB):
        lazy.find(pgno)
    list(lazy)


def decode_frames(data: bytes) -> None:
    """Every window of the bytes as one frame, at a few page sizes."""
    for page_size in (512, 4096, 65536):
        for start in range(0, min(len(data), 256), 37):
            try:
                decode_frame(data[start:start + 300], page_size, "fuzz", start, None)
            except LTXError:
                pass
    PageIndex.decode(data, "fuzz")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": decode_all, "decoder, a few bytes per read": decode_trickled, "tail decoders": decode_tails,
    "frames and index": decode_frames,
}


@pytest.fixture(scope="module")
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def bounded(call: Callable[[bytes], None], data: bytes) -> int:
    """Run `call(data)` allowing only LTXError; return the peak of memory it allocated."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        call(data)
    except LTXError:
        pass
    return tracemalloc.get_traced_memory()[1] - before


def fuzz(target: str, examples: int) -> None:
    call = TARGETS[target]

    @settings(max_examples=examples, deadline=DEADLINE_MS, derandomize=examples == EXAMPLES, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile)
    def check(data: bytes) -> None:
        tally.add(tally.HOSTILE)
        peak = bounded(call, data)
        assert peak <= 8 * len(data) + MEMORY_SLACK, f"{peak} bytes allocated for {len(data)} bytes of input"

    check()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_hostile_bytes_raise_only_ltx_errors_in_bounded_memory(target: str, traced: None) -> None:
    fuzz(target, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_many_hostile_bytes_raise_only_ltx_errors_in_bounded_memory(target: str, traced: None) -> None:
    fuzz(target, EXAMPLES_SLOW)


def lying(header: Header, frames: bytes = b"", tail: bytes | None = None) -> bytes:
    """A header, raw frame bytes, then an end marker, an index and a trailer (or `tail`)."""
    body = header.encode() + frames + bytes(6)
    return body + (tail if tail is not None else PageIndex().encode() + bytes(16))


CLAIMS: dict[str, bytes] = {
    "page size of 4 GB": Header(page_size=4096, commit=1, min_txid=1, max_txid=1).encode()[:8]
    + struct.pack(">I", FOUR_GB) + Header(page_size=4096, commit=1, min_txid=1, max_txid=1).encode()[12:] + bytes(64),
    "compressed size of 4 GB": lying(Header(page_size=4096, commit=1, min_txid=1, max_txid=1),
                                     struct.pack(">IHI", 1, 1, FOUR_GB) + bytes(64)),
    "snapshot of 4 G pages": lying(Header(page_size=512, commit=FOUR_GB, min_txid=1, max_txid=1),
                                   VALID[0][HEADER_SIZE:-40]),
    "index length of 2**63": VALID[0][:-24] + struct.pack(">Q", 2**63) + VALID[0][-16:],
    "index length of 4 GB": VALID[2][:-24] + struct.pack(">Q", FOUR_GB) + VALID[2][-16:],
    "index entry of a 4 GB frame": lying(Header(page_size=512, commit=1, min_txid=2, max_txid=2), b"",
                                         b"\x01\x64\xff\xff\xff\xff\x0f\x00" + struct.pack(">Q", 8) + bytes(16)),
}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_absurd_claims_allocate_nothing_of_the_kind(claim: str, traced: None, tmp_path: Path) -> None:
    data = CLAIMS[claim]
    for name, call in TARGETS.items():
        tally.add(tally.HOSTILE)
        peak = bounded(call, data)
        assert peak <= MEMORY_SLACK, f"{name}: {peak} bytes for a file with a {claim}"
    with pytest.raises(LTXError):
        decode_all(data)
    store = FileStore(str(tmp_path / "store"))
    store.put("x.ltx", data)
    before = store.stats.bytes_read
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    with pytest.raises(LTXError):
        read_file_index(store, "x.ltx")
    assert store.stats.bytes_read - before <= 64 * 1024, "the reader fetched what the claim said"
    assert tracemalloc.get_traced_memory()[1] - start <= MEMORY_SLACK


def test_a_replica_claiming_4g_pages_is_read_in_bounded_memory(history: History, tmp_path: Path,
                                                               traced: None) -> None:
    """The newest file of a replica says the database grew to 4 G pages (16 TiB), holding one page:
    a well-formed file. Verify, a restore and a hydration (to a 4 GiB claim, to keep the sparse
    files modest) and the VFS handle it without memory in proportion to the claim; restore and
    hydration refuse it (page 1 disagrees), a forced restore cuts to the claim."""
    base = 3
    for commit in (FOUR_GB, 1 << 20):
        url = f"file://{tmp_path / f'replica-{commit}'}"
        replica = Replica.open(url)
        history.ship(replica, 1, base)
        txid = base + 1
        header = Header(page_size=history.page_size, commit=commit, min_txid=txid, max_txid=txid,
                        timestamp=history.timestamp_ms(txid))
        out = io.BytesIO()
        enc = Encoder(out, header, "lying")
        enc.write_page(1, history.pages(base)[0])
        enc.close()
        replica.put_file(0, txid, txid, out.getvalue(), timestamp_ms=header.timestamp)
        tally.add(tally.HOSTILE)
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        verify(replica)
        conn = connect(tmp_path / "vfs.db", url, poll=0, wait=0)
        try:
            assert int(pragma(conn, "page_count")) == commit
            assert conn.execute("SELECT count(*) FROM kv").fetchall()
        finally:
            conn.close()
        if commit != FOUR_GB:
            # Page 1 says otherwise: refused unless forced (ltx.dbheader), then cut to the claim.
            with pytest.raises(CommitSizeError):
                restore(replica, tmp_path / f"refused-{commit}.db")
            restored = restore(replica, tmp_path / f"restored-{commit}.db", force=True)
            assert restored.commit == commit
            with Hydrator(replica, tmp_path / f"hydrated-{commit}.db") as hydrator, pytest.raises(CorruptFileError):
                hydrator.run()
        replica.close()
        peak = tracemalloc.get_traced_memory()[1] - start
        assert peak <= 16 * MEMORY_SLACK, f"{peak} bytes allocated reading a replica that claims {commit} pages"
        for leftover in tmp_path.glob(f"*-{commit}.db"):
            leftover.unlink()


def test_random_streams_never_hang(traced: None) -> None:
    """Seeded random streams of every length up to a few KiB, fed a few bytes per read."""
    rng = random.Random(5)
    for _ in range(200):
        tally.add(tally.HOSTILE)
        data = rng.choice(VALID)[:HEADER_SIZE] + rng.randbytes(rng.randrange(4096))
        bounded(decode_trickled, data)
