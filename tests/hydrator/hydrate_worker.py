"""Run a hydration in a child process, GETs slowed down, so a test can SIGKILL it midway.

Usage: python -m tests.hydrator.hydrate_worker URL PATH DELAY_SECONDS PARALLELISM [COMPOSE_AHEAD_BYTES]

The delay wraps the real store (each GET waits first); nothing about the data is faked.
"""

from __future__ import annotations

import sys
import time
from typing import BinaryIO

from hydrator.hydrator import Hydrator
from ltx.replica import Replica
from ltx.store import ObjectStore
from tests.passthrough import PassThroughStore


class SlowStore(PassThroughStore):
    """A real store whose reads each start `delay` seconds late."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay

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
