"""The `s3://` store (boto3): keys live under `prefix/` in one bucket.

Reads go through the lean signed-GET path (s3_signed) and check that exactly the asked-for bytes
came back. Creates-if-absent use `If-None-Match: *` (on CompleteMultipartUpload for large
objects); a taken key is ObjectExistsError, never retried. botocore's own retries are off: ours
(retry.py) count into `stats.retries` and end in StoreUnavailableError.
"""

from __future__ import annotations

import builtins
import functools
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import botocore.config
import botocore.exceptions
import urllib3

from ltx.store import s3_session
from ltx.store.base import (
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStore,
    StoreAuthError,
    StoreError,
    StoreStats,
    StoreUnavailableError,
)
from ltx.store.keys import check_key, check_prefix
from ltx.store.retry import RetryPolicy, TransientError, call_with_retries
from ltx.store.s3_answers import (
    CONTENT_RANGE,
    error_for_status,
    parse_error_body,
    suffix_span,
    unsatisfied_size,
)
from ltx.store.s3_errors import (
    TRANSIENT_BOTOCORE,
    describe_http_exception,
    error_for_botocore,
    error_for_urllib3,
)
from ltx.store.s3_metadata import METADATA_KEY_TIMESTAMP, format_timestamp, parse_timestamp
from ltx.store.s3_signed import SignedGetter
from ltx.store.s3_stream import ResumableStream

MiB = 1 << 20
#: Objects larger than this are uploaded in parts.
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
#: Size of each uploaded part (S3's minimum is 5 MiB for all but the last).
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB
#: Keys per ListObjectsV2 page (S3's maximum; Litestream's MaxKeys).
DEFAULT_LIST_PAGE_SIZE = 1000
#: HTTP connections kept per pool: enough for the VFS's and hydrator's parallel GETs.
DEFAULT_MAX_POOL_CONNECTIONS = 64
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Longest silence while waiting for response bytes before the attempt counts as failed.
DEFAULT_READ_TIMEOUT_S = 60.0
#: Region when neither the URL nor the AWS configuration names one (Litestream's default).
DEFAULT_REGION = "us-east-1"
#: Buffer size of the streams `open` returns.
OPEN_BUFFER_SIZE = 1 * MiB
#: Metadata recording which put created an object, so a retried create-if-absent can tell its
#: own earlier (answer-lost) success from another writer's object.
METADATA_KEY_PUT_ID = "ltxvfs-put-id"
#: Credential values shorter than this are not blanked from messages (they would blank ordinary
#: words; real access keys and secrets are far longer).
MIN_SCRUBBED_LENGTH = 8

#: S3 lists in UTF-8 byte order; a server that lists directory by directory (SeaweedFS) differs
#: when a key has a character below '/' (space, '!'…'.') where another key has a '/'. Such a
#: listing is refused rather than passed on as key order (SeaweedFS's StartAfter follows its own
#: order, so it can also skip such keys; LTX level directories never hold such pairs).
_OUT_OF_ORDER = ("LIST returned {0!r} after {1!r}: the server does not list in byte order (keys that "
                 "differ by a character below '/' where another has a '/' cannot be listed here)")

T = TypeVar("T")


def _proxy_applies(url: str) -> bool:
    """True if the environment routes `url` through an HTTP proxy (boto3 honours that; the lean
    GET path does not, so it is then left unused)."""
    parts = urlsplit(url)
    proxies = getproxies_environment()
    if not proxies.get(parts.scheme) and not proxies.get("all"):
        return False
    return not proxy_bypass(parts.hostname or "")


