"""Opening a replica for a connection: the view an open asks for (retried while the replica is
empty or caught mid-compaction) and the main-database file over it. Loaded by the VFS at its
first open, so that `import vfs` stays light; light itself: an open of an s3:// replica sends its
first round trip (vfs/firstlook.py) before the reader's modules load, and loads them while it is
in flight."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ltx.store.base import InvalidURLError, ObjectStore
from ltx.store.url import open_store
from vfs.errors import ReplicaOpenError
from vfs.firstlook import FirstLook, first_look
from vfs.options import OpenOptions
from vfs.stats import ReadStats

if TYPE_CHECKING:
    from vfs.file import LTXFile
    from vfs.view import ReplicaReader, View

#: Pause between looks at a replica that is empty (or caught mid-compaction) during an open.
OPEN_RETRY_INTERVAL = 0.2


def open_view(reader: ReplicaReader, options: OpenOptions, stats: ReadStats | None = None,
              first: FirstLook | None = None) -> View:
    """Load the view an open asks for. An empty replica is retried for `options.empty_wait` (0
    unless `wait=` asks for a writer's first commit), a gap (a compaction under way) for
    `options.gap_wait`. `first`: the first round trip, already sent (used by the first try only)."""
    from ltx.plan import EmptyReplicaError, HistoryGapError, RestorePlanError
    from ltx.store.base import StoreError
    from vfs.errors import PageCorruptError, PageReadError
    from vfs.view import load_view

    started = time.monotonic()
    while True:
        try:
            return load_view(reader, txid=options.txid, timestamp=options.timestamp, waited=stats, first=first,
                             meanwhile=_load_file_modules)
        except (EmptyReplicaError, HistoryGapError) as exc:
            first = None
            patience = options.empty_wait if isinstance(exc, EmptyReplicaError) else options.gap_wait
            left = started + patience - time.monotonic()
            if left <= 0:
                waited = f" (waited {patience:g}s)" if patience else ""
                raise ReplicaOpenError(reader.url, f"{exc}{waited}") from exc
            time.sleep(min(OPEN_RETRY_INTERVAL, left))
        except RestorePlanError as exc:
            raise ReplicaOpenError(reader.url, str(exc)) from exc
        except (PageCorruptError, PageReadError) as exc:
            raise ReplicaOpenError(reader.url, str(exc)) from exc
        except StoreError as exc:
            raise ReplicaOpenError(reader.url, str(exc)) from exc


def _load_file_modules() -> None:
    """The modules of the open file (its cache, follower, PRAGMAs, read-ahead): loaded while the
    view's page indexes are in flight."""
    import vfs.file  # noqa: F401


def _store(url: str) -> ObjectStore:
    try:
        return open_store(url)
    except InvalidURLError as exc:
        raise ReplicaOpenError(url, str(exc)) from exc


def open_file(options: OpenOptions) -> LTXFile:
    """Open the replica, load the view and return the main-database file."""
    store = _store(options.replica_url)
    scheme = store.url.split(":", 1)[0]  # the layout follows the store (a plain path is file)
    first: FirstLook | None = None
    try:
        first = first_look(store, scheme)
        # The view's modules load here, while the first look's requests are in flight (and the
        # file's while the page indexes are: _load_file_modules).
        from ltx.replica import Replica
        from vfs.view import ReplicaReader

        reader = ReplicaReader(Replica(store, scheme))
        stats = ReadStats()
        view = open_view(reader, options, stats, first)
    except BaseException:
        if first is not None:
            first.settle()
        store.close()
        raise
    from vfs.file import LTXFile

    return LTXFile(options, reader.replica, reader, view, stats)
