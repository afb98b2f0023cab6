"""File contents: writes at any offset, reads, truncation, chunk spanning, checked against a model."""

from __future__ import annotations

import errno
import io
import random

import pytest

from blockmap.files import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE
from blockmap.meta import as_int
from blockmap.node import FLAG_APPEND
from blockmap.slices import CHUNK_SIZE, MAX_FILE_SIZE, SliceRecord, decode_records
from blockmap.volume import Volume
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.metacheck import metadata_problems


def _records(vol: Volume, inode: int, indx: int = 0) -> list:  # type: ignore[type-arg]
    db = meta_conn(vol)
    row = db.execute("SELECT slices FROM jfs_chunk WHERE inode = ? AND indx = ?", (inode, indx)).fetchone()
    return [] if row is None else decode_records(row[0])


def test_write_creates_one_slice_and_record_per_flush(vol: Volume) -> None:
    data = random.Random(1).randbytes(3 * TEST_BLOCK_SIZE + 123)
    attr = vol.write_file("/f", data)
    assert attr.st_size == len(data)
    recs = _records(vol, attr.st_ino)
    assert len(recs) == 1
    r = recs[0]
    assert (r.pos, r.off, r.len, r.size) == (0, 0, len(data), len(data))
    keys = sorted(o.key for o in vol.store.list("testvol/chunks/"))
    sid = r.id
    assert keys == sorted(
        f"testvol/chunks/0/0/{sid}_{i}_{n}"
        for i, n in enumerate([TEST_BLOCK_SIZE] * 3 + [123])
    )
    assert vol.read_file("/f") == data


def test_overwrites_appends_and_sparse_writes_match_a_model(vol: Volume, rng: random.Random) -> None:
    model = bytearray()
    with vol.open_file("/f", "w+") as f:
        for _ in range(60):
            op = rng.random()
            if op < 0.6:
                off = rng.randrange(0, len(model) + 200_000)
                data = rng.randbytes(rng.randrange(1, 150_000))
                f.pwrite(data, off)
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off : off + len(data)] = data
            elif op < 0.75:
                n = rng.randrange(0, len(model) + 100_000)
                f.truncate(n)
                if n < len(model):
                    del model[n:]
                else:
                    model.extend(bytes(n - len(model)))
            elif op < 0.85:
                data = rng.randbytes(rng.randrange(1, 30_000))
                f.seek(0, io.SEEK_END)
                f.write(data)
                model.extend(data)
            else:
                off = rng.randrange(0, len(model) + 10)
                n = rng.randrange(0, 100_000)
                assert f.pread(n, off) == bytes(model[off : off + n])
    assert vol.read_file("/f") == bytes(model)
    assert vol.stat("/f").st_size == len(model)
    assert metadata_problems(meta_conn(vol)) == []


def test_sequential_small_writes_become_one_slice(vol: Volume) -> None:
    with vol.open_file("/log", "w") as f:
        for i in range(100):
            f.write(b"%05d\n" % i)
    recs = _records(vol, vol.stat("/log").st_ino)
    assert len(recs) == 1 and recs[0].len == 600
    assert vol.read_file("/log").splitlines()[42] == b"00042"


def test_large_file_spans_chunks(vol: Volume) -> None:
    """A 70 MiB file, mostly sparse, with real bytes across the 64 MiB chunk boundary."""
    r = random.Random(7)
    head = r.randbytes(300_000)
    across = r.randbytes(400_000)
    tail = r.randbytes(100_000)
    size = 70 << 20
    with vol.open_file("/big", "w") as f:
        f.pwrite(head, 0)
        f.pwrite(across, CHUNK_SIZE - 150_000)
        f.pwrite(tail, size - len(tail))
    assert vol.stat("/big").st_size == size
    ino = vol.stat("/big").st_ino
    assert {r.pos for r in _records(vol, ino, 0)} == {0, CHUNK_SIZE - 150_000}
    assert {r.pos for r in _records(vol, ino, 1)} == {0, size - len(tail) - CHUNK_SIZE}
    assert vol.read_file("/big", 0, len(head)) == head
    assert vol.read_file("/big", CHUNK_SIZE - 150_000, len(across)) == across
    assert vol.read_file("/big", size - len(tail), len(tail)) == tail
    assert vol.read_file("/big", 10 << 20, 1000) == bytes(1000)
    # The 64 MiB boundary reads through both chunks' records.
    assert vol.read_file("/big", CHUNK_SIZE - 10, 20) == across[150_000 - 10 : 150_000 + 10]
    assert vol.usage().used_space == size
    assert metadata_problems(meta_conn(vol)) == []


