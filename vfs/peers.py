"""Connections of this process to one replica: the write lock SQLite's RESERVED lock maps to,
and the news of a commit for the others.

Within a process, connections to one replica take turns writing, as SQLite's file locks make
them do on a local file: one holds the write lock from RESERVED until it drops back to SHARED.
Readers never wait (each reads its own snapshot of the replica). Across processes and machines
nothing is locked: the create-if-absent of each TXID's file decides who commits.
The process's one instance is `vfs.process.peers()`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any


class ReplicaPeers:
    """Per replica URL: the connection holding the write lock, and the open connections."""

    def __init__(self) -> None:
        # Reentrant: listing the connections allocates, the garbage collector may then close a
        # forgotten connection, and its xClose calls `leave` on this same thread.
        self._lock = threading.RLock()
        self._writers: dict[str, object] = {}
        self._files: dict[str, weakref.WeakSet[Any]] = {}
        self._listing = 0
        self._deferred: list[tuple[str, object]] = []

    def join(self, url: str, file: object) -> None:
        with self._lock:
            self._files.setdefault(url, weakref.WeakSet()).add(file)

    def leave(self, url: str, file: object) -> None:
        with self._lock:
            if self._writers.get(url) is file:
                del self._writers[url]
            if self._listing:  # called from inside `others` (a collected connection): later
                self._deferred.append((url, file))
                return
            self._forget(url, file)

    def _forget(self, url: str, file: object) -> None:
        files = self._files.get(url)
        if files is not None:
            files.discard(file)
            if not files:
                del self._files[url]

    def others(self, url: str, file: object) -> list[Any]:
        """The other open connections to `url`."""
        with self._lock:
            self._listing += 1
            try:
                found = [f for f in self._files.get(url, ()) if f is not file]
            finally:
                self._listing -= 1
            deferred: list[tuple[str, object]] = []
            if not self._listing:
                deferred, self._deferred = self._deferred, []
                for gone_url, gone in deferred:
                    self._forget(gone_url, gone)
            return [f for f in found if all(f is not gone for _, gone in deferred)] if deferred else found

    def try_lock(self, url: str, owner: object) -> bool:
        """Take the write lock of `url` for `owner` (True), unless another holds it (False)."""
        with self._lock:
            holder = self._writers.get(url)
            if holder is not None and holder is not owner:
                return False
            self._writers[url] = owner
            return True

    def unlock(self, url: str, owner: object) -> None:
        with self._lock:
            if self._writers.get(url) is owner:
                del self._writers[url]

    def count(self) -> int:
        """Open connections, over all replicas."""
        with self._lock:
            return sum(len(files) for files in self._files.values())

    def locked_by_other(self, url: str, owner: object) -> bool:
        with self._lock:
            holder = self._writers.get(url)
            return holder is not None and holder is not owner

