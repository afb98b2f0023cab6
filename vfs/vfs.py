"""The APSW VFS `ltxvfs`: main databases come from LTX replicas; journals and temp files are
ordinary local files of the default VFS. WAL is never offered (a Python VFS has no shared memory,
and page 1 reads in rollback-journal form)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

import apsw

from vfs.journal import PrivateJournal

if TYPE_CHECKING:
    from vfs.file import LTXFile

#: The name SQLite knows the VFS by.
VFS_NAME = "ltxvfs"
_SIDE_FILE_SUFFIXES = ("-journal", "-wal", "-shm")


class LTXVFS(apsw.VFS):
    """Registers itself under `name`; `base` is the VFS that keeps journals and temp files."""

    def __init__(self, name: str = VFS_NAME, base: str = "") -> None:
        self.vfs_name = name
        self._base = base
        self._open_lock = threading.Lock()
        self._open_paths: Counter[str] = Counter()
        super().__init__(name, base)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:  # type: ignore[override]
        if isinstance(name, apsw.URIFilename) and flags[0] & apsw.SQLITE_OPEN_MAIN_DB:
            # The reader's machinery loads at the first open, the writer's at the first writer:
            # `import vfs` itself only registers the VFS.
            from vfs.opening import open_file
            from vfs.options import OptionError, options_from_uri

            try:
                options = options_from_uri(name, flags[0])
            except OptionError as exc:
                raise apsw.CantOpenError(str(exc)) from exc
            file: LTXFile
            if options.read_only or options.pinned:
                # A reader, or a view of the past: SQLite refuses writes with SQLITE_READONLY up front.
                file = open_file(options)
                writable = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
                flags[1] = (flags[0] & ~writable) | apsw.SQLITE_OPEN_READONLY
            else:
                from vfs.writefile import open_writer

                file = open_writer(options)
                flags[1] = flags[0]
            with self._open_lock:
                self._open_paths[options.path] += 1
            file.on_close = lambda: self._closed(options.path)
            return file  # type: ignore[return-value]  # apsw accepts any object with the x-methods
        if flags[0] & apsw.SQLITE_OPEN_MAIN_JOURNAL:
            # Private to the connection and gone with the process (vfs/journal.py).
            return PrivateJournal(self._base, flags)
        return super().xOpen(name, flags)

    def _closed(self, path: str) -> None:
        with self._open_lock:
            self._open_paths[path] -= 1
            if self._open_paths[path] <= 0:
                del self._open_paths[path]

    def _is_side_file(self, pathname: str) -> bool:
        """Whether `pathname` is the journal, WAL or shm name of a database open here."""
        for suffix in _SIDE_FILE_SUFFIXES:
            if pathname.endswith(suffix):
                with self._open_lock:
                    if pathname[:-len(suffix)] in self._open_paths:
                        return True
        return False

    def xDelete(self, filename: str, syncdir: bool) -> None:
        # Journals of open databases are private anonymous files (vfs/journal.py): nothing to
        # delete by name, and a file by that name is not ours to touch.
        if self._is_side_file(filename):
            return
        super().xDelete(filename, syncdir)

    def xAccess(self, pathname: str, flags: int) -> bool:
        # An ltxvfs database never has a WAL, and never a hot journal: a journal left beside the
        # name belongs to nobody's transaction in the replica.
        if self._is_side_file(pathname):
            return False
        return bool(super().xAccess(pathname, flags))
