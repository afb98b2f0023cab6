"""Counters of one ltxvfs connection, reported by `PRAGMA ltxvfs_stats` as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ltx.store.base import StoreStats


@dataclass
class ReadStats:
    """What the VFS did for SQLite. `round_trips` counts the times SQLite's thread waited on the
    store (a batch of parallel requests counts once); the poller's requests are not waited for."""

    cache_hits: int = 0
    cache_misses: int = 0
    round_trips: int = 0
    pages_fetched: int = 0
    readahead_pages: int = 0
    preloaded_pages: int = 0
    bytes_decompressed: int = 0
    polls: int = 0
    poll_errors: int = 0
    files_applied: int = 0
    pages_evicted: int = 0
    replans: int = 0
    #: Pages read from the hydrated local file instead of the store.
    local_reads: int = 0


def stats_json(read: ReadStats, store: StoreStats, **extra: object) -> str:
    """One JSON object: the store's requests and bytes, then the VFS counters, then `extra`."""
    import json  # loaded by the first PRAGMA ltxvfs_stats, not by every connection

    out: dict[str, object] = {
        "gets": store.gets,
        "lists": store.lists,
        "heads": store.heads,
        "puts": store.puts,
        "bytes": store.bytes_read,
        "bytes_written": store.bytes_written,
        "retries": store.retries,
    }
    out.update(asdict(read))
    out.update(extra)
    return json.dumps(out, sort_keys=False)
