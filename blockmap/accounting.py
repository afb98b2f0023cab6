"""Space accounting as JuiceFS keeps it: the volume counters and per-directory `jfs_dir_stats`.

Every length is rounded up to 4 KiB, and an empty file, a directory or a symlink counts 4096 bytes.
`usedSpace`/`totalInodes` cover every inode but the root (and the trash directory itself).
A directory's stats cover its direct entries: one inode each, a file's length and rounded space,
4096 for anything else. blockmap updates both inside the operation's own transaction.
"""

from __future__ import annotations

import errno

import apsw

from blockmap.counters import TOTAL_INODES, USED_SPACE, add_usage, get_counter
from blockmap.errors import fs_error
from blockmap.node import TYPE_FILE

#: Accounting unit.
SPACE_UNIT = 4096


def align4k(length: int) -> int:
    """Space charged for `length` bytes (JuiceFS `align4K`: 0 counts as one unit)."""
    if length <= 0:
        return SPACE_UNIT
    return ((length - 1) // SPACE_UNIT + 1) * SPACE_UNIT


def entry_usage(type_: int, length: int) -> tuple[int, int]:
    """(data length, space) one directory entry contributes to its parent's stats."""
    if type_ == TYPE_FILE:
        return length, align4k(length)
    return 0, SPACE_UNIT


_CALC_SQL = (
    "SELECT COUNT(*),"
    " COALESCE(SUM(CASE WHEN n.type = 1 THEN n.length ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN n.type = 1 AND n.length > 0 THEN ((n.length - 1) / 4096 + 1) * 4096"
    " ELSE 4096 END), 0)"
    " FROM jfs_edge e JOIN jfs_node n ON n.inode = e.inode WHERE e.parent = ?"
)


def calc_dir_stat(cursor: apsw.Cursor, inode: int) -> tuple[int, int, int]:
    """A directory's true (data length, used space, used inodes), from its entries."""
    row = cursor.execute(_CALC_SQL, (inode,)).fetchone()
    assert row is not None  # an aggregate always yields one row
    count, length, space = row
    return int(length), int(space), int(count)


class DirDeltas:
    """Changes to directory stats collected during one operation and applied once at its end
    (so a directory whose row must first be computed is never counted twice)."""

    def __init__(self) -> None:
        self.deltas: dict[int, list[int]] = {}

    def add(self, inode: int, length: int, space: int, inodes: int) -> None:
        d = self.deltas.setdefault(inode, [0, 0, 0])
        d[0] += length
        d[1] += space
        d[2] += inodes

    def add_entry(self, inode: int, type_: int, length: int, sign: int) -> None:
        """One entry of `type_` (a file of `length` bytes) appeared (+1) in or left (-1) `inode`."""
        dl, ds = entry_usage(type_, length)
        self.add(inode, sign * dl, sign * ds, sign)


class Accounting:
    """Applies usage changes for one volume (dir stats only when the volume has DirStats on) and
    enforces the volume's Capacity and Inodes limits (0: unlimited) as JuiceFS does: ENOSPC."""

    def __init__(self, dir_stats: bool, capacity: int = 0, inode_limit: int = 0) -> None:
        self.dir_stats = dir_stats
        self.capacity = capacity
        self.inode_limit = inode_limit

    def check(self, cursor: apsw.Cursor, space: int, inodes: int, path: str | bytes | None = None) -> None:
        """Raise ENOSPC if adding `space` bytes or `inodes` inodes would pass a volume limit."""
        if space > 0 and self.capacity > 0 and get_counter(cursor, USED_SPACE) + space > self.capacity:
            raise fs_error(errno.ENOSPC, path)
        if inodes > 0 and self.inode_limit > 0 and get_counter(cursor, TOTAL_INODES) + inodes > self.inode_limit:
            raise fs_error(errno.ENOSPC, path)

    def usage(self, cursor: apsw.Cursor, space: int, inodes: int) -> None:
        add_usage(cursor, space, inodes)

    def apply(self, cursor: apsw.Cursor, deltas: DirDeltas) -> None:
        """Add the collected changes to the directories' stats. Call after the operation's rows are
        written: a directory without a stats row (the root of a fresh volume) gets one computed
        from its entries, which already include the change."""
        if not self.dir_stats:
            return
        for inode, (length, space, inodes) in deltas.deltas.items():
            if length == 0 and space == 0 and inodes == 0:
                continue
            cursor.execute(
                "UPDATE jfs_dir_stats SET data_length = data_length + ?, used_space = used_space + ?,"
                " used_inodes = used_inodes + ? WHERE inode = ?",
                (length, space, inodes, inode),
            )
            if cursor.getconnection().changes() == 0:
                row = cursor.execute(
                    "SELECT 1 FROM jfs_node WHERE inode = ? AND type = 2", (inode,)
                ).fetchone()
                if row:
                    cursor.execute(
                        "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes)"
                        " VALUES (?, ?, ?, ?)",
                        (inode, *calc_dir_stat(cursor, inode)),
                    )

    def file_length_changed(
        self,
        cursor: apsw.Cursor,
        inode: int,
        parent: int,
        old_length: int,
        new_length: int,
        path: str | bytes | None = None,
    ) -> None:
        """A file's length moved: charge the volume and every directory holding a link to it."""
        space = align4k(new_length) - align4k(old_length)
        length = new_length - old_length
        self.check(cursor, space, 0, path)
        if space:
            add_usage(cursor, space, 0)
        if not self.dir_stats or (space == 0 and length == 0):
            return
        deltas = DirDeltas()
        for p, links in parents_of(cursor, inode, parent).items():
            deltas.add(p, length * links, space * links, 0)
        self.apply(cursor, deltas)


def parents_of(cursor: apsw.Cursor, inode: int, parent: int) -> dict[int, int]:
    """Directories holding links to `inode`, with the number of links in each."""
    if parent > 0:
        return {parent: 1}
    out: dict[int, int] = {}
    for (p,) in cursor.execute("SELECT parent FROM jfs_edge WHERE inode = ?", (inode,)):
        out[int(p)] = out.get(int(p), 0) + 1
    return out
