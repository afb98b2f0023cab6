"""The readers-writer lock that keeps pages from changing under a read transaction."""

from __future__ import annotations

import threading

import pytest

from ltx.rwlock import ReadWriteLock
from tests.litestream import wait_for


def test_writer_waits_for_readers_and_blocks_new_ones() -> None:
    lock = ReadWriteLock()
    lock.acquire_read()
    lock.acquire_read()
    wrote = threading.Event()

    def writer() -> None:
        with lock.write():
            wrote.set()

    t = threading.Thread(target=writer)
    t.start()
    wait_for(lambda: lock._writers_waiting == 1, "the writer to queue", 10)
    assert not wrote.is_set()
    assert not lock.acquire_read(timeout=0)  # a waiting writer goes first
    lock.release_read()
    assert not wrote.is_set()
    lock.release_read()
    t.join(10)
    assert wrote.is_set()
    assert lock.acquire_read(timeout=0)
    lock.release_read()


def test_writing_while_reading_in_the_same_thread_is_refused() -> None:
    lock = ReadWriteLock()
    with lock.read(), pytest.raises(RuntimeError, match="holds a read"):
        lock.acquire_write()
    with lock.write():
        pass


def test_a_lease_ends_on_another_thread() -> None:
    """SQLite may end a read transaction on another thread: a lease is released from anywhere."""
    lock = ReadWriteLock()
    assert lock.acquire_lease(timeout=0)
    wrote = threading.Event()

    def writer() -> None:
        with lock.write():
            wrote.set()

    w = threading.Thread(target=writer)
    w.start()
    wait_for(lambda: lock._writers_waiting == 1, "the writer to queue", 10)
    assert not lock.acquire_lease(timeout=0)  # a waiting writer goes first
    releaser = threading.Thread(target=lock.release_lease)
    releaser.start()
    releaser.join(10)
    w.join(10)
    assert wrote.is_set()
    with pytest.raises(RuntimeError, match="release_lease without"):
        lock.release_lease()
