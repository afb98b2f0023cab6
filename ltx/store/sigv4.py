"""AWS Signature Version 4 for S3 requests, in the standard library only.

The S3 store (s3.py) signs every request it sends itself with this instead of botocore:
importing botocore and building a client costs ~250 ms at the start of a process, which is most
of a cold open, and ~1 ms of CPU a request more. The payload of a GET is not hashed
(`UNSIGNED-PAYLOAD`, which S3 accepts for a body-less request); a PUT signs its body's SHA-256,
so a server never stores a body cut short. The signed headers are host, x-amz-content-sha256,
x-amz-date, with temporary credentials x-amz-security-token, and any the caller adds (a PUT's
x-amz-meta-*). Checked against botocore's S3SigV4Auth and AWS's published examples
(tests/ltx/store/test_sigv4.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

try:  # CPython's own SHA-256: hashlib's loads OpenSSL (~2-3 ms before a process's first request)
    from _sha256 import sha256
except ImportError:  # pragma: no cover - builds without it (3.12+ names it _sha2)
    from hashlib import sha256

ALGORITHM = "AWS4-HMAC-SHA256"
#: HMAC (RFC 2104) over SHA-256: block size and the key pads.
_HMAC_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Characters left as they are in a URI path (RFC 3986 unreserved, and '/').
_PATH_SAFE = "-_.~/"
_QUERY_SAFE = "-_.~"


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), as hmac.new(key, message, hashlib.sha256).digest() computes it."""
    if len(key) > _HMAC_BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_HMAC_BLOCK, b"\0")
    inner = sha256(key.translate(_IPAD) + message).digest()
    return sha256(key.translate(_OPAD) + inner).digest()


@dataclass(frozen=True)
class Credentials:
    """An access key, its secret and an optional session token (never printed)."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key[:4]}…)"


def encode_path(path: str) -> str:
    """The canonical (and sent) form of an object path: each byte outside the unreserved set
    percent-encoded, '/' kept."""
    return quote(path, safe=_PATH_SAFE)


def canonical_query(params: Mapping[str, str]) -> str:
    """Query parameters sorted by name, names and values percent-encoded."""
    return "&".join(f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}" for k, v in sorted(params.items()))


class Signer:
    """Signs requests for one region with the credentials `credentials` returns at each request
    (temporary ones may change); a signing key is derived once per day and secret."""

    def __init__(self, credentials: Credentials | Callable[[], Credentials], region: str) -> None:
        self._credentials = credentials if callable(credentials) else (lambda: credentials)
        self.region = region
        self._cached: tuple[str, str, bytes] = ("", "", b"")

    @property
    def credentials(self) -> Credentials:
        return self._credentials()

    def _signing_key(self, day: str, secret: str) -> bytes:
        cached_day, cached_secret, key = self._cached
        if day != cached_day or secret != cached_secret:
            key = hmac_sha256(b"AWS4" + secret.encode(), day.encode())
            for part in (self.region, SERVICE, "aws4_request"):
                key = hmac_sha256(key, part.encode())
            self._cached = (day, secret, key)
        return key

    def headers(self, method: str, host: str, path: str, query: str, now: float | None = None,
                signed: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers that authenticate `method host path?query` (path and query canonical);
        `signed` are further headers (lowercase names, e.g. x-amz-meta-*) signed and returned too;
        an `x-amz-content-sha256` among them (the body's hash) replaces UNSIGNED-PAYLOAD."""
        credentials = self._credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        day = stamp[:8]
        headers = {"host": host, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": stamp}
        if signed:
            headers.update(signed)
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        canonical = "\n".join([method, path, query, *(f"{n}:{headers[n].strip()}" for n in names), "",
                               ";".join(names), headers["x-amz-content-sha256"]])
        scope = f"{day}/{self.region}/{SERVICE}/aws4_request"
        to_sign = "\n".join([ALGORITHM, stamp, scope, sha256(canonical.encode()).hexdigest()])
        signature = hmac_sha256(self._signing_key(day, credentials.secret_key), to_sign.encode()).hex()
        headers["authorization"] = (f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers
