"""A readable stream of one S3 object that resumes where it broke off.

If the connection fails mid-body, the stream re-opens the object from the current offset
(`Range: bytes=N-`, `If-Match` the first answer's ETag so a replaced object is an error rather
than a splice) under the store's retry policy. The stream ends only at the object's full size.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Protocol

from ltx.store.retry import TransientError


class Body(Protocol):
    """What the stream needs of a response body (botocore's StreamingBody has it)."""

    def read(self, amt: int | None = None) -> bytes: ...

    def close(self) -> None: ...


#: reopen(offset) -> a body positioned at `offset`; raises TransientError or a store error.
Reopen = Callable[[int], Body]
#: retry(attempt) -> attempt's result, retrying TransientError under the store's policy.
Retry = Callable[[Callable[[int], bytes]], bytes]


class ResumableStream(io.RawIOBase):
    """Raw stream over an S3 object body of known `size`; wrap in io.BufferedReader to use."""

    def __init__(
        self,
        body: Body,
        size: int,
        *,
        reopen: Reopen,
        retry: Retry,
        read_errors: tuple[type[BaseException], ...],
        describe: Callable[[BaseException], str],
        count_read: Callable[[int], None],
    ) -> None:
        super().__init__()
        self._body: Body | None = body
        self._size = size
        self._pos = 0
        self._reopen = reopen
        self._retry = retry
        self._read_errors = read_errors
        self._describe = describe
        self._count_read = count_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed stream")
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        chunk = self._retry(lambda attempt: self._read_some(attempt, want))
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        self._count_read(n)
        return n

    def _read_some(self, attempt: int, want: int) -> bytes:
        if self._body is None or attempt > 0:
            self._drop_body()
            self._body = self._reopen(self._pos)
        try:
            chunk = self._body.read(want)
        except self._read_errors as exc:
            self._drop_body()
            raise TransientError(f"reading the body at byte {self._pos}: {self._describe(exc)}") from exc
        if not chunk:
            self._drop_body()
            raise TransientError(f"body ended at byte {self._pos} of {self._size}")
        return chunk[:want]

    def _drop_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                pass
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
