"""The `s3://` store: keys live under `prefix/` in one bucket.

Every request but a multipart upload's is signed here (sigv4.py) and sent over one transport
(s3_http.py: keep-alive connections, directly or through the environment's HTTP proxy), and
every answer is checked here, once: a range GET returns exactly the asked-for bytes or an error,
a LIST is in byte order and under the prefix. Importing botocore costs ~250 ms and a boto3
request ~1.6 ms of CPU against ~0.4 ms here, so botocore is loaded only where it earns its place:
the credential chain when the environment holds no keys (s3_credentials.py) and multipart
uploads of large objects (s3_multipart.py).

Creates-if-absent use `If-None-Match: *` and carry a put id in their metadata: when a create
meets a taken key, one HEAD tells whether an earlier attempt of the same put (its answer lost)
made it, which is then its success, never a conflict. Retries are ours (retry.py): they count
into `stats.retries` and end in StoreUnavailableError.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from ltx.store.base import (
    InvalidURLError,
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
from ltx.store.s3_credentials import ca_bundle, resolve_credentials, resolve_region
from ltx.store.s3_http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_IDLE_CONNECTIONS,
    DEFAULT_READ_TIMEOUT_S,
    Answer,
    ProxyConfigError,
    TLSError,
    Transport,
    connection_errors,
    proxy_for,
)
from ltx.store.s3_metadata import METADATA_KEY_TIMESTAMP, format_timestamp, parse_timestamp
from ltx.store.s3_stream import ResumableStream
from ltx.store.sigv4 import Signer, canonical_query, encode_path

if TYPE_CHECKING:
    from ltx.store.s3_http import Connection

MiB = 1 << 20
#: Objects larger than this are uploaded in parts.
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
#: Size of each uploaded part (S3's minimum is 5 MiB for all but the last).
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
#: Keys per ListObjectsV2 page (S3's maximum; Litestream's MaxKeys).
DEFAULT_LIST_PAGE_SIZE = 1000
#: Buffer size of the streams `open` returns.
OPEN_BUFFER_SIZE = 1 * MiB
#: Metadata recording which put created an object, so a create that meets a taken key can tell
#: its own earlier (answer-lost) success from another writer's object.
METADATA_KEY_PUT_ID = "ltxvfs-put-id"
#: Credential values shorter than this are not blanked from messages (they would blank ordinary
#: words; real access keys and secrets are far longer).
MIN_SCRUBBED_LENGTH = 8
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

#: S3 lists in UTF-8 byte order; a server that lists directory by directory (SeaweedFS) differs
#: when a key has a character below '/' (space, '!'…'.') where another key has a '/'. Such a
#: listing is refused rather than passed on as key order (SeaweedFS's StartAfter follows its own
#: order, so it can also skip such keys; LTX level directories never hold such pairs).
_OUT_OF_ORDER = ("LIST returned {0!r} after {1!r}: the server does not list in byte order (keys that "
                 "differ by a character below '/' where another has a '/' cannot be listed here)")

T = TypeVar("T")


class S3Store(ObjectStore):
    """Objects under `prefix/` in an S3 bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        force_path_style: bool = False,
        skip_verify: bool = False,
        retry_policy: RetryPolicy | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
        max_pool_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout: float = DEFAULT_READ_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE}")
        if multipart_threshold < part_size:
            raise ValueError("multipart_threshold must be at least part_size")
        if not 1 <= list_page_size <= 1000:
            raise ValueError("list_page_size must be within 1..1000")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = endpoint
        self.stats = StoreStats()
        self._stats_lock = threading.Lock()
        self._policy = retry_policy or RetryPolicy()
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._list_page_size = list_page_size
        self._sleep = sleep
        self._force_path_style = force_path_style
        self._skip_verify = skip_verify
        self._timeouts = (connect_timeout, read_timeout)

        self.region = resolve_region(region, self.url)
        self._credentials, self._env_credentials = resolve_credentials(self.url)
        self._signer = Signer(self._credentials, self.region)
        base = endpoint or f"https://s3.{self.region}.amazonaws.com"
        parts = urlsplit(base)
        host = parts.netloc
        if force_path_style:
            self._host, self._base = host, f"/{bucket}/"
        else:
            self._host, self._base = f"{bucket}.{host}", "/"
        try:
            proxy = proxy_for(f"{parts.scheme}://{self._host}/")
        except ProxyConfigError as exc:
            raise InvalidURLError(self.url, str(exc)) from exc
        self._transport = Transport(self._host, https=parts.scheme == "https", proxy=proxy,
                                    verify=not skip_verify, ca_file=ca_bundle(),
                                    connect_timeout=connect_timeout, read_timeout=read_timeout,
                                    max_idle=max_pool_connections)
        self._multipart: Any = None
        self._multipart_lock = threading.Lock()

    @property
    def proxied(self) -> bool:
        """Whether requests go through an HTTP proxy the environment names."""
        return self._transport.proxy is not None

    # -- plumbing ------------------------------------------------------------------------------

    def _count(self, field: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def scrub(self, text: str) -> str:
        """`text` with any credential value blanked (for messages from servers and libraries)."""
        current = self._credentials()
        for secret in (current.secret_key, current.token, current.access_key):
            if secret and len(secret) >= MIN_SCRUBBED_LENGTH:
                text = text.replace(secret, "***")
        return text

    def full_key(self, key: str) -> str:
        """The bucket key of store key `key` (checked)."""
        check_key(self.url, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _path(self, key: str) -> str:
        return encode_path(self._base + self.full_key(key))

    def retrying(self, key: str, attempt: Callable[[int], T]) -> T:
        """`attempt(n)` under the store's retry policy (TransientError is retried)."""
        def give_up(reason: str, attempts: int) -> Exception:
            where = f" at {self.endpoint}" if self.endpoint else ""
            return StoreUnavailableError(self.url, key, f"store unavailable{where}: {self.scrub(reason)} "
                                         f"(gave up after {attempts} attempts)")

        return call_with_retries(attempt, policy=self._policy, on_retry=lambda: self._count("retries"),
                                 give_up=give_up, sleep=self._sleep)

    def _send(self, key: str, op: str, method: str, path: str, query: str = "", *,
              extra: dict[str, str] | None = None, signed: dict[str, str] | None = None,
              body: bytes | None = None, resend: bool = True) -> Answer:
        headers = self._signer.headers(method, self._host, path, query, signed=signed)
        if extra:
            headers.update(extra)
        try:
            return self._transport.request(method, path, query, headers, body, resend=resend)
        except TLSError as exc:
            raise StoreError(self.url, key, self.scrub(str(exc))) from exc

    def _error(self, key: str, op: str, answer: Answer, *, write: bool = False) -> Exception:
        code, message = parse_error_body(answer.body)
        return error_for_status(self.url, key, op, answer.status, self.scrub(code), self.scrub(message),
                                bucket=self.bucket, write=write)

    # -- reads ---------------------------------------------------------------------------------

    def _get_once(self, key: str, op: str, byte_range: str | None, method: str = "GET") -> Answer:
        """One attempt: a GET (or HEAD) of `key`; answers other than 200/206/416 raise."""
        self._count("heads" if method == "HEAD" else "gets")
        answer = self._send(key, op, method, self._path(key), extra={"range": byte_range} if byte_range else None)
        if answer.status in (200, 206, 416):
            if answer.status != 416:
                self._count("bytes_read", len(answer.body))
            return answer
        raise self._error(key, op, answer)

    def get(self, key: str) -> bytes:
        self.full_key(key)

        def attempt(_: int) -> bytes:
            answer = self._get_once(key, "GET", None)
            if answer.status != 200:
                raise StoreError(self.url, key, f"GET: unexpected HTTP {answer.status}")
            declared = answer.headers.get("content-length")
            if declared is not None and int(declared) != len(answer.body):
                raise TransientError(f"GET: body has {len(answer.body)} bytes, Content-Length {declared}")
            return answer.body

        return self.retrying(key, attempt)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self.full_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"{self.url}/{key}: negative range offset {offset} length {length}")
        if length == 0:
            return b""
        last = offset + length - 1

        def attempt(_: int) -> bytes:
            answer = self._get_once(key, "GET range", f"bytes={offset}-{last}")
            return self._check_range(key, offset, length, answer)

        return self.retrying(key, attempt)

    def _check_range(self, key: str, offset: int, length: int, answer: Answer) -> bytes:
        """Exactly bytes `offset`..`offset + length - 1` from an answer to their range GET."""
        last = offset + length - 1
        data = answer.body
        if answer.status == 416:
            raise ObjectRangeError(self.url, key, offset, length,
                                   unsatisfied_size(answer.headers.get("content-range")))
        if answer.status == 200:  # the server ignored Range: take the slice from the whole object
            if len(data) < offset + length:
                raise ObjectRangeError(self.url, key, offset, length, len(data))
            return data[offset:offset + length]
        content_range = answer.headers.get("content-range")
        match = CONTENT_RANGE.match(content_range or "")
        if match is None:
            raise StoreError(self.url, key, f"GET range: answer 206 with a missing or malformed "
                             f"Content-Range {content_range!r}")
        start, end, total = int(match.group(1)), int(match.group(2)), match.group(3)
        size = int(total) if total != "*" else None
        if start != offset or end > last:
            raise StoreError(self.url, key, f"GET range: asked for bytes {offset}-{last}, "
                             f"server sent {content_range!r}")
        if end < last:
            if size is not None and end == size - 1:
                raise ObjectRangeError(self.url, key, offset, length, size)
            raise StoreError(self.url, key, f"GET range: asked for bytes {offset}-{last}, "
                             f"server sent {content_range!r}")
        if len(data) != length:
            raise TransientError(f"GET range: asked for {length} bytes at {offset}, got {len(data)}")
        return data

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        self.full_key(key)
        if length < 0:
            raise ValueError(f"{self.url}/{key}: negative suffix length {length}")
        if length == 0:
            return b"", self.head(key).size

        def attempt(_: int) -> tuple[bytes, int]:
            answer = self._get_once(key, "GET suffix", f"bytes=-{length}")
            if answer.status == 416:  # only an empty object cannot satisfy a suffix range
                size = unsatisfied_size(answer.headers.get("content-range"))
                if size == 0:
                    return b"", 0
                raise ObjectRangeError(self.url, key, 0, length, size)
            if answer.status == 200:
                return answer.body[-length:], len(answer.body)
            start, end, total = suffix_span(self.url, key, length, answer.headers.get("content-range"))
            if len(answer.body) != end - start + 1:
                raise TransientError(f"GET suffix: expected {end - start + 1} bytes, got {len(answer.body)}")
            return answer.body, total

        return self.retrying(key, attempt)

    def head(self, key: str) -> ObjectInfo:
        self.full_key(key)
        answer = self.retrying(key, lambda _: self._get_once(key, "HEAD", None, method="HEAD"))
        raw = answer.headers.get("x-amz-meta-" + METADATA_KEY_TIMESTAMP)
        try:
            stamp = parse_timestamp(raw) if raw is not None else None
        except ValueError as exc:
            raise StoreError(self.url, key, f"bad {METADATA_KEY_TIMESTAMP} metadata {raw!r}") from exc
        return ObjectInfo(key=key, size=int(answer.headers.get("content-length", "0")),
                          modified=_http_date(answer.headers.get("last-modified", "")), timestamp_ms=stamp)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        first: dict[str, Any] = {}

        def reopen(offset: int) -> _ClosingBody:
            """One GET attempt from `offset`, on a connection of its own (the stream's)."""
            self._count("gets")
            extra = {"range": f"bytes={offset}-"} if offset else {}
            if first.get("etag"):
                extra["if-match"] = first["etag"]
            headers = {**self._signer.headers("GET", self._host, path, ""), **extra}
            try:
                resp, conn = self._transport.open("GET", path, "", headers)
            except TLSError as exc:
                raise StoreError(self.url, key, self.scrub(str(exc))) from exc
            if resp.status not in (200, 206):
                answer = Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
                conn.close()
                raise self._error(key, "GET stream", answer)
            if not first:
                first.update(size=int(resp.getheader("content-length") or 0), etag=resp.getheader("etag"))
            return _ClosingBody(resp, conn)

        body = self.retrying(key, lambda _: reopen(0))
        stream = ResumableStream(
            body, first["size"],
            reopen=reopen,
            retry=lambda attempt: self.retrying(key, attempt),
            read_errors=connection_errors(),
            describe=lambda exc: self.scrub(f"{type(exc).__name__}: {exc}"),
            count_read=lambda n: self._count("bytes_read", n),
        )
        return io.BufferedReader(stream, buffer_size=OPEN_BUFFER_SIZE)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        check_prefix(self.url, prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        params = {"list-type": "2", "prefix": root + prefix, "max-keys": str(self._list_page_size)}
        if start_after:
            params["start-after"] = root + start_after
        previous = root + start_after
        path = encode_path(self._base.rstrip("/") or "/")
        while True:
            query = canonical_query(params)

            def attempt(_: int, query: str = query) -> Answer:
                self._count("lists")
                answer = self._send(prefix, "LIST", "GET", path, query)
                if answer.status != 200:
                    raise self._error(prefix, "LIST", answer)
                return answer

            answer = self.retrying(prefix, attempt)
            import xml.etree.ElementTree as ET  # after the answer: a cold open's first LIST is not delayed

            try:
                tree = ET.fromstring(answer.body)
            except ET.ParseError as exc:
                raise StoreError(self.url, prefix, f"LIST: unreadable answer ({exc})") from exc
            for item in tree.iter(_S3_NS + "Contents"):
                full = item.findtext(_S3_NS + "Key") or ""
                if not full.startswith(root + prefix):
                    raise StoreError(self.url, prefix, f"LIST returned {full!r}, outside the prefix")
                if full.encode() <= previous.encode():
                    raise StoreError(self.url, prefix, _OUT_OF_ORDER.format(full, previous))
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

    # -- writes --------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | BinaryIO, *, if_absent: bool = False,
            timestamp_ms: int | None = None) -> None:
        """Objects up to the multipart threshold go out as one signed PUT (its body's SHA-256
        signed and MD5 sent, so a body cut short is never stored); larger ones and long streams
        as a multipart upload."""
        self.full_key(key)
        metadata: dict[str, str] = {}
        if timestamp_ms is not None:
            metadata[METADATA_KEY_TIMESTAMP] = format_timestamp(timestamp_ms)
        if if_absent:
            import uuid  # writers only

            metadata[METADATA_KEY_PUT_ID] = uuid.uuid4().hex
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) <= self._multipart_threshold:
                self._put_single(key, payload, metadata, if_absent)
            else:
                step = self._part_size
                self._put_multipart(key, (payload[i:i + step] for i in range(0, len(payload), step)),
                                    metadata, if_absent)
            return
        if _seekable(data):
            start = data.tell()
            size = data.seek(0, 2) - start
            data.seek(start)
            if size <= self._multipart_threshold:
                self._put_single(key, _read_full(data, size), metadata, if_absent)
            else:
                self._put_multipart(key, _chunks(data, self._part_size), metadata, if_absent)
            return
        first = _read_full(data, self._part_size)
        if len(first) < self._part_size:
            self._put_single(key, first, metadata, if_absent)
            return
        self._put_multipart(key, _chain_first(first, _chunks(data, self._part_size)), metadata, if_absent)

    def _put_single(self, key: str, body: bytes, metadata: dict[str, str], if_absent: bool) -> None:
        path, extra, signed = self.put_request(key, body, metadata, if_absent=if_absent)

        def attempt(_: int) -> None:
            self._count("puts")
            self._count("bytes_written", len(body))
            answer = self._send(key, "PUT", "PUT", path, extra=extra, signed=signed, body=body, resend=False)
            if 200 <= answer.status < 300:
                return
            error = self._error(key, "PUT", answer, write=True)
            if isinstance(error, ObjectExistsError) and self.is_own_put(key, metadata):
                return
            raise error

        self.retrying(key, attempt)

    def put_request(self, key: str, body: bytes, metadata: dict[str, str], *,
                    if_absent: bool) -> tuple[str, dict[str, str], dict[str, str]]:
        """Path, plain headers and headers to sign of a single PUT of `body` to `key`.

        The body's SHA-256 is signed and its MD5 sent: the server refuses a body that does not
        match, so a writer killed halfway through sending one leaves no object. (SeaweedFS stores
        a body cut short as a short object unless a checksum such as Content-MD5 says otherwise.)"""
        import base64  # writers only
        import hashlib

        signed = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
        signed.update({"x-amz-meta-" + name: value for name, value in metadata.items()})
        extra = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        if if_absent:
            extra["if-none-match"] = "*"
        return self._path(key), extra, signed

    def sign(self, method: str, path: str, signed: dict[str, str] | None = None) -> dict[str, str]:
        """The headers that authenticate a request (for tests that send one by hand)."""
        return self._signer.headers(method, self._host, path, "", signed=signed)

    @property
    def host(self) -> str:
        """The Host header requests carry (bucket host, or the endpoint's with path style)."""
        return self._host

    def is_own_put(self, key: str, metadata: dict[str, str]) -> bool:
        """After a create met a taken key: did an earlier attempt of this put (its answer lost)
        create it? Asked on every such conflict, whether or not the put was retried, so a create
        that landed is never taken for another writer's. The HEAD retries like any request; if
        it cannot be answered the store error is raised (the outcome is unknown), never a
        conflict, which would make a create that landed look lost."""
        put_id = metadata.get(METADATA_KEY_PUT_ID)
        if put_id is None:
            return False
        try:
            answer = self.retrying(key, lambda _: self._get_once(key, "HEAD", None, method="HEAD"))
        except ObjectNotFoundError:
            return False
        return answer.headers.get("x-amz-meta-" + METADATA_KEY_PUT_ID) == put_id

    def _put_multipart(self, key: str, parts: Iterator[bytes], metadata: dict[str, str], if_absent: bool) -> None:
        with self._multipart_lock:
            if self._multipart is None:
                from ltx.store.s3_multipart import MultipartUploader  # boto3: only for large objects

                connect, read = self._timeouts
                self._multipart = MultipartUploader(
                    self, endpoint=self.endpoint, force_path_style=self._force_path_style,
                    skip_verify=self._skip_verify, connect_timeout=connect, read_timeout=read,
                    credentials=self._credentials() if self._env_credentials else None)
        self._multipart.upload(key, parts, metadata, if_absent)

    def count(self, field: str, n: int = 1) -> None:
        """Count `n` in `stats.field` (the multipart uploader counts its requests here)."""
        self._count(field, n)

    def delete(self, key: str) -> None:
        path = self._path(key)

        def attempt(_: int) -> None:
            self._count("deletes")
            answer = self._send(key, "DELETE", "DELETE", path)
            if 200 <= answer.status < 300:
                return
            raise self._error(key, "DELETE", answer)

        try:
            self.retrying(key, attempt)
        except ObjectNotFoundError:
            return

    def close(self) -> None:
        self._transport.close()
        if self._multipart is not None:
            self._multipart.close()


class _ClosingBody:
    """A streamed answer whose connection closes with it."""

    def __init__(self, resp: Any, conn: Connection) -> None:
        self._resp = resp
        self._conn = conn

    def read(self, amt: int | None = None) -> bytes:
        return self._resp.read(amt)

    def close(self) -> None:
        self._resp.close()
        self._conn.close()


def _http_date(text: str) -> datetime:
    import email.utils  # HEAD only: a reader's open never needs it

    try:
        return email.utils.parsedate_to_datetime(text).astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read up to `size` bytes, looping over short reads; fewer only at end of stream."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        chunk = _read_full(stream, size)
        if not chunk:
            return
        yield chunk


def _chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
