"""Metadata-only copies of a file or a tree (JuiceFS `clone`): new inodes share the source's slices.

Node, entry, chunk, xattr, symlink and dir-stats rows are copied under new inodes and each copied
slice record bumps its slice's `refs`; no block is read or written. A directory tree is built
detached (a `jfs_detached_node` row marks its top, invisible to readers) in one transaction per
directory batch, then attached to its parent in a last transaction, as JuiceFS does; `gc` removes
tops left detached by a crash.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apsw

from blockmap.accounting import DirDeltas, align4k
from blockmap.errors import fs_error
from blockmap.meta import as_bytes, as_int
from blockmap.namespace import OpContext, get_dir, now_ns
from blockmap.node import (
    ROOT_INODE,
    TRASH_INODE,
    TRASH_NAME,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    Attr,
    Node,
    get_node,
    insert_node,
    update_node,
)
from blockmap.paths import PathLike, check_name, lookup, resolve, resolve_parent
from blockmap.slices import decode_records

if TYPE_CHECKING:
    from blockmap.engine import DirEntry, Engine

#: Non-directory entries cloned per transaction.
CLONE_BATCH = 100


@dataclass(frozen=True)
class CloneOptions:
    """`preserve`: keep owner, mode and times (otherwise the caller's, with the umask, and now)."""

    preserve: bool
    umask: int


def _clone_node(
    cursor: apsw.Cursor, ctx: OpContext, opts: CloneOptions, src: Node, inode: int, parent: int, ns: int
) -> Node:
    """Insert the copy of `src` as `inode` with its xattrs, symlink, dir stats or chunks."""
    n = src.copy()
    n.inode = inode
    n.parent = parent
    if not opts.preserve:
        n.uid, n.gid = ctx.uid, ctx.gid
        n.mode &= ~opts.umask
        n.set_atime(ns)
        n.set_mtime(ns)
        n.set_ctime(ns)
    if n.type != TYPE_DIRECTORY and n.nlink > 1:
        n.nlink = 1
    ctx.acct.check(cursor, align4k(n.length if n.type != TYPE_DIRECTORY else 0), 1)
    insert_node(cursor, n)
    cursor.execute(
        "INSERT INTO jfs_xattr (inode, name, value) SELECT ?, name, value FROM jfs_xattr WHERE inode = ? ORDER BY id",
        (inode, src.inode),
    )
    if n.type == TYPE_DIRECTORY:
        cursor.execute(
            "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes)"
            " SELECT ?, data_length, used_space, used_inodes FROM jfs_dir_stats WHERE inode = ?",
            (inode, src.inode),
        )
    elif n.type == TYPE_SYMLINK:
        row = cursor.execute("SELECT target FROM jfs_symlink WHERE inode = ?", (src.inode,)).fetchone()
        if row is None:
            raise fs_error(errno.EIO)
        cursor.execute("INSERT INTO jfs_symlink (inode, target) VALUES (?, ?)", (inode, as_bytes(row[0])))
    elif n.type == TYPE_FILE:
        refs: dict[int, int] = {}
        rows = cursor.execute(
            "SELECT indx, CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ?", (src.inode,)
        ).fetchall()
        for indx, blob in rows:
            for r in decode_records(blob, f"chunk {src.inode}:{indx}"):
                if r.id:
                    refs[r.id] = refs.get(r.id, 0) + 1
            cursor.execute(
                "INSERT INTO jfs_chunk (inode, indx, slices) VALUES (?, ?, ?)", (inode, as_int(indx), as_bytes(blob))
            )
        for sid, k in refs.items():
            cursor.execute("UPDATE jfs_chunk_ref SET refs = refs + ? WHERE chunkid = ?", (k, sid))
    ctx.acct.usage(cursor, align4k(n.length if n.type != TYPE_DIRECTORY else 0), 1)
    return n


def _check_target(cursor: apsw.Cursor, parent: int, name: bytes, path: PathLike) -> Node:
    check_name(name, path)
    if parent >= TRASH_INODE or (parent == ROOT_INODE and name == TRASH_NAME):
        raise fs_error(errno.EPERM, path)
    pn = get_dir(cursor, parent, path)
    if lookup(cursor, parent, name) is not None:
        raise fs_error(errno.EEXIST, path)
    return pn


def _touch(cursor: apsw.Cursor, pn: Node, ns: int, nlink: int = 0) -> None:
    pn.set_mtime(ns)
    pn.set_ctime(ns)
    pn.nlink += nlink
    update_node(cursor, pn, "nlink", "mtime", "mtimensec", "ctime", "ctimensec")


def clone(eng: Engine, src: PathLike, dst: PathLike, *, preserve: bool = False) -> Attr:
    """Copy `src` (a file, symlink or directory tree) to `dst` without copying bytes."""
    ctx = eng.ctx
    opts = CloneOptions(preserve, eng.umask)
    src_ino = eng.read(lambda c: resolve(c, src, follow=False)[0])
    src_node = eng.stat_inode(src_ino, str(src))
    if src_ino >= TRASH_INODE:
        raise fs_error(errno.EPERM, src)
    top = eng.ids.next_inode()

    if src_node.type != TYPE_DIRECTORY:

        def one(c: apsw.Cursor) -> Node:
            parent, name = resolve_parent(c, dst)
            pn = _check_target(c, parent, name, dst)
            node = get_node(c, src_ino)
            if node is None:
                raise fs_error(errno.ENOENT, src)
            ns = now_ns()
            new = _clone_node(c, ctx, opts, node, top, parent, ns)
            c.execute(
                "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?, ?, ?, ?)", (parent, name, top, new.type)
            )
            _touch(c, pn, ns)
            deltas = DirDeltas()
            deltas.add_entry(parent, new.type, new.length, +1)
            ctx.acct.apply(c, deltas)
            return new

        return Attr.of(eng.write(one))

    def start(c: apsw.Cursor) -> int:
        parent, name = resolve_parent(c, dst)
        _check_target(c, parent, name, dst)
        if _is_within(c, src_ino, parent):
            raise fs_error(errno.EINVAL, src, dst)
        node = get_node(c, src_ino)
        if node is None:
            raise fs_error(errno.ENOENT, src)
        _clone_node(c, ctx, opts, node, top, parent, now_ns())
        c.execute("INSERT INTO jfs_detached_node (inode, added) VALUES (?, ?)", (top, int(time.time())))
        return parent

    eng.write(start)
    try:
        _clone_children(eng, opts, src_ino, top)

        def attach(c: apsw.Cursor) -> Node:
            parent, name = resolve_parent(c, dst)
            pn = _check_target(c, parent, name, dst)
            c.execute(
                "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?, ?, ?, ?)",
                (parent, name, top, TYPE_DIRECTORY),
            )
            c.execute("UPDATE jfs_node SET parent = ? WHERE inode = ?", (parent, top))
            _touch(c, pn, now_ns(), +1)
            c.execute("DELETE FROM jfs_detached_node WHERE inode = ?", (top,))
            deltas = DirDeltas()
            deltas.add_entry(parent, TYPE_DIRECTORY, 0, +1)
            ctx.acct.apply(c, deltas)
            node = get_node(c, top)
            assert node is not None
            return node

        return Attr.of(eng.write(attach))
    except BaseException:
        remove_detached(eng, top)
        raise


def _is_within(cursor: apsw.Cursor, ancestor: int, inode: int) -> bool:
    for _ in range(100_000):
        if inode == ancestor:
            return True
        if inode in (ROOT_INODE, 0):
            return False
        row = cursor.execute("SELECT parent FROM jfs_node WHERE inode = ?", (inode,)).fetchone()
        if row is None:
            return False
        inode = as_int(row[0])
    return False


def _clone_children(eng: Engine, opts: CloneOptions, src_dir: int, dst_dir: int) -> None:
    """Copy the entries of `src_dir` into the (already copied) `dst_dir`, depth first."""
    ctx = eng.ctx
    after = b""
    while True:
        batch = eng.readdir(src_dir, after)
        if not batch:
            return
        after = os.fsencode(batch[-1].name)
        files = [e for e in batch if not e.is_dir()]
        for i in range(0, len(files), CLONE_BATCH):
            part = files[i : i + CLONE_BATCH]
            inodes = [eng.ids.next_inode() for _ in part]

            def copy_files(c: apsw.Cursor, part: list[DirEntry] = part, inodes: list[int] = inodes) -> None:
                ns = now_ns()
                for e, ino in zip(part, inodes, strict=True):
                    node = get_node(c, e.inode)
                    if node is None:  # removed meanwhile: skip it
                        continue
                    _clone_node(c, ctx, opts, node, ino, dst_dir, ns)
                    c.execute(
                        "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?, ?, ?, ?)",
                        (dst_dir, os.fsencode(e.name), ino, node.type),
                    )

            eng.write(copy_files)
        for e in batch:
            if not e.is_dir():
                continue
            ino = eng.ids.next_inode()

            def copy_dir(c: apsw.Cursor, e: DirEntry = e, ino: int = ino) -> bool:
                node = get_node(c, e.inode)
                if node is None:
                    return False
                _clone_node(c, ctx, opts, node, ino, dst_dir, now_ns())
                c.execute(
                    "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?, ?, ?, ?)",
                    (dst_dir, os.fsencode(e.name), ino, TYPE_DIRECTORY),
                )
                return True

            if eng.write(copy_dir):
                _clone_children(eng, opts, e.inode, ino)


def remove_detached(eng: Engine, top: int) -> None:
    """Delete a detached tree (a clone that never got attached) and give its usage back."""
    from blockmap.namespace import Released, drop_inode

    ctx = eng.ctx
    stack = [top]
    order: list[int] = []
    while stack:
        d = stack.pop()
        order.append(d)
        after = b""
        while True:
            batch = eng.readdir(d, after)
            if not batch:
                break
            after = os.fsencode(batch[-1].name)
            released = Released()

            def drop(
                c: apsw.Cursor, batch: list[DirEntry] = batch, d: int = d, released: Released = released
            ) -> None:
                for e in batch:
                    if e.is_dir():
                        continue
                    c.execute("DELETE FROM jfs_edge WHERE parent = ? AND inode = ?", (d, e.inode))
                    node = get_node(c, e.inode)
                    if node is not None:
                        node.nlink -= 1
                        if node.nlink > 0:
                            update_node(c, node, "nlink")
                        else:
                            released.merge(drop_inode(c, ctx, node))

            eng.write(drop)
            eng.finish(released)
            stack.extend(e.inode for e in batch if e.is_dir())
    for d in reversed(order):

        def drop_dir(c: apsw.Cursor, d: int = d) -> None:
            if get_node(c, d) is None:
                return
            c.execute("DELETE FROM jfs_edge WHERE inode = ?", (d,))
            c.execute("DELETE FROM jfs_node WHERE inode = ?", (d,))
            c.execute("DELETE FROM jfs_dir_stats WHERE inode = ?", (d,))
            c.execute("DELETE FROM jfs_xattr WHERE inode = ?", (d,))
            c.execute("DELETE FROM jfs_detached_node WHERE inode = ?", (d,))
            ctx.acct.usage(c, -align4k(0), -1)

        eng.write(drop_dir)
