"""Block objects: a slice's bytes stored as immutable objects of `BlockSize` (the last one shorter).

Keys are JuiceFS's: `<Name>/chunks/<id // 1_000_000>/<id // 1000>/<id>_<index>_<block size>`, or with
HashPrefix `<Name>/chunks/<id % 256 as %02X>/<id // 1_000_000>/<id>_<index>_<block size>` (checked
against the 1.4.2 binary: the hashed form has no `<id // 1000>` level). The block size in the key
comes from the slice's size, so every key of a slice is known from (id, size) alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from blockmap.blockcache import BlockCache
from blockmap.errors import BlockError, UploadStalledError
from blockmap.staging import StagedUploads
from ltx.store.base import ObjectInfo, ObjectNotFoundError, ObjectStore, StoreError

#: Transfer threads: blocks uploaded, downloaded or deleted at once, all files together (JuiceFS's
#: `--max-uploads` default). With 8, 200 small files written back on S3 at 20 ms per PUT left a
#: backlog that halved the reads that followed (bench/results/mount-notes.md).
DEFAULT_TRANSFER_CONCURRENCY = 20
#: Full blocks of one slice uploading at once: more made a big file's write slower behind a
#: 100 MB/s link (20: 57-93 MiB/s, 8: 79-145), and each holds a block in memory.
SLICE_UPLOADS_IN_FLIGHT = 8
#: Write-back: a write waiting for room in the upload budget fails once no upload has finished
#: for this long (a store that is down), as a flush gives up after vfs.writefile.FLUSH_TIMEOUT.
DEFAULT_UPLOAD_STALL = 60.0
#: The object `juicefs format` writes with the volume's UUID.
UUID_OBJECT = "juicefs_uuid"

_BLOCK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)$")


def block_key(name: str, slice_id: int, index: int, bsize: int, hash_prefix: bool = False) -> str:
    """The object key of block `index` (of `bsize` bytes) of slice `slice_id` in volume `name`."""
    if hash_prefix:
        return f"{name}/chunks/{slice_id % 256:02X}/{slice_id // 1_000_000}/{slice_id}_{index}_{bsize}"
    return f"{name}/chunks/{slice_id // 1_000_000}/{slice_id // 1000}/{slice_id}_{index}_{bsize}"


def block_sizes(size: int, block_size: int) -> list[int]:
    """Sizes of the blocks of a slice of `size` bytes."""
    full, last = divmod(size, block_size)
    return [block_size] * full + ([last] if last else [])


@dataclass(frozen=True)
class BlockObject:
    """A listed block: which slice and block it claims to be, and the stored object."""

    slice_id: int
    index: int
    bsize: int
    info: ObjectInfo


class ByteBudget:
    """Bytes that may be held at once (blocks waiting for their upload, across every writer):
    `acquire` waits while the budget is spent. One block larger than the whole budget still goes
    through alone, so nothing waits forever."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        #: The most ever held at once (for tests and stats).
        self.peak = 0
        self._cond = threading.Condition()
        self._released_at = time.monotonic()

    def acquire(self, n: int, stall: float | None = None) -> None:
        """Take `n` bytes, waiting for room; with `stall`, raise UploadStalledError once nothing
        was given back for that many seconds (the store is down: fail the write, do not hang)."""
        with self._cond:
            while not self._fits(n):
                if stall is None:
                    self._cond.wait()
                    continue
                left = self._released_at + stall - time.monotonic()
                if left <= 0:
                    raise UploadStalledError(self.used, stall)
                self._cond.wait(left)
            self.used += n
            self.peak = max(self.peak, self.used)

    def has_room(self, n: int) -> bool:
        """Whether `acquire(n)` would take the bytes now without waiting."""
        with self._cond:
            return self._fits(n)

    def _fits(self, n: int) -> bool:
        """(Holding the condition.) Room for `n` more bytes, or nothing held at all."""
        return self.used == 0 or self.used + n <= self.limit

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._released_at = time.monotonic()
            self._cond.notify_all()


def is_local_store(store: ObjectStore) -> bool:
    """Whether `store` keeps its objects in a local directory (file://)."""
    return store.url.startswith("file:")


