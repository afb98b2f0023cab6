"""Directory-entry operations, each the body of one metadata transaction.

These follow JuiceFS 1.4's SQL engine row for row (what is inserted, updated and deleted, nlink,
parent, times) and its accounting (volume counters, dir stats). The functions run inside the
caller's `BEGIN IMMEDIATE` and raise OSError to roll it back.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field

import apsw

from blockmap.accounting import Accounting, DirDeltas, align4k
from blockmap.counters import NEXT_TRASH, incr_counter
from blockmap.errors import fs_error
from blockmap.node import (
    CTIME,
    MAX_NAME,
    ROOT_INODE,
    TIMES,
    TRASH_INODE,
    TRASH_NAME,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    Node,
    check_changeable,
    get_node,
    insert_node,
    update_node,
)
from blockmap.paths import PathLike, check_name, lookup
from blockmap.slices import SliceRecord, decode_records

#: A file with at most this many chunks has its chunk rows released inside the unlink's own
#: transaction; bigger files go through a `jfs_delfile` row and a later transaction, as in JuiceFS.
INLINE_RELEASE_CHUNKS = 16
#: Trash sub-directories are named by UTC hour.
TRASH_DIR_FORMAT = "%Y-%m-%d-%H"
#: Mode of the trash directory and its hourly sub-directories.
TRASH_MODE = 0o555


@dataclass
class OpContext:
    """Who is acting, and the volume settings operations depend on."""

    uid: int
    gid: int
    acct: Accounting
    trash_days: int
    #: Inodes open in this process: their data is released at close, not at unlink.
    open_inodes: set[int] = field(default_factory=set)


@dataclass
class Released:
    """What an operation freed: slices whose refs may have reached 0, files whose data is pending."""

    slices: set[tuple[int, int]] = field(default_factory=set)
    pending_files: list[int] = field(default_factory=list)

    def merge(self, other: Released) -> None:
        self.slices |= other.slices
        self.pending_files.extend(other.pending_files)


def now_ns() -> int:
    return time.time_ns()


def get_dir(cursor: apsw.Cursor, inode: int, path: PathLike) -> Node:
    node = get_node(cursor, inode)
    if node is None:
        raise fs_error(errno.ENOENT, path)
    if node.type != TYPE_DIRECTORY:
        raise fs_error(errno.ENOTDIR, path)
    return node


def _touch_dir(cursor: apsw.Cursor, node: Node, ns: int, nlink_delta: int = 0) -> None:
    node.set_mtime(ns)
    node.set_ctime(ns)
    if nlink_delta:
        cursor.execute(
            "UPDATE jfs_node SET nlink = nlink + ?, mtime = ?, mtimensec = ?, ctime = ?, ctimensec = ?"
            " WHERE inode = ?",
            (nlink_delta, node.mtime, node.mtimensec, node.ctime, node.ctimensec, node.inode),
        )
        node.nlink += nlink_delta
    else:
        update_node(cursor, node, *TIMES)


def _insert_edge(cursor: apsw.Cursor, parent: int, name: bytes, inode: int, type_: int) -> None:
    cursor.execute(
        "INSERT INTO jfs_edge (parent, name, inode, type) VALUES (?, ?, ?, ?)", (parent, name, inode, type_)
    )


def _delete_edge(cursor: apsw.Cursor, parent: int, name: bytes) -> None:
    cursor.execute("DELETE FROM jfs_edge WHERE parent = ? AND name = ?", (parent, name))


def _in_trash(node: Node) -> bool:
    return node.inode >= TRASH_INODE or node.parent >= TRASH_INODE


def trash_entry_name(parent: int, inode: int, name: bytes) -> bytes:
    """Name of an entry moved to the trash: `<parent>-<inode>-<name>`, cut to 255 bytes."""
    return (f"{parent}-{inode}-".encode() + name)[:MAX_NAME]


def trash_dir(cursor: apsw.Cursor, ctx: OpContext, ns: int) -> int:
    """The current hour's trash directory (created if needed), or 0 when the trash is off."""
    if ctx.trash_days <= 0:
        return 0
    name = time.strftime(TRASH_DIR_FORMAT, time.gmtime(ns // 1_000_000_000)).encode()
    found = lookup(cursor, TRASH_INODE, name)
    if found is not None:
        return found[0]
    if get_node(cursor, TRASH_INODE) is None:
        insert_node(cursor, Node.new(TRASH_INODE, TYPE_DIRECTORY, TRASH_MODE, 0, 0, ns, ROOT_INODE))
    inode = TRASH_INODE + incr_counter(cursor, NEXT_TRASH, 1)
    insert_node(cursor, Node.new(inode, TYPE_DIRECTORY, TRASH_MODE, 0, 0, ns, TRASH_INODE))
    _insert_edge(cursor, TRASH_INODE, name, inode, TYPE_DIRECTORY)
    cursor.execute(
        "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) VALUES (?, 0, 0, 0)", (inode,)
    )
    ctx.acct.usage(cursor, align4k(0), 1)
    return inode


def _new_entry_dir(cursor: apsw.Cursor, parent: int, name: bytes, path: PathLike) -> Node:
    """The directory a new entry `name` goes into, after the checks mknod and link share: a valid
    name, not `.`/`..`, not in or naming the trash, a directory that is not itself deleted."""
    check_name(name, path)
    if parent >= TRASH_INODE or (parent == ROOT_INODE and name == TRASH_NAME):
        raise fs_error(errno.EPERM, path)
    if name in (b".", b".."):
        raise fs_error(errno.EEXIST, path)
    pn = get_dir(cursor, parent, path)
    if pn.parent > TRASH_INODE:
        raise fs_error(errno.ENOENT, path)
    return pn


def mknod(
    cursor: apsw.Cursor,
    ctx: OpContext,
    parent: int,
    name: bytes,
    type_: int,
    mode: int,
    inode: int,
    path: PathLike,
    *,
    target: bytes = b"",
    rdev: int = 0,
    absent: bool = False,
) -> Node:
    """Create an inode and its entry (JuiceFS doMknod + Mknod's accounting). `absent`: the
    caller looked `name` up in this transaction and found nothing."""
    pn = _new_entry_dir(cursor, parent, name, path)
    check_changeable(pn, path, append=True)
    if not absent and lookup(cursor, parent, name) is not None:
        raise fs_error(errno.EEXIST, path)
    ctx.acct.check(cursor, align4k(0), 1, path)
    ns = now_ns()
    gid = ctx.gid
    mode &= 0o7777
    if pn.mode & 0o2000:  # setgid directory: children take its group, sub-directories keep the bit
        gid = pn.gid
        if type_ == TYPE_DIRECTORY:
            mode |= 0o2000
    length = len(target) if type_ == TYPE_SYMLINK else 0
    node = Node.new(inode, type_, mode, ctx.uid, gid, ns, parent, length)
    node.rdev = rdev
    node.tier_id = pn.tier_id
    _insert_edge(cursor, parent, name, inode, type_)
    insert_node(cursor, node)
    if type_ == TYPE_SYMLINK:
        cursor.execute("INSERT INTO jfs_symlink (inode, target) VALUES (?, ?)", (inode, target))
    if type_ == TYPE_DIRECTORY:
        cursor.execute(
            "INSERT INTO jfs_dir_stats (inode, data_length, used_space, used_inodes) VALUES (?, 0, 0, 0)",
            (inode,),
        )
    _touch_dir(cursor, pn, ns, 1 if type_ == TYPE_DIRECTORY else 0)
    ctx.acct.usage(cursor, align4k(0), 1)
    deltas = DirDeltas()
    deltas.add_entry(parent, type_, 0, +1)
    ctx.acct.apply(cursor, deltas)
    return node


def _release_chunks_inline(cursor: apsw.Cursor, inode: int, released: Released) -> bool:
    """Delete a small file's chunk rows and drop their slice refs now; False if it is too big."""
    rows = cursor.execute(
        "SELECT indx, CAST(slices AS BLOB) FROM jfs_chunk WHERE inode = ? LIMIT ?",
        (inode, INLINE_RELEASE_CHUNKS + 1),
    ).fetchall()
    if len(rows) > INLINE_RELEASE_CHUNKS:
        return False
    for indx, blob in rows:
        drop_chunk_refs(cursor, decode_records(blob, f"chunk {inode}:{indx}"), released)
    cursor.execute("DELETE FROM jfs_chunk WHERE inode = ?", (inode,))
    return True


def drop_chunk_refs(cursor: apsw.Cursor, records: list[SliceRecord], released: Released) -> None:
    """Decrement `refs` once per record (JuiceFS counts records, not distinct slices)."""
    counts: dict[int, int] = {}
    for r in records:
        if r.id:
            counts[r.id] = counts.get(r.id, 0) + 1
            released.slices.add((r.id, r.size))
    for sid, n in counts.items():
        cursor.execute("UPDATE jfs_chunk_ref SET refs = refs - ? WHERE chunkid = ?", (n, sid))


def drop_inode(cursor: apsw.Cursor, ctx: OpContext, node: Node) -> Released:
    """Remove a node whose last link went (not a directory): rows, usage, and its file data."""
    released = Released()
    ns = now_ns()
    if node.type == TYPE_FILE:
        if node.inode in ctx.open_inodes or not _release_chunks_inline(cursor, node.inode, released):
            cursor.execute(
                "INSERT INTO jfs_delfile (inode, length, expire) VALUES (?, ?, ?)",
                (node.inode, node.length, ns // 1_000_000_000),
            )
            released.pending_files.append(node.inode)
        ctx.acct.usage(cursor, -align4k(node.length), -1)
    else:
        if node.type == TYPE_SYMLINK:
            cursor.execute("DELETE FROM jfs_symlink WHERE inode = ?", (node.inode,))
        ctx.acct.usage(cursor, -align4k(0), -1)
    cursor.execute("DELETE FROM jfs_node WHERE inode = ?", (node.inode,))
    if node.inode not in ctx.open_inodes:  # an open file keeps them until its data goes (release)
        cursor.execute("DELETE FROM jfs_xattr WHERE inode = ?", (node.inode,))
    return released


def unlink(cursor: apsw.Cursor, ctx: OpContext, parent: int, name: bytes, path: PathLike) -> Released:
    """Remove a non-directory entry (JuiceFS doUnlink + Unlink's accounting)."""
    if parent == ROOT_INODE and name == TRASH_NAME:
        raise fs_error(errno.EPERM, path)
    pn = get_dir(cursor, parent, path)
    found = lookup(cursor, parent, name)
    if found is None:
        raise fs_error(errno.ENOENT, path)
    inode, type_ = found
    if type_ == TYPE_DIRECTORY:
        raise fs_error(errno.EISDIR, path)
    node = get_node(cursor, inode)
    check_changeable(pn, path)
    if node is not None:
        check_changeable(node, path)
    ns = now_ns()
    trash = 0 if parent >= TRASH_INODE else trash_dir(cursor, ctx, ns)
    released = Released()
    deltas = DirDeltas()
    _delete_edge(cursor, parent, name)
    if node is None:  # a dangling entry: just remove it
        deltas.add_entry(parent, type_, 0, -1)
    else:
        tname = trash_entry_name(parent, inode, name)
        if trash and node.nlink > 1 and lookup(cursor, trash, tname) is not None:
            trash = 0
        node.set_ctime(ns)
        if trash:
            if node.parent > 0:
                node.parent = trash
            update_node(cursor, node, "nlink", *CTIME, "parent")
            _insert_edge(cursor, trash, tname, inode, type_)
            deltas.add_entry(trash, type_, node.length, +1)
        else:
            node.nlink -= 1
            if node.nlink > 0:
                update_node(cursor, node, "nlink", *CTIME, "parent")
            else:
                released = drop_inode(cursor, ctx, node)
        deltas.add_entry(parent, type_, node.length, -1)
    if parent < TRASH_INODE:
        _touch_dir(cursor, pn, ns)
    ctx.acct.apply(cursor, deltas)
    return released


def _drop_directory(cursor: apsw.Cursor, ctx: OpContext, inode: int, node: Node | None, parent: int,
                    name: bytes, trash: int, ns: int, deltas: DirDeltas) -> None:
    """An empty directory leaves its entry (rmdir, or a rename over it): its stats and quota rows
    go, then it moves into the trash, or its node and xattrs are deleted and uncounted."""
    cursor.execute("DELETE FROM jfs_dir_stats WHERE inode = ?", (inode,))
    cursor.execute("DELETE FROM jfs_dir_quota WHERE inode = ?", (inode,))
    if trash and node is not None:
        node.set_ctime(ns)
        node.parent = trash
        update_node(cursor, node, *CTIME, "parent")
        _insert_edge(cursor, trash, trash_entry_name(parent, inode, name), inode, TYPE_DIRECTORY)
        deltas.add_entry(trash, TYPE_DIRECTORY, 0, +1)
    else:
        cursor.execute("DELETE FROM jfs_node WHERE inode = ?", (inode,))
        cursor.execute("DELETE FROM jfs_xattr WHERE inode = ?", (inode,))
        ctx.acct.usage(cursor, -align4k(0), -1)


def rmdir(cursor: apsw.Cursor, ctx: OpContext, parent: int, name: bytes, path: PathLike) -> None:
    """Remove an empty directory (JuiceFS doRmdir + Rmdir's accounting)."""
    if name == b".":
        raise fs_error(errno.EINVAL, path)
    if name == b"..":
        raise fs_error(errno.ENOTEMPTY, path)
    if (parent == ROOT_INODE and name == TRASH_NAME) or parent == TRASH_INODE:
        raise fs_error(errno.EPERM, path)
    pn = get_dir(cursor, parent, path)
    found = lookup(cursor, parent, name)
    if found is None:
        raise fs_error(errno.ENOENT, path)
    inode, type_ = found
    if type_ != TYPE_DIRECTORY:
        raise fs_error(errno.ENOTDIR, path)
    if cursor.execute("SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1", (inode,)).fetchone():
        raise fs_error(errno.ENOTEMPTY, path)
    node = get_node(cursor, inode)
    check_changeable(pn, path)
    if node is not None:
        check_changeable(node, path)
    ns = now_ns()
    trash = 0 if parent >= TRASH_INODE else trash_dir(cursor, ctx, ns)
    if node is None:
        trash = 0
    _delete_edge(cursor, parent, name)
    deltas = DirDeltas()
    _drop_directory(cursor, ctx, inode, node, parent, name, trash, ns, deltas)
    if parent < TRASH_INODE:
        _touch_dir(cursor, pn, ns, -1)
    deltas.add_entry(parent, TYPE_DIRECTORY, 0, -1)
    ctx.acct.apply(cursor, deltas)


def _is_ancestor(cursor: apsw.Cursor, ancestor: int, inode: int) -> bool:
    """True when directory `ancestor` is `inode` or one of its ancestors."""
    seen = 0
    while True:
        if inode == ancestor:
            return True
        if inode == ROOT_INODE or seen > 100_000:
            return False
        row = cursor.execute("SELECT parent FROM jfs_node WHERE inode = ?", (inode,)).fetchone()
        if row is None or not row[0]:
            return False
        inode = int(row[0])
        seen += 1


def rename(
    cursor: apsw.Cursor,
    ctx: OpContext,
    psrc: int,
    nsrc: bytes,
    pdst: int,
    ndst: bytes,
    path: PathLike,
    path2: PathLike,
    *,
    no_replace: bool = False,
) -> Released:
    """Move an entry, replacing what `ndst` names (JuiceFS doRename + Rename's accounting)."""
    if (psrc == ROOT_INODE and nsrc == TRASH_NAME) or (pdst == ROOT_INODE and ndst == TRASH_NAME):
        raise fs_error(errno.EPERM, path, path2)
    if pdst >= TRASH_INODE:
        raise fs_error(errno.EPERM, path, path2)
    if nsrc in (b".", b"..") or ndst in (b".", b".."):
        raise fs_error(errno.EINVAL if nsrc == b"." or ndst == b"." else errno.EBUSY, path, path2)
    check_name(ndst, path2)
    spn = get_dir(cursor, psrc, path)
    dpn = spn if pdst == psrc else get_dir(cursor, pdst, path2)
    if dpn.parent > TRASH_INODE:
        raise fs_error(errno.ENOENT, path2)
    found = lookup(cursor, psrc, nsrc)
    if found is None:
        raise fs_error(errno.ENOENT, path)
    sino, stype = found
    if psrc == pdst and nsrc == ndst:
        return Released()
    if stype == TYPE_DIRECTORY and _is_ancestor(cursor, sino, pdst):
        raise fs_error(errno.EINVAL, path, path2)
    sn = get_node(cursor, sino)
    if sn is None:
        raise fs_error(errno.ENOENT, path)
    dfound = lookup(cursor, pdst, ndst)
    check_changeable(spn, path)
    check_changeable(sn, path)
    check_changeable(dpn, path2, append=dfound is None)
    if dfound is not None and dfound[0] != sino and (dn0 := get_node(cursor, dfound[0])) is not None:
        check_changeable(dn0, path2)
    ns = now_ns()
    released = Released()
    deltas = DirDeltas()
    src_nlink = dst_nlink = 0
    if dfound is not None:
        if no_replace:
            raise fs_error(errno.EEXIST, path, path2)
        dino, dtype = dfound
        if dino == sino:  # two links to one inode: nothing to do
            return Released()
        if stype == TYPE_DIRECTORY and dtype != TYPE_DIRECTORY:
            raise fs_error(errno.ENOTDIR, path, path2)
        if dtype == TYPE_DIRECTORY:
            if stype != TYPE_DIRECTORY:
                raise fs_error(errno.EISDIR, path, path2)
            if cursor.execute("SELECT 1 FROM jfs_edge WHERE parent = ? LIMIT 1", (dino,)).fetchone():
                raise fs_error(errno.ENOTEMPTY, path, path2)
        trash = trash_dir(cursor, ctx, ns)
        dn = get_node(cursor, dino)
        _delete_edge(cursor, pdst, ndst)
        dlen = dn.length if dn is not None else 0
        deltas.add_entry(pdst, dtype, dlen, -1)
        if dn is None:
            pass
        elif dtype == TYPE_DIRECTORY:
            dst_nlink -= 1
            _drop_directory(cursor, ctx, dino, dn, pdst, ndst, trash, ns, deltas)
        else:
            dn.set_ctime(ns)
            if trash:
                if dn.parent > 0:
                    dn.parent = trash
                update_node(cursor, dn, *CTIME, "parent")
                _insert_edge(cursor, trash, trash_entry_name(pdst, dino, ndst), dino, dtype)
                deltas.add_entry(trash, dtype, dlen, +1)
            else:
                dn.nlink -= 1
                if dn.nlink > 0:
                    update_node(cursor, dn, *CTIME, "nlink", "parent")
                else:
                    released = drop_inode(cursor, ctx, dn)
    _delete_edge(cursor, psrc, nsrc)
    _insert_edge(cursor, pdst, ndst, sino, stype)
    if psrc != pdst:
        if stype == TYPE_DIRECTORY:
            sn.parent = pdst
            src_nlink -= 1
            dst_nlink += 1
        elif sn.parent > 0:
            sn.parent = pdst
        deltas.add_entry(psrc, stype, sn.length, -1)
        deltas.add_entry(pdst, stype, sn.length, +1)
    sn.set_ctime(ns)
    update_node(cursor, sn, *CTIME, "parent")
    if psrc != pdst:
        _touch_dir(cursor, spn, ns, src_nlink)
        _touch_dir(cursor, dpn, ns, dst_nlink)
    else:
        _touch_dir(cursor, spn, ns, src_nlink + dst_nlink)
    ctx.acct.apply(cursor, deltas)
    return released


def exchange(
    cursor: apsw.Cursor,
    ctx: OpContext,
    psrc: int,
    nsrc: bytes,
    pdst: int,
    ndst: bytes,
    path: PathLike,
    path2: PathLike,
) -> None:
    """Swap two entries atomically (rename with RENAME_EXCHANGE, as JuiceFS's doRename does it)."""
    for parent, name, p in ((psrc, nsrc, path), (pdst, ndst, path2)):
        if parent >= TRASH_INODE or (parent == ROOT_INODE and name == TRASH_NAME):
            raise fs_error(errno.EPERM, path, path2)
        if name in (b".", b".."):
            raise fs_error(errno.EINVAL, p)
    spn = get_dir(cursor, psrc, path)
    dpn = spn if pdst == psrc else get_dir(cursor, pdst, path2)
    sfound = lookup(cursor, psrc, nsrc)
    dfound = lookup(cursor, pdst, ndst)
    if sfound is None:
        raise fs_error(errno.ENOENT, path)
    if dfound is None:
        raise fs_error(errno.ENOENT, path2)
    (sino, stype), (dino, dtype) = sfound, dfound
    if sino == dino:
        return
    if (stype == TYPE_DIRECTORY and _is_ancestor(cursor, sino, pdst)) or (
        dtype == TYPE_DIRECTORY and _is_ancestor(cursor, dino, psrc)
    ):
        raise fs_error(errno.EINVAL, path, path2)
    sn, dn = get_node(cursor, sino), get_node(cursor, dino)
    if sn is None or dn is None:
        raise fs_error(errno.ENOENT, path if sn is None else path2)
    for n, p in ((spn, path), (dpn, path2), (sn, path), (dn, path2)):
        check_changeable(n, p)
    ns = now_ns()
    cursor.execute(
        "UPDATE jfs_edge SET inode = ?, type = ? WHERE parent = ? AND name = ?", (dino, dtype, psrc, nsrc)
    )
    cursor.execute(
        "UPDATE jfs_edge SET inode = ?, type = ? WHERE parent = ? AND name = ?", (sino, stype, pdst, ndst)
    )
    src_nlink = dst_nlink = 0
    deltas = DirDeltas()
    if psrc != pdst:
        for node, new_parent in ((sn, pdst), (dn, psrc)):
            if node.type == TYPE_DIRECTORY or node.parent > 0:
                node.parent = new_parent
        if stype == TYPE_DIRECTORY:
            src_nlink -= 1
            dst_nlink += 1
        if dtype == TYPE_DIRECTORY:
            dst_nlink -= 1
            src_nlink += 1
        deltas.add_entry(psrc, stype, sn.length, -1)
        deltas.add_entry(psrc, dtype, dn.length, +1)
        deltas.add_entry(pdst, dtype, dn.length, -1)
        deltas.add_entry(pdst, stype, sn.length, +1)
    for node in (sn, dn):
        node.set_ctime(ns)
        update_node(cursor, node, *CTIME, "parent")
    _touch_dir(cursor, spn, ns, src_nlink)
    if pdst != psrc:
        _touch_dir(cursor, dpn, ns, dst_nlink)
    ctx.acct.apply(cursor, deltas)


def link(cursor: apsw.Cursor, ctx: OpContext, inode: int, parent: int, name: bytes, path: PathLike) -> Node:
    """Add a hard link (JuiceFS doLink + Link's accounting); the node's parent becomes 0."""
    pn = _new_entry_dir(cursor, parent, name, path)
    if lookup(cursor, parent, name) is not None:
        raise fs_error(errno.EEXIST, path)
    node = get_node(cursor, inode)
    if node is None:
        raise fs_error(errno.ENOENT, path)
    if node.type == TYPE_DIRECTORY:
        raise fs_error(errno.EPERM, path)
    check_changeable(pn, path, append=True)
    check_changeable(node, path)
    ns = now_ns()
    node.parent = 0
    node.nlink += 1
    node.set_ctime(ns)
    _insert_edge(cursor, parent, name, inode, node.type)
    update_node(cursor, node, "nlink", *CTIME, "parent")
    _touch_dir(cursor, pn, ns)
    deltas = DirDeltas()
    deltas.add_entry(parent, node.type, node.length, +1)
    ctx.acct.apply(cursor, deltas)
    return node


def set_attr(
    cursor: apsw.Cursor,
    inode: int,
    path: PathLike,
    *,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    atime_ns: int | None = None,
    mtime_ns: int | None = None,
) -> Node:
    """chmod / chown / utimens in one update; ctime becomes now (JuiceFS doSetAttr)."""
    node = get_node(cursor, inode)
    if node is None:
        raise fs_error(errno.ENOENT, path)
    check_changeable(node, path)
    ns = now_ns()
    if (uid is not None and uid != node.uid) or (gid is not None and gid != node.gid):
        if node.type != TYPE_DIRECTORY and node.mode & 0o6000:
            node.mode &= ~0o4000  # chown clears set-user-ID, and set-group-ID on group-executables
            if node.mode & 0o010:
                node.mode &= ~0o2000
    if uid is not None:
        node.uid = uid
    if gid is not None:
        node.gid = gid
    if mode is not None:
        node.mode = mode & 0o7777
    if atime_ns is not None:
        node.set_atime(atime_ns)
    if mtime_ns is not None:
        node.set_mtime(mtime_ns)
    node.set_ctime(ns)
    update_node(
        cursor, node, "mode", "uid", "gid", "atime", "atimensec", "mtime", "mtimensec", *CTIME
    )
    return node

