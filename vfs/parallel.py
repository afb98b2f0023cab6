"""The VFS's parallel requests, on the process's thread pool (vfs.process.thread_pool).

Network waits release the GIL, so threads give real parallelism for GETs and LISTs. A single
call runs inline on the caller's thread: handing one request to a pool only adds latency.
Retries are the stores' (ltx.store.retry): they retry every transient failure with backoff,
count it in their stats and raise StoreUnavailableError when that runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from vfs.process import thread_pool

T = TypeVar("T")


def run_all(calls: Sequence[Callable[[], T]], meanwhile: Callable[[], object] | None = None) -> list[T]:
    """Run the calls in parallel and return their results in order; the first failure (in call
    order) is raised once every call has finished. `meanwhile` runs on the caller's thread while
    they are in flight (CPU work that would otherwise wait for them, or they for it)."""
    if len(calls) == 1 and meanwhile is None:
        return [calls[0]()]
    futures = [thread_pool().submit(c) for c in calls]
    if meanwhile is not None:
        meanwhile()
    results: list[T] = []
    error: BaseException | None = None
    for f in futures:
        exc = f.exception()
        if exc is not None:
            error = error or exc
        else:
            results.append(f.result())
    if error is not None:
        raise error
    return results