def test_truncate_shrink_then_extend_reads_zeros(vol: Volume) -> None:
    data = random.Random(3).randbytes(200_000)
    vol.write_file("/f", data)
    vol.truncate("/f", 50_000)
    assert vol.read_file("/f") == data[:50_000]
    vol.truncate("/f", 120_000)
    assert vol.read_file("/f") == data[:50_000] + bytes(70_000)
    vol.pwrite("/f", b"XY", 119_998)
    assert vol.read_file("/f")[-4:] == b"\0\0XY"
    assert metadata_problems(meta_conn(vol)) == []


def test_truncate_to_zero_gives_whole_chunks_back(vol: Volume) -> None:
    vol.write_file("/f", random.Random(4).randbytes(100_000))
    assert list(vol.store.list("testvol/chunks/"))
    vol.truncate("/f", 0)
    assert list(vol.store.list("testvol/chunks/")) == []
    assert vol.read_file("/f") == b""
    assert metadata_problems(meta_conn(vol)) == []


def test_fallocate_grows_punches_and_zeroes_as_juicefs(vol: Volume) -> None:
    """blockmap.files.fallocate: modes, errors and the records it leaves (holes, as JuiceFS)."""
    data = random.Random(5).randbytes(CHUNK_SIZE + 300_000)  # spans two chunks
    ino = vol.write_file("/f", data).st_ino
    eng = vol.engine
    eng.fallocate_inode(ino, FALLOC_FL_KEEP_SIZE, 0, CHUNK_SIZE * 3)
    assert vol.stat("/f").st_size == len(data)
    # A hole across the chunk boundary and past the end: clipped to the length, one record a chunk.
    eng.fallocate_inode(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, CHUNK_SIZE - 1000, 1 << 30)
    want = data[: CHUNK_SIZE - 1000] + bytes(len(data) - CHUNK_SIZE + 1000)
    assert vol.stat("/f").st_size == len(data) and vol.read_file("/f") == want
    assert _records(vol, ino, 0)[-1] == SliceRecord(CHUNK_SIZE - 1000, 0, 0, 0, 1000)
    assert _records(vol, ino, 1)[-1] == SliceRecord(0, 0, 0, 0, 300_000)
    eng.fallocate_inode(ino, FALLOC_FL_ZERO_RANGE, 10, 20)
    eng.fallocate_inode(ino, 0, len(data), 5000)  # grows: the new bytes read as zeros
    want = want[:10] + bytes(20) + want[30:] + bytes(5000)
    assert vol.stat("/f").st_size == len(data) + 5000 and vol.read_file("/f") == want
    for mode, off, size, err in [
        (FALLOC_FL_PUNCH_HOLE, 0, 10, errno.EINVAL),  # a hole must keep the size
        (0x08, 0, 4096, errno.EOPNOTSUPP),  # collapse range
        (0x20, 0, 4096, errno.EOPNOTSUPP),  # insert range
        (0, 0, 0, errno.EINVAL),
        (0, -1, 10, errno.EINVAL),
        (0, MAX_FILE_SIZE - 10, 10, errno.EFBIG),
    ]:
        with pytest.raises(OSError) as exc:
            eng.fallocate_inode(ino, mode, off, size)
        assert exc.value.errno == err, (mode, off, size)
    assert vol.read_file("/f") == want  # nothing a refused call did
    vol.mkdir("/d")
    with pytest.raises(OSError) as exc:
        eng.fallocate_inode(vol.stat("/d").st_ino, 0, 0, 10)
    assert exc.value.errno == errno.EISDIR
    assert metadata_problems(meta_conn(vol)) == []