class BlockStore:
    """Reads, writes, lists and deletes the block objects of one volume."""

    def __init__(
        self,
        store: ObjectStore,
        name: str,
        block_size: int,
        hash_prefix: bool = False,
        concurrency: int = DEFAULT_TRANSFER_CONCURRENCY,
        cache: BlockCache | None = None,
        upload_budget: int | None = None,
    ) -> None:
        self.store = store
        #: Bytes of blocks waiting for their upload, all writers together (None: per writer only).
        self.budget = ByteBudget(upload_budget) if upload_budget else None
        #: Whole blocks kept after a read or an upload (the mount's); None: every read is a range GET.
        self.cache = cache
        #: Blocks are copied into the cache directory, unless the store is itself a local directory
        #: (file://): a copy there would be a second local file of the same bytes, written while
        #: the program waits on the disk (every small file twice, a big file's read-back again).
        self.disk_copies = cache is not None and cache.disk is not None and not is_local_store(store)
        self._inflight: dict[str, Future[bytes]] = {}
        self._inflight_lock = threading.Lock()
        self.name = name
        self.block_size = block_size
        self.hash_prefix = hash_prefix
        self.concurrency = max(1, concurrency)
        #: Put blocks with `put_unsynced`: the owner syncs the store before any commit naming
        #: them ships (blockmap.engine wires that to the metadata writer).
        self.defer_sync = False
        #: Blocks of finished slices waiting for their upload (None: a slice's blocks are in the
        #: store when `SliceWriter.finish` returns). See `write_back`.
        self.staged: StagedUploads | None = None
        #: Write-back: how long a write waits for room while no upload finishes.
        self.upload_stall = DEFAULT_UPLOAD_STALL
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def write_back(self) -> None:
        """Upload blocks in the background after their slice is finished (blockmap.staging). The
        owner must run `settle` before any commit naming a block ships; writers wait on the
        upload budget, so it needs one."""
        if self.budget is None:
            raise ValueError("write-back needs an upload budget")
        self.staged = StagedUploads(self._store_block, self.budget.release)

    def settle(self) -> None:
        """Every staged block is in the store when this returns (raises StoreError if not)."""
        if self.staged is not None:
            self.staged.settle()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="blockmap-io")
            return self._pool

    def close(self) -> None:
        """Stop the transfer threads (the store itself belongs to the caller)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def key(self, slice_id: int, index: int, bsize: int) -> str:
        return block_key(self.name, slice_id, index, bsize, self.hash_prefix)

    def keys(self, slice_id: int, size: int) -> list[str]:
        """Every block key of a slice of `size` bytes."""
        return [self.key(slice_id, i, n) for i, n in enumerate(block_sizes(size, self.block_size))]

    def put_block(self, slice_id: int, index: int, data: bytes) -> None:
        """Store one block (the caller cuts blocks at `block_size`)."""
        self._store_block(self.key(slice_id, index, len(data)), data)

    def stage_block(self, slice_id: int, index: int, data: bytes) -> None:
        """Write-back: keep the block for reads and upload it in the background (the caller has
        taken `len(data)` of the budget; the upload gives it back)."""
        assert self.staged is not None
        key = self.key(slice_id, index, len(data))
        if self.cache is not None:
            self.cache.put(key, data, disk=False)
        self.staged.stage(key, data, self._executor())

    def _store_block(self, key: str, data: bytes) -> None:
        self._put_object(key, data)
        self._remember(key, data)

    def _put_object(self, key: str, data: bytes) -> None:
        if self.defer_sync:
            self.store.put_unsynced(key, data)
        else:
            self.store.put(key, data)

    def _remember(self, key: str, data: bytes) -> None:
        """A block just stored goes to the cache (memory; a partial one to the disk too)."""
        if self.cache is not None:
            self.cache.put(key, data, disk=False)
            if len(data) < self.block_size and self.disk_copies:
                # A partial block goes to the disk cache too, in the background; full blocks only
                # when read (JuiceFS's defaults: a large write is not written twice locally).
                self._executor().submit(self.cache.put_disk, key, data)

    def writer(self, slice_id: int) -> SliceWriter:
        """A writer that uploads a new slice's blocks as they fill."""
        return SliceWriter(self, slice_id)

    def upload(self, slice_id: int, data: bytes | memoryview) -> int:
        """Upload a whole slice held in memory; returns its size."""
        w = self.writer(slice_id)
        try:
            w.write(data)
            return w.finish()
        except BaseException:
            w.abort()  # let uploads in flight settle before the caller deletes the slice
            raise

    def read(self, slice_id: int, size: int, off: int, length: int) -> bytes:
        """Bytes [off, off+length) of slice `slice_id` (`size` bytes long), fetched by range GETs."""
        if length <= 0:
            return b""
        if off < 0 or off + length > size:
            raise BlockError(
                f"slice {slice_id}", f"read [{off}, {off + length}) past the slice size {size}"
            )
        parts = self._parts(slice_id, size, off, length)
        if len(parts) == 1:
            return self._get(*parts[0])
        futures = [self._executor().submit(self._get, *p) for p in parts]
        return b"".join(f.result() for f in futures)

    def _parts(self, slice_id: int, size: int, off: int, length: int) -> list[tuple[str, int, int, int]]:
        """(key, offset in the block, bytes, block size) of each block [off, off+length) touches."""
        bs = self.block_size
        parts: list[tuple[str, int, int, int]] = []
        pos, end = off, min(off + length, size)
        while pos < end:
            index, inner = divmod(pos, bs)
            bsize = min(bs, size - index * bs)
            n = min(end - pos, bsize - inner)
            parts.append((self.key(slice_id, index, bsize), inner, n, bsize))
            pos += n
        return parts

    def read_cached(self, slice_id: int, size: int, off: int, length: int) -> bytes | None:
        """`read`, when every block it needs is in the memory cache (no request, no wait); else None."""
        if self.cache is None or off < 0 or off + length > size:
            return None
        out = []
        for key, inner, n, _ in self._parts(slice_id, size, off, length):
            data = self.cache.memory.get(key)
            if data is None and self.staged is not None:
                data = self.staged.get(key)
            if data is None:
                return None
            out.append(data[inner : inner + n])
        return out[0] if len(out) == 1 else b"".join(out)

    def prefetch(self, slice_id: int, size: int, off: int, length: int) -> None:
        """Fetch the blocks of [off, off+length) into the cache in the background (read-ahead)."""
        if self.cache is None:
            return
        for key, _, _, bsize in self._parts(slice_id, size, off, length):
            if self.cache.memory.get(key) is None:
                self._executor().submit(self._whole_block, key, bsize)

    def _whole_block(self, key: str, bsize: int) -> bytes:
        """The block from the cache, or fetched whole into it. A block two readers want at once is
        fetched once: the first fetches it in its own thread, the others wait for that fetch."""
        assert self.cache is not None
        data = self.cache.get(key, bsize)
        if data is None and self.staged is not None:
            data = self.staged.get(key)
        if data is not None:
            return data
        with self._inflight_lock:
            fut = self._inflight.get(key)
            mine = fut is None
            if fut is None:
                fut = self._inflight[key] = Future()
        if not mine:
            return fut.result()
        try:
            data = self._get_uncached(key, 0, bsize)
            self.cache.put(key, data, disk=False)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(data)
            if self.disk_copies:  # the readers go on; the cache dir gets it meanwhile
                self._executor().submit(self.cache.put_disk, key, data)
            return data
        finally:
            with self._inflight_lock:
                self._inflight.pop(key, None)

    def _get(self, key: str, inner: int, n: int, bsize: int) -> bytes:
        if self.cache is None:
            staged = self.staged.get(key) if self.staged is not None else None
            if staged is not None:
                return staged[inner : inner + n]
            return self._get_uncached(key, inner, n)
        return self._whole_block(key, bsize)[inner : inner + n]

    def _get_uncached(self, key: str, inner: int, n: int) -> bytes:
        try:
            data = self.store.get_range(key, inner, n)
        except ObjectNotFoundError as exc:
            raise BlockError(key, "block object is missing") from exc
        except StoreError as exc:
            raise BlockError(key, f"cannot read block: {exc.reason}") from exc
        if len(data) != n:
            raise BlockError(key, f"expected {n} bytes at offset {inner}, got {len(data)}")
        return data

    def delete_slice(self, slice_id: int, size: int) -> None:
        """Delete every block of a slice (missing blocks are fine: deletes may be repeated)."""
        keys = self.keys(slice_id, size)
        if self.staged is not None:  # an upload not started is cancelled: no object, no DELETE
            keys = [k for k in keys if not self.staged.forget(k)]
            if not keys:
                return
        if len(keys) == 1:
            self.store.delete(keys[0])
            return
        for f in [self._executor().submit(self.store.delete, k) for k in keys]:
            f.result()

    def delete_slices(self, slices: list[tuple[int, int]]) -> None:
        """`delete_slice` of each (id, size), `concurrency` at once; raises the first failure
        after every delete has ended."""
        if len(slices) == 1:
            self.delete_slice(*slices[0])
            return
        # A pool of its own: a slice of several blocks deletes them in the transfer pool and waits,
        # which would deadlock if the slices themselves filled that pool.
        with ThreadPoolExecutor(min(self.concurrency, len(slices)), thread_name_prefix="blockmap-delete") as pool:
            futures = [pool.submit(self.delete_slice, sid, size) for sid, size in slices]
        for f in futures:
            f.result()

    def list_blocks(self) -> Iterator[BlockObject | ObjectInfo]:
        """Every object under `<Name>/chunks/`: a BlockObject when its key parses, else the raw info."""
        prefix = f"{self.name}/chunks/"
        for info in self.store.list(prefix):
            rel = info.key[len(prefix) :].split("/")
            m = _BLOCK_NAME.match(rel[-1]) if len(rel) == 3 else None
            if m is None:
                yield info
                continue
            sid, index, bsize = (int(g) for g in m.groups())
            if info.key != self.key(sid, index, bsize):
                yield info
                continue
            yield BlockObject(sid, index, bsize, info)

    def write_uuid(self, uuid: str) -> None:
        """Write `<Name>/juicefs_uuid`, as `juicefs format` does."""
        self.store.put(f"{self.name}/{UUID_OBJECT}", uuid.encode())


