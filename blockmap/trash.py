"""The trash (TrashDays > 0): expiring hourly trash directories and delayed slices.

Removed entries sit in `.trash/<UTC hour>/<parent>-<inode>-<name>` and compacted-away slices in
`jfs_delslices` for TrashDays; once older, their inodes and slices are released for good.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apsw

from blockmap.accounting import DirDeltas, align4k
from blockmap.meta import as_bytes, as_int
from blockmap.namespace import TRASH_DIR_FORMAT, Released, drop_inode
from blockmap.node import TRASH_INODE, TYPE_DIRECTORY, get_node, update_node
from blockmap.release import decode_delayed

if TYPE_CHECKING:
    from blockmap.engine import Engine

#: Trash entries removed per transaction.
TRASH_BATCH = 200


@dataclass
class TrashCleanup:
    entries: int = 0
    directories: int = 0
    delayed_slices: int = 0


def _hour_of(name: bytes) -> float | None:
    try:
        return calendar.timegm(time.strptime(name.decode(), TRASH_DIR_FORMAT))
    except (ValueError, UnicodeDecodeError):
        return None


def clean_trash(eng: Engine, now: float | None = None, *, force: bool = False) -> TrashCleanup:
    """Remove trash directories older than TrashDays (all of them with `force`), and release
    delayed slices recorded before the same edge."""
    now = time.time() if now is None else now
    edge = now - eng.settings.trash_days * 86400
    report = TrashCleanup()
    hours = eng.read(
        lambda c: [
            (as_bytes(n), as_int(i))
            for n, i in c.execute("SELECT name, inode FROM jfs_edge WHERE parent = ?", (TRASH_INODE,))
        ]
    )
    for name, hour_ino in hours:
        t = _hour_of(name)
        if not force and (t is None or t + 3600 > edge):
            continue
        report.entries += _empty_trash_dir(eng, hour_ino)

        def drop_hour(c: apsw.Cursor, name: bytes = name, ino: int = hour_ino) -> None:
            if c.execute("SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1", (ino,)).fetchone():
                return  # something arrived meanwhile
            c.execute("DELETE FROM jfs_edge WHERE parent = ? AND name = ?", (TRASH_INODE, name))
            c.execute("DELETE FROM jfs_node WHERE inode = ?", (ino,))
            c.execute("DELETE FROM jfs_dir_stats WHERE inode = ?", (ino,))
            eng.ctx.acct.usage(c, -align4k(0), -1)

        eng.write(drop_hour)
        report.directories += 1
    report.delayed_slices = clean_delayed_slices(eng, now + 1 if force else edge)
    return report


def _empty_trash_dir(eng: Engine, hour: int) -> int:
    removed = 0
    while True:
        released = Released()

        def batch(c: apsw.Cursor, released: Released = released) -> int:
            rows = c.execute(
                "SELECT name, inode, type FROM jfs_edge WHERE parent = ? LIMIT ?", (hour, TRASH_BATCH)
            ).fetchall()
            deltas = DirDeltas()
            for name, ino, typ in rows:
                inode, type_ = as_int(ino), as_int(typ)
                c.execute("DELETE FROM jfs_edge WHERE parent = ? AND name = ?", (hour, as_bytes(name)))
                node = get_node(c, inode)
                length = node.length if node is not None else 0
                deltas.add_entry(hour, type_, length, -1)
                if node is None:
                    continue
                if type_ == TYPE_DIRECTORY:
                    c.execute("DELETE FROM jfs_node WHERE inode = ?", (inode,))
                    c.execute("DELETE FROM jfs_xattr WHERE inode = ?", (inode,))
                    c.execute("DELETE FROM jfs_dir_stats WHERE inode = ?", (inode,))
                    eng.ctx.acct.usage(c, -align4k(0), -1)
                    continue
                node.nlink -= 1
                if node.nlink > 0:
                    update_node(c, node, "nlink")
                else:
                    released.merge(drop_inode(c, eng.ctx, node))
            eng.ctx.acct.apply(c, deltas)
            return len(rows)

        n = eng.write(batch)
        eng.finish(released)
        removed += n
        if n < TRASH_BATCH:
            return removed


def clean_delayed_slices(eng: Engine, edge: float) -> int:
    """Drop the refs held by `jfs_delslices` rows older than `edge`, and free what reaches 0."""
    rows = eng.read(
        lambda c: [as_int(r[0]) for r in c.execute("SELECT chunkid FROM jfs_delslices WHERE deleted < ?", (int(edge),))]
    )
    count = 0
    for sid in rows:
        released = Released()

        def drop(c: apsw.Cursor, sid: int = sid, released: Released = released) -> None:
            row = c.execute("SELECT slices FROM jfs_delslices WHERE chunkid = ?", (sid,)).fetchone()
            if row is None:
                return
            for slice_id, size in decode_delayed(as_bytes(row[0])):
                c.execute("UPDATE jfs_chunk_ref SET refs = refs - 1 WHERE chunkid = ?", (slice_id,))
                released.slices.add((slice_id, size))
            c.execute("DELETE FROM jfs_delslices WHERE chunkid = ?", (sid,))

        eng.write(drop)
        count += len(released.slices)
        eng.finish(released)
    return count


__all__ = ["TrashCleanup", "clean_delayed_slices", "clean_trash"]
