"""Blocks written back: a slice's last block (a small file's only one) is held in memory from
the moment the slice is finished until its upload, which runs in the background, so closing a
small file does not wait for a PUT (full blocks upload while the program writes, and `finish`
waits for them).

This is safe only where no commit naming a block can reach the replica before the block is in
the store: the engine registers `settle` as a ship barrier (vfs.shipbarrier), which waits for
every staged block (retrying a failed upload) before each metadata commit ships, so a crash
loses at most the unshipped interval, as it would without write-back. Reads find a staged
block here; a delete waits for its upload, or cancels it when it has not started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ltx.store.base import StoreError

log = logging.getLogger(__name__)


@dataclass
class StagedBlock:
    """One block waiting for (or in) its upload."""

    key: str
    data: bytes
    future: Future[None] = field(default_factory=Future)


class StagedUploads:
    """Blocks accepted for upload and not yet in the store, by key."""

    def __init__(self, upload: Callable[[str, bytes], None], release: Callable[[int], None]) -> None:
        #: `upload(key, data)` puts one block (raising StoreError on failure).
        self._upload = upload
        #: `release(n)` gives back the bytes a block held (the writers' budget).
        self._release = release
        self._blocks: dict[str, StagedBlock] = {}
        self._lock = threading.Lock()
        #: Uploads that failed in the background (retried by `settle`).
        self.failures = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._blocks)

    def get(self, key: str) -> bytes | None:
        """A staged block's bytes (reads see writes that have not reached the store yet)."""
        staged = self._blocks.get(key)  # a dict lookup is atomic; no lock on the read path
        return staged.data if staged is not None else None

    def stage(self, key: str, data: bytes, pool: ThreadPoolExecutor) -> None:
        """Hold `data` under `key` and start its upload in `pool` (the caller took its budget)."""
        staged = StagedBlock(key, data)
        with self._lock:
            self._blocks[key] = staged
        pool.submit(self._run, staged)

    def _run(self, staged: StagedBlock) -> None:
        if not staged.future.set_running_or_notify_cancel():
            return  # cancelled by a delete before it started
        try:
            self._upload(staged.key, staged.data)
        except BaseException as exc:
            self.failures += 1
            log.warning("block %s not uploaded yet (retried before the next metadata ship): %s",
                        staged.key, exc)
            staged.future.set_exception(exc)
        else:
            self._done(staged)
            staged.future.set_result(None)

    def _done(self, staged: StagedBlock) -> None:
        with self._lock:
            if self._blocks.get(staged.key) is not staged:
                return
            del self._blocks[staged.key]
        self._release(len(staged.data))

    def settle(self) -> None:
        """Wait until every block staged so far is in the store; a failed upload is tried once
        more here (the store has retried it already). Raises the first failure, leaving the
        failed blocks staged for the next call."""
        with self._lock:
            pending = list(self._blocks.values())
        first: BaseException | None = None
        for staged in pending:
            try:
                staged.future.result()
                continue
            except CancelledError:
                continue
            except StoreError:
                pass
            try:
                self._upload(staged.key, staged.data)
            except StoreError as exc:
                first = first or exc
            else:
                self._done(staged)
        if first is not None:
            raise first

    def forget(self, key: str) -> bool:
        """Before a delete of `key`: cancel its upload if it has not started (True: nothing
        reached the store), else wait for it to end (False: the object may exist)."""
        with self._lock:
            staged = self._blocks.get(key)
        if staged is None:
            return False
        if staged.future.cancel():
            self._done(staged)
            return True
        try:
            staged.future.result()
        except StoreError:  # never uploaded: nothing to delete, nothing to retry
            self._done(staged)
            return True
        return False


__all__ = ["StagedBlock", "StagedUploads"]
