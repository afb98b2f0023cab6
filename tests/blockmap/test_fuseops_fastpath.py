"""The mount's event-loop fast path (blockmap.fuseops): local metadata work runs in the loop when
the metadata connection is free and in a worker thread when it is not; writes that only fill the
buffer stay in the loop; the kernel's `security.capability` question before every write is
answered without a lookup until such an attribute exists; on a volume opened as the mount opens
it, a create and a small file's flush (its block written back) run their transaction in the loop
while it would not wait for the store. Called directly (no kernel needed)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pyfuse3 = pytest.importorskip("pyfuse3")
trio = pytest.importorskip("trio")

from blockmap.blockcache import BlockCache  # noqa: E402
from blockmap.engine import AUTO_COMPACT_RECORDS  # noqa: E402
from blockmap.fuseops import FuseOperations  # noqa: E402
from blockmap.volume import Volume  # noqa: E402
from tests.blockmap.conftest import TEST_BLOCK_SIZE  # noqa: E402

ROOT_INODE = 1


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[FuseOperations]:
    (tmp_path / "data").mkdir()
    Volume.format(f"file://{tmp_path}/meta", f"file://{tmp_path}/data", "testvol",
                  block_size=TEST_BLOCK_SIZE).close()
    vol = Volume.open(f"file://{tmp_path}/meta", sync="interval:1s", block_cache=BlockCache())  # as a mount opens
    try:
        yield FuseOperations(vol.engine)
    finally:
        vol.close()


@pytest.fixture
def mount_ops(tmp_path: Path) -> Iterator[FuseOperations]:
    """Operations over a volume opened as `blockmap mount` opens it: group commit, an upload
    budget (blocks written back), the only writer."""
    (tmp_path / "data").mkdir()
    Volume.format(f"file://{tmp_path}/meta", f"file://{tmp_path}/data", "testvol",
                  block_size=TEST_BLOCK_SIZE).close()
    vol = Volume.open(f"file://{tmp_path}/meta", sync="interval:1s", block_cache=BlockCache(),
                      upload_budget=8 << 20, exclusive=True)
    try:
        yield FuseOperations(vol.engine)
    finally:
        vol.close()


def chunk_records(ops: FuseOperations, inode: int) -> int:
    """Slice records (24 bytes each) in the file's first chunk."""
    blob = ops.engine.read(lambda c: c.execute("SELECT CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? "
                                               "AND indx = 0", (inode,)).fetchone()[0])
    return len(blob) // 24


def test_a_small_files_create_and_flush_run_in_the_loop(mount_ops: FuseOperations, tmp_path: Path) -> None:
    ops = mount_ops
    data = bytes(range(256)) * 4

    async def scenario() -> list[int]:
        counts = []
        before = ops.inline
        info, attr = await ops.create(ROOT_INODE, b"small", 0o644, 0, None)
        counts.append(ops.inline - before)
        await ops.write(info.fh, 0, data)
        before = ops.inline
        await ops.flush(info.fh)
        counts.append(ops.inline - before)
        assert ops.engine.length(attr.st_ino) == len(data), "the flush recorded the write"
        assert await ops.read(info.fh, 0, len(data)) == data  # from the staged block
        await ops.release(info.fh)
        return counts

    # The first create reserves a batch of inode numbers (a ship): it goes to a worker.
    assert trio.run(scenario) in ([0, 1], [1, 1])
    created, flushed = trio.run(lambda: _second(ops, data))
    assert (created, flushed) == (1, 1), "a create and a small file's flush are answered in the loop"
    ops.engine.flush()
    with Volume.open(f"file://{tmp_path}/meta", read_only=True) as other:
        assert other.read_file("/small") == data and other.read_file("/again") == data
        assert other.fsck().ok


async def _second(ops: FuseOperations, data: bytes) -> tuple[int, int]:
    before = ops.inline
    info, _ = await ops.create(ROOT_INODE, b"again", 0o644, 0, None)
    created = ops.inline - before
    await ops.write(info.fh, 0, data)
    before = ops.inline
    await ops.flush(info.fh)
    flushed = ops.inline - before
    await ops.release(info.fh)
    return created, flushed


