"""What one process shares between its ltxvfs connections: every process-wide registry, here.

| registry          | keyed by          | what it holds                                   | used by            |
|-------------------|-------------------|-------------------------------------------------|--------------------|
| `REPLICA_NAMES`   | database path     | the replica URL `vfs.register_replica` named    | vfs/resolve.py     |
| `peers()`         | replica URL       | open connections and the write lock             | vfs/peers.py       |
| `HYDRATIONS`      | local path        | the background hydration connections share      | vfs/hydrate.py     |
| `COMPACTORS`      | replica URL       | the auto-compactor and how many writers use it  | vfs/autocompact.py |
| `GROUP_WRITERS`   | (a weak set)      | writers whose group commits ship at exit        | vfs/writefile.py   |
| `thread_pool()`   | (one)             | the executor of parallel requests               | vfs/parallel.py    |

The modules named hold the logic; this one holds the state, so that what outlives a connection
is listed in one place (`sizes()` counts it). Importing it costs nothing: the peers and the
thread pool are built on first use, and nothing here imports the modules that use it.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from vfs.autocompact import AutoCompactor
    from vfs.hydrate import SharedHydration
    from vfs.peers import ReplicaPeers

K = TypeVar("K")
V = TypeVar("V")

#: Threads of the process-wide pool: requests in flight at once (index fetches at open, page
#: runs, LISTs).
THREAD_POOL_SIZE = 32


class Registry(Generic[K, V]):
    """Entries shared by the process, guarded by `lock` (a Condition: users may wait for a change)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.entries: dict[K, V] = {}

    def __len__(self) -> int:
        with self.lock:
            return len(self.entries)


REPLICA_NAMES: Registry[str, str] = Registry()
HYDRATIONS: Registry[str, SharedHydration] = Registry()
COMPACTORS: Registry[str, tuple[AutoCompactor, int]] = Registry()
GROUP_WRITERS: weakref.WeakSet[Any] = weakref.WeakSet()

_lazy_lock = threading.Lock()
_peers: ReplicaPeers | None = None
_pool: ThreadPoolExecutor | None = None


def peers() -> ReplicaPeers:
    """The connections of this process by replica URL, and their write locks."""
    global _peers
    if _peers is None:
        from vfs.peers import ReplicaPeers

        with _lazy_lock:
            if _peers is None:
                _peers = ReplicaPeers()
    return _peers


def thread_pool() -> ThreadPoolExecutor:
    """The executor of the VFS's parallel requests, created on first use."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _lazy_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=THREAD_POOL_SIZE, thread_name_prefix="ltxvfs")
    return _pool


def sizes() -> dict[str, int]:
    """How many entries each registry holds (for tests and debugging)."""
    return {
        "replica_names": len(REPLICA_NAMES),
        "peers": _peers.count() if _peers is not None else 0,
        "hydrations": len(HYDRATIONS),
        "compactors": len(COMPACTORS),
        "group_writers": len(GROUP_WRITERS),
        "thread_pool": 1 if _pool is not None else 0,
    }
