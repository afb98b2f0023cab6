"""A cache of block objects: in memory, and optionally on local disk (`--cache-dir`).

Blocks are immutable (a key names one slice's block of one size, never rewritten), so a cached
copy never goes stale: entries leave only to stay within the byte budgets, least recently used
first. A block is cached whole, after its size was checked against its key; a cached file whose
size disagrees (a damaged cache directory) is dropped and fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)

#: Bytes of blocks kept in memory by default.
DEFAULT_MEMORY_CACHE = 256 << 20
#: Bytes of blocks kept in the cache directory by default (`--cache-size`, JuiceFS's 100 GiB is
#: too much for most machines this runs on).
DEFAULT_DISK_CACHE = 1 << 30
#: Suffix of a file being written into the cache directory (renamed into place when complete).
TEMP_SUFFIX = ".tmp"


class MemoryLRU:
    """Bytes by key, within `capacity` bytes, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= len(old)
            self._items[key] = data
            self.used += len(data)
            while self.used > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self.used -= len(dropped)


class DiskCache:
    """Block files under `root` (one file per block, named by a hash of its key), within
    `capacity` bytes. What a previous run left is adopted at start, oldest first out."""

    def __init__(self, root: str | os.PathLike[str], capacity: int) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self.used = 0
        self._files: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        self._adopt()

    def _adopt(self) -> None:
        found: list[tuple[float, str, int]] = []
        for path in self.root.glob("*/*"):
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)
                continue
            st = path.stat()
            found.append((st.st_mtime, f"{path.parent.name}/{path.name}", st.st_size))
        for _, rel, size in sorted(found):
            self._files[rel] = size
            self.used += size
        self._evict()

    @staticmethod
    def _rel(key: str) -> str:
        digest = hashlib.sha1(key.encode()).hexdigest()
        return f"{digest[:2]}/{digest[2:]}"

    def get(self, key: str, size: int) -> bytes | None:
        rel = self._rel(key)
        with self._lock:
            if rel not in self._files:
                return None
            self._files.move_to_end(rel)
        try:
            data = (self.root / rel).read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or len(data) != size:
            if data is not None:
                log.warning("block cache: %s holds %d bytes for %s, expected %d: dropped", rel, len(data), key, size)
            self._drop(rel)
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.capacity:
            return
        rel = self._rel(key)
        path = self.root / rel
        tmp = path.with_name(path.name + f".{threading.get_ident()}{TEMP_SUFFIX}")
        try:
            path.parent.mkdir(exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only cache disk costs speed, never correctness
            log.warning("block cache: cannot write %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            old = self._files.pop(rel, None)
            if old is not None:
                self.used -= old
            self._files[rel] = len(data)
            self.used += len(data)
        self._evict()

    def _drop(self, rel: str) -> None:
        with self._lock:
            size = self._files.pop(rel, None)
            if size is not None:
                self.used -= size
        (self.root / rel).unlink(missing_ok=True)

    def _evict(self) -> None:
        while True:
            with self._lock:
                if self.used <= self.capacity or not self._files:
                    return
                rel, size = self._files.popitem(last=False)
                self.used -= size
            (self.root / rel).unlink(missing_ok=True)


class BlockCache:
    """Memory first, then the disk; a block found on disk is promoted to memory."""

    def __init__(self, memory: int = DEFAULT_MEMORY_CACHE, disk_dir: str | os.PathLike[str] | None = None,
                 disk: int = DEFAULT_DISK_CACHE) -> None:
        self.memory = MemoryLRU(memory)
        self.disk = DiskCache(disk_dir, disk) if disk_dir is not None and disk > 0 else None
        self.hits = 0
        self.misses = 0

    def get(self, key: str, size: int) -> bytes | None:
        data = self.memory.get(key)
        if data is None and self.disk is not None:
            data = self.disk.get(key, size)
            if data is not None:
                self.memory.put(key, data)
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def put(self, key: str, data: bytes, *, disk: bool = True) -> None:
        """Keep `data` in memory and, unless `disk` is False, in the cache directory."""
        self.memory.put(key, data)
        if disk:
            self.put_disk(key, data)

    def put_disk(self, key: str, data: bytes) -> None:
        """Keep `data` in the cache directory only (nothing without one)."""
        if self.disk is not None:
            self.disk.put(key, data)
