"""The per-process registry of connections to a replica survives the garbage collector closing a
forgotten connection while the registry is being read (its xClose calls `leave` re-entrantly)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from vfs.peers import ReplicaPeers

URL = "file:///replica"


class Conn:
    """A connection that leaves the registry when it is collected, as LTXWriteFile.xClose does."""

    def __init__(self, peers: ReplicaPeers) -> None:
        self.peers = peers
        self.cycle = self  # only the cyclic collector frees it
        peers.join(URL, self)

    def __del__(self) -> None:
        self.peers.leave(URL, self)


class Token:
    """A weakly referenceable stand-in for a connection."""


class CollectingSet(set):  # type: ignore[type-arg]
    """Stands in for the registry's WeakSet: iterating it runs `on_iter` first, as the garbage
    collector may run a forgotten connection's xClose (and so `leave`) during the listing."""

    def __init__(self, items: list[object], on_iter: Callable[[], None]) -> None:
        super().__init__(items)
        self.on_iter = on_iter

    def __iter__(self) -> Iterator[object]:
        self.on_iter()
        return super().__iter__()


def test_a_connection_leaving_while_others_are_listed_does_not_deadlock() -> None:
    peers = ReplicaPeers()
    me, kept, gone = Token(), Token(), Token()
    peers.join(URL, kept)
    peers._files[URL] = CollectingSet([kept, gone], lambda: peers.leave(URL, gone))
    results: list[list[object]] = []
    worker = threading.Thread(target=lambda: results.append(peers.others(URL, me)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "others() deadlocked on a re-entrant leave()"
    assert results == [[kept]], "the connection that left is not listed"
    assert gone not in peers._files[URL], "the deferred leave took effect after the listing"


def test_leave_releases_the_write_lock_and_forgets_the_connection() -> None:
    peers = ReplicaPeers()
    a, b = Conn(peers), Conn(peers)
    assert peers.try_lock(URL, a) and not peers.try_lock(URL, b)
    peers.leave(URL, a)
    assert peers.try_lock(URL, b)
    assert peers.others(URL, b) == []
