"""Retries with exponential backoff and full jitter for transient store failures.

Backends turn a failure worth retrying (5xx, SlowDown/throttling, connection errors, read
timeouts) into `TransientError`; everything else passes straight through. When the retries run
out, the caller's `give_up` builds the error to raise (StoreUnavailableError for the stores).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

#: Retries after the first attempt (7 attempts in all, ~6 s of backoff at most before giving up).
DEFAULT_MAX_RETRIES = 6
#: Backoff before the first retry is drawn from [0, base]; it doubles with every further retry.
DEFAULT_BACKOFF_BASE_S = 0.05
#: Upper bound of a single backoff.
DEFAULT_BACKOFF_MAX_S = 3.0

T = TypeVar("T")


class TransientError(Exception):
    """A failure that may succeed when tried again; `reason` is credential-free."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): full jitter over an exponential cap."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**retry))
        return random.uniform(0.0, cap)


def call_with_retries(
    attempt: Callable[[int], T],
    *,
    policy: RetryPolicy,
    on_retry: Callable[[], None],
    give_up: Callable[[str, int], Exception],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt(n)` (n = 0, 1, …) until it returns or raises something other than
    TransientError; after `policy.max_retries` retries raise `give_up(reason, attempts)` from the
    last TransientError. `on_retry` runs before each retry (the stores count it)."""
    number = 0
    while True:
        try:
            return attempt(number)
        except TransientError as exc:
            if number >= policy.max_retries:
                raise give_up(exc.reason, number + 1) from exc
            on_retry()
            sleep(policy.backoff(number))
            number += 1
