"""The retry loop: what is retried, how often, how long it waits, and what it raises at the end."""

from __future__ import annotations

import random

import pytest

from ltx.store.base import StoreUnavailableError
from ltx.store.retry import RetryPolicy, TransientError, call_with_retries


class Script:
    """An operation that fails transiently `failures` times, then returns its attempt number."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> int:
        self.attempts.append(attempt)
        if self.error is not None:
            raise self.error
        if len(self.attempts) <= self.failures:
            raise TransientError(f"failure {len(self.attempts)}")
        return attempt


def run(script: Script, policy: RetryPolicy) -> tuple[int, int, list[float]]:
    retries = 0
    waits: list[float] = []

    def on_retry() -> None:
        nonlocal retries
        retries += 1

    result = call_with_retries(
        script, policy=policy, on_retry=on_retry,
        give_up=lambda reason, n: StoreUnavailableError("s3://b/p", "key", f"{reason} after {n}"),
        sleep=waits.append,
    )
    return result, retries, waits


def test_succeeds_after_transient_failures() -> None:
    result, retries, waits = run(Script(failures=3), RetryPolicy(max_retries=5))
    assert result == 3 and retries == 3 and len(waits) == 3


def test_gives_up_after_max_retries_with_the_last_reason() -> None:
    script = Script(failures=100)
    with pytest.raises(StoreUnavailableError) as caught:
        run(script, RetryPolicy(max_retries=4))
    assert script.attempts == [0, 1, 2, 3, 4]
    assert "failure 5 after 5" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransientError)


def test_other_errors_are_not_retried() -> None:
    script = Script(failures=0, error=KeyError("permanent"))
    with pytest.raises(KeyError):
        run(script, RetryPolicy(max_retries=5))
    assert script.attempts == [0]


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    random.seed(1234)
    policy = RetryPolicy(max_retries=8, backoff_base_s=0.1, backoff_max_s=1.0)
    _, _, waits = run(Script(failures=8), policy)
    caps = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(0.0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    # Jitter: the waits are not simply the caps.
    assert waits != caps
    samples = [policy.backoff(6) for _ in range(2000)]
    assert max(samples) <= 1.0 and min(samples) >= 0.0
    assert 0.4 < sum(samples) / len(samples) < 0.6  # uniform over [0, cap]
