"""Volume counters (`jfs_counter`) and ID reservation in batches, as JuiceFS clients do it.

A client reserves inode numbers 1024 at a time and slice IDs 4096 at a time by adding the batch to
`nextInode` / `nextChunk` in a transaction of its own; it then hands them out from memory. Every
writer, the binary included, reserves the same way, so IDs never collide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import apsw

from blockmap.errors import CorruptMetadataError
from blockmap.meta import as_int

NEXT_INODE = "nextInode"
NEXT_CHUNK = "nextChunk"  # the slice ID counter; the name is historical
NEXT_SESSION = "nextSession"
USED_SPACE = "usedSpace"
TOTAL_INODES = "totalInodes"
NEXT_CLEANUP_SLICES = "nextCleanupSlices"
NEXT_TRASH = "nextTrash"

#: Counters `juicefs format` creates, with their first values (inode 1 is the root).
INITIAL_COUNTERS: tuple[tuple[str, int], ...] = (
    (NEXT_INODE, 2),
    (NEXT_CHUNK, 1),
    (NEXT_SESSION, 0),
    (USED_SPACE, 0),
    (TOTAL_INODES, 0),
    (NEXT_CLEANUP_SLICES, 0),
)
#: Batch sizes (JuiceFS `inodeBatch`, `sliceIdBatch`).
INODE_BATCH = 1024
SLICE_ID_BATCH = 4096


def incr_counter(cursor: apsw.Cursor, name: str, delta: int) -> int:
    """Add `delta` to counter `name` (creating it at 0 first) and return the new value."""
    rows = cursor.execute(
        "UPDATE jfs_counter SET value = value + ? WHERE name = ? RETURNING value", (delta, name)
    ).fetchall()  # run the statement to its end: a RETURNING statement left open counts no change yet
    if not rows:
        cursor.execute("INSERT INTO jfs_counter (name, value) VALUES (?, ?)", (name, delta))
        return delta
    return as_int(rows[0][0])


def get_counter(cursor: apsw.Cursor, name: str) -> int:
    """Current value of counter `name` (0 when the row does not exist, as in JuiceFS)."""
    row = cursor.execute("SELECT value FROM jfs_counter WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def add_usage(cursor: apsw.Cursor, space: int, inodes: int) -> None:
    """Adjust the volume's `usedSpace` and `totalInodes` (inside the operation's transaction)."""
    if space and inodes:  # one statement for both (creates and removes change both)
        cursor.execute(
            "UPDATE jfs_counter SET value = value + CASE name WHEN ? THEN ? ELSE ? END WHERE name IN (?, ?)",
            (USED_SPACE, space, inodes, USED_SPACE, TOTAL_INODES),
        )
    elif space:
        cursor.execute("UPDATE jfs_counter SET value = value + ? WHERE name = ?", (space, USED_SPACE))
    elif inodes:
        cursor.execute("UPDATE jfs_counter SET value = value + ? WHERE name = ?", (inodes, TOTAL_INODES))


@dataclass
class _Range:
    next: int = 0
    limit: int = 0


class IdAllocator:
    """Hands out inode numbers and slice IDs from batches reserved in their own transactions.

    `reserve(counter, batch)` must run a transaction that adds `batch` to the counter and returns
    the new value; the allocator then owns [new - batch, new).
    """

    def __init__(self, reserve: Callable[[str, int], int]) -> None:
        self._reserve = reserve
        #: Reentrant: a reservation whose commit was lost resets the allocator (MetaDB.on_lost)
        #: from inside `_take`, on the thread that holds the lock, before CommitsLostError.
        self._lock = threading.RLock()
        self._inodes = _Range()
        self._slices = _Range()
        self._returned: list[int] = []

    def _take(self, rng: _Range, counter: str, batch: int) -> int:
        if rng.next >= rng.limit:
            value = self._reserve(counter, batch)
            if value < batch:
                raise CorruptMetadataError(f"jfs_counter {counter!r}", f"value {value} is below the batch")
            rng.next, rng.limit = value - batch, value
        ident = rng.next
        rng.next += 1
        return ident

    def reset(self) -> None:
        """Forget the reserved ranges (their reservation was lost): the next ID reserves anew."""
        with self._lock:
            self._inodes = _Range()
            self._slices = _Range()
            self._returned = []

    def give_back_inode(self, inode: int) -> None:
        """Return an inode number taken by `next_inode` that no commit used (an operation that
        found its entry already there): the next `next_inode` hands it out again."""
        with self._lock:
            self._returned.append(inode)

    def inodes_left(self) -> int:
        """Inode numbers `next_inode` hands out before it must reserve a batch."""
        with self._lock:
            return len(self._returned) + max(0, self._inodes.limit - self._inodes.next)

    def slice_ids_left(self) -> int:
        """Slice IDs `next_slice_id` hands out before it must reserve a batch."""
        with self._lock:
            return max(0, self._slices.limit - self._slices.next)

    def next_inode(self) -> int:
        """A fresh inode number (never 0 or 1)."""
        with self._lock:
            if self._returned:
                return self._returned.pop()
            ino = self._take(self._inodes, NEXT_INODE, INODE_BATCH)
            while ino <= 1:
                ino = self._take(self._inodes, NEXT_INODE, INODE_BATCH)
            return ino

    def next_slice_id(self) -> int:
        """A fresh slice ID (never 0, which marks a hole)."""
        with self._lock:
            ident = self._take(self._slices, NEXT_CHUNK, SLICE_ID_BATCH)
            while ident == 0:
                ident = self._take(self._slices, NEXT_CHUNK, SLICE_ID_BATCH)
            return ident
