"""Opening a replica for a connection: the view an open asks for (retried while the replica is
empty or caught mid-compaction) and the main-database file over it. Loaded by the VFS at its
first open, so that `import vfs` stays light."""

from __future__ import annotations

import time

from ltx.plan import EmptyReplicaError, HistoryGapError, RestorePlanError
from ltx.store.base import StoreError
from vfs.errors import PageCorruptError, PageReadError, ReplicaOpenError
from vfs.file import LTXFile
from vfs.options import OpenOptions
from vfs.stats import ReadStats
from vfs.view import ReplicaReader, View, load_view, open_reader

#: Pause between looks at a replica that is empty (or caught mid-compaction) during an open.
OPEN_RETRY_INTERVAL = 0.2


def open_view(reader: ReplicaReader, options: OpenOptions, stats: ReadStats | None = None) -> View:
    """Load the view an open asks for. An empty replica is retried for `options.empty_wait` (0
    unless `wait=` asks for a writer's first commit), a gap (a compaction under way) for
    `options.gap_wait`."""
    started = time.monotonic()
    while True:
        try:
            return load_view(reader, txid=options.txid, timestamp=options.timestamp, waited=stats)
        except (EmptyReplicaError, HistoryGapError) as exc:
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


def open_file(options: OpenOptions) -> LTXFile:
    """Open the replica, load the view and return the main-database file."""
    reader = open_reader(options.replica_url)
    replica = reader.replica
    stats = ReadStats()
    try:
        view = open_view(reader, options, stats)
    except BaseException:
        replica.close()
        raise
    return LTXFile(options, replica, reader, view, stats)
