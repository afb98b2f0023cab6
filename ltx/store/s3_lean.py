"""A lean `s3://` store for readers (and the writer's commits): LIST, GET (whole, range, suffix),
HEAD and small PUTs signed with sigv4.py and sent over keep-alive http.client connections (one
per thread), without botocore.

Why: a cold reader's first query waits for the process to start talking to S3. Importing
botocore and building a session and client costs ~250 ms; this path imports nothing beyond the
standard library and answers the first LIST within a round trip of the open. Everything else
(streams, large puts, deletes) goes to a full S3Store built on first use and sharing the counters.

Used when the credentials are in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
optional AWS_SESSION_TOKEN), the region is known (URL, AWS_REGION or AWS_DEFAULT_REGION) and no
HTTP proxy is configured for the endpoint; otherwise `open_store(..., lean_reads=True)` gives the full S3Store.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

from ltx.store.base import (
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStore,
    StoreError,
    StoreStats,
    StoreUnavailableError,
)
from ltx.store.keys import check_key, check_prefix
from ltx.store.retry import RetryPolicy, TransientError, call_with_retries
from ltx.store.s3_answers import CONTENT_RANGE, error_for_status, parse_error_body, suffix_span, unsatisfied_size
from ltx.store.s3_metadata import METADATA_KEY_TIMESTAMP, format_timestamp, parse_timestamp
from ltx.store.sigv4 import Credentials, Signer, canonical_query, encode_path

#: Keys per ListObjectsV2 page (S3's maximum).
LIST_PAGE_SIZE = 1000
#: Objects up to this size, in memory, are PUT here; larger ones (and streams) by the full store.
LEAN_PUT_MAX_BYTES = 8 * 1024 * 1024
#: Metadata naming the put that created an object (the same as S3Store's, for the same check).
METADATA_KEY_PUT_ID = "ltxvfs-put-id"
DEFAULT_TIMEOUT_S = 60.0
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

T = TypeVar("T")


def env_credentials() -> Credentials | None:
    """Credentials from the environment, or None (the full store then resolves the usual chain)."""
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


def env_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class LeanS3Store(ObjectStore):
    """Reads of objects under `prefix/` in one bucket; writes through `full()`."""

    def __init__(self, bucket: str, prefix: str, *, credentials: Credentials, region: str,
                 endpoint: str | None, force_path_style: bool, skip_verify: bool,
                 full_factory: Callable[[], ObjectStore], retry_policy: RetryPolicy | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = endpoint
        self.stats = StoreStats()
        self._stats_lock = threading.Lock()
        self._signer = Signer(credentials, region)
        self._secret = credentials.secret_key
        self._policy = retry_policy or RetryPolicy()
        self._timeout = timeout
        self._full_factory = full_factory
        self._full: ObjectStore | None = None
        self._full_lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        if endpoint:
            parts = urlsplit(endpoint)
            scheme, host = parts.scheme, parts.netloc
        else:
            scheme, host = "https", f"s3.{region}.amazonaws.com"
        if force_path_style:
            self._host, self._base = host, f"/{bucket}/"
        else:
            self._host, self._base = f"{bucket}.{host}", "/"
        self._https = scheme == "https"
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context()
            if skip_verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    # -- plumbing ------------------------------------------------------------------------------

    def _count(self, field: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def _full_key(self, key: str) -> str:
        check_key(self.url, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, timeout=self._timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, timeout=self._timeout)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
            with self._stats_lock:
                self._conns.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _send(self, method: str, path: str, query: str, extra: dict[str, str], payload: bytes | None = None,
              signed: dict[str, str] | None = None, resend: bool = True) -> _Response:
        """One request on this thread's connection; a connection that the server had closed
        while idle gets one immediate second try on a new one (unless `resend` is off: a PUT
        counts every send as an attempt of its retry policy, as the full store does)."""
        for fresh in (False, True) if resend else (True,):
            reused = getattr(self._local, "conn", None) is not None and not fresh
            headers = self._signer.headers(method, self._host, path, query, signed=signed)
            headers.update(extra)
            target = path + ("?" + query if query else "")
            try:
                conn = self._connection()
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if reused and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
                    continue
                raise TransientError(f"{method}: {type(exc).__name__}: {self._scrub(str(exc))}") from exc
            if resp.will_close:
                self._drop_connection()
            return _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        raise AssertionError("unreachable")

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, key: str, op: str, resp: _Response, *, write: bool = False) -> Exception:
        code, message = parse_error_body(resp.body)
        return error_for_status(self.url, key, op, resp.status, self._scrub(code), self._scrub(message),
                                bucket=self.bucket, write=write)

    def _retrying(self, key: str, attempt: Callable[[int], T]) -> T:
        def give_up(reason: str, attempts: int) -> Exception:
            where = f" at {self.endpoint}" if self.endpoint else ""
            return StoreUnavailableError(self.url, key, f"store unavailable{where}: {reason} "
                                         f"(gave up after {attempts} attempts)")

        return call_with_retries(attempt, policy=self._policy, on_retry=lambda: self._count("retries"),
                                 give_up=give_up)

    def _get(self, key: str, op: str, byte_range: str | None, method: str = "GET") -> _Response:
        """One attempt: a signed GET (or HEAD) of `key`; answers other than 2xx/416 raise."""
        path = encode_path(self._base + self._full_key(key))
        self._count("heads" if method == "HEAD" else "gets")
        resp = self._send(method, path, "", {"range": byte_range} if byte_range else {})
        if resp.status in (200, 206, 416):
            if resp.status != 416:
                self._count("bytes_read", len(resp.body))
            return resp
        raise self._error(key, op, resp)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        self._full_key(key)

        def attempt(_: int) -> bytes:
            resp = self._get(key, "GET", None)
            if resp.status != 200:
                raise StoreError(self.url, key, f"GET: unexpected HTTP {resp.status}")
            return resp.body

        return self._retrying(key, attempt)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._full_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"{self.url}/{key}: negative range offset {offset} length {length}")
        if length == 0:
            return b""
        last = offset + length - 1

        def attempt(_: int) -> bytes:
            resp = self._get(key, "GET range", f"bytes={offset}-{last}")
            if resp.status == 416:
                size = unsatisfied_size(resp.headers.get("content-range"))
                raise ObjectRangeError(self.url, key, offset, length, size)
            if resp.status == 200:
                if len(resp.body) < offset + length:
                    raise ObjectRangeError(self.url, key, offset, length, len(resp.body))
                return resp.body[offset:offset + length]
            m = CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            if m is None or int(m.group(1)) != offset:
                raise StoreError(self.url, key, f"GET range: asked for bytes {offset}-{last}, server sent "
                                 f"{resp.headers.get('content-range')!r}")
            if int(m.group(2)) < last:
                total = m.group(3)
                raise ObjectRangeError(self.url, key, offset, length, int(total) if total != "*" else None)
            if len(resp.body) != length:
                raise TransientError(f"GET range: asked for {length} bytes at {offset}, got {len(resp.body)}")
            return resp.body

        return self._retrying(key, attempt)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        self._full_key(key)
        if length < 0:
            raise ValueError(f"{self.url}/{key}: negative suffix length {length}")
        if length == 0:
            return b"", self.head(key).size

        def attempt(_: int) -> tuple[bytes, int]:
            resp = self._get(key, "GET suffix", f"bytes=-{length}")
            if resp.status == 416:
                size = unsatisfied_size(resp.headers.get("content-range"))
                if size == 0:
                    return b"", 0
                raise ObjectRangeError(self.url, key, 0, length, size)
            if resp.status == 200:
                return resp.body[-length:], len(resp.body)
            start, end, total = suffix_span(self.url, key, length, resp.headers.get("content-range"))
            if len(resp.body) != end - start + 1:
                raise TransientError(f"GET suffix: expected {end - start + 1} bytes, got {len(resp.body)}")
            return resp.body, total

        return self._retrying(key, attempt)

    def head(self, key: str) -> ObjectInfo:
        self._full_key(key)

        def attempt(_: int) -> ObjectInfo:
            resp = self._get(key, "HEAD", None, method="HEAD")
            raw = resp.headers.get("x-amz-meta-" + METADATA_KEY_TIMESTAMP)
            try:
                stamp = parse_timestamp(raw) if raw is not None else None
            except ValueError as exc:
                raise StoreError(self.url, key, f"bad {METADATA_KEY_TIMESTAMP} metadata {raw!r}") from exc
            modified = _http_date(resp.headers.get("last-modified", ""))
            return ObjectInfo(key=key, size=int(resp.headers.get("content-length", "0")), modified=modified,
                              timestamp_ms=stamp)

        return self._retrying(key, attempt)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        check_prefix(self.url, prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        params = {"list-type": "2", "prefix": root + prefix, "max-keys": str(LIST_PAGE_SIZE)}
        if start_after:
            params["start-after"] = root + start_after
        previous = root + start_after
        path = encode_path(f"/{self.bucket}" if self._base != "/" else "/")
        while True:
            query = canonical_query(params)

            def attempt(_: int, query: str = query) -> _Response:
                self._count("lists")
                resp = self._send("GET", path, query, {})
                if resp.status != 200:
                    raise self._error(prefix, "LIST", resp)
                return resp

            resp = self._retrying(prefix, attempt)
            try:
                tree = ET.fromstring(resp.body)
            except ET.ParseError as exc:
                raise StoreError(self.url, prefix, f"LIST: unreadable answer ({exc})") from exc
            for item in tree.iter(_S3_NS + "Contents"):
                full = item.findtext(_S3_NS + "Key") or ""
                if not full.startswith(root + prefix):
                    raise StoreError(self.url, prefix, f"LIST returned {full!r}, outside the prefix")
                if full.encode() <= previous.encode():
                    raise StoreError(self.url, prefix, f"LIST returned {full!r} after {previous!r}: the server "
                                     "does not list in byte order")
                previous = full
                modified = datetime.fromisoformat(item.findtext(_S3_NS + "LastModified") or "").astimezone(UTC)
                yield ObjectInfo(key=full[len(root):], size=int(item.findtext(_S3_NS + "Size") or 0),
                                 modified=modified)
            if (tree.findtext(_S3_NS + "IsTruncated") or "").lower() != "true":
                return
            token = tree.findtext(_S3_NS + "NextContinuationToken")
            if not token:
                raise StoreError(self.url, prefix, "LIST: truncated page without a continuation token")
            params.pop("start-after", None)
            params["continuation-token"] = token

    # -- everything else goes to the full store --------------------------------------------------

    def full(self) -> ObjectStore:
        """The full S3Store (botocore), built on first use; its requests count here too."""
        with self._full_lock:
            if self._full is None:
                self._full = self._full_factory()
                self._full.stats = self.stats
            return self._full

    def open(self, key: str) -> BinaryIO:
        return self.full().open(key)

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        """Small objects in memory (a writer's commit, typically) go out as one signed PUT from
        here (a third of botocore's CPU); streams and large objects through the full store. Same
        contract as S3Store.put: `If-None-Match: *` with `if_absent`, a taken key is
        ObjectExistsError, and a retried create that finds the key checks whether its own earlier
        attempt (the answer lost) made it."""
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) > LEAN_PUT_MAX_BYTES:
            self.full().put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)
            return
        body = bytes(data)
        path, extra, signed, put_id = self._put_request(key, body, if_absent=if_absent, timestamp_ms=timestamp_ms)

        def attempt(_: int) -> None:
            self._count("puts")
            self._count("bytes_written", len(body))
            resp = self._send("PUT", path, "", extra, payload=body, signed=signed, resend=False)
            if 200 <= resp.status < 300:
                return
            error = self._error(key, "PUT", resp, write=True)
            # Any conflict is checked, not only one after a retry (one HEAD, only on a conflict):
            # an own create that landed is never taken for another writer's.
            if isinstance(error, ObjectExistsError) and if_absent and self._is_own_put(key, put_id):
                return
            raise error

        self._retrying(key, attempt)

    def _put_request(self, key: str, body: bytes, *, if_absent: bool,
                     timestamp_ms: int | None) -> tuple[str, dict[str, str], dict[str, str], str]:
        """Path, plain headers, headers to sign, and put id of a PUT of `body` to `key`.

        The body's SHA-256 is signed and its MD5 sent: the server refuses a body that does not
        match, so a writer killed halfway through sending one leaves no object. (SeaweedFS stores
        a body cut short as a short object unless a checksum such as Content-MD5 says otherwise.)"""
        path = encode_path(self._base + self._full_key(key))
        signed: dict[str, str] = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
        if timestamp_ms is not None:
            signed["x-amz-meta-" + METADATA_KEY_TIMESTAMP] = format_timestamp(timestamp_ms)
        put_id = uuid.uuid4().hex if if_absent else ""
        if put_id:
            signed["x-amz-meta-" + METADATA_KEY_PUT_ID] = put_id
        extra = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        if if_absent:
            extra["if-none-match"] = "*"
        return path, extra, signed, put_id

    def _is_own_put(self, key: str, put_id: str) -> bool:
        """After a failed precondition: did an earlier attempt of ours create the key? The check
        retries like any request; if it cannot be answered the store error is raised (the outcome
        is unknown), never a conflict, which would make a create that landed look lost."""
        try:
            resp = self._retrying(key, lambda _: self._get(key, "HEAD", None, method="HEAD"))
        except ObjectNotFoundError:
            return False
        return resp.headers.get("x-amz-meta-" + METADATA_KEY_PUT_ID) == put_id

    def delete(self, key: str) -> None:
        self.full().delete(key)

    def close(self) -> None:
        with self._stats_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        with self._full_lock:
            if self._full is not None:
                self._full.close()


def _http_date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S %Z").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(time.time(), UTC)


def lean_store(bucket: str, prefix: str, *, endpoint: str | None, region: str | None, force_path_style: bool,
               skip_verify: bool, full_factory: Callable[[], ObjectStore]) -> ObjectStore | None:
    """A LeanS3Store when credentials and region are in the environment or URL, else None."""
    credentials = env_credentials()
    region = region or env_region()
    if credentials is None or region is None:
        return None
    if any(name.lower().endswith("_proxy") for name in os.environ):
        from urllib.request import getproxies_environment, proxy_bypass  # ~20 ms: only when needed

        parts = urlsplit(endpoint or f"https://s3.{region}.amazonaws.com")
        proxies = getproxies_environment()
        if (proxies.get(parts.scheme) or proxies.get("all")) and not proxy_bypass(parts.hostname or ""):
            return None  # an HTTP proxy is configured: botocore honours it, this path does not
    return LeanS3Store(bucket, prefix, credentials=credentials, region=region, endpoint=endpoint,
                       force_path_style=force_path_style, skip_verify=skip_verify, full_factory=full_factory)


__all__ = ["LeanS3Store", "env_credentials", "env_region", "lean_store"]
