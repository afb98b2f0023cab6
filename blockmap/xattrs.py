"""Extended attributes (`jfs_xattr` rows) of one inode, each function the body of (or a step in)
one transaction; the limits are Linux's, as JuiceFS's VFS checks them.

A name is any bytes, as Linux allows: the key is the name's bytes (`os.fsencode` of a str), stored
as TEXT holding exactly those bytes (`CAST(? AS TEXT)`), which is what JuiceFS's Go strings store:
a UTF-8 name is the same row either way, and a name that is not UTF-8 round-trips instead of
failing to encode."""

from __future__ import annotations

import errno
import os

import apsw

from blockmap.errors import ENOATTR, fs_error
from blockmap.meta import as_bytes, as_int
from blockmap.node import FLAG_APPEND, FLAG_IMMUTABLE
from blockmap.paths import PathLike

#: Longest name and value.
XATTR_MAX_NAME = 255
XATTR_MAX_VALUE = 65536
XATTR_CREATE = os.XATTR_CREATE if hasattr(os, "XATTR_CREATE") else 1
XATTR_REPLACE = os.XATTR_REPLACE if hasattr(os, "XATTR_REPLACE") else 2


def xattr_key(name: str | bytes, path: PathLike = "") -> bytes:
    """The stored name of attribute `name`, as bytes: EINVAL when empty, ERANGE when too long."""
    n = os.fsencode(name)
    if not n:
        raise fs_error(errno.EINVAL, path)
    if len(n) > XATTR_MAX_NAME:
        raise fs_error(errno.ERANGE, path)
    return n


def check_set(value: bytes, flags: int, path: PathLike = "") -> None:
    """What `setxattr` refuses before any transaction: unknown flags, a value too large."""
    if flags not in (0, XATTR_CREATE, XATTR_REPLACE):
        raise fs_error(errno.EINVAL, path)
    if len(value) > XATTR_MAX_VALUE:
        raise fs_error(errno.E2BIG, path)


_BY_NAME = "WHERE inode = ? AND name = CAST(? AS TEXT)"


def _check_flags(cur: apsw.Cursor, inode: int, path: PathLike) -> None:
    """EPERM on an immutable or append-only inode (JuiceFS's chattr +i / +a), as Linux refuses."""
    row = cur.execute("SELECT flags FROM jfs_node WHERE inode = ?", (inode,)).fetchone()
    if row is not None and as_int(row[0] or 0) & (FLAG_IMMUTABLE | FLAG_APPEND):
        raise fs_error(errno.EPERM, path)


def get_xattr(cur: apsw.Cursor, inode: int, key: bytes, path: PathLike = "") -> bytes:
    row = cur.execute(f"SELECT value FROM jfs_xattr {_BY_NAME}", (inode, key)).fetchone()
    if row is None:
        raise fs_error(ENOATTR, path)
    return as_bytes(row[0])


def set_xattr(cur: apsw.Cursor, inode: int, key: bytes, value: bytes, flags: int = 0, path: PathLike = "") -> None:
    """Set (XATTR_CREATE: EEXIST if present; XATTR_REPLACE: ENODATA if absent); an unchanged
    value writes nothing."""
    _check_flags(cur, inode, path)
    row = cur.execute(f"SELECT value FROM jfs_xattr {_BY_NAME}", (inode, key)).fetchone()
    if row is not None and flags == XATTR_CREATE:
        raise fs_error(errno.EEXIST, path)
    if row is None and flags == XATTR_REPLACE:
        raise fs_error(ENOATTR, path)
    if row is None:
        cur.execute("INSERT INTO jfs_xattr (inode, name, value) VALUES (?, CAST(? AS TEXT), ?)",
                    (inode, key, bytes(value)))
    elif as_bytes(row[0]) != bytes(value):
        cur.execute(f"UPDATE jfs_xattr SET value = ? {_BY_NAME}", (bytes(value), inode, key))


def list_xattrs(cur: apsw.Cursor, inode: int) -> list[str]:
    """The names, as `os.fsdecode` gives them (`os.fsencode` returns the stored bytes)."""
    rows = cur.execute("SELECT CAST(name AS BLOB) FROM jfs_xattr WHERE inode = ? ORDER BY id", (inode,))
    return [os.fsdecode(as_bytes(r[0])) for r in rows]


def remove_xattr(cur: apsw.Cursor, inode: int, key: bytes, path: PathLike = "") -> None:
    _check_flags(cur, inode, path)
    cur.execute(f"DELETE FROM jfs_xattr {_BY_NAME}", (inode, key))
    if cur.getconnection().changes() == 0:
        raise fs_error(ENOATTR, path)
