"""The first round trip of a cold open of an s3:// replica, sent before the reader's modules load.

An open waits for two or three round trips; the first (the listing and the hint, vfs/view.py) needs
only the store and the replica's key layout. Importing the rest of the reader (the plan, the
decoders, the page map, the file: tens of milliseconds of CPU in a new process) happens while
these requests are in flight instead of before them: network waits release the GIL.

The answers are kept raw (the store's objects in key order, the hint's bytes) and read by the
same code as a listing made later (ltx.replica.Replica.levels_of / level_files, vfs.hint), so
every check applies unchanged. A file:// replica has no round trip to overlap: no first look.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import islice
from typing import Generic, TypeVar

from ltx.names import HINT_KEY, above_level_0, level_prefix
from ltx.store.base import ObjectInfo, ObjectNotFoundError, ObjectStore

T = TypeVar("T")

#: Level-0 files taken from the first page of a split listing (each may come with a sidecar key:
#: two keys apiece stay within one 1000-key LIST page).
LEVEL0_HEAD_FILES = 499
#: Keys of level 0's first LIST page taken raw: a file and its sidecar are two keys, and a file is
#: known to have no sidecar only when the next key is seen, so 2 * files + 1 keys decide `files`.
HEAD_KEYS_PER_FILE = 2


class _Call(Generic[T]):
    """One request on a thread of its own (a pool would be imported and started first)."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting open
            self.error = exc

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> T:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set when no error was


class FirstLook:
    """The listing of every level above 0, level 0's first `head_files` files' keys, and the hint,
    requested at once on `store` (an S3 store; keys in Litestream's s3 layout)."""

    def __init__(self, store: ObjectStore, head_files: int = LEVEL0_HEAD_FILES) -> None:
        self.store = store
        self.head_keys = HEAD_KEYS_PER_FILE * head_files + 1
        scheme = "s3"
        level0 = level_prefix(scheme, 0)
        self._above = _Call(lambda: list(store.list("", above_level_0(scheme))), "ltxvfs-look-above")
        self._head = _Call(lambda: list(islice(store.list(level0), self.head_keys)), "ltxvfs-look-l0")
        self._hint = _Call(self._get_hint, "ltxvfs-look-hint")

    def _get_hint(self) -> bytes | None:
        try:
            return self.store.get(HINT_KEY)
        except ObjectNotFoundError:
            return None

    def above(self) -> list[ObjectInfo]:
        """The keys of every level above 0, in key order (raises what the listing raised)."""
        return self._above.wait()

    def head(self) -> tuple[list[ObjectInfo], bool]:
        """Level 0's first keys in key order, and whether the level may hold more."""
        objects = self._head.wait()
        return objects, len(objects) >= self.head_keys

    def hint(self) -> tuple[bytes | None, BaseException | None]:
        """The hint's bytes (None: there is none), or the error fetching it raised."""
        try:
            return self._hint.wait(), None
        except Exception as exc:  # noqa: BLE001 - a hint is never needed: the caller drops it
            return None, exc

    def settle(self) -> None:
        """Wait for every request (an open that fails early leaves none running on its store)."""
        for call in (self._above, self._head, self._hint):
            call.join()


def first_look(store: ObjectStore, scheme: str, head_files: int = LEVEL0_HEAD_FILES) -> FirstLook | None:
    """Start the first round trip of an open on `store`, or None where there is none to overlap."""
    if scheme != "s3":
        return None
    return FirstLook(store, head_files)
