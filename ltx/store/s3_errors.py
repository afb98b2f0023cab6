"""How S3 answers map to store errors: which to retry, which are conflicts, which are fatal.

Reasons never carry credentials: they hold the operation, the S3 error code, the HTTP status and
the server's message, with any known credential value blanked by the caller's `scrub`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import botocore.exceptions
import urllib3.exceptions

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

#: Exceptions of the HTTP layer that a new attempt may cure (connection refused/reset, timeouts,
#: a body cut short).
TRANSIENT_BOTOCORE = (
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectionClosedError, timeouts
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)
CREDENTIAL_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
TLS_ERRORS = (botocore.exceptions.SSLError, urllib3.exceptions.SSLError)

_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")

Scrub = Callable[[str], str]


def describe_http_exception(exc: BaseException, scrub: Scrub) -> str:
    """A one-line, credential-free description of a connection-level failure."""
    text = scrub(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


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


def error_for_botocore(
    exc: Exception,
    url: str,
    key: str,
    op: str,
    *,
    bucket: str,
    scrub: Scrub,
    write: bool = False,
) -> Exception:
    """Map an exception raised by a boto3 call; unknown exceptions come back unchanged."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        return error_for_status(url, key, op, status, scrub(str(error.get("Code", ""))),
                                scrub(str(error.get("Message", ""))), bucket=bucket, write=write)
    if isinstance(exc, CREDENTIAL_ERRORS):
        return StoreAuthError(url, key, f"{op}: no usable AWS credentials ({type(exc).__name__}); set "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or configure an AWS profile")
    if isinstance(exc, TLS_ERRORS):
        return StoreError(url, key, f"{op}: TLS failure ({describe_http_exception(exc, scrub)})")
    if isinstance(exc, TRANSIENT_BOTOCORE):
        return TransientError(f"{op}: {describe_http_exception(exc, scrub)}")
    return exc


def error_for_urllib3(exc: Exception, url: str, key: str, op: str, *, scrub: Scrub) -> Exception:
    """Map an exception of the lean GET path (urllib3); unknown exceptions come back unchanged."""
    if isinstance(exc, urllib3.exceptions.SSLError):
        return StoreError(url, key, f"{op}: TLS failure ({describe_http_exception(exc, scrub)})")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TransientError(f"{op}: {describe_http_exception(exc, scrub)}")
    return exc


def parse_error_body(body: bytes) -> tuple[str, str]:
    """The `<Code>` and `<Message>` of an S3 XML error body ('' when absent)."""
    code = _ERROR_CODE.search(body)
    message = _ERROR_MESSAGE.search(body)
    return (
        code.group(1).decode("utf-8", "replace") if code else "",
        message.group(1).decode("utf-8", "replace") if message else "",
    )
