"""Path handling: names as bytes, checks on entry names, and resolving a path to an inode.

Paths are POSIX-style and rooted at the volume's root ('/'). Symlinks in intermediate components
are followed (relative to the link's directory; absolute targets start at the volume root), up to
MAX_SYMLINK_FOLLOWS, as the kernel would.
"""

from __future__ import annotations

import errno
import os

import apsw

from blockmap.errors import fs_error
from blockmap.node import MAX_NAME, ROOT_INODE, TYPE_DIRECTORY, TYPE_SYMLINK

#: The kernel's limit on symlinks followed while resolving one path (ELOOP past it).
MAX_SYMLINK_FOLLOWS = 40

PathLike = str | bytes


def to_bytes(path: PathLike) -> bytes:
    return os.fsencode(path)


def split_path(path: PathLike) -> list[bytes]:
    """Components of a path, without empty ones and '.'."""
    p = to_bytes(path)
    if b"\0" in p:
        raise fs_error(errno.EINVAL, path)
    return [c for c in p.split(b"/") if c and c != b"."]


def check_name(name: bytes, path: PathLike) -> None:
    """Raise the errno the kernel gives for an entry name that cannot be created."""
    if not name or b"/" in name or b"\0" in name:
        raise fs_error(errno.EINVAL, path)
    if len(name) > MAX_NAME:
        raise fs_error(errno.ENAMETOOLONG, path)


def lookup(cursor: apsw.Cursor, parent: int, name: bytes) -> tuple[int, int] | None:
    """(inode, type) of entry `name` in directory `parent`, or None."""
    row = cursor.execute(
        "SELECT inode, type FROM jfs_edge WHERE parent = ? AND name = ?", (parent, name)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def _parent_of_dir(cursor: apsw.Cursor, inode: int) -> int:
    row = cursor.execute("SELECT parent FROM jfs_node WHERE inode = ?", (inode,)).fetchone()
    return ROOT_INODE if row is None or not row[0] or inode == ROOT_INODE else int(row[0])


def _symlink_target(cursor: apsw.Cursor, inode: int) -> bytes:
    row = cursor.execute("SELECT target FROM jfs_symlink WHERE inode = ?", (inode,)).fetchone()
    if row is None:
        raise fs_error(errno.EIO)
    t = row[0]
    return t.encode() if isinstance(t, str) else bytes(t)


def _walk(
    cursor: apsw.Cursor, start: int, parts: list[bytes], path: PathLike, follow_last: bool, budget: list[int]
) -> tuple[int, int]:
    """Resolve `parts` from directory `start`; returns (inode, type)."""
    cur, ctype = start, TYPE_DIRECTORY
    for i, part in enumerate(parts):
        if ctype != TYPE_DIRECTORY:
            raise fs_error(errno.ENOTDIR, path)
        if len(part) > MAX_NAME:
            raise fs_error(errno.ENAMETOOLONG, path)
        if part == b"..":
            cur, ctype = _parent_of_dir(cursor, cur), TYPE_DIRECTORY
            continue
        found = lookup(cursor, cur, part)
        if found is None:
            raise fs_error(errno.ENOENT, path)
        ino, typ = found
        last = i == len(parts) - 1
        if typ == TYPE_SYMLINK and (not last or follow_last):
            budget[0] -= 1
            if budget[0] < 0:
                raise fs_error(errno.ELOOP, path)
            target = _symlink_target(cursor, ino)
            base = ROOT_INODE if target.startswith(b"/") else cur
            ino, typ = _walk(cursor, base, split_path(target), path, True, budget)
        cur, ctype = ino, typ
    return cur, ctype


def resolve_from(cursor: apsw.Cursor, start: int, name: bytes, path: PathLike) -> tuple[int, int]:
    """(inode, type) of entry `name` of directory `start`, following a symlink and `..`."""
    return _walk(cursor, start, [name], path, True, [MAX_SYMLINK_FOLLOWS])


def resolve(cursor: apsw.Cursor, path: PathLike, *, follow: bool = True) -> tuple[int, int]:
    """(inode, type) of `path`; the last component is followed if it is a symlink and `follow`."""
    return _walk(cursor, ROOT_INODE, split_path(path), path, follow, [MAX_SYMLINK_FOLLOWS])


def resolve_parent(cursor: apsw.Cursor, path: PathLike) -> tuple[int, bytes]:
    """(directory inode, last name) for creating or removing `path`'s last component.

    Raises EBUSY for the root itself (it has no parent entry)."""
    parts = split_path(path)
    if not parts:
        raise fs_error(errno.EBUSY, path)
    parent, ptype = _walk(cursor, ROOT_INODE, parts[:-1], path, True, [MAX_SYMLINK_FOLLOWS])
    if ptype != TYPE_DIRECTORY:
        raise fs_error(errno.ENOTDIR, path)
    return parent, parts[-1]
