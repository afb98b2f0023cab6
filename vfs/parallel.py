"""One process-wide thread pool for the VFS's parallel requests.

Network waits release the GIL, so threads give real parallelism for GETs and LISTs. A single
call runs inline on the caller's thread: handing one request to a pool only adds latency.
Retries are the stores' (ltx.store.retry): they retry every transient failure with backoff,
count it in their stats and raise StoreUnavailableError when that runs out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Requests in flight at once across the process (index fetches at open, page runs, LISTs).
DEFAULT_PARALLELISM = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The shared executor, created on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=DEFAULT_PARALLELISM, thread_name_prefix="ltxvfs")
    return _pool


def run_all(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls in parallel and return their results in order; the first failure (in call
    order) is raised once every call has finished."""
    if len(calls) == 1:
        return [calls[0]()]
    futures = [pool().submit(c) for c in calls]
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
