"""The `file://` store: objects are files below a root directory, written atomically and durably.

A put writes a temporary file beside the target, fsyncs it, sets its mtime to the LTX timestamp,
then links it to the final name (create-if-absent: the link fails if the name is taken) or
renames it over the name, and fsyncs the directory. Readers never see a partial object. The one
exception is `put_unsynced` of a new name (blocks nothing names yet): written in place, synced later.
"""

from __future__ import annotations

import builtins
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from ltx.fsutil import fsync_dir
from ltx.store.base import (
    InvalidKeyError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStore,
    StoreError,
    StoreStats,
)
from ltx.store.keys import check_key, check_prefix

#: Name prefix of in-flight temporary files; lists skip them and keys may not use it.
TEMP_PREFIX = ".ltxvfs-tmp-"
#: Bytes copied per read when a put streams from a file object.
COPY_CHUNK_SIZE = 1 << 20
#: Permissions of stored objects (temporary files start private, then get these).
OBJECT_MODE = 0o644
#: Directories `put_unsynced` remembers as checked; past this many it forgets them all.
CHECKED_DIRS_MAX = 1024
#: Buffer size of the streams `open` returns.
OPEN_BUFFER_SIZE = 1 << 20


def _datetime_from_ns(ns: int) -> datetime:
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)



class _CountingFileIO(io.FileIO):
    """A read-only file whose reads add to the store's byte counter."""

    def __init__(self, path: str, count: Callable[[int], None]) -> None:
        super().__init__(path, "rb")
        self._count = count

    def readinto(self, buffer):  # type: ignore[no-untyped-def, override]
        n = super().readinto(buffer)
        if n:
            self._count(n)
        return n

    def readall(self) -> bytes:
        data = super().readall()
        self._count(len(data))
        return data


