"""Garbage collection: finish pending deletes, and find (optionally delete) leaked block objects.

A block object is valid when a chunk record, a pending slice (refs <= 0) or a delayed slice
(`jfs_delslices`) names its slice with a size that agrees with the key; anything else under
`<Name>/chunks/` is leaked. Objects younger than `skip_age` are left alone: they may belong to a
write whose metadata transaction has not committed yet (JuiceFS skips the last hour too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import apsw

from blockmap.blocks import BlockObject
from blockmap.clone import remove_detached
from blockmap.meta import as_bytes, as_int
from blockmap.release import decode_delayed, pending_files, pending_slices, release_file_data
from blockmap.slices import decode_records
from blockmap.trash import TrashCleanup, clean_trash

if TYPE_CHECKING:
    from blockmap.engine import Engine

#: Objects younger than this are never called leaked (seconds).
DEFAULT_SKIP_AGE = 3600
#: Detached clone tops older than this are removed by gc --delete (JuiceFS: one day).
DETACHED_MAX_AGE = 86400


@dataclass
class GcReport:
    """What gc found (and, with delete, removed)."""

    scanned: int = 0
    valid: int = 0
    valid_bytes: int = 0
    pending: int = 0
    delayed: int = 0
    skipped: int = 0
    leaked: list[str] = field(default_factory=list)
    leaked_bytes: int = 0
    foreign: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    released_files: int = 0
    released_slices: int = 0
    removed_detached: int = 0
    trash: TrashCleanup = field(default_factory=TrashCleanup)


def referenced_slices(cursor: apsw.Cursor) -> dict[int, int]:
    """Slice id -> size for every slice a chunk record names."""
    out: dict[int, int] = {}
    for inode, indx, blob in cursor.execute("SELECT inode, indx, CAST(slices AS BLOB) FROM jfs_chunk"):
        for r in decode_records(blob, f"chunk {inode}:{indx}"):
            if r.id:
                out[r.id] = r.size
    return out


def delayed_slices(cursor: apsw.Cursor) -> dict[int, int]:
    out: dict[int, int] = {}
    for (blob,) in cursor.execute("SELECT slices FROM jfs_delslices"):
        for sid, size in decode_delayed(as_bytes(blob)):
            out[sid] = size
    return out


def block_fits(block_size: int, slice_size: int, index: int, bsize: int) -> bool:
    """Does block `index` of `bsize` bytes belong to a slice of `slice_size` bytes?"""
    if bsize == block_size:
        return (index + 1) * block_size <= slice_size
    return index * block_size + bsize == slice_size


def gc(eng: Engine, *, delete: bool = False, skip_age: float = DEFAULT_SKIP_AGE) -> GcReport:
    """Scan the volume's block objects against its metadata; with `delete`, also finish pending
    file and slice deletes, expire the trash, remove stale detached clones, and delete leaks."""
    report = GcReport()
    now = time.time()
    if delete:
        if eng.settings.trash_days > 0:
            report.trash = clean_trash(eng, now)
        old = int(now - DETACHED_MAX_AGE)
        stale = eng.read(
            lambda c: [as_int(r[0]) for r in c.execute("SELECT inode FROM jfs_detached_node WHERE added < ?", (old,))]
        )
        for top in stale:
            remove_detached(eng, top)
            report.removed_detached += 1
        for inode, _, _ in pending_files(eng.db):
            if inode in eng.ctx.open_inodes:
                continue
            released = release_file_data(eng.db, inode)
            report.released_files += 1
            report.released_slices += eng.release_slices(released.slices, defer=False)
        report.released_slices += eng.release_slices(pending_slices(eng.db), defer=False)

    def snapshot(c: apsw.Cursor) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        pend = {as_int(a): as_int(b) for a, b in c.execute("SELECT chunkid, size FROM jfs_chunk_ref WHERE refs <= 0")}
        return referenced_slices(c), pend, delayed_slices(c)

    valid, pend, delayed = eng.read(snapshot)
    bs = eng.settings.block_size
    edge = datetime.fromtimestamp(now - skip_age).astimezone()
    to_delete: list[str] = []
    for obj in eng.blocks.list_blocks():
        if not isinstance(obj, BlockObject):
            report.foreign.append(obj.key)
            continue
        report.scanned += 1
        modified = obj.info.modified if obj.info.modified.tzinfo else obj.info.modified.astimezone()
        if modified > edge:
            report.skipped += 1
            continue
        size = valid.get(obj.slice_id) or pend.get(obj.slice_id) or delayed.get(obj.slice_id)
        if size is None or not block_fits(bs, size, obj.index, obj.bsize):
            report.leaked.append(obj.info.key)
            report.leaked_bytes += obj.info.size
            to_delete.append(obj.info.key)
        elif obj.slice_id in valid:
            report.valid += 1
            report.valid_bytes += obj.info.size
        elif obj.slice_id in pend:
            report.pending += 1
        else:
            report.delayed += 1
    if delete and to_delete:
        eng.flush()  # what the scan saw unreferenced is unreferenced in the store too
        for key in to_delete:
            eng.store.delete(key)
            report.deleted_objects += 1
    return report
