"""`Volume`: a JuiceFS 1.4-compatible file system whose metadata is one SQLite database (by
default `blockmap.db` in an ltxvfs replica) and whose bytes are immutable block objects.

Every metadata operation is one short transaction (one LTX file, one PUT, on a replica with
`sync=commit`; group commit ships many per file). Blocks are uploaded before the transaction
that refers to them, and deleted only after the transaction that dropped the last reference, so
a crash leaves at most unreferenced objects (which `gc` finds), never a reference to a missing one.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

import apsw

from blockmap import namespace as ns
from blockmap.blockcache import BlockCache
from blockmap.blocks import BlockStore
from blockmap.clone import clone
from blockmap.compaction import compact_chunk, compact_tree
from blockmap.counters import (
    INITIAL_COUNTERS,
    TOTAL_INODES,
    USED_SPACE,
    get_counter,
)
from blockmap.engine import DEFAULT_UMASK, DirEntry, Engine
from blockmap.errors import VolumeFormatError, fs_error
from blockmap.fileio import File, parse_mode
from blockmap.files import commit_write, truncate
from blockmap.fsck import FsckReport, fsck
from blockmap.gc import DEFAULT_SKIP_AGE, GcReport, gc
from blockmap.meta import MetaDB, as_bytes, connect_meta, effective_sync, is_group_commit
from blockmap.node import (
    MAX_SYMLINK,
    ROOT_INODE,
    TRASH_INODE,
    TYPE_DIRECTORY,
    TYPE_FILE,
    TYPE_SYMLINK,
    Attr,
    Node,
    get_node,
    insert_node,
)
from blockmap.paths import PathLike, lookup, resolve, resolve_from, resolve_parent, split_path, to_bytes
from blockmap.schema import create_schema, foreign_tables, has_schema
from blockmap.settings import (
    DATA_URL_SETTING,
    DEFAULT_BLOCK_SIZE,
    FORMAT_SETTING,
    VolumeSettings,
    data_url_for_storage,
    storage_for_data_url,
)
from blockmap.trash import TrashCleanup, clean_trash
from blockmap.xattrs import (
    check_set,
    get_xattr,
    list_xattrs,
    remove_xattr,
    set_xattr,
    xattr_key,
)
from ltx.store.base import ObjectStore
from ltx.store.url import redact_url

T = TypeVar("T")

ConnectFn = Callable[..., apsw.Connection]


def _open_store(url: str) -> ObjectStore:
    from ltx.store import open_store  # imported late: the store backends are optional at import

    return open_store(url)


@dataclass(frozen=True)
class VolumeUsage:
    """The volume counters: space charged (4 KiB units) and inodes in use (root excluded)."""

    used_space: int
    total_inodes: int
    capacity: int
    inode_limit: int


class Volume:
    """A mounted-in-process volume: path-based operations, each one metadata transaction."""

    def __init__(
        self,
        db: MetaDB,
        settings: VolumeSettings,
        store: ObjectStore,
        data_url: str,
        *,
        uid: int | None = None,
        gid: int | None = None,
        umask: int = DEFAULT_UMASK,
        owns_store: bool = True,
        auto_compact: bool = True,
        read_only: bool = False,
        meta_url: str = "",
        block_cache: BlockCache | None = None,
        upload_budget: int | None = None,
    ) -> None:
        self.settings = settings
        #: Where the metadata lives (a replica URL or a local SQLite URL), as given.
        self.meta_url = meta_url
        self.data_url = data_url
        self.store = store
        #: The machinery below paths (transactions, IDs, blocks, slices, open inodes).
        self.engine = Engine(db, settings, store, uid=uid, gid=gid, umask=umask, auto_compact=auto_compact,
                             read_only=read_only, owns_store=owns_store, block_cache=block_cache,
                             upload_budget=upload_budget)

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def format(
        cls,
        meta_url: str,
        data_url: str,
        name: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        trash_days: int = 0,
        hash_prefix: bool = False,
        dir_stats: bool = True,
        capacity: int = 0,
        inodes: int = 0,
        store: ObjectStore | None = None,
        connect: ConnectFn = connect_meta,
        sync: str | None = None,
        **kwargs: object,
    ) -> Volume:
        """Create a volume: the schema, settings, counters and root (one transaction), after
        writing `<name>/juicefs_uuid` to the data store, as `juicefs format` does.

        `meta_url` is a replica (`file:///dir`, `s3://bucket/path?…`: the database `blockmap.db`
        in ltxvfs) or a local SQLite file (`sqlite3:///path/meta.db`). `sync` is ltxvfs's
        `sync=`: `commit` (the default: an operation that returned is in the store) or
        `interval:DURATION` (group commit: a crash may lose the operations of the last interval)."""
        storage, bucket = storage_for_data_url(data_url)
        settings = VolumeSettings.new(
            name, storage, bucket, block_size=block_size, trash_days=trash_days, hash_prefix=hash_prefix,
            dir_stats=dir_stats, capacity=capacity, inodes=inodes,
        )  # fmt: skip
        sync = effective_sync(meta_url, sync)
        conn = connect(meta_url, create=True, **_meta_options(sync=sync))
        db = MetaDB(conn, url=redact_url(meta_url), group_commit=is_group_commit(sync))
        try:
            existing, foreign = db.read(
                lambda c: (_load_settings_row(c) if has_schema(c) else None, foreign_tables(c))
            )
            if existing is not None:
                raise VolumeFormatError(meta_url, "already holds a volume (format refuses to overwrite it)")
            if foreign:
                shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
                raise VolumeFormatError(meta_url, f"holds a database with tables of its own ({shown}); "
                                                  "format a volume on an empty replica or a new file")
            owns = store is None
            data = store if store is not None else _open_store(data_url)
            BlockStore(data, name, settings.block_size, hash_prefix).write_uuid(settings.uuid)

            def init(cur: apsw.Cursor) -> None:
                if not has_schema(cur):
                    create_schema(cur)
                cur.execute(
                    "INSERT INTO jfs_setting (name, value) VALUES (?, ?)", (FORMAT_SETTING, settings.encode())
                )
                cur.execute("INSERT INTO jfs_setting (name, value) VALUES (?, ?)", (DATA_URL_SETTING, data_url))
                now = ns.now_ns()
                if trash_days > 0:
                    insert_node(cur, Node.new(TRASH_INODE, TYPE_DIRECTORY, ns.TRASH_MODE, 0, 0, now, ROOT_INODE))
                insert_node(cur, Node.new(ROOT_INODE, TYPE_DIRECTORY, 0o777, 0, 0, now, ROOT_INODE))
                cur.executemany("INSERT INTO jfs_counter (name, value) VALUES (?, ?)", INITIAL_COUNTERS)

            db.write(init)
            db.flush()  # a volume that format returned is in the store, group commit or not
        except BaseException:
            db.close()
            raise
        return cls(db, settings, data, data_url, owns_store=owns, meta_url=meta_url, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def open(
        cls,
        meta_url: str,
        *,
        data_url: str | None = None,
        store: ObjectStore | None = None,
        connect: ConnectFn = connect_meta,
        read_only: bool = False,
        txid: int = 0,
        timestamp: datetime | str | None = None,
        sync: str | None = None,
        meta_params: Mapping[str, str] | None = None,
        exclusive: bool = False,
        **kwargs: object,
    ) -> Volume:
        """Open an existing volume (made by blockmap or by the juicefs binary). `read_only` opens the
        metadata read-only: every change answers EROFS.

        A whole-volume snapshot: on a replica, `txid` opens the metadata as of that TXID and
        `timestamp` as of the last commit before that time (RFC 3339, a datetime, or
        '5 minutes ago'), read-only. Bytes read back as long as no later operation released
        their blocks (trash_days, or a clone, keeps them). `sync` as for `format`."""
        if txid or timestamp is not None:
            read_only = True
        sync = effective_sync(meta_url, sync)
        options = _meta_options(txid=txid, timestamp=timestamp, sync=None if read_only else sync, params=meta_params)
        conn = connect(meta_url, read_only=True, **options) if read_only else connect(meta_url, **options)
        db = MetaDB(conn, url=redact_url(meta_url), group_commit=not read_only and is_group_commit(sync),
                    exclusive=exclusive and not read_only)
        try:

            def load(cur: apsw.Cursor) -> tuple[str | None, str | None]:
                if not has_schema(cur):
                    return None, None
                return _load_settings_row(cur), _load_setting(cur, DATA_URL_SETTING)

            text, saved_url = db.read(load)
            if text is None:
                raise VolumeFormatError(meta_url, "no volume here (run format first)")
            settings = VolumeSettings.decode(text)
            settings.validate()
            url = data_url or saved_url or data_url_for_storage(settings.storage, settings.bucket)
            owns = store is None
            data = store if store is not None else _open_store(url)
        except BaseException:
            db.close()
            raise
        return cls(db, settings, data, url, owns_store=owns, read_only=read_only, meta_url=meta_url,
                   **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        """Drop the rows of released slices, ship what group commit holds, close. A failure is
        raised after everything is closed."""
        self.engine.close()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def commits(self) -> int:
        """Metadata transactions committed by this volume object."""
        return self.engine.db.commits

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def txid(self) -> int:
        """The TXID of the metadata state this volume reads (0 for a local SQLite file)."""
        if not self.engine.db.on_replica:
            return 0
        return int(self.engine.db.pragma("litestream_txid") or "0", 16)

    def meta_stats(self) -> dict[str, Any]:
        """The metadata connection's ltxvfs counters (`PRAGMA ltxvfs_stats`: requests, bytes,
        cache, LTX files shipped); empty for a local SQLite file."""
        if not self.engine.db.on_replica:
            return {}
        text = self.engine.db.pragma("ltxvfs_stats")
        return dict(json.loads(text)) if text else {}

    def flush(self) -> None:
        """Group commit: ship the metadata transactions committed so far and wait for the store."""
        self.engine.flush()

    @property
    def closed(self) -> bool:
        return self.engine.closed

    @property
    def read_only(self) -> bool:
        return self.engine.read_only

    @property
    def umask(self) -> int:
        return self.engine.umask

    @umask.setter
    def umask(self, value: int) -> None:
        self.engine.umask = value

    @property
    def auto_compact(self) -> bool:
        return self.engine.auto_compact

    @auto_compact.setter
    def auto_compact(self, value: bool) -> None:
        self.engine.auto_compact = value

    def _resolve(self, cur: apsw.Cursor, path: PathLike, follow: bool = True) -> Node:
        inode, _ = resolve(cur, path, follow=follow)
        node = get_node(cur, inode)
        if node is None:
            raise fs_error(errno.ENOENT, path)
        return node

    # -- attributes ----------------------------------------------------------------------------
    def stat(self, path: PathLike, *, follow_symlinks: bool = True) -> Attr:
        """Attributes of `path` (of the link itself with follow_symlinks=False)."""
        return Attr.of(self.engine.read(lambda c: self._resolve(c, path, follow_symlinks)))

    def lstat(self, path: PathLike) -> Attr:
        return self.stat(path, follow_symlinks=False)

    def exists(self, path: PathLike) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    def chmod(self, path: PathLike, mode: int, *, follow_symlinks: bool = True) -> Attr:
        def body(c: apsw.Cursor) -> Node:
            node = self._resolve(c, path, follow_symlinks)
            return ns.set_attr(c, node.inode, path, mode=mode)

        return Attr.of(self.engine.write(body))

    def chown(self, path: PathLike, uid: int = -1, gid: int = -1, *, follow_symlinks: bool = True) -> Attr:
        """Change owner and/or group (-1 leaves one unchanged)."""

        def body(c: apsw.Cursor) -> Node:
            node = self._resolve(c, path, follow_symlinks)
            return ns.set_attr(
                c, node.inode, path, uid=None if uid < 0 else uid, gid=None if gid < 0 else gid
            )

        return Attr.of(self.engine.write(body))

    def utimens(
        self, path: PathLike, times_ns: tuple[int, int] | None = None, *, follow_symlinks: bool = True
    ) -> Attr:
        """Set (atime, mtime) in ns; None sets both to now."""
        if times_ns is None:
            now = ns.now_ns()
            times_ns = (now, now)
        atime, mtime = times_ns

        def body(c: apsw.Cursor) -> Node:
            node = self._resolve(c, path, follow_symlinks)
            return ns.set_attr(c, node.inode, path, atime_ns=atime, mtime_ns=mtime)

        return Attr.of(self.engine.write(body))

    # -- creating and removing entries -----------------------------------------------------
    def mkdir(self, path: PathLike, mode: int = 0o777) -> Attr:
        inode = self.engine.ids.next_inode()

        def body(c: apsw.Cursor) -> Node:
            parent, name = resolve_parent(c, path)
            return ns.mknod(c, self.engine.ctx, parent, name, TYPE_DIRECTORY, mode & ~self.umask, inode, path)

        return Attr.of(self.engine.write_new(inode, body))

    def makedirs(self, path: PathLike, mode: int = 0o777, *, exist_ok: bool = False) -> Attr:
        """mkdir with every missing parent, in one transaction."""
        self.engine.check_writable()
        parts = split_path(path)
        inodes = [self.engine.ids.next_inode() for p in parts if p != b".."]

        def body(c: apsw.Cursor) -> tuple[Node, int]:
            cur = ROOT_INODE
            fresh = list(inodes)
            for i, part in enumerate(parts):
                try:
                    cur, typ = resolve_from(c, cur, part, path)
                except FileNotFoundError:
                    perm = mode & ~self.umask
                    made = ns.mknod(c, self.engine.ctx, cur, part, TYPE_DIRECTORY, perm, fresh.pop(0), path)
                    cur = made.inode
                    continue
                if typ != TYPE_DIRECTORY:
                    raise fs_error(errno.ENOTDIR, path)
                if i == len(parts) - 1 and not exist_ok:
                    raise fs_error(errno.EEXIST, path)
            node = get_node(c, cur)
            if node is None:
                raise fs_error(errno.ENOENT, path)
            return node, len(inodes) - len(fresh)

        try:
            node, used = self.engine.write(body)
        except OSError:
            for ino in inodes:
                self.engine.ids.give_back_inode(ino)
            raise
        for ino in inodes[used:]:
            self.engine.ids.give_back_inode(ino)
        return Attr.of(node)

    def create(self, path: PathLike, mode: int = 0o666, *, exclusive: bool = False) -> Attr:
        """Create an empty file (one transaction); an existing file is kept unless `exclusive`
        (then EEXIST)."""
        self.engine.check_writable()
        inode = self.engine.ids.next_inode()
        return Attr.of(self.engine.write_new(inode, lambda c: self._create_in(c, path, mode, inode, exclusive)))

    def _create_in(self, c: apsw.Cursor, path: PathLike, perm: int, inode: int, exclusive: bool) -> Node:
        """Inside a write transaction: the regular file at `path`, made with `inode` if absent.
        The path is walked once: its directory, then one lookup of the name."""
        parent, name = resolve_parent(c, path)
        found = lookup(c, parent, name) if name != b".." else None
        if found is None and name != b"..":
            return ns.mknod(c, self.engine.ctx, parent, name, TYPE_FILE, perm & ~self.umask, inode, path, absent=True)
        if exclusive:
            raise fs_error(errno.EEXIST, path)
        if found is not None and found[1] != TYPE_SYMLINK:
            node = get_node(c, found[0])
            if node is None:
                raise fs_error(errno.EIO, path)
        else:  # `..`, or a symlink: open(2) follows it
            try:
                node = self._resolve(c, path)
            except FileNotFoundError:
                raise fs_error(errno.EEXIST, path) from None
        if node.type == TYPE_DIRECTORY:
            raise fs_error(errno.EISDIR, path)
        if node.type != TYPE_FILE:
            raise fs_error(errno.EINVAL, path)
        return node

    def symlink(self, target: PathLike, path: PathLike) -> Attr:
        """Create `path` as a symlink to `target` (stored verbatim)."""
        tb = to_bytes(target)
        if not tb:
            raise fs_error(errno.ENOENT, path)
        if len(tb) > MAX_SYMLINK:
            raise fs_error(errno.ENAMETOOLONG, path)
        if b"\0" in tb:
            raise fs_error(errno.EINVAL, path)
        inode = self.engine.ids.next_inode()

        def body(c: apsw.Cursor) -> Node:
            parent, name = resolve_parent(c, path)
            return ns.mknod(c, self.engine.ctx, parent, name, TYPE_SYMLINK, 0o777, inode, path, target=tb)

        return Attr.of(self.engine.write_new(inode, body))

    def readlink(self, path: PathLike) -> str:
        def body(c: apsw.Cursor) -> bytes:
            inode, typ = resolve(c, path, follow=False)
            if typ != TYPE_SYMLINK:
                raise fs_error(errno.EINVAL, path)
            row = c.execute("SELECT target FROM jfs_symlink WHERE inode = ?", (inode,)).fetchone()
            if row is None:
                raise fs_error(errno.EIO, path)
            return as_bytes(row[0])

        return os.fsdecode(self.engine.read(body))

    def link(self, src: PathLike, dst: PathLike) -> Attr:
        """Hard-link `dst` to the inode of `src` (symlinks are not followed, as with linkat(2))."""

        def body(c: apsw.Cursor) -> Node:
            inode, _ = resolve(c, src, follow=False)
            parent, name = resolve_parent(c, dst)
            return ns.link(c, self.engine.ctx, inode, parent, name, dst)

        return Attr.of(self.engine.write(body))

    def unlink(self, path: PathLike) -> None:
        """Remove a file, symlink or other non-directory entry."""

        def body(c: apsw.Cursor) -> ns.Released:
            parent, name = resolve_parent(c, path)
            return ns.unlink(c, self.engine.ctx, parent, name, path)

        self.engine.finish(self.engine.write(body))

    remove = unlink

    def rmdir(self, path: PathLike) -> None:
        def body(c: apsw.Cursor) -> None:
            parent, name = resolve_parent(c, path)
            ns.rmdir(c, self.engine.ctx, parent, name, path)

        self.engine.write(body)

    def rename(self, src: PathLike, dst: PathLike, *, no_replace: bool = False, exchange: bool = False) -> None:
        """Move `src` to `dst`, replacing a file or an empty directory there (unless `no_replace`);
        with `exchange`, swap the two entries atomically (both must exist)."""
        if no_replace and exchange:
            raise fs_error(errno.EINVAL, src, dst)

        def body(c: apsw.Cursor) -> ns.Released:
            psrc, nsrc = resolve_parent(c, src)
            pdst, ndst = resolve_parent(c, dst)
            if exchange:
                ns.exchange(c, self.engine.ctx, psrc, nsrc, pdst, ndst, src, dst)
                return ns.Released()
            return ns.rename(c, self.engine.ctx, psrc, nsrc, pdst, ndst, src, dst, no_replace=no_replace)

        self.engine.finish(self.engine.write(body))

    def rmtree(self, path: PathLike) -> None:
        """Remove a directory and everything below it (one transaction per entry)."""
        st = self.lstat(path)
        if not st.is_dir():
            self.unlink(path)
            return
        base = os.fsdecode(to_bytes(path)).rstrip("/")
        while True:
            batch = list(self.engine.readdir(st.st_ino, b""))
            if not batch:
                break
            for e in batch:
                child = f"{base}/{e.name}"
                if e.is_dir():
                    self.rmtree(child)
                else:
                    self.unlink(child)
        self.rmdir(path)

    # -- directories -----------------------------------------------------------------------
    def readdir(self, path: PathLike, *, with_attrs: bool = False) -> Iterator[DirEntry]:
        """Stream a directory's entries in name order, READDIR_BATCH per transaction (without . and ..)."""
        node = self.engine.read(lambda c: self._resolve(c, path))
        if node.type != TYPE_DIRECTORY:
            raise fs_error(errno.ENOTDIR, path)
        yield from self.engine.iter_dir(node.inode, with_attrs=with_attrs)

    def listdir(self, path: PathLike = "/") -> list[str]:
        return [e.name for e in self.readdir(path)]

    # -- file contents ---------------------------------------------------------------------
    def open_file(self, path: PathLike, mode: str = "r", perm: int = 0o666) -> File:
        """Open a file like the built-in `open` in binary mode: r, r+, w, w+, a, a+, x, x+.
        (`Volume.open` is the class method that opens a volume.)"""
        readable, writable, append, create, trunc, excl = parse_mode(mode)
        if writable:
            self.engine.check_writable()
        if create:  # one write transaction: create if absent, truncate if asked (commits only a change)
            inode = self.engine.ids.next_inode()

            def body(c: apsw.Cursor) -> tuple[Node, ns.Released]:
                node = self._create_in(c, path, perm, inode, excl)
                if trunc and node.length:
                    return truncate(c, self.engine.ctx, node.inode, 0, path)
                return node, ns.Released()

            try:
                node, released = self.engine.write(body)
            except OSError:
                self.engine.ids.give_back_inode(inode)
                raise
            if node.inode != inode:
                self.engine.ids.give_back_inode(inode)
            self.engine.finish(released)
        else:
            node = self.engine.read(lambda c: self._resolve(c, path))
            if node.type == TYPE_DIRECTORY:
                raise fs_error(errno.EISDIR, path)
            if node.type != TYPE_FILE:
                raise fs_error(errno.EINVAL, path)
        name = os.fsdecode(to_bytes(path))
        f = File(self.engine, node.inode, name, readable=readable, writable=writable, append=append)
        if append:
            f.seek(0, os.SEEK_END)
        return f

    def read_file(self, path: PathLike, offset: int = 0, size: int = -1) -> bytes:
        """Bytes of a file (a range of it with `offset`/`size`)."""
        with self.open_file(path) as f:
            f.seek(offset)
            return f.read(size)

    def write_file(self, path: PathLike, data: bytes | bytearray | memoryview | BinaryIO, mode: int = 0o666) -> Attr:
        """Create or replace a file's contents from bytes or a readable stream (bounded memory).

        The bytes are uploaded first; then the create (or the truncation of the old contents) and
        the new contents are one transaction: readers see the old contents or the new, never a
        part, and a failed upload leaves the file as it was."""
        self.engine.check_writable()
        pieces = self.engine.upload(data)
        inode = self.engine.ids.next_inode()

        def body(c: apsw.Cursor) -> tuple[Node, ns.Released]:
            node = self._create_in(c, path, mode, inode, False)
            released = ns.Released()
            if node.length:
                node, released = truncate(c, self.engine.ctx, node.inode, 0, path)
            if pieces:
                commit_write(c, self.engine.ctx, node.inode, pieces, path)
                node = get_node(c, node.inode) or node
            return node, released

        return Attr.of(self.engine.commit_contents(inode, pieces, body))

    def replace_file(self, path: PathLike, data: bytes | bytearray | memoryview | BinaryIO, mode: int = 0o666) -> Attr:
        """Write a new file at `path` from bytes or a stream, replacing what is there as rename(2)
        over it would: a new inode (other hard links keep the old contents), in one transaction
        after the upload. A failed upload leaves `path` as it was."""
        self.engine.check_writable()
        pieces = self.engine.upload(data)
        inode = self.engine.ids.next_inode()

        def body(c: apsw.Cursor) -> tuple[Node, ns.Released]:
            parent, name = resolve_parent(c, path)
            released = ns.Released()
            found = lookup(c, parent, name)
            if found is not None:
                if found[1] == TYPE_DIRECTORY:
                    raise fs_error(errno.EISDIR, path)
                released = ns.unlink(c, self.engine.ctx, parent, name, path)
            node = ns.mknod(c, self.engine.ctx, parent, name, TYPE_FILE, mode & ~self.umask, inode, path, absent=True)
            if pieces:
                commit_write(c, self.engine.ctx, inode, pieces, path)
                node = get_node(c, inode) or node
            return node, released

        return Attr.of(self.engine.commit_contents(inode, pieces, body))

    def pwrite(self, path: PathLike, data: bytes, offset: int) -> int:
        """Write `data` at `offset` of an existing file (one slice, one transaction per chunk)."""
        with self.open_file(path, "r+") as f:
            return f.pwrite(data, offset)

    def truncate(self, path: PathLike, length: int) -> Attr:
        def body(c: apsw.Cursor) -> tuple[Node, ns.Released]:
            node = self._resolve(c, path)
            return truncate(c, self.engine.ctx, node.inode, length, path)

        node, released = self.engine.write(body)
        self.engine.finish(released)
        return Attr.of(node)

    # -- extended attributes ---------------------------------------------------------------
    def getxattr(self, path: PathLike, name: str | bytes, *, follow_symlinks: bool = True) -> bytes:
        key = xattr_key(name, path)
        return self.engine.read(lambda c: get_xattr(c, self._resolve(c, path, follow_symlinks).inode, key, path))

    def setxattr(
        self, path: PathLike, name: str | bytes, value: bytes, flags: int = 0, *, follow_symlinks: bool = True
    ) -> None:
        """Set an attribute; flags XATTR_CREATE (EEXIST if present) or XATTR_REPLACE (ENODATA if absent)."""
        key = xattr_key(name, path)
        check_set(value, flags, path)
        self.engine.write(lambda c: set_xattr(c, self._resolve(c, path, follow_symlinks).inode, key, value, flags,
                                              path))

    def listxattr(self, path: PathLike, *, follow_symlinks: bool = True) -> list[str]:
        return self.engine.read(lambda c: list_xattrs(c, self._resolve(c, path, follow_symlinks).inode))

    def removexattr(self, path: PathLike, name: str | bytes, *, follow_symlinks: bool = True) -> None:
        key = xattr_key(name, path)
        self.engine.write(lambda c: remove_xattr(c, self._resolve(c, path, follow_symlinks).inode, key, path))

    # -- volume ------------------------------------------------------------------------------
    def usage(self) -> VolumeUsage:
        def body(c: apsw.Cursor) -> VolumeUsage:
            return VolumeUsage(
                get_counter(c, USED_SPACE), get_counter(c, TOTAL_INODES), self.settings.capacity,
                self.settings.inodes,
            )  # fmt: skip

        return self.engine.read(body)

    def compact_chunk(self, inode: int, indx: int) -> bool:
        """Merge a chunk's records into one new slice (see blockmap.compaction)."""
        return compact_chunk(self.engine, inode, indx)

    def compact(self, path: PathLike = "/") -> int:
        """Compact every chunk with more than one record under `path`; returns chunks compacted."""
        return compact_tree(self.engine, self.stat(path).st_ino)

    def clone(self, src: PathLike, dst: PathLike, *, preserve: bool = False) -> Attr:
        """Copy a file or a tree to `dst` sharing its slices (no bytes copied); `preserve` keeps
        owner, mode and times."""
        return clone(self.engine, src, dst, preserve=preserve)

    def gc(self, *, delete: bool = False, skip_age: float | None = None) -> GcReport:
        """Find leaked block objects (and with `delete`, remove them and finish pending deletes)."""
        if delete:
            self.engine.check_writable()
        return gc(self.engine, delete=delete, skip_age=DEFAULT_SKIP_AGE if skip_age is None else skip_age)

    def fsck(self, *, repair: bool = False) -> FsckReport:
        """Check blocks and metadata; `repair` rewrites nlink, dir stats and counters."""
        if repair:
            self.engine.check_writable()
        return fsck(self.engine, repair=repair)

    def empty_trash(self, *, force: bool = False) -> TrashCleanup:
        """Release trash entries older than TrashDays (all of them with `force`)."""
        self.engine.check_writable()
        return clean_trash(self.engine, force=force)

    def lookup(self, parent: int, name: bytes) -> tuple[int, int] | None:
        """(inode, type) of entry `name` in directory inode `parent` (low-level)."""
        return self.engine.read(lambda c: lookup(c, parent, name))


def _meta_options(
    *, txid: int = 0, timestamp: datetime | str | None = None, sync: str | None = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The `connect` keywords that differ from their defaults (a custom `connect` need only
    accept the ones it is given)."""
    out: dict[str, object] = {}
    if txid:
        out["txid"] = txid
    if timestamp is not None:
        out["timestamp"] = timestamp
    if sync is not None:
        out["sync"] = sync
    if params:
        out["params"] = dict(params)
    return out


def _load_setting(cur: apsw.Cursor, name: str) -> str | None:
    row = cur.execute("SELECT value FROM jfs_setting WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _load_settings_row(cur: apsw.Cursor) -> str | None:
    return _load_setting(cur, FORMAT_SETTING)
