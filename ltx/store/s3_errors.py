"""How boto3's exceptions map to store errors, for the multipart uploads that go through boto3
(S3 error answers themselves are mapped in s3_answers.py).

Reasons never carry credentials: they hold the operation, the S3 error code, the HTTP status and
the server's message, with any known credential value blanked by the caller's `scrub`.
"""

from __future__ import annotations

from collections.abc import Callable

import botocore.exceptions

from ltx.store.base import StoreAuthError, StoreError
from ltx.store.retry import TransientError
from ltx.store.s3_answers import error_for_status

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
TLS_ERRORS = (botocore.exceptions.SSLError,)

Scrub = Callable[[str], str]


def describe_http_exception(exc: BaseException, scrub: Scrub) -> str:
    """A one-line, credential-free description of a connection-level failure."""
    text = scrub(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


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