class S3Store(ObjectStore):
    """Objects under `prefix/` in an S3 bucket; credentials from boto3's default chain only."""

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
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
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
        self._retry_policy = retry_policy or RetryPolicy()
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._list_page_size = list_page_size
        self._sleep = sleep

        core, configured_region, credentials = s3_session.resolve(region)
        self.region = configured_region or DEFAULT_REGION
        if credentials is None:
            raise StoreAuthError(self.url, "", "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY or configure an AWS profile")
        self._credentials = credentials
        config = botocore.config.Config(
            region_name=self.region,
            signature_version="s3v4",
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            s3={"addressing_style": "path" if force_path_style else "auto"},
        )
        verify: bool | str
        if skip_verify:
            verify = False
        else:
            verify = core.get_config_variable("ca_bundle") or True
        self._client: Any = s3_session.create_client(core, region_name=self.region, endpoint_url=endpoint,
                                                      config=config, verify=verify)
        self._signed: SignedGetter | None = None
        if not _proxy_applies(self._client.meta.endpoint_url):
            self._signed = SignedGetter(
                self._client, bucket, credentials, self.region,
                pool_size=max_pool_connections, connect_timeout=connect_timeout,
                read_timeout=read_timeout, verify=verify,
            )

    # -- plumbing ------------------------------------------------------------------------------

    def _count(self, field: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, field, getattr(self.stats, field) + n)

    def _scrub(self, text: str) -> str:
        """Blank any credential value that might appear in a server or library message."""
        frozen = self._credentials.get_frozen_credentials()
        for secret in (frozen.secret_key, frozen.token, frozen.access_key):
            if secret and len(secret) >= MIN_SCRUBBED_LENGTH:
                text = text.replace(secret, "***")
        return text

    def _full_key(self, key: str) -> str:
        check_key(self.url, key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative_key(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1:] if self.prefix else full_key

    def _retrying(self, key: str, op: str, attempt: Callable[[int], T]) -> T:
        def give_up(reason: str, attempts: int) -> Exception:
            where = f" at {self.endpoint}" if self.endpoint else ""
            return StoreUnavailableError(
                self.url, key, f"store unavailable{where}: {reason} (gave up after {attempts} attempts)"
            )

        return call_with_retries(
            attempt, policy=self._retry_policy, on_retry=lambda: self._count("retries"),
            give_up=give_up, sleep=self._sleep,
        )

    def _map_boto(self, exc: Exception, key: str, op: str, *, write: bool = False) -> Exception:
        return error_for_botocore(exc, self.url, key, op, bucket=self.bucket, scrub=self._scrub,
                                  write=write)

    def _call(self, key: str, op: str, field: str, call: Callable[[], T], *, write: bool = False) -> T:
        """One boto3 request under the retry policy, counted in `field` per attempt."""

        def attempt(_: int) -> T:
            self._count(field)
            try:
                return call()
            except Exception as exc:
                mapped = self._map_boto(exc, key, op, write=write)
                if mapped is exc:
                    raise
                raise mapped from exc

        return self._retrying(key, op, attempt)

    # -- reads ---------------------------------------------------------------------------------

    def _signed_get(self, key: str, op: str, byte_range: str | None) -> urllib3.BaseHTTPResponse:
        """One lean GET attempt; answers other than 200/206/416 become store errors."""
        assert self._signed is not None
        url = self._signed.url_for(self._full_key(key))
        self._count("gets")
        try:
            response = self._signed.get(url, byte_range)
        except Exception as exc:
            mapped = error_for_urllib3(exc, self.url, key, op, scrub=self._scrub)
            if mapped is exc:
                raise
            raise mapped from exc
        data = response.data or b""
        if response.status in (200, 206, 416):
            if response.status != 416:
                self._count("bytes_read", len(data))
            return response
        code, message = parse_error_body(data)
        raise error_for_status(self.url, key, op, response.status, self._scrub(code), self._scrub(message),
                               bucket=self.bucket)

    def _boto_get(self, key: str, op: str, byte_range: str | None) -> tuple[int, dict[str, str], bytes]:
        """One boto3 GET attempt (used when a proxy is configured): status, headers, body."""
        self._count("gets")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if byte_range:
            args["Range"] = byte_range
        try:
            out = self._client.get_object(**args)
            data = out["Body"].read()
        except botocore.exceptions.ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            if meta.get("HTTPStatusCode") == 416:
                return 416, meta.get("HTTPHeaders", {}), b""
            raise self._map_boto(exc, key, op) from exc
        except Exception as exc:
            mapped = self._map_boto(exc, key, op)
            if mapped is exc:
                raise
            raise mapped from exc
        self._count("bytes_read", len(data))
        meta = out["ResponseMetadata"]
        return int(meta["HTTPStatusCode"]), meta.get("HTTPHeaders", {}), data

    def _get_once(self, key: str, op: str, byte_range: str | None) -> tuple[int, Any, bytes]:
        if self._signed is None:
            return self._boto_get(key, op, byte_range)
        response = self._signed_get(key, op, byte_range)
        return response.status, response.headers, response.data or b""

    def _unsatisfiable(self, key: str, offset: int, length: int, headers: Any) -> ObjectRangeError:
        return ObjectRangeError(self.url, key, offset, length, unsatisfied_size(headers.get("content-range")))

    def get(self, key: str) -> bytes:
        self._full_key(key)

        def attempt(_: int) -> bytes:
            status, headers, data = self._get_once(key, "GET", None)
            if status != 200:
                raise StoreError(self.url, key, f"GET: unexpected HTTP {status}")
            declared = headers.get("content-length")
            if declared is not None and int(declared) != len(data):
                raise TransientError(f"GET: body has {len(data)} bytes, Content-Length {declared}")
            return data

        return self._retrying(key, "GET", attempt)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._full_key(key)
        if offset < 0 or length < 0:
            raise ValueError(f"{self.url}/{key}: negative range offset {offset} length {length}")
        if length == 0:
            return b""
        last = offset + length - 1
        byte_range = f"bytes={offset}-{last}"

        def attempt(_: int) -> bytes:
            status, headers, data = self._get_once(key, "GET range", byte_range)
            if status == 416:
                raise self._unsatisfiable(key, offset, length, headers)
            if status == 200:  # the server ignored Range: take the slice from the whole object
                if len(data) < offset + length:
                    raise ObjectRangeError(self.url, key, offset, length, len(data))
                return data[offset:offset + length]
            if status != 206:
                raise StoreError(self.url, key, f"GET range: unexpected HTTP {status}")
            content_range = headers.get("content-range")
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

        return self._retrying(key, "GET range", attempt)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        self._full_key(key)
        if length < 0:
            raise ValueError(f"{self.url}/{key}: negative suffix length {length}")
        if length == 0:
            return b"", self.head(key).size

        def attempt(_: int) -> tuple[bytes, int]:
            status, headers, data = self._get_once(key, "GET suffix", f"bytes=-{length}")
            if status == 416:  # only an empty object cannot satisfy a suffix range
                error = self._unsatisfiable(key, 0, length, headers)
                if error.size == 0:
                    return b"", 0
                raise error
            if status == 200:
                return data[-length:], len(data)
            if status != 206:
                raise StoreError(self.url, key, f"GET suffix: unexpected HTTP {status}")
            start, end, total = suffix_span(self.url, key, length, headers.get("content-range"))
            if len(data) != end - start + 1:
                raise TransientError(f"GET suffix: expected {end - start + 1} bytes, got {len(data)}")
            return data, total

        return self._retrying(key, "GET suffix", attempt)

    def open(self, key: str) -> BinaryIO:
        full = self._full_key(key)
        first: dict[str, Any] = {}

        def reopen(offset: int, etag: str | None = None) -> Any:
            """One GET attempt from `offset` (a TransientError or store error on failure)."""
            self._count("gets")
            args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
            if offset:
                args["Range"] = f"bytes={offset}-"
            if etag:
                args["IfMatch"] = etag
            try:
                out = self._client.get_object(**args)
            except Exception as exc:
                mapped = self._map_boto(exc, key, "GET stream")
                if mapped is exc:
                    raise
                raise mapped from exc
            if not first:
                first.update(size=int(out["ContentLength"]), etag=out.get("ETag"))
            return out["Body"]

        body = self._retrying(key, "GET stream", lambda _: reopen(0))
        stream = ResumableStream(
            body,
            first["size"],
            reopen=lambda offset: reopen(offset, first.get("etag")),
            retry=lambda attempt: self._retrying(key, "GET stream", attempt),
            read_errors=TRANSIENT_BOTOCORE + (urllib3.exceptions.HTTPError, OSError),
            describe=lambda exc: describe_http_exception(exc, self._scrub),
            count_read=lambda n: self._count("bytes_read", n),
        )
        return io.BufferedReader(stream, buffer_size=OPEN_BUFFER_SIZE)

    def head(self, key: str) -> ObjectInfo:
        full = self._full_key(key)
        out = self._call(key, "HEAD", "heads",
                         lambda: self._client.head_object(Bucket=self.bucket, Key=full))
        timestamp_ms = None
        raw = (out.get("Metadata") or {}).get(METADATA_KEY_TIMESTAMP)
        if raw is not None:
            try:
                timestamp_ms = parse_timestamp(raw)
            except ValueError as exc:
                raise StoreError(self.url, key, f"bad {METADATA_KEY_TIMESTAMP} metadata {raw!r}") from exc
        return ObjectInfo(key=key, size=int(out["ContentLength"]),
                          modified=out["LastModified"].astimezone(UTC), timestamp_ms=timestamp_ms)

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        check_prefix(self.url, prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root + prefix,
                                "MaxKeys": self._list_page_size}
        if start_after:
            args["StartAfter"] = root + start_after
        previous = root + start_after
        while True:
            page = self._call(prefix, "LIST", "lists",
                              lambda: self._client.list_objects_v2(**args))
            for item in page.get("Contents", []):
                full = item["Key"]
                if not full.startswith(root + prefix):
                    raise StoreError(self.url, prefix, f"LIST returned {full!r}, outside the prefix")
                if full.encode() <= previous.encode():
                    raise StoreError(self.url, prefix, _OUT_OF_ORDER.format(full, previous))
                previous = full
                yield ObjectInfo(key=self._relative_key(full), size=int(item["Size"]),
                                 modified=item["LastModified"].astimezone(UTC))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StoreError(self.url, prefix, "LIST: truncated page without a continuation token")
            args["ContinuationToken"] = token

    # -- writes --------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        if_absent: bool = False,
        timestamp_ms: int | None = None,
    ) -> None:
        full = self._full_key(key)
        metadata: dict[str, str] = {}
        if timestamp_ms is not None:
            metadata[METADATA_KEY_TIMESTAMP] = format_timestamp(timestamp_ms)
        if if_absent:
            metadata[METADATA_KEY_PUT_ID] = uuid.uuid4().hex
        if isinstance(data, bytes | bytearray | memoryview):
            payload = data if isinstance(data, bytes) else bytes(data)
            if len(payload) <= self._multipart_threshold:
                self._put_single(key, full, payload, len(payload), metadata, if_absent)
            else:
                step = self._part_size
                slices = (payload[i:i + step] for i in range(0, len(payload), step))
                self._put_multipart(key, full, slices, metadata, if_absent)
            return
        if _seekable(data):
            start = data.tell()
            size = data.seek(0, 2) - start
            data.seek(start)
            if size <= self._multipart_threshold:
                self._put_single(key, full, data, size, metadata, if_absent, start=start)
            else:
                self._put_multipart(key, full, _chunks(data, self._part_size), metadata, if_absent)
            return
        first = _read_full(data, self._part_size)
        if len(first) < self._part_size:
            self._put_single(key, full, first, len(first), metadata, if_absent)
            return
        parts = _chain_first(first, _chunks(data, self._part_size))
        self._put_multipart(key, full, parts, metadata, if_absent)

    def _is_own_put(self, key: str, full: str, metadata: dict[str, str]) -> bool:
        """After a failed precondition on a retry: did an earlier attempt of ours create it? The
        check retries like any request; if it cannot be answered, the store error is raised (the
        outcome is unknown), never a conflict (which would make a create that landed look lost)."""
        put_id = metadata.get(METADATA_KEY_PUT_ID)
        if put_id is None:
            return False
        try:
            out = self._call(key, "HEAD", "heads", lambda: self._client.head_object(Bucket=self.bucket, Key=full))
        except ObjectNotFoundError:
            return False
        return bool((out.get("Metadata") or {}).get(METADATA_KEY_PUT_ID) == put_id)

    def _put_single(self, key: str, full: str, body: bytes | BinaryIO, size: int,
                    metadata: dict[str, str], if_absent: bool, *, start: int = 0) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Metadata": metadata}
        if if_absent:
            args["IfNoneMatch"] = "*"

        def attempt(number: int) -> None:
            if not isinstance(body, bytes):
                body.seek(start)
            self._count("puts")
            self._count("bytes_written", size)
            try:
                self._client.put_object(Body=body, **args)
            except Exception as exc:
                mapped = self._map_boto(exc, key, "PUT", write=True)
                if mapped is exc:
                    raise
                if if_absent and number > 0 and _is_conflict(mapped) and self._is_own_put(key, full, metadata):
                    return
                raise mapped from exc

        self._retrying(key, "PUT", attempt)

    def _put_multipart(self, key: str, full: str, parts: Iterator[bytes],
                       metadata: dict[str, str], if_absent: bool) -> None:
        created = self._call(
            key, "create multipart upload", "puts",
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=full, Metadata=metadata),
            write=True,
        )
        upload_id = created["UploadId"]
        done: builtins.list[dict[str, Any]] = []

        def send_part(number: int, chunk: bytes) -> Any:
            return self._client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                            PartNumber=number, Body=chunk)

        try:
            for number, chunk in enumerate(parts, start=1):
                self._count("bytes_written", len(chunk))
                out = self._call(key, f"upload part {number}", "puts",
                                 functools.partial(send_part, number, chunk), write=True)
                done.append({"PartNumber": number, "ETag": out["ETag"]})
            complete: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id,
                                        "MultipartUpload": {"Parts": done}}
            if if_absent:
                complete["IfNoneMatch"] = "*"

            def attempt(number: int) -> None:
                self._count("puts")
                try:
                    self._client.complete_multipart_upload(**complete)
                except Exception as exc:
                    mapped = self._map_boto(exc, key, "complete multipart upload", write=True)
                    if mapped is exc:
                        raise
                    lost = _is_conflict(mapped) or _error_code(exc) == "NoSuchUpload"
                    if number > 0 and lost and self._is_own_put(key, full, metadata):
                        return
                    raise mapped from exc

            self._retrying(key, "complete multipart upload", attempt)
        except BaseException:
            self._abort_multipart(full, upload_id)
            raise

    def _abort_multipart(self, full: str, upload_id: str) -> None:
        """Best effort: a failed abort leaves parts that the bucket's lifecycle rules reclaim."""
        self._count("deletes")
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        try:
            self._call(key, "DELETE", "deletes",
                       lambda: self._client.delete_object(Bucket=self.bucket, Key=full))
        except ObjectNotFoundError:
            return

    def close(self) -> None:
        if self._signed is not None:
            self._signed.close()
        self._client.close()


def _is_conflict(exc: Exception) -> bool:
    return isinstance(exc, ObjectExistsError)


def _error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


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