def test_writes_that_would_wait_for_the_store_go_to_a_worker(tmp_path: Path) -> None:
    """`--sync commit` ships every commit before it returns: never in the loop."""
    (tmp_path / "data").mkdir()
    Volume.format(f"file://{tmp_path}/meta", f"file://{tmp_path}/data", "testvol",
                  block_size=TEST_BLOCK_SIZE).close()
    with Volume.open(f"file://{tmp_path}/meta", sync="commit", block_cache=BlockCache(),
                     upload_budget=8 << 20, exclusive=True) as vol:
        ops = FuseOperations(vol.engine)
        assert not vol.engine.db.writes_at_once()
        assert trio.run(lambda: _second(ops, b"x" * 100)) == (0, 0)
        assert vol.read_file("/again") == b"x" * 100


def test_a_flush_in_the_loop_leaves_compaction_to_a_worker(mount_ops: FuseOperations) -> None:
    """A chunk that reaches AUTO_COMPACT_RECORDS records is compacted after the flush (its
    blocks are read and stored again), as after a flush in a worker."""
    ops = mount_ops
    piece = b"0123456789"

    async def scenario() -> tuple[int, int, int, bytes]:
        info, attr = await ops.create(ROOT_INODE, b"log", 0o644, 0, None)
        before = ops.inline
        for i in range(AUTO_COMPACT_RECORDS - 1):
            await ops.write(info.fh, i * len(piece), piece)
            await ops.flush(info.fh)
        inline = ops.inline - before
        records = chunk_records(ops, attr.st_ino)
        await ops.write(info.fh, (AUTO_COMPACT_RECORDS - 1) * len(piece), piece)
        await ops.flush(info.fh)  # the 100th record: the chunk is compacted
        got = await ops.read(info.fh, 0, AUTO_COMPACT_RECORDS * len(piece))
        await ops.release(info.fh)
        return inline, records, chunk_records(ops, attr.st_ino), got

    inline, before, after, got = trio.run(scenario)
    assert inline >= 2 * (AUTO_COMPACT_RECORDS - 1) - 2, "writes and flushes ran in the loop"
    assert before == AUTO_COMPACT_RECORDS - 1
    assert after == 1, "the flush that reached the limit compacted the chunk"
    assert got == piece * AUTO_COMPACT_RECORDS


def test_lookups_run_in_the_loop_unless_the_connection_is_busy(ops: FuseOperations) -> None:
    async def lookup() -> int:
        with pytest.raises(pyfuse3.FUSEError) as err:
            await ops.lookup(ROOT_INODE, b"missing", None)
        assert err.value.errno == errno.ENOENT
        return ops.inline

    assert trio.run(lookup) == 1, "answered in the loop"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ops.engine.db.held_if_free() as free:
            assert free
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)

    async def busy_lookup() -> int:
        async with trio.open_nursery() as nursery:
            # Starts only once the lookup below has found the connection busy and awaits a worker.
            nursery.start_soon(trio.to_thread.run_sync, release.set)
            with pytest.raises(pyfuse3.FUSEError):
                await ops.lookup(ROOT_INODE, b"missing", None)
        return ops.inline

    try:
        assert trio.run(busy_lookup) == 1, "a busy connection sends the lookup to a worker, not the loop"
    finally:
        release.set()
        holder.join()


def test_capability_question_needs_no_lookup_until_one_is_set(ops: FuseOperations) -> None:
    async def scenario() -> tuple[int, int, bytes]:
        attr = await ops.mknod(ROOT_INODE, b"f", 0o100644, 0, None)
        before = ops.inline
        with pytest.raises(pyfuse3.FUSEError) as err:
            await ops.getxattr(attr.st_ino, b"security.capability", None)
        assert err.value.errno == errno.ENODATA
        asked = ops.inline - before  # 0: answered without touching the metadata
        await ops.setxattr(attr.st_ino, b"security.capability", b"\x01\x00\x00\x02", None)
        before = ops.inline
        value = await ops.getxattr(attr.st_ino, b"security.capability", None)
        return asked, ops.inline - before, value

    asked, looked, value = trio.run(scenario)
    assert asked == 0
    assert looked == 1 and value == b"\x01\x00\x00\x02", "once set, the attribute is read from the metadata"


