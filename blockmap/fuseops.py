"""The FUSE operations of `blockmap mount`: inode-based requests from the kernel, answered by the
volume engine (blockmap.engine) in worker threads, errors out as errno.

The layer keeps no metadata of its own beyond open files and directory listings: every answer
comes from the metadata database (hydrated locally by ltxvfs) and the block store. An inode's
open handles share one `File`, so writes through any of them are read back through all;
its buffered writes are recorded (one transaction) at flush, fsync, release, a read, a
truncate, or when a chunk's slice is full.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import stat as statmod
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import apsw
import pyfuse3
import trio

from blockmap import namespace as ns
from blockmap.engine import DirEntry, Engine
from blockmap.errors import ENOATTR, BlockError, BlockmapError
from blockmap.fileio import File
from blockmap.files import truncate
from blockmap.meta import as_bytes
from blockmap.node import (
    FLAG_APPEND,
    FLAG_IMMUTABLE,
    MAX_SYMLINK,
    ROOT_INODE,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    Attr,
    Node,
    get_node,
    type_from_mode,
)
from blockmap.paths import lookup
from blockmap.xattrs import check_set, get_xattr, list_xattrs, remove_xattr, set_xattr, xattr_key
from ltx.store.base import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long the kernel may keep a name's lookup and an inode's attributes (JuiceFS's defaults).
DEFAULT_ENTRY_TIMEOUT = 1.0
DEFAULT_ATTR_TIMEOUT = 1.0
#: Bytes read ahead once reads of an open file are sequential.
DEFAULT_READAHEAD = 8 << 20
#: Worker threads answering requests at once.
DEFAULT_WORKERS = 16
#: `st_blksize` reported (JuiceFS's).
BLKSIZE = 1 << 16
#: statfs when the volume has no capacity / inode limit (JuiceFS reports 1 PiB and 10^10 inodes).
UNLIMITED_SPACE = 1 << 50
UNLIMITED_INODES = 10_000_000_000
#: Longest entry name.
NAME_MAX = 255
#: POSIX ACLs travel as these extended attributes; the mount does not store ACLs.
ACL_XATTR_PREFIX = b"system.posix_acl_"
#: The attribute the kernel reads before each write (to drop file capabilities).
CAPS_XATTR = b"security.capability"


@dataclass
class OpenFile:
    """One inode's open handles: a shared `File` (its write buffer), and read-ahead state."""

    inode: int
    file: File
    lock: threading.Lock = field(default_factory=threading.Lock)
    handles: int = 0
    #: Where the last read ended (a read starting there is sequential).
    read_end: int = -1
    #: Read-ahead has been started up to here.
    ahead_to: int = 0
    #: Attributes seen last: fstat of a file unlinked while open answers from them (nlink 0).
    attr: Attr | None = None


