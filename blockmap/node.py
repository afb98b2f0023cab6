"""Inodes as JuiceFS stores them (`jfs_node` rows), and the `Attr` that `stat` returns.

Types: 1 file, 2 directory, 3 symlink, 4 FIFO, 5 block device, 6 char device, 7 socket. `mode`
holds only the permission bits (07777). Times are whole microseconds plus a 0-999 ns remainder.
"""

from __future__ import annotations

import errno
import stat as statmod
from dataclasses import dataclass, replace
from typing import Any

import apsw

from blockmap.errors import fs_error

TYPE_FILE = 1
TYPE_DIRECTORY = 2
TYPE_SYMLINK = 3
TYPE_FIFO = 4
TYPE_BLOCKDEV = 5
TYPE_CHARDEV = 6
TYPE_SOCKET = 7

#: `flags` bits JuiceFS sets with chattr +i and +a (its FlagImmutable and FlagAppend): nothing
#: may change an immutable inode; an append-only one only grows, and an append-only directory only
#: gains entries. blockmap sets neither (pyfuse3 has no ioctl) but honours them.
FLAG_IMMUTABLE = 1
FLAG_APPEND = 2

ROOT_INODE = 1
#: The trash directory (created when TrashDays > 0); inodes at or above it are trash entries.
TRASH_INODE = 0x7FFFFFFF10000000
TRASH_NAME = b".trash"
#: Longest entry name and symlink target (bytes).
MAX_NAME = 255
MAX_SYMLINK = 4096
#: A directory's length.
DIR_LENGTH = 4096

_S_IFMT_BY_TYPE = {
    TYPE_FILE: statmod.S_IFREG,
    TYPE_DIRECTORY: statmod.S_IFDIR,
    TYPE_SYMLINK: statmod.S_IFLNK,
    TYPE_FIFO: statmod.S_IFIFO,
    TYPE_BLOCKDEV: statmod.S_IFBLK,
    TYPE_CHARDEV: statmod.S_IFCHR,
    TYPE_SOCKET: statmod.S_IFSOCK,
}

NODE_COLUMNS = (
    "inode", "type", "flags", "mode", "uid", "gid", "atime", "mtime", "ctime", "atimensec",
    "mtimensec", "ctimensec", "nlink", "length", "rdev", "parent", "access_acl_id", "default_acl_id",
    "tier_id",
)  # fmt: skip
_SELECT = "SELECT " + ", ".join(f"`{c}`" for c in NODE_COLUMNS) + " FROM jfs_node"


def split_ns(ns: int) -> tuple[int, int]:
    """A time in ns as JuiceFS stores it: (microseconds, 0-999 ns remainder)."""
    return ns // 1000, ns % 1000


def join_ns(us: int, rem: int) -> int:
    return us * 1000 + rem