class SliceWriter:
    """Uploads a new slice block by block while its bytes arrive; memory stays near one block
    per upload in flight. `finish()` uploads the last partial block and returns the slice size."""

    def __init__(self, blocks: BlockStore, slice_id: int) -> None:
        self.blocks = blocks
        self.slice_id = slice_id
        self.size = 0
        self._buf = bytearray()
        self._index = 0
        self._pending: list[Future[None]] = []
        self._finished = False

    @property
    def room(self) -> int:
        """Bytes `write` takes before the current block is full and starts uploading."""
        return self.blocks.block_size - len(self._buf)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise ValueError(f"slice {self.slice_id} is already finished")
        bs = self.blocks.block_size
        view = memoryview(data)
        while view:
            room = bs - len(self._buf)
            taken = view[:room]
            self._buf += taken
            self.size += len(taken)  # counted before shipping: a failed upload still knows its extent
            view = view[room:]
            if len(self._buf) == bs:
                self._ship(bytes(self._buf))
                self._buf.clear()

    def _ship(self, block: bytes, last: bool = False) -> None:
        """Start the upload of the next block. Write-back takes only a slice's `last` block (a
        small file's only one): full blocks upload while the program writes and `finish` waits
        for them, so a big file's bytes do not pile up behind its close."""
        index = self._index
        self._index += 1
        budget = self.blocks.budget
        staged = last and self.blocks.staged is not None
        if budget is not None:  # the program's write waits here while the uploads catch up
            budget.acquire(len(block), self.blocks.upload_stall if staged else None)
        if staged:
            self.blocks.stage_block(self.slice_id, index, block)
            return
        pool = self.blocks._executor()
        self._pending.append(pool.submit(self._put, index, block))
        # Bound the memory held by queued uploads.
        while len(self._pending) > min(SLICE_UPLOADS_IN_FLIGHT, self.blocks.concurrency):
            self._pending.pop(0).result()

    def _put(self, index: int, block: bytes) -> None:
        try:
            self.blocks.put_block(self.slice_id, index, block)
        finally:
            if self.blocks.budget is not None:
                self.blocks.budget.release(len(block))

    @property
    def finishes_at_once(self) -> bool:
        """Whether `finish` would return without waiting for the store: write-back takes what is
        buffered (the slice's last block), no full block is uploading, and the upload budget has
        room for it now."""
        budget = self.blocks.budget
        return (self.blocks.staged is not None and not self._pending
                and (budget is None or budget.has_room(len(self._buf))))

    def finish(self) -> int:
        """Upload what is left and wait for every block; returns the slice size."""
        if not self._finished:
            self._finished = True
            if self._buf and self.blocks.staged is not None:  # write-back: staged, uploaded later
                self._ship(bytes(self._buf), last=True)
                self._buf.clear()
            elif self._buf and not self._pending:  # the last (or only) block, the others stored: put here
                block = bytes(self._buf)
                self._buf.clear()
                self._index += 1
                self.blocks.put_block(self.slice_id, self._index - 1, block)
            elif self._buf:
                self._ship(bytes(self._buf))
                self._buf.clear()
            pending, self._pending = self._pending, []
            errors: list[BaseException] = []
            for f in pending:
                try:
                    f.result()
                except BaseException as exc:  # noqa: BLE001 - wait for all, then raise the first
                    errors.append(exc)
            if errors:
                raise errors[0]
        return self.size

    def abort(self) -> None:
        """Wait for uploads in flight and forget the slice (its objects are left for gc)."""
        self._finished = True
        for f in self._pending:
            try:
                f.result()
            except BaseException:  # noqa: BLE001, S110 - leftovers are gc's job
                pass
        self._pending = []