def test_fallocate_on_append_only_files_only_adds(vol: Volume) -> None:
    ino = vol.write_file("/f", b"data").st_ino
    vol.engine.write(lambda c: c.execute("UPDATE jfs_node SET flags = ? WHERE inode = ?", (FLAG_APPEND, ino)))
    vol.engine.fallocate_inode(ino, FALLOC_FL_KEEP_SIZE, 0, 100)
    vol.engine.fallocate_inode(ino, 0, 0, 6)  # growing only adds, as an append does
    for mode in (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE):
        with pytest.raises(OSError) as exc:
            vol.engine.fallocate_inode(ino, mode, 0, 2)
        assert exc.value.errno == errno.EPERM
    assert vol.read_file("/f") == b"data\0\0"


def test_files_end_before_max_file_size(vol: Volume) -> None:
    """JuiceFS's 128 PiB limit: a truncate or write reaching it is EFBIG, and nothing changes."""
    vol.write_file("/f", b"abc")
    vol.truncate("/f", MAX_FILE_SIZE - 1)
    assert vol.stat("/f").st_size == MAX_FILE_SIZE - 1
    with pytest.raises(OSError) as err:
        vol.truncate("/f", MAX_FILE_SIZE)
    assert err.value.errno == errno.EFBIG
    with vol.open_file("/f", "r+") as f, pytest.raises(OSError) as err:
        f.pwrite(b"x", MAX_FILE_SIZE - 1)
    assert err.value.errno == errno.EFBIG
    vol.truncate("/f", 3)
    assert vol.read_file("/f") == b"abc"
    assert metadata_problems(meta_conn(vol)) == []


def test_copy_from_and_to_streams(vol: Volume) -> None:
    data = random.Random(5).randbytes(1_000_000)
    vol.write_file("/s", io.BytesIO(data))
    out = io.BytesIO()
    with vol.open_file("/s") as f:
        assert f.copy_to(out) == len(data)
    assert out.getvalue() == data


class _PatternStream(io.RawIOBase):
    """`size` bytes of a repeating seeded pattern, handed out in reads of at most `piece` bytes
    (a pipe's short reads), without holding them all."""

    def __init__(self, size: int, piece: int = 3 << 20) -> None:
        self.pattern = random.Random(11).randbytes(1 << 20)
        self.left = size
        self.pos = 0
        self.piece = piece

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = min(self.left, self.piece, size if size >= 0 else self.left)
        out = bytearray()
        while len(out) < n:
            at = (self.pos + len(out)) % len(self.pattern)
            out += self.pattern[at : at + n - len(out)]
        self.left -= n
        self.pos += n
        return bytes(out)

    def expected(self, offset: int, length: int) -> bytes:
        return bytes(self.pattern[(offset + i) % len(self.pattern)] for i in range(length))


def test_a_stream_across_the_chunk_boundary_is_one_transaction(vol: Volume) -> None:
    size = CHUNK_SIZE + 5
    commits = vol.commits
    attr = vol.write_file("/streamed", _PatternStream(size))  # type: ignore[arg-type]
    assert attr.st_size == size
    assert vol.commits - commits <= 3  # the write itself, and at most two ID reservations
    assert [(r.pos, r.len) for r in _records(vol, attr.st_ino, 0)] == [(0, CHUNK_SIZE)]
    assert [(r.pos, r.len) for r in _records(vol, attr.st_ino, 1)] == [(0, 5)]
    model = _PatternStream(0)
    assert vol.read_file("/streamed", CHUNK_SIZE - 7, 12) == model.expected(CHUNK_SIZE - 7, 12)
    assert vol.read_file("/streamed", 0, 100) == model.expected(0, 100)
    # replace_file: a new inode under the name (an old hard link keeps the old bytes).
    vol.link("/streamed", "/old")
    new = vol.replace_file("/streamed", io.BytesIO(b"small now"))  # type: ignore[arg-type]
    assert new.st_ino != attr.st_ino
    assert vol.read_file("/streamed") == b"small now"
    assert vol.stat("/old").st_size == size and vol.stat("/old").st_nlink == 1
    assert metadata_problems(meta_conn(vol)) == []