@dataclass
class Node:
    """One `jfs_node` row."""

    inode: int
    type: int
    flags: int
    mode: int
    uid: int
    gid: int
    atime: int
    mtime: int
    ctime: int
    atimensec: int
    mtimensec: int
    ctimensec: int
    nlink: int
    length: int
    rdev: int
    parent: int
    access_acl_id: int = 0
    default_acl_id: int = 0
    tier_id: int = 0

    @classmethod
    def new(
        cls, inode: int, type_: int, mode: int, uid: int, gid: int, now_ns: int, parent: int, length: int = 0
    ) -> Node:
        us, rem = split_ns(now_ns)
        return cls(
            inode=inode, type=type_, flags=0, mode=mode & 0o7777, uid=uid, gid=gid, atime=us, mtime=us,
            ctime=us, atimensec=rem, mtimensec=rem, ctimensec=rem,
            nlink=2 if type_ == TYPE_DIRECTORY else 1,
            length=DIR_LENGTH if type_ == TYPE_DIRECTORY else length, rdev=0, parent=parent,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Node:
        return cls(*(0 if v is None else int(v) for v in row))

    def row(self) -> tuple[int, ...]:
        return tuple(getattr(self, c) for c in NODE_COLUMNS)

    @property
    def atime_ns(self) -> int:
        return join_ns(self.atime, self.atimensec)

    @property
    def mtime_ns(self) -> int:
        return join_ns(self.mtime, self.mtimensec)

    @property
    def ctime_ns(self) -> int:
        return join_ns(self.ctime, self.ctimensec)

    def set_atime(self, ns: int) -> None:
        self.atime, self.atimensec = split_ns(ns)

    def set_mtime(self, ns: int) -> None:
        self.mtime, self.mtimensec = split_ns(ns)

    def set_ctime(self, ns: int) -> None:
        self.ctime, self.ctimensec = split_ns(ns)

    def copy(self) -> Node:
        return replace(self)


def check_changeable(node: Node, path: str | bytes, *, append: bool = False) -> None:
    """EPERM for a change to an immutable inode, or to an append-only one unless the change only
    adds (`append`: a write at the end, an entry added to a directory)."""
    if node.flags & FLAG_IMMUTABLE or (node.flags & FLAG_APPEND and not append):
        raise fs_error(errno.EPERM, path or None)


def get_node(cursor: apsw.Cursor, inode: int) -> Node | None:
    row = cursor.execute(_SELECT + " WHERE inode = ?", (inode,)).fetchone()
    return None if row is None else Node.from_row(row)


def insert_node(cursor: apsw.Cursor, node: Node) -> None:
    cols = ", ".join(f"`{c}`" for c in NODE_COLUMNS)
    marks = ", ".join("?" * len(NODE_COLUMNS))
    cursor.execute(f"INSERT INTO jfs_node ({cols}) VALUES ({marks})", node.row())


def update_node(cursor: apsw.Cursor, node: Node, *columns: str) -> None:
    """Write the named columns of `node` back to its row."""
    sets = ", ".join(f"`{c}` = ?" for c in columns)
    cursor.execute(
        f"UPDATE jfs_node SET {sets} WHERE inode = ?", (*(getattr(node, c) for c in columns), node.inode)
    )


#: Column groups that operations update together.
TIMES = ("mtime", "mtimensec", "ctime", "ctimensec")
CTIME = ("ctime", "ctimensec")


@dataclass(frozen=True)
class Attr:
    """What `stat` returns: the fields of `os.stat_result` blockmap can fill, plus JuiceFS's `parent`."""

    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_rdev: int
    parent: int
    flags: int
    type: int

    @classmethod
    def of(cls, node: Node) -> Attr:
        return cls(
            st_ino=node.inode,
            st_mode=_S_IFMT_BY_TYPE.get(node.type, 0) | (node.mode & 0o7777),
            st_nlink=node.nlink,
            st_uid=node.uid,
            st_gid=node.gid,
            st_size=node.length,
            st_atime_ns=node.atime_ns,
            st_mtime_ns=node.mtime_ns,
            st_ctime_ns=node.ctime_ns,
            st_rdev=node.rdev,
            parent=node.parent,
            flags=node.flags,
            type=node.type,
        )

    @property
    def st_atime(self) -> float:
        return self.st_atime_ns / 1e9

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9

    @property
    def st_ctime(self) -> float:
        return self.st_ctime_ns / 1e9

    @property
    def st_blocks(self) -> int:
        return (self.st_size + 511) // 512 if self.type == TYPE_FILE else 0

    def is_dir(self) -> bool:
        return self.type == TYPE_DIRECTORY

    def is_file(self) -> bool:
        return self.type == TYPE_FILE

    def is_symlink(self) -> bool:
        return self.type == TYPE_SYMLINK


def type_from_mode(mode: int) -> int:
    """JuiceFS type for a `st_mode` file-type value."""
    for t, fmt in _S_IFMT_BY_TYPE.items():
        if statmod.S_IFMT(mode) == fmt:
            return t
    raise ValueError(f"unknown file type in mode {mode:o}")
