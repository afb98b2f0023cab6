"""Giving space back: chunk rows of deleted files, then slices whose refs reached 0.

Order matters for crash safety (JuiceFS's order): a file's chunk rows go first (refs drop in the
same transaction); a slice with refs <= 0 then loses its blocks, and only then its `chunk_ref` row.
A crash in between leaves rows with refs <= 0, which `gc` finishes.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable

import apsw

from blockmap.blocks import BlockStore
from blockmap.meta import MetaDB, as_int
from blockmap.namespace import Released, drop_chunk_refs
from blockmap.slices import decode_records

#: Chunk rows of a deleted file released per transaction.
RELEASE_CHUNK_BATCH = 256
#: Slice rows looked up / deleted per statement.
SLICE_BATCH = 500
#: `jfs_delslices` entries: `id u64 | size u32`.
DELAYED_SLICE = struct.Struct(">QI")


def encode_delayed(slices: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(DELAYED_SLICE.pack(sid, size) for sid, size in slices)


def decode_delayed(blob: bytes) -> list[tuple[int, int]]:
    data = bytes(blob)
    n = len(data) // DELAYED_SLICE.size
    return [DELAYED_SLICE.unpack_from(data, i * DELAYED_SLICE.size) for i in range(n)]


def release_file_data(db: MetaDB, inode: int) -> Released:
    """Drop a deleted file's chunk rows in batches, then its `jfs_delfile` row (JuiceFS
    doDeleteFileData) and the extended attributes a file unlinked while open kept; returns the
    slices whose refs may have reached 0."""
    released = Released()

    def batch(cur: apsw.Cursor) -> bool:
        rows = cur.execute(
            "SELECT indx, CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? LIMIT ?",
            (inode, RELEASE_CHUNK_BATCH),
        ).fetchall()
        for indx, blob in rows:
            drop_chunk_refs(cur, decode_records(blob, f"chunk {inode}:{indx}"), released)
            cur.execute("DELETE FROM jfs_chunk WHERE inode = ? AND indx = ?", (inode, indx))
        if len(rows) < RELEASE_CHUNK_BATCH:
            cur.execute("DELETE FROM jfs_delfile WHERE inode = ?", (inode,))
            cur.execute("DELETE FROM jfs_xattr WHERE inode = ?", (inode,))  # kept while it was open
            return True
        return False

    while not db.write(batch):
        pass
    return released


def _dead_slices(cur: apsw.Cursor, ids: list[int]) -> list[tuple[int, int]]:
    marks = ",".join("?" * len(ids))
    rows = cur.execute(f"SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0 AND chunkid IN ({marks})", ids)
    return [(as_int(a), as_int(b)) for a, b in rows]


def forget_slices(cur: apsw.Cursor, ids: list[int]) -> None:
    """Delete the `chunk_ref` rows of slices whose blocks are gone (those still at refs <= 0)."""
    for i in range(0, len(ids), SLICE_BATCH):
        batch = ids[i : i + SLICE_BATCH]
        marks = ",".join("?" * len(batch))
        cur.execute(f"DELETE FROM jfs_chunk_ref WHERE refs <= 0 AND chunkid IN ({marks})", batch)


def release_slices(
    db: MetaDB,
    blocks: BlockStore,
    slices: Iterable[tuple[int, int]],
    defer_forget: Callable[[list[int]], None] | None = None,
) -> int:
    """Delete the blocks, then the rows, of the given slices whose refs are <= 0; returns how many.

    With `defer_forget`, the rows are handed to it instead of being deleted in a transaction of
    their own: the caller deletes them inside its next transaction (one commit, one PUT, fewer per
    operation). Until then they are what a crash would leave anyway: rows at refs <= 0 that `gc`
    (ours or the binary's) finishes."""
    ids = sorted({sid for sid, _ in slices if sid})
    freed = 0
    for i in range(0, len(ids), SLICE_BATCH):
        victims = db.read(functools.partial(_dead_slices, ids=ids[i : i + SLICE_BATCH]))
        if not victims:
            continue
        blocks.delete_slices(victims)
        gone = [v[0] for v in victims]
        if defer_forget is not None:
            defer_forget(gone)
        else:
            db.write(functools.partial(forget_slices, ids=gone))
        freed += len(victims)
    return freed


def pending_slices(db: MetaDB) -> list[tuple[int, int]]:
    """Slices whose refs are <= 0 (their blocks may still exist)."""
    return db.read(
        lambda cur: [
            (as_int(a), as_int(b)) for a, b in cur.execute("SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0")
        ]
    )


def pending_files(db: MetaDB) -> list[tuple[int, int, int]]:
    """`jfs_delfile` rows: (inode, length, expire)."""
    return db.read(
        lambda cur: [
            (as_int(a), as_int(b), as_int(c))
            for a, b, c in cur.execute("SELECT inode, length, expire FROM jfs_delfile")
        ]
    )
