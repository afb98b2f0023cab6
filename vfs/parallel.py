"""One process-wide thread pool for the VFS's parallel requests, and retries with backoff.

Network waits release the GIL, so threads give real parallelism for GETs and LISTs. A single
call runs inline on the caller's thread: handing one request to a pool only adds latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ltx.store.base import StoreUnavailableError

T = TypeVar("T")

#: Requests in flight at once across the process (index fetches at open, page runs, LISTs).
DEFAULT_PARALLELISM = 32
#: Attempts of one request at this level. The stores already retry transient failures with
#: backoff (ltx.store.retry) and raise StoreUnavailableError when that runs out, so only a raw
#: connection error escaping a store earns a second attempt here.
DEFAULT_ATTEMPTS = 2
#: First pause between attempts; it doubles each time (0.1, 0.2, 0.4 s).
DEFAULT_BACKOFF = 0.1

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


def is_transient(exc: BaseException) -> bool:
    """Errors worth another attempt here: connections dropped outside the store's own retries
    (StoreUnavailableError means the store's retries already ran out)."""
    return isinstance(exc, ConnectionError | TimeoutError) and not isinstance(exc, StoreUnavailableError)


def with_retries(call: Callable[[], T], attempts: int = DEFAULT_ATTEMPTS, backoff: float = DEFAULT_BACKOFF,
                 on_retry: Callable[[BaseException], None] | None = None) -> T:
    """Call, retrying transient errors with exponential backoff; the last error is raised."""
    delay = backoff
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