def test_a_write_that_fills_only_the_buffer_stays_in_the_loop(ops: FuseOperations) -> None:
    async def scenario() -> tuple[int, int, bytes]:
        info, attr = await ops.create(ROOT_INODE, b"g", 0o644, 0, None)
        ops.engine.ids.next_slice_id()  # a batch of slice IDs is at hand
        before = ops.inline
        assert await ops.write(info.fh, 0, b"a" * 100) == 100
        small = ops.inline - before
        before = ops.inline
        assert await ops.write(info.fh, 100, b"b" * TEST_BLOCK_SIZE) == TEST_BLOCK_SIZE  # fills a block
        filling = ops.inline - before
        await ops.flush(info.fh)
        data = await ops.read(info.fh, 0, 200)
        await ops.release(info.fh)
        return small, filling, data

    small, filling, data = trio.run(scenario)
    assert small == 1, "a write into the buffer is answered in the loop"
    assert filling == 0, "a write that starts an upload goes to a worker"
    assert data == b"a" * 100 + b"b" * 100


def test_reads_of_cached_blocks_and_empty_flushes_stay_in_the_loop(ops: FuseOperations) -> None:
    data = bytes(range(256)) * (3 * TEST_BLOCK_SIZE // 256)

    async def scenario() -> list[tuple[str, int, bytes]]:
        info, _ = await ops.create(ROOT_INODE, b"h", 0o644, 0, None)
        await ops.write(info.fh, 0, data)
        await ops.flush(info.fh)  # records the slice: its blocks are in the memory cache
        seen = []
        for off, size in ((0, 100), (TEST_BLOCK_SIZE - 50, 100), (len(data) - 10, 100)):
            before = ops.inline
            got = await ops.read(info.fh, off, size)
            seen.append((f"read {off}", ops.inline - before, got))
        before = ops.inline
        await ops.write(info.fh, len(data), b"tail")  # buffered, not recorded
        got = await ops.read(info.fh, len(data), 10)
        seen.append(("read of buffered bytes", ops.inline - before - 1, got))  # the write was inline
        before = ops.inline
        await ops.flush(info.fh)
        await ops.flush(info.fh)
        seen.append(("flushes", ops.inline - before, b""))
        await ops.release(info.fh)
        return seen

    seen = trio.run(scenario)
    assert seen[:3] == [("read 0", 1, data[:100]),
                        (f"read {TEST_BLOCK_SIZE - 50}", 1, data[TEST_BLOCK_SIZE - 50:TEST_BLOCK_SIZE + 50]),
                        (f"read {len(data) - 10}", 1, data[-10:])], "cached blocks are read in the loop"
    assert seen[3] == ("read of buffered bytes", 0, b"tail"), "buffered writes are recorded first, in a worker"
    assert seen[4] == ("flushes", 0, b""), "an empty flush returns at once (no worker, nothing counted)"


def test_unlinks_free_their_blocks_in_batches(tmp_path: Path) -> None:
    """The mount's unlinks return without waiting for a metadata flush: their data is released in
    the background, one flush per batch instead of one per unlink, and everything is released by
    the time the volume closes."""
    (tmp_path / "data").mkdir()
    Volume.format(f"file://{tmp_path}/meta", f"file://{tmp_path}/data", "testvol",
                  block_size=TEST_BLOCK_SIZE).close()
    vol = Volume.open(f"file://{tmp_path}/meta", sync="interval:1h", block_cache=BlockCache())
    files = 30
    try:
        for i in range(files):
            vol.write_file(f"/f{i}", bytes([i]) * (TEST_BLOCK_SIZE + 10))  # two blocks each
        vol.flush()
        blocks = lambda: [p for p in (tmp_path / "data").rglob("*_*_*") if p.is_file()]  # noqa: E731
        assert len(blocks()) == 2 * files
        level0 = tmp_path / "meta" / "ltx" / "0"
        shipped = len(list(level0.glob("*.ltx")))
        ops = FuseOperations(vol.engine)

        async def unlink_all() -> None:
            for i in range(files):
                await ops.unlink(ROOT_INODE, f"f{i}".encode(), None)

        trio.run(unlink_all)
        vol.engine.drain_releases()
        assert blocks() == [], "every block released"
        flushes = len(list(level0.glob("*.ltx"))) - shipped
        assert 1 <= flushes < files // 2, f"{flushes} metadata flushes for {files} unlinks"
        assert vol.listdir("/") == []
    finally:
        vol.close()
    with Volume.open(f"file://{tmp_path}/meta") as again:
        assert again.fsck().ok


def test_a_close_with_nothing_to_record_stays_in_the_loop(ops: FuseOperations, tmp_path: Path) -> None:
    """The last release of a file whose writes are recorded only counts the close: in the loop.
    The last release of a file unlinked while open deletes its blocks: in a worker, and they go."""
    async def scenario() -> tuple[int, int]:
        info, attr = await ops.create(ROOT_INODE, b"k", 0o644, 0, None)
        await ops.write(info.fh, 0, b"k" * 100)
        await ops.flush(info.fh)  # recorded: the close has nothing left to do
        before = ops.inline
        await ops.release(info.fh)
        plain = ops.inline - before
        info, attr = await ops.create(ROOT_INODE, b"gone", 0o644, 0, None)
        await ops.write(info.fh, 0, b"g" * (TEST_BLOCK_SIZE + 1))
        await ops.flush(info.fh)
        await ops.unlink(ROOT_INODE, b"gone", None)
        ops.engine.drain_releases()  # the unlink's release has run: the data waits for the close
        assert ops.engine.releases_at_close(attr.st_ino)
        before = ops.inline
        await ops.release(info.fh)
        return plain, ops.inline - before

    blocks = lambda: [p for p in (tmp_path / "data").rglob("*_*_*") if p.is_file()]  # noqa: E731
    plain, unlinked = trio.run(scenario)
    assert plain == 1, "a close with nothing to record is answered in the loop"
    assert unlinked == 0, "the close that releases an unlinked file's data goes to a worker"
    ops.engine.drain_releases()
    assert len(blocks()) == 1, "only the first file's block is left"


def test_sequential_reads_prefetch_a_block_at_a_time(ops: FuseOperations) -> None:
    """Read-ahead plans its range in the metadata once per block the window moves, not at every
    read: small sequential reads through a file of 8 blocks (a window of 2) prefetch at most once
    per block."""
    data = bytes(range(256)) * (8 * TEST_BLOCK_SIZE // 256)
    ops.readahead = 2 * TEST_BLOCK_SIZE
    calls: list[tuple[int, int]] = []
    prefetch = ops.engine.prefetch

    def counting(inode: int, offset: int, size: int) -> None:
        calls.append((offset, size))
        prefetch(inode, offset, size)

    ops.engine.prefetch = counting  # type: ignore[method-assign]

    async def scenario() -> bytes:
        info, _ = await ops.create(ROOT_INODE, b"seq", 0o644, 0, None)
        await ops.write(info.fh, 0, data)
        await ops.flush(info.fh)
        got = [await ops.read(info.fh, off, 4096) for off in range(0, len(data), 4096)]
        await ops.release(info.fh)
        return b"".join(got)

    assert trio.run(scenario) == data
    reads = len(data) // 4096
    assert 1 <= len(calls) <= 8 + 1, f"{len(calls)} prefetches for {reads} sequential reads of 8 blocks"
    covered = sorted(calls)
    assert covered[0][0] == 4096, "the first prefetch starts where the first read ended"
    assert max(off + n for off, n in covered) == len(data), "read-ahead reaches the end of the file"


def _blocks(ops: FuseOperations) -> dict[str, int]:
    """The volume's block objects (key -> size)."""
    store = ops.engine.blocks.store
    return {info.key: info.size for info in store.list(f"{ops.engine.blocks.name}/chunks/")}


def test_a_file_written_in_pieces_leaves_only_the_blocks_it_names(ops: FuseOperations) -> None:
    async def scenario() -> tuple[dict[str, int], bytes]:
        info, _ = await ops.create(ROOT_INODE, b"grown", 0o644, 0, None)
        await ops.write(info.fh, 0, b"a" * 1000)
        await ops.write(info.fh, 1000, b"b" * 500)
        await ops.write(info.fh, 1500, b"c" * TEST_BLOCK_SIZE)  # a full block ships, the rest at flush
        await ops.flush(info.fh)
        data = await ops.read(info.fh, 0, 2 * TEST_BLOCK_SIZE)
        await ops.release(info.fh)
        return _blocks(ops), data

    blocks, data = trio.run(scenario)
    assert sorted(blocks.values()) == [1500, TEST_BLOCK_SIZE], "no block of an earlier length is left"
    assert data == b"a" * 1000 + b"b" * 500 + b"c" * TEST_BLOCK_SIZE
