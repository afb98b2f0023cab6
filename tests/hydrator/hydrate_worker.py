"""Run a hydration in a child process, GETs slowed down, so a test can SIGKILL it midway.

Usage: python -m tests.hydrator.hydrate_worker URL PATH DELAY_SECONDS PARALLELISM [COMPOSE_AHEAD_BYTES]

The delay wraps the real store (each GET waits first); nothing about the data is faked.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

from hydrator.hydrator import Hydrator
from ltx.replica import Replica
from ltx.store import ObjectInfo, ObjectStore


class SlowStore(ObjectStore):
    """A real store whose reads each start `delay` seconds late."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.url = inner.url
        self.stats = inner.stats

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def get(self, key: str) -> bytes:
        time.sleep(self.delay)
        return self.inner.get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        time.sleep(self.delay)
        return self.inner.get_range(key, offset, length)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        time.sleep(self.delay)
        return self.inner.get_suffix(key, length)

    def open(self, key: str) -> BinaryIO:
        time.sleep(self.delay)
        return self.inner.open(key)

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        self.inner.put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def main(argv: list[str]) -> int:
    url, path, delay, parallelism = argv[0], argv[1], float(argv[2]), int(argv[3])
    replica = Replica.open(url)
    replica.store = SlowStore(replica.store, delay)
    if len(argv) > 4:
        Hydrator(replica, path, parallelism=parallelism, compose_ahead=int(argv[4])).run()
    else:
        Hydrator(replica, path, parallelism=parallelism).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
