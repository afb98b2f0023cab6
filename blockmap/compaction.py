"""Slice compaction: many records in a chunk become one new slice.

The visible bytes of the merged records are read and uploaded as a new slice; then one
transaction swaps the records for one, but only if the chunk still starts with the records that
were read (a compare-and-swap on the old value, as JuiceFS does). The replaced slices lose one ref
per record; with the trash on, JuiceFS keeps them for TrashDays through `jfs_delslices` instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import apsw

from blockmap.meta import as_bytes
from blockmap.namespace import Released, drop_chunk_refs
from blockmap.node import TYPE_DIRECTORY, TYPE_FILE
from blockmap.release import encode_delayed
from blockmap.slices import (
    CHUNK_SIZE,
    SLICE_RECORD_SIZE,
    CompactionPlan,
    SliceRecord,
    decode_records,
    plan_compaction,
)

if TYPE_CHECKING:
    from blockmap.engine import Engine

#: Bytes read or zero-filled per step while writing the merged slice.
COPY_PIECE = 4 << 20


def _chunk_blob(cur: apsw.Cursor, inode: int, indx: int) -> bytes | None:
    row = cur.execute(
        "SELECT CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? AND indx = ?", (inode, indx)
    ).fetchone()
    return None if row is None else as_bytes(row[0])


def _write_merged(eng: Engine, plan: CompactionPlan, slice_id: int) -> int:
    writer = eng.blocks.writer(slice_id)
    try:
        for seg in plan.segments:
            at = 0
            while at < seg.len:
                n = min(COPY_PIECE, seg.len - at)
                if seg.id == 0:
                    writer.write(bytes(n))
                else:
                    writer.write(eng.blocks.read(seg.id, seg.size, seg.off + at, n))
                at += n
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def compact_chunk(eng: Engine, inode: int, indx: int) -> bool:
    """Compact chunk (inode, indx) if it is worth it; True when the records were swapped."""
    blob = eng.read(lambda c: _chunk_blob(c, inode, indx))
    if blob is None:
        return False
    records = decode_records(blob, f"chunk {inode}:{indx}")
    plan = plan_compaction(records)
    if plan is None:
        return False
    slice_id = eng.ids.next_slice_id()
    try:
        with eng.block_gate.read():
            size = _write_merged(eng, plan, slice_id)
    except BaseException:
        eng.discard_slice(slice_id, plan.size)  # whatever blocks made it up are unreferenced
        raise
    origin = blob[: (plan.skipped + plan.count) * SLICE_RECORD_SIZE]
    merged = records[plan.skipped : plan.skipped + plan.count]
    released = Released()

    def swap(cur: apsw.Cursor) -> bool:
        current = _chunk_blob(cur, inode, indx)
        if current is None or not current.startswith(origin):
            return False
        new = (
            current[: plan.skipped * SLICE_RECORD_SIZE]
            + SliceRecord(plan.pos, slice_id, size, 0, size).encode()
            + current[len(origin) :]
        )
        cur.execute("UPDATE jfs_chunk SET slices = ? WHERE inode = ? AND indx = ?", (new, inode, indx))
        cur.execute("INSERT INTO jfs_chunk_ref (chunkid, size, refs) VALUES (?, ?, 1)", (slice_id, size))
        if eng.settings.trash_days > 0:
            kept = [(r.id, r.size) for r in merged if r.id]
            if kept:
                cur.execute(
                    "INSERT INTO jfs_delslices (chunkid, deleted, slices) VALUES (?, ?, ?)",
                    (slice_id, int(time.time()), encode_delayed(kept)),
                )
        else:
            drop_chunk_refs(cur, merged, released)
        return True

    try:
        swapped = eng.write(swap)
    except BaseException:
        eng.discard_slice(slice_id, size)
        raise
    if not swapped:  # the chunk changed meanwhile: the new slice is not needed
        eng.discard_slice(slice_id, size)
        return False
    if released.slices:
        eng.release_slices(released.slices)
    return True


def compact_tree(eng: Engine, inode: int) -> int:
    """Compact every multi-record chunk of file `inode`, or of every file below directory `inode`."""
    root = eng.node(inode)
    files: list[tuple[int, int]] = []
    if root.type == TYPE_FILE:
        files.append((root.inode, root.length))
    elif root.type == TYPE_DIRECTORY:
        stack = [root.inode]
        while stack:
            d = stack.pop()
            for e in eng.iter_dir(d, with_attrs=True):
                if e.is_dir():
                    stack.append(e.inode)
                elif e.is_file() and e.attr is not None:
                    files.append((e.inode, e.attr.st_size))
    done = 0
    seen: set[int] = set()
    for ino, length in files:
        if ino in seen:
            continue
        seen.add(ino)
        for indx in range((length + CHUNK_SIZE - 1) // CHUNK_SIZE):
            while compact_chunk(eng, ino, indx):
                done += 1
    return done