class FileStore(ObjectStore):
    """Objects as files below `root`; keys are relative '/'-separated paths that stay inside it."""

    def __init__(self, root: str | os.PathLike[str], *, url: str | None = None) -> None:
        root_str = os.fspath(root)
        if not os.path.isabs(root_str):
            raise ValueError(f"file store root must be an absolute path, got {root_str!r}")
        self.root = os.path.normpath(root_str)
        self.url = url if url is not None else f"file://{self.root}"
        self.stats = StoreStats()
        self._stats_lock = threading.Lock()
        #: Directories (key prefixes) `put_unsynced` found inside the root and present, with
        #: their real paths: a block's put then walks no symbolic links (most of its CPU).
        self._checked_dirs: dict[str, str] = {}
        #: Objects written by `put_unsynced` and not yet fsynced (paths).
        self._unsynced: list[str] = []
        self._unsynced_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------

    def _count(self, field: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def _count_read(self, n: int) -> None:
        self._count("bytes_read", n)

    def _check_name(self, key: str) -> None:
        check_key(self.url, key)
        if key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            raise InvalidKeyError(self.url, "", f"invalid key {key!r}: names starting with "
                                  f"{TEMP_PREFIX!r} are reserved for temporary files")

    def _path(self, key: str) -> str:
        """The file holding `key`, refusing keys that are malformed or resolve outside the root."""
        self._check_name(key)
        path = os.path.join(self.root, *key.split("/"))
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if not real.startswith(real_root + os.sep):
            raise InvalidKeyError(self.url, "", f"invalid key {key!r}: resolves outside the store "
                                  "root (through a symbolic link)")
        return real

    def _os_error(self, key: str, action: str, exc: OSError) -> StoreError:
        reason = exc.strerror or type(exc).__name__
        return StoreError(self.url, key, f"{action} failed: {reason}")

    def _open_fd(self, key: str) -> tuple[int, int]:
        """Open the object for reading; return the descriptor and the object's size."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(self.url, key, "object not found") from exc
        except OSError as exc:
            raise self._os_error(key, "open", exc) from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFoundError(self.url, key, "object not found (not a regular file)")
        return fd, st.st_size

    def _pread_exact(self, fd: int, key: str, offset: int, length: int, size: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < length:
            chunk = os.pread(fd, length - got, offset + got)
            if not chunk:
                raise ObjectRangeError(self.url, key, offset, length, size)
            parts.append(chunk)
            got += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._count_read(len(data))
        return data

    def _ensure_dir(self, path: str) -> None:
        """Create `path` and missing parents, fsyncing each parent that gained an entry."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self._ensure_dir(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            return
        fsync_dir(parent, best_effort=False)

    # -- ObjectStore ---------------------------------------------------------------------------

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects under `prefix` after `start_after`, in key order.

        A directory read is no snapshot: a file added while it runs may be missed while a later
        one is seen. So the directories are read twice and only keys up to the largest key of
        the first read are kept from the second, then stat'ed from the last key down (files gone
        by then are left out). Every object present throughout the call is listed; and when
        objects are created and deleted in key order (LTX files: written in TXID order, the oldest
        removed first) the listing is one contiguous run, never an earlier key missing beside a
        later one.
        """
        check_prefix(self.url, prefix)
        self._count("lists")
        directory = prefix.rpartition("/")[0]
        base = os.path.join(self.root, *directory.split("/")) if directory else self.root
        first: dict[str, str] = {}
        self._scan(base, directory, prefix, start_after, first)
        if not first:
            return
        bound = max(first)
        second: dict[str, str] = {}
        self._scan(base, directory, prefix, start_after, second)
        listed: builtins.list[ObjectInfo] = []
        for key in sorted((k for k in second if k <= bound), reverse=True):
            try:
                st = os.stat(second[key], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):  # deleted (or renamed) meanwhile
                continue
            if stat.S_ISREG(st.st_mode):
                listed.append(ObjectInfo(key=key, size=st.st_size, timestamp_ms=st.st_mtime_ns // 1_000_000,
                                         modified=_datetime_from_ns(st.st_mtime_ns)))
        yield from reversed(listed)

    def _scan(self, path: str, rel: str, prefix: str, start_after: str, found: dict[str, str]) -> None:
        """Add key -> path for every regular file below `path` matching prefix and start_after."""
        try:
            entries = builtins.list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._os_error(rel, "list", exc) from exc
        for entry in entries:
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    self._scan(entry.path, key, prefix, start_after, found)
            elif entry.is_file(follow_symlinks=False):
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                if key.startswith(prefix) and key > start_after:
                    found[key] = entry.path

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        self._count("heads")
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(self.url, key, "object not found") from exc
        except OSError as exc:
            raise self._os_error(key, "stat", exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(self.url, key, "object not found (not a regular file)")
        return ObjectInfo(key=key, size=st.st_size, modified=_datetime_from_ns(st.st_mtime_ns),
                          timestamp_ms=st.st_mtime_ns // 1_000_000)

    def get(self, key: str) -> bytes:
        fd, size = self._open_fd(key)
        self._count("gets")
        try:
            return self._pread_exact(fd, key, 0, size, size)
        finally:
            os.close(fd)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"{self.url}/{key}: negative range offset {offset} length {length}")
        fd, size = self._open_fd(key)
        self._count("gets")
        try:
            if offset + length > size:
                raise ObjectRangeError(self.url, key, offset, length, size)
            return self._pread_exact(fd, key, offset, length, size)
        finally:
            os.close(fd)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        if length < 0:
            raise ValueError(f"{self.url}/{key}: negative suffix length {length}")
        fd, size = self._open_fd(key)
        self._count("gets")
        try:
            start = max(0, size - length)
            return self._pread_exact(fd, key, start, size - start, size), size
        finally:
            os.close(fd)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            raw = _CountingFileIO(path, self._count_read)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(self.url, key, "object not found") from exc
        except OSError as exc:
            raise self._os_error(key, "open", exc) from exc
        self._count("gets")
        return io.BufferedReader(raw, buffer_size=OPEN_BUFFER_SIZE)

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_absent: bool = False,
        timestamp_ms: int | None = None,
    ) -> None:
        self._put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms, sync=True)

    def put_unsynced(self, key: str, data: bytes) -> None:
        """Write a new object straight to its name, without fsync; `sync_unsynced` fsyncs the file
        and its directory later, with every other object put this way since.

        No temporary file and no rename (a third of a small block's put): the contract is that
        nobody looks for the object before this returns (a new, uniquely keyed block that no
        commit names yet), so a reader meanwhile, or a crash before `sync_unsynced`, may find it
        partial, as it may find it missing. A name that is taken is replaced atomically, as `put`
        does: an existing object is never seen partial."""
        rel_dir, _, name = key.rpartition("/")
        real_dir = self._checked_dirs.get(rel_dir)
        try:
            if real_dir is not None:  # checked before: the key's own checks only
                self._check_name(key)
                path = os.path.join(real_dir, name)
            else:
                path = self._path(key)
                self._ensure_dir(os.path.dirname(path))
            # O_EXCL: never through a link at the name itself, never over an existing object
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, OBJECT_MODE)
        except FileExistsError:
            self._put(key, data, if_absent=False, timestamp_ms=None, sync=False)
            return
        except FileNotFoundError as exc:
            if real_dir is None:
                raise self._os_error(key, "create", exc) from exc
            self._checked_dirs.pop(rel_dir, None)  # removed since it was checked: check it again
            self.put_unsynced(key, data)
            return
        except OSError as exc:
            raise self._os_error(key, "create", exc) from exc
        if real_dir is None:
            if len(self._checked_dirs) >= CHECKED_DIRS_MAX:
                self._checked_dirs.clear()
            self._checked_dirs[rel_dir] = os.path.dirname(path)
        self._count("puts")
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, OBJECT_MODE)  # the umask may have narrowed the mode
            finally:
                os.close(fd)
        except OSError as exc:
            try:
                os.unlink(path)  # a partial object of ours; nothing names it
            except OSError:
                pass
            raise self._os_error(key, "write", exc) from exc
        with self._unsynced_lock:
            self._unsynced.append(path)
        self._count("bytes_written", len(data))

    def sync_unsynced(self) -> None:
        with self._unsynced_lock:
            paths, self._unsynced = self._unsynced, []
        try:
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:  # deleted since: nothing to keep
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for directory in sorted({os.path.dirname(p) for p in paths}):
                fsync_dir(directory, best_effort=False)
        except OSError as exc:
            with self._unsynced_lock:  # still owed: the next sync tries them again
                self._unsynced[:0] = paths
            raise self._os_error(os.path.relpath(paths[0], self.root), "sync", exc) from exc

    def _put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool, timestamp_ms: int | None,
             sync: bool) -> None:
        path = self._path(key)
        directory = os.path.dirname(path)
        self._count("puts")
        try:
            self._ensure_dir(directory)
            import tempfile  # writes only: a reader never loads it

            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        except OSError as exc:
            raise self._os_error(key, "create", exc) from exc
        tmp_left: str | None = tmp
        try:
            with os.fdopen(fd, "wb") as out:
                written = self._write_all(out, data)
                out.flush()
                os.fchmod(out.fileno(), OBJECT_MODE)
                if sync:
                    os.fsync(out.fileno())
            if timestamp_ms is not None:
                ns = timestamp_ms * 1_000_000
                os.utime(tmp, ns=(ns, ns))
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError as exc:
                    raise ObjectExistsError(self.url, key, "object already exists") from exc
            else:
                os.replace(tmp, path)
                tmp_left = None
            if sync:
                fsync_dir(directory, best_effort=False)
            else:
                with self._unsynced_lock:
                    self._unsynced.append(path)
        except OSError as exc:
            raise self._os_error(key, "write", exc) from exc
        finally:
            if tmp_left is not None:
                try:
                    os.unlink(tmp_left)
                except FileNotFoundError:
                    pass
        self._count("bytes_written", written)

    @staticmethod
    def _write_all(out: BinaryIO, data: bytes | BinaryIO) -> int:
        if isinstance(data, bytes | bytearray | memoryview):
            out.write(data)
            return len(data)
        written = 0
        while True:
            chunk = data.read(COPY_CHUNK_SIZE)
            if not chunk:
                return written
            out.write(chunk)
            written += len(chunk)

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._count("deletes")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except IsADirectoryError as exc:
            raise ObjectNotFoundError(self.url, key, "not an object (a directory)") from exc
        except OSError as exc:
            raise self._os_error(key, "delete", exc) from exc