class FuseOperations(pyfuse3.Operations):  # type: ignore[misc]
    """pyfuse3's operations over one volume engine."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        engine: Engine,
        *,
        entry_timeout: float = DEFAULT_ENTRY_TIMEOUT,
        attr_timeout: float = DEFAULT_ATTR_TIMEOUT,
        readahead: int = DEFAULT_READAHEAD,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.readahead = readahead
        self._limiter = trio.CapacityLimiter(workers)
        self._lock = threading.Lock()
        self._files: dict[int, OpenFile] = {}
        self._handles: dict[int, OpenFile] = {}
        self._dirs: dict[int, tuple[int, list[DirEntry] | None]] = {}
        self._next_fh = 1
        #: Requests answered with EIO because the store or the metadata failed (for tests, logs).
        self.io_errors = 0
        #: Requests answered in the event loop without a worker thread (see `_fast`).
        self.inline = 0
        #: No inode of a writable mount has `security.capability`, which the kernel asks for before
        #: every write: the answer needs no lookup (this mount is the volume's only writer; set
        #: False before such an attribute is set).
        self._no_caps = not engine.read_only and not engine.read(
            lambda c: c.execute("SELECT 1 FROM jfs_xattr WHERE name = CAST(? AS TEXT) LIMIT 1",
                                (CAPS_XATTR,)).fetchone())

    # -- plumbing ----------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a worker thread; its errors become FUSEError."""
        return await trio.to_thread.run_sync(functools.partial(self._call, fn, *args), limiter=self._limiter)

    async def _fast(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)`, which only reads or writes the local metadata (no store request, no
        wait on another thread), in the event loop itself when the metadata connection is free:
        a hop to a worker thread and back costs several times the local SQLite work. When another
        thread holds the connection, a worker waits for it instead of the loop."""
        with self.engine.db.held_if_free() as free:
            if free:
                self.inline += 1
                return self._call(fn, *args)
        return await self._run(fn, *args)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            if exc.errno is None:
                raise self._eio(fn, exc) from exc
            raise pyfuse3.FUSEError(exc.errno) from exc
        except (BlockError, BlockmapError, StoreError, apsw.Error) as exc:
            raise self._eio(fn, exc) from exc
        except Exception as exc:  # a bug: EIO and its traceback, not the end of the mount
            # (pyfuse3 stops serving on any exception that is not a FUSEError)
            self.io_errors += 1
            log.error("%s failed unexpectedly", getattr(fn, "__name__", "operation").lstrip("_"), exc_info=exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    def _eio(self, fn: Callable[..., Any], exc: BaseException) -> pyfuse3.FUSEError:
        self.io_errors += 1
        name = getattr(fn, "__name__", "operation").lstrip("_")
        log.error("%s failed: %s", name, exc)
        return pyfuse3.FUSEError(errno.EIO)

    def _ctx(self, ctx: pyfuse3.RequestContext | None) -> ns.OpContext:
        """The engine's context acting as the request's caller."""
        if ctx is None:
            return self.engine.ctx
        return dataclasses.replace(self.engine.ctx, uid=ctx.uid, gid=ctx.gid)

    def entry(self, attr: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = attr.st_ino
        e.generation = 0
        e.entry_timeout = self.entry_timeout
        e.attr_timeout = self.attr_timeout
        e.st_mode = attr.st_mode
        e.st_nlink = attr.st_nlink
        e.st_uid = attr.st_uid
        e.st_gid = attr.st_gid
        e.st_rdev = attr.st_rdev
        e.st_size = attr.st_size
        e.st_blksize = BLKSIZE
        e.st_blocks = (attr.st_size + 511) // 512 if attr.type in (TYPE_FILE, TYPE_DIRECTORY) else 0
        e.st_atime_ns = attr.st_atime_ns
        e.st_mtime_ns = attr.st_mtime_ns
        e.st_ctime_ns = attr.st_ctime_ns
        return e

    def _attr(self, inode: int) -> Attr:
        """An inode's attributes, with buffered writes counted in its size; an open file unlinked
        meanwhile answers from what was seen last, with nlink 0."""
        with self._lock:
            of = self._files.get(inode)
        try:
            attr = self.engine.stat_inode(inode)
        except FileNotFoundError:
            if of is None or of.attr is None:
                raise
            length = self.engine.unlinked_length(inode)
            if length is None:
                raise
            of.attr = dataclasses.replace(of.attr, st_nlink=0, st_size=max(length, of.file.pending_end))
            return of.attr
        if of is not None:
            pending = of.file.pending_end
            if pending > attr.st_size:
                attr = dataclasses.replace(attr, st_size=pending)
            written = of.file.pending_mtime_ns  # a write marks mtime and ctime when it returns
            if written > attr.st_mtime_ns:
                attr = dataclasses.replace(attr, st_mtime_ns=written, st_ctime_ns=max(written, attr.st_ctime_ns))
            of.attr = attr
        return attr

    def _commit_pending(self, inode: int) -> None:
        """Record the inode's buffered writes (before a truncate or a read that must see them)."""
        with self._lock:
            of = self._files.get(inode)
        if of is not None:
            with of.lock:
                of.file.flush()

    async def _new(self, parent: int, name: bytes, type_: int, mode: int, ctx: pyfuse3.RequestContext,
                   target: bytes = b"", rdev: int = 0) -> Attr:
        """`_create` in the event loop when its transaction would not wait (see `_writes_inline`),
        else in a worker: a write that waits for the store (a failed ship retried, a stalled
        follower's fresh look, `--sync commit`) must never stall the loop and every other request."""
        if self.engine.ids.inodes_left() > 0:  # else a batch is reserved first, which ships
            with self._writing_inline() as inline:
                if inline:
                    self.inline += 1
                    return self._call(self._create, parent, name, type_, mode, ctx, target, rdev)
        return await self._run(self._create, parent, name, type_, mode, ctx, target, rdev)

    @contextmanager
    def _writing_inline(self) -> Iterator[bool]:
        """Hold the metadata connection if it is free, and say whether a write transaction now
        runs without waiting for the store (MetaDB.writes_at_once): then the loop runs it itself,
        as a hop to a worker thread and back costs about as much as the local transaction."""
        with self.engine.db.held_if_free() as free:
            try:
                inline = free and self.engine.db.writes_at_once()
            except (BlockmapError, apsw.Error):
                inline = False  # the worker's attempt reports it
            yield inline

    def _create(self, parent: int, name: bytes, type_: int, mode: int, ctx: pyfuse3.RequestContext,
                target: bytes = b"", rdev: int = 0) -> Attr:
        octx = self._ctx(ctx)
        self.engine.check_writable()
        inode = self.engine.ids.next_inode()

        def body(c: apsw.Cursor) -> Node:
            return ns.mknod(c, octx, parent, name, type_, mode, inode, name, target=target, rdev=rdev)

        return Attr.of(self.engine.write_new(inode, body))

    # -- names ---------------------------------------------------------------------------------
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(await self._fast(self._lookup, parent_inode, name))

    def _lookup(self, parent: int, name: bytes) -> Attr:
        if len(name) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, "name too long")

        def body(c: apsw.Cursor) -> Node:
            if name == b".":
                node = ns.get_dir(c, parent, name)
            elif name == b"..":
                node = ns.get_dir(c, ns.get_dir(c, parent, name).parent, name)
            else:
                found = lookup(c, parent, name)
                if found is None:
                    raise OSError(errno.ENOENT, "no such entry")
                got = get_node(c, found[0])
                if got is None:
                    raise OSError(errno.ENOENT, "no such inode")
                node = got
            return node

        return Attr.of(self.engine.read(body))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        return None  # nothing is cached per inode beyond open files

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(await self._fast(self._attr, inode))

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(await self._run(self._setattr, inode, attr, fields))

    def _setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> Attr:
        self.engine.check_writable()
        if fields.update_size or fields.update_mtime:  # buffered writes must not outlive these
            self._commit_pending(inode)
        if fields.update_size:
            self.engine.truncate_inode(inode, attr.st_size)
        mode = attr.st_mode & 0o7777 if fields.update_mode else None
        uid = attr.st_uid if fields.update_uid else None
        gid = attr.st_gid if fields.update_gid else None
        atime = attr.st_atime_ns if fields.update_atime else None
        mtime = attr.st_mtime_ns if fields.update_mtime else None
        if any(v is not None for v in (mode, uid, gid, atime, mtime)):
            try:
                self.engine.write(lambda c: ns.set_attr(c, inode, "", mode=mode, uid=uid, gid=gid,
                                                        atime_ns=atime, mtime_ns=mtime))
            except FileNotFoundError:
                self._set_unlinked_attr(inode, mode, uid, gid, atime, mtime)
        return self._attr(inode)

    def _set_unlinked_attr(self, inode: int, mode: int | None, uid: int | None, gid: int | None,
                           atime: int | None, mtime: int | None) -> None:
        """fchmod, fchown and futimens of a file unlinked while open: it has no node any more (its
        data waits in `jfs_delfile` for the last close), so its attributes live in the open
        handles, which are the only way left to see them."""
        with self._lock:
            of = self._files.get(inode)
        if of is None or of.attr is None or self.engine.unlinked_length(inode) is None:
            raise OSError(errno.ENOENT, "no such inode")
        a = of.attr
        perm = a.st_mode & 0o7777 if mode is None else mode
        if ((uid is not None and uid != a.st_uid) or (gid is not None and gid != a.st_gid)) and perm & 0o6000:
            perm &= ~0o4000 & ~(0o2000 if perm & 0o010 else 0)  # as ns.set_attr: chown clears set-ID bits
        now = ns.now_ns()
        of.attr = dataclasses.replace(
            a, st_mode=statmod.S_IFMT(a.st_mode) | perm,
            st_uid=a.st_uid if uid is None else uid, st_gid=a.st_gid if gid is None else gid,
            st_atime_ns=a.st_atime_ns if atime is None else atime,
            st_mtime_ns=a.st_mtime_ns if mtime is None else mtime, st_ctime_ns=now,
        )  # fmt: skip

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return await self._fast(self._readlink, inode)

    def _readlink(self, inode: int) -> bytes:
        def body(c: apsw.Cursor) -> bytes:
            row = c.execute("SELECT target FROM jfs_symlink WHERE inode = ?", (inode,)).fetchone()
            if row is None:
                raise OSError(errno.EINVAL, "not a symlink")
            return as_bytes(row[0])

        return self.engine.read(body)

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        try:
            type_ = type_from_mode(mode)
        except ValueError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None
        rdev = rdev if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode) else 0
        return self.entry(await self._new(parent_inode, name, type_, mode & 0o7777, ctx, b"", rdev))

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(await self._new(parent_inode, name, TYPE_DIRECTORY, mode & 0o7777, ctx))

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if len(target) > MAX_SYMLINK:
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        return self.entry(await self._new(parent_inode, name, TYPE_SYMLINK, 0o777, ctx, target))

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._run(self._unlink, parent_inode, name, ctx)

    def _unlink(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        octx = self._ctx(ctx)
        self.engine.finish_later(self.engine.write(lambda c: ns.unlink(c, octx, parent, name, name)))

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        octx = self._ctx(ctx)
        await self._run(self.engine.write, lambda c: ns.rmdir(c, octx, parent_inode, name, name))

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        await self._run(self._rename, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx)

    def _rename(self, pold: int, nold: bytes, pnew: int, nnew: bytes, flags: int,
                ctx: pyfuse3.RequestContext) -> None:
        octx = self._ctx(ctx)
        exchange = bool(flags & pyfuse3.RENAME_EXCHANGE)
        no_replace = bool(flags & pyfuse3.RENAME_NOREPLACE)
        if flags & ~(pyfuse3.RENAME_EXCHANGE | pyfuse3.RENAME_NOREPLACE) or (exchange and no_replace):
            raise OSError(errno.EINVAL, "rename flags")

        def body(c: apsw.Cursor) -> ns.Released:
            if exchange:
                ns.exchange(c, octx, pold, nold, pnew, nnew, nold, nnew)
                return ns.Released()
            return ns.rename(c, octx, pold, nold, pnew, nnew, nold, nnew, no_replace=no_replace)

        self.engine.finish_later(self.engine.write(body))

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        octx = self._ctx(ctx)
        node = await self._run(self.engine.write,
                               lambda c: ns.link(c, octx, inode, new_parent_inode, new_name, new_name))
        return self.entry(Attr.of(node))

    # -- directories -------------------------------------------------------------------------
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = await self._fast(self.engine.node, inode)
        if node.type != TYPE_DIRECTORY:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._dirs[fh] = (inode, None)
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        inode, entries = self._dirs[fh]
        if entries is None or start_id == 0:  # a listing is taken once per pass (rewinddir starts anew)
            entries = await self._fast(self._listing, inode)
            self._dirs[fh] = (inode, entries)
        for i in range(start_id, len(entries)):
            e = entries[i]
            if e.attr is None:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(e.name), self.entry(e.attr), i + 1):
                return

    def _listing(self, inode: int) -> list[DirEntry]:
        """A directory's entries with attributes, '.' and '..' first (as JuiceFS and local file
        systems list them; the kernel answers their lookups itself)."""
        me = self.engine.stat_inode(inode)
        try:
            up = self.engine.stat_inode(me.parent) if me.parent > 0 and inode != ROOT_INODE else me
        except FileNotFoundError:  # a directory removed while listed: '..' is itself
            up = me
        dots = [DirEntry(".", inode, TYPE_DIRECTORY, me), DirEntry("..", up.st_ino, TYPE_DIRECTORY, up)]
        return dots + list(self.engine.iter_dir(inode, with_attrs=True))

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self._run(self._sync_all)

    def _sync_all(self) -> None:
        """Every open file's buffered writes recorded, then everything shipped: fsync of any
        directory makes the whole mount durable (Linux does not pass syncfs(2) to FUSE)."""
        with self._lock:
            files = list(self._files.values())
        for of in files:
            self._flush_file(of)
        self.engine.flush()

    # -- files -------------------------------------------------------------------------------
    def _open_handle(self, inode: int, path: str) -> int:
        with self._lock:
            of = self._files.get(inode)
            if of is None:
                file = File(self.engine, inode, path, readable=True, writable=not self.engine.read_only,
                            append=False)
                of = self._files[inode] = OpenFile(inode, file)
            of.handles += 1
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = of
        return fh

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC) and self.engine.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)
        try:
            node = await self._fast(self.engine.node, inode)
        except pyfuse3.FUSEError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return pyfuse3.FileInfo(fh=await self._run(self._reopen_unlinked, inode, flags))
        if node.type == TYPE_DIRECTORY:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.type != TYPE_FILE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):  # chattr +i / +a (JuiceFS's flags), as Linux
            if node.flags & FLAG_IMMUTABLE or (node.flags & FLAG_APPEND and (flags & os.O_TRUNC or
                                                                            not flags & os.O_APPEND)):
                raise pyfuse3.FUSEError(errno.EPERM)
        if flags & os.O_TRUNC:  # libfuse asks for atomic O_TRUNC: the kernel leaves it to open
            node = await self._run(self._truncate_at_open, inode)
        fh = self._open_handle(inode, f"inode {inode}")
        self._handles[fh].attr = Attr.of(node)
        return pyfuse3.FileInfo(fh=fh)

    def _reopen_unlinked(self, inode: int, flags: int) -> int:
        """open of a file unlinked while open here (through /proc/self/fd, say): one more handle
        on the same data, as on a local disk; ENOENT once its last handle has gone."""
        if self.engine.unlinked_length(inode) is None:
            raise OSError(errno.ENOENT, "no such inode")
        if flags & os.O_TRUNC:
            self._commit_pending(inode)
            self.engine.truncate_inode(inode, 0)
        with self._lock:
            of = self._files.get(inode)
            if of is None or of.attr is None:
                raise OSError(errno.ENOENT, "no such inode")
            of.handles += 1
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = of
            if flags & os.O_TRUNC:
                now = ns.now_ns()
                of.attr = dataclasses.replace(of.attr, st_mtime_ns=now, st_ctime_ns=now)
        return fh

    def _truncate_at_open(self, inode: int) -> Node:
        """open(O_TRUNC): length 0, and mtime and ctime now even when the file was empty (POSIX);
        other handles' buffered writes are recorded first, so they do not outlive the cut."""
        self._commit_pending(inode)
        octx = self.engine.ctx

        def body(c: apsw.Cursor) -> tuple[Node, ns.Released]:
            _, released = truncate(c, octx, inode, 0, "")
            return ns.set_attr(c, inode, "", mtime_ns=ns.now_ns()), released

        node, released = self.engine.write(body)
        self.engine.finish(released)
        return node

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        attr = await self._new(parent_inode, name, TYPE_FILE, mode & 0o7777, ctx)
        fh = self._open_handle(attr.st_ino, os.fsdecode(name))
        self._handles[fh].attr = attr
        return pyfuse3.FileInfo(fh=fh), self.entry(attr)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        of = self._handles[fh]
        with self.engine.db.held_if_free() as free:  # blocks in the memory cache: in the loop
            if free and of.lock.acquire(blocking=False):
                try:
                    got = None if of.file.buffered else self._call(self.engine.read_cached, of.inode, off, size)
                    if got is not None:
                        self.inline += 1
                        self._call(self._read_ahead, of, off, size, got[1])
                        return got[0]
                finally:
                    of.lock.release()
        return await self._run(self._read, of, off, size)

    def _read(self, of: OpenFile, off: int, size: int) -> bytes:
        with of.lock:
            of.file.flush()  # reads see this mount's buffered writes
            self._read_ahead(of, off, size, None)
        return self.engine.read_data(of.inode, off, size)

    def _read_ahead(self, of: OpenFile, off: int, size: int, length: int | None) -> None:
        """After a read of [off, off+size): a sequential one fetches the next `readahead` bytes
        (up to the file's `length` when known) into the block cache in the background."""
        sequential = off == of.read_end or off == 0
        of.read_end = off + size
        if not sequential or not self.readahead:
            of.ahead_to = 0
            return
        start = max(off + size, of.ahead_to)
        end = off + size + self.readahead
        if length is not None:
            end = min(end, length)
        # A block at a time (or the file's last bytes): each prefetch plans the range in the
        # metadata, which a 128 KiB read's window moving by 128 KiB would pay at every read.
        if start < end and (end - start >= self.engine.blocks.block_size or end == length):
            of.ahead_to = end
            self.engine.prefetch(of.inode, start, end - start)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        of = self._handles[fh]
        if of.lock.acquire(blocking=False):  # a write that only fills the buffer: in the loop
            try:
                if of.file.buffers(off, len(buf)):
                    self.inline += 1
                    return self._call(of.file.pwrite, buf, off)
            finally:
                of.lock.release()
        return await self._run(self._write, of, off, buf)

    def _write(self, of: OpenFile, off: int, buf: bytes) -> int:
        with of.lock:
            return of.file.pwrite(buf, off)

    async def flush(self, fh: int) -> None:
        of = self._handles[fh]
        due: list[int] = []
        if of.lock.acquire(blocking=False):
            try:
                if not of.file.buffered:  # nothing buffered (a reader's close): nothing to do
                    return
                if of.file.flushes_at_once:  # write-back takes the block: the transaction is all
                    with self._writing_inline() as inline:
                        if inline:
                            self.inline += 1
                            due = self._call(of.file.flush_uncompacted)
            finally:
                of.lock.release()
            if due:  # compaction reads and stores blocks: a worker's job
                await self._run(self._compact, of.inode, due)
            if not of.file.buffered:
                return
        await self._run(self._flush_file, of)

    def _compact(self, inode: int, chunks: list[int]) -> None:
        for indx in chunks:
            self.engine.compact_chunk(inode, indx)

    def _flush_file(self, of: OpenFile) -> None:
        with of.lock:
            of.file.flush()

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._run(self._fsync, self._handles[fh])

    def _fsync(self, of: OpenFile) -> None:
        """The file's blocks and the metadata naming them are in the store when this returns."""
        self._flush_file(of)
        self.engine.flush()

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2): pyfuse3 has no such operation; blockmap.fusefalloc routes it here."""
        try:
            of = self._handles[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None
        await self._run(self._fallocate, of, mode, offset, length)

    def _fallocate(self, of: OpenFile, mode: int, offset: int, length: int) -> None:
        self.engine.check_writable()
        with of.lock:
            of.file.flush()  # buffered writes first: a hole or zeroed range lies over them
            self.engine.fallocate_inode(of.inode, mode, offset, length)

    async def release(self, fh: int) -> None:
        with self._lock:
            of = self._handles.pop(fh)
            of.handles -= 1
            last = of.handles == 0
            if last:
                del self._files[of.inode]
        if last:
            if of.lock.acquire(blocking=False):  # nothing buffered, nothing to release: in the loop
                try:
                    if not of.file.buffered and not self.engine.releases_at_close(of.inode):
                        self.inline += 1
                        self._call(of.file.close)
                        return
                finally:
                    of.lock.release()
            await self._run(self._close_file, of)

    def _close_file(self, of: OpenFile) -> None:
        with of.lock:
            of.file.close()

    # -- extended attributes -----------------------------------------------------------------
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        key = self._call(xattr_key, name)
        if self._no_caps and key == CAPS_XATTR:
            raise pyfuse3.FUSEError(ENOATTR)
        return await self._fast(self.engine.read, lambda c: get_xattr(c, inode, key))

    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        if name.startswith(ACL_XATTR_PREFIX):  # no ACLs (as JuiceFS without --enable-acl): cp -a then chmods
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        key = self._call(xattr_key, name)
        self._call(check_set, value, 0)
        if key == CAPS_XATTR:
            self._no_caps = False
        await self._run(self.engine.write, lambda c: set_xattr(c, inode, key, value))

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        names = await self._fast(self.engine.read, lambda c: list_xattrs(c, inode))
        return [os.fsencode(n) for n in names]

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        key = self._call(xattr_key, name)
        await self._run(self.engine.write, lambda c: remove_xattr(c, inode, key))

    # -- the volume ------------------------------------------------------------------------
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return True  # the kernel checks permissions (default_permissions)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        used_space, used_inodes = await self._fast(self.engine.usage)
        settings = self.engine.settings
        capacity = settings.capacity or max(UNLIMITED_SPACE, used_space)
        inodes = settings.inodes or max(UNLIMITED_INODES, used_inodes)
        st = pyfuse3.StatvfsData()
        st.f_bsize = BLKSIZE
        st.f_frsize = BLKSIZE
        st.f_blocks = capacity // BLKSIZE
        st.f_bfree = st.f_bavail = max(0, capacity - used_space) // BLKSIZE
        st.f_files = inodes
        st.f_ffree = st.f_favail = max(0, inodes - used_inodes)
        st.f_namemax = NAME_MAX
        return st

    def close_all(self) -> None:
        """Record every open file's buffered writes and close it (at unmount)."""
        with self._lock:
            files = list(self._files.values())
            self._files.clear()
            self._handles.clear()
        for of in files:
            try:
                self._close_file(of)
            except Exception as exc:  # noqa: BLE001 - reported, the others still close
                log.error("closing inode %d at unmount failed: %s", of.inode, exc)
