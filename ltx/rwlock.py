"""A readers-writer lock: many readers, or one writer (the hydrator applying new pages, blockmap
deleting blocks).

Writers are preferred (a waiting writer blocks new readers) so a steady stream of read
transactions cannot starve the applier of new LTX files.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Shared (read) or exclusive (write) access; not reentrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._mine = threading.local()

    def _held(self) -> int:
        return getattr(self._mine, "reads", 0)

    def acquire_read(self, timeout: float | None = None) -> bool:
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._writer and not self._writers_waiting, timeout)
            if ok:
                self._readers += 1
                self._mine.reads = self._held() + 1
            return ok

    def release_read(self) -> None:
        with self._cond:
            if self._readers <= 0 or self._held() <= 0:
                raise RuntimeError("release_read without a matching acquire_read in this thread")
            self._readers -= 1
            self._mine.reads = self._held() - 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_lease(self, timeout: float | None = None) -> bool:
        """A read not tied to this thread: any thread may end it with release_lease. It does not
        count for the same-thread write refusal, so its holder must not write meanwhile."""
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._writer and not self._writers_waiting, timeout)
            if ok:
                self._readers += 1
            return ok

    def release_lease(self) -> None:
        with self._cond:
            if self._readers <= 0:
                raise RuntimeError("release_lease without a matching acquire_lease")
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        """Wait for every reader to leave; a thread holding a read itself would wait forever: refused."""
        if self._held():
            raise RuntimeError("acquire_write while this thread holds a read (release it first)")
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._writer and not self._readers)
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            if not self._writer:
                raise RuntimeError("release_write without a matching acquire_write")
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