def test_auto_compaction_merges_many_records(vol: Volume) -> None:
    vol.write_file("/f", b"")
    model = bytearray(50_000)
    r = random.Random(6)
    for _ in range(120):
        off = r.randrange(0, 49_000)
        data = r.randbytes(r.randrange(1, 1000))
        vol.pwrite("/f", data, off)
        model[off : off + len(data)] = data
    ino = vol.stat("/f").st_ino
    assert len(_records(vol, ino)) < 100
    assert vol.read_file("/f") == bytes(model[: vol.stat("/f").st_size])
    # Replaced slices were released: every stored block belongs to a live record.
    live = {rec.id for rec in _records(vol, ino) if rec.id}
    stored = {int(o.key.rsplit("/", 1)[1].split("_")[0]) for o in vol.store.list("testvol/chunks/")}
    assert stored == live
    assert metadata_problems(meta_conn(vol)) == []


def test_explicit_compaction_keeps_bytes(vol: Volume) -> None:
    vol.auto_compact = False
    r = random.Random(8)
    model = bytearray()
    with vol.open_file("/f", "w") as f:
        for _ in range(30):
            off = r.randrange(0, 300_000)
            data = r.randbytes(r.randrange(1, 20_000))
            f.pwrite(data, off)
            f.flush()
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off : off + len(data)] = data
    ino = vol.stat("/f").st_ino
    assert len(_records(vol, ino)) == 30
    assert vol.compact("/") >= 1
    assert len(_records(vol, ino)) == 1
    assert vol.read_file("/f") == bytes(model)
    assert metadata_problems(meta_conn(vol)) == []


def test_write_file_replaces_contents_and_frees_old_blocks(vol: Volume) -> None:
    vol.write_file("/f", random.Random(9).randbytes(5 * TEST_BLOCK_SIZE))
    vol.write_file("/f", b"short")
    assert vol.read_file("/f") == b"short"
    assert len(list(vol.store.list("testvol/chunks/"))) == 1
    assert vol.usage().used_space == 4096
    assert metadata_problems(meta_conn(vol)) == []


def test_slices_stay_blobs_and_text_values_still_read(vol: Volume) -> None:
    vol.write_file("/f", b"a" * 1000)
    vol.pwrite("/f", b"b" * 10, 500)
    ino = vol.stat("/f").st_ino
    db = meta_conn(vol)
    assert db.execute("SELECT typeof(slices) FROM jfs_chunk WHERE inode = ?", (ino,)).fetchall()[0][0] == "blob"
    # The binary appends with `slices || ?`, which SQLite types TEXT: the bytes are what count.
    sid = as_int(db.execute("SELECT MAX(chunkid) FROM jfs_chunk_ref").fetchall()[0][0]) + 1
    rec = SliceRecord(0, sid, 5, 0, 5).encode()
    vol.engine.blocks.upload(sid, b"c" * 5)
    db.execute("UPDATE jfs_chunk SET slices = slices || ? WHERE inode = ?", (rec, ino))
    db.execute("INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?, 5, 1)", (sid,))
    assert db.execute("SELECT typeof(slices) FROM jfs_chunk WHERE inode = ?", (ino,)).fetchall()[0][0] == "text"
    assert vol.read_file("/f") == b"c" * 5 + b"a" * 495 + b"b" * 10 + b"a" * 490
