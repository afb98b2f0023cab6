"""Work that must be durable before any writer in this process ships a commit.

A database whose rows name objects kept elsewhere (blockmap's blocks) must never reach the
replica before those objects are durable. When the other store writes objects without syncing
each one (a file store's `put_unsynced`), its owner registers the store's sync here: every
writer runs the registered barriers before it creates a commit's LTX file (each group-commit
ship, each `sync=commit` COMMIT, each flush), so the sync happens once per shipped file, off the
caller's path. Barriers are process-wide (a barrier is an idempotent sync; running it before
another database's ship costs at most an early fsync), and a failing one fails the ship.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_barriers: list[Callable[[], None]] = []


def add(barrier: Callable[[], None]) -> None:
    """Run `barrier()` before every commit any writer of this process ships, until `remove`."""
    with _lock:
        _barriers.append(barrier)


def remove(barrier: Callable[[], None]) -> None:
    """Stop running `barrier` (one registration of it)."""
    with _lock:
        if barrier in _barriers:
            _barriers.remove(barrier)


def run() -> None:
    """Run every registered barrier (a writer calls this before it creates an LTX file)."""
    with _lock:
        barriers = list(_barriers)
    for barrier in barriers:
        barrier()
