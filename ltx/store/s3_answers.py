"""How S3's HTTP answers read, without botocore: error answers mapped to store errors (which to
retry, which are conflicts, which are fatal) and the Content-Range checks of range and suffix GETs.

Used by the S3 store (s3.py) for its own requests and, through s3_errors.py, for the multipart
uploads boto3 sends; it imports no botocore. Reasons never carry credentials: the caller scrubs code and message.
"""

from __future__ import annotations

import re

from ltx.store.base import (
    BucketNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreAuthError,
    StoreError,
)
from ltx.store.retry import TransientError

#: Error codes worth retrying (throttling and transient server trouble), whatever the status.
RETRYABLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException", "BandwidthLimitExceeded",
    "RequestThrottledException", "InternalError", "ServiceUnavailable", "RequestTimeout",
    "PriorRequestNotComplete", "OperationAborted",
})
#: Error codes meaning the credentials were refused.
AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
    "InvalidClientTokenId", "UnrecognizedClientException", "RequestTimeTooSkewed",
})
#: Error codes meaning the object (not the bucket) is missing.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
#: Error codes of a failed precondition: on a create-if-absent, the key is taken.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})

#: `Content-Range` of a 206 answer: first byte, last byte, total size (or `*`).
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")


def error_for_status(
    url: str,
    key: str,
    op: str,
    status: int,
    code: str,
    message: str,
    *,
    bucket: str,
    write: bool = False,
) -> Exception:
    """The exception for an S3 error answer: a store error, or TransientError when worth retrying.

    Precondition failures (412, ConditionalRequestConflict) are conflicts only for writes
    (`write=True`); on a read they are plain store errors.
    """
    code = code or str(status)
    detail = f"{op}: {code} (HTTP {status})" + (f": {message}" if message else "")
    if code == "NoSuchBucket":
        return BucketNotFoundError(url, key, f"bucket {bucket!r} does not exist ({detail})")
    if code in PRECONDITION_CODES or status == 412:
        if write:
            return ObjectExistsError(url, key, f"object already exists ({detail})")
        return StoreError(url, key, f"precondition failed ({detail})")
    if code in NOT_FOUND_CODES or status == 404:
        return ObjectNotFoundError(url, key, f"object not found ({detail})")
    if code in AUTH_CODES or status in (401, 403):
        return StoreAuthError(url, key, f"access refused ({detail}); check the AWS credentials "
                              "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile)")
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        return TransientError(detail)
    return StoreError(url, key, detail)


def parse_error_body(body: bytes) -> tuple[str, str]:
    """The `<Code>` and `<Message>` of an S3 XML error body ('' when absent)."""
    code = _ERROR_CODE.search(body)
    message = _ERROR_MESSAGE.search(body)
    return (
        code.group(1).decode("utf-8", "replace") if code else "",
        message.group(1).decode("utf-8", "replace") if message else "",
    )


def unsatisfied_size(content_range: str | None) -> int | None:
    """The object size a 416 answer's `Content-Range: bytes */N` states, or None."""
    match = _UNSATISFIED_RANGE.match(content_range or "")
    return int(match.group(1)) if match else None


def suffix_span(url: str, key: str, length: int, content_range: str | None) -> tuple[int, int, int]:
    """First byte, last byte and object size of a 206 answer to `Range: bytes=-length`; a
    Content-Range that is missing, malformed or not the asked-for suffix is a StoreError."""
    match = CONTENT_RANGE.match(content_range or "")
    if match is None or match.group(3) == "*":
        raise StoreError(url, key, f"GET suffix: missing or malformed Content-Range {content_range!r}")
    start, end, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if end != total - 1 or end - start + 1 != min(length, total):
        raise StoreError(url, key, f"GET suffix: asked for the last {length} bytes, "
                         f"server sent {content_range!r}")
    return start, end, total
