"""What only the s3:// store has, against the real SeaweedFS server: metadata, pagination,
multipart, bucket and credential errors, retries (through a fault-injecting proxy)."""

from __future__ import annotations

import io
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ltx.store import (
    BucketNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from ltx.store.retry import RetryPolicy
from ltx.store.s3 import MIN_PART_SIZE, S3Store
from tests.conftest import unique_prefix
from tests.s3proxy import Fault, Response
from tests.s3proxy import S3Proxy as FaultProxy
from tests.s3server import S3Server

#: No waiting between retries in tests: the behaviour, not the backoff, is under test.
NO_BACKOFF = RetryPolicy(max_retries=3, backoff_base_s=0.0, backoff_max_s=0.0)


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return unique_prefix(request)


def make_store(server: S3Server, prefix: str, endpoint: str | None = None, **kwargs: object) -> S3Store:
    return S3Store(server.bucket, prefix, endpoint=endpoint or server.endpoint, region=server.region,
                   force_path_style=True, **kwargs)  # type: ignore[arg-type]


def messages(exc: BaseException) -> str:
    """The text of an exception and of every exception chained to it."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen!s} {seen!r}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# -- metadata and layout -------------------------------------------------------------------------

@pytest.mark.parametrize("ts,text", [
    (1_700_000_000_120, "2023-11-14T22:13:20.12Z"),
    (1_700_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_007, "2023-11-14T22:13:20.007Z"),
])
def test_timestamp_metadata_as_litestream_writes_it(s3_server: S3Server, prefix: str, ts: int,
                                                    text: str) -> None:
    store = make_store(s3_server, prefix)
    store.put("0000/0000000000000001-0000000000000001.ltx", b"x", timestamp_ms=ts)
    raw = s3_server.client().head_object(Bucket=s3_server.bucket,
                                         Key=f"{prefix}/0000/0000000000000001-0000000000000001.ltx")
    assert raw["Metadata"]["litestream-timestamp"] == text
    assert store.head("0000/0000000000000001-0000000000000001.ltx").timestamp_ms == ts


def test_keys_live_under_the_url_path(s3_server: S3Server, prefix: str) -> None:
    store = open_store(s3_server.url(f"{prefix}/db"))
    store.put("0009/0000000000000001-0000000000000005.ltx", b"snap")
    keys = [o["Key"] for o in s3_server.objects(prefix + "/")]
    assert keys == [f"{prefix}/db/0009/0000000000000001-0000000000000005.ltx"]
    assert [i.key for i in store.list("")] == ["0009/0000000000000001-0000000000000005.ltx"]


# -- listing -----------------------------------------------------------------------------------------

def test_list_pages_through_start_after(s3_server: S3Server, prefix: str) -> None:
    store = make_store(s3_server, prefix, list_page_size=3)
    keys = [f"0000/{i:016x}-{i:016x}.ltx" for i in range(1, 11)]
    for key in reversed(keys):
        store.put(key, key.encode())
    before = store.stats.lists
    assert [i.key for i in store.list("0000/")] == keys
    assert store.stats.lists - before == 4  # 10 keys in pages of 3
    before = store.stats.lists
    assert [i.key for i in store.list("0000/", start_after=keys[4])] == keys[5:]
    assert store.stats.lists - before == 2
    assert [i.size for i in store.list("0000/")] == [len(k) for k in keys]


def test_listing_out_of_byte_order_is_refused(s3_server: S3Server, prefix: str) -> None:
    """SeaweedFS lists directory by directory: 'ltx/0/a' comes before 'ltx.txt', though '.' < '/'.
    The store says so instead of handing out keys in a wrong order."""
    store = make_store(s3_server, prefix)
    store.put("ltx/0/a", b"1")
    store.put("ltx.txt", b"2")
    with pytest.raises(StoreError, match="byte order"):
        list(store.list(""))
    assert [i.key for i in store.list("ltx/")] == ["ltx/0/a"]


# -- multipart ---------------------------------------------------------------------------------------

def multipart_store(server: S3Server, prefix: str) -> S3Store:
    return make_store(server, prefix, multipart_threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)


@pytest.mark.parametrize("shape", ["bytes", "seekable", "oneway"])
def test_multipart_upload(s3_server: S3Server, prefix: str, shape: str) -> None:
    store = multipart_store(s3_server, prefix)
    data = blob(1, 2 * MIN_PART_SIZE + 1234)
    body: bytes | io.BufferedReader | io.BytesIO
    if shape == "bytes":
        body = data
    elif shape == "seekable":
        body = io.BytesIO(data)
    else:
        body = io.BufferedReader(_OneWay(data))
    store.put("0009/big.ltx", body, if_absent=True, timestamp_ms=1_700_000_000_001)
    raw = s3_server.client().head_object(Bucket=s3_server.bucket, Key=f"{prefix}/0009/big.ltx")
    assert raw["ETag"].strip('"').endswith("-3")  # three parts
    assert raw["Metadata"]["litestream-timestamp"] == "2023-11-14T22:13:20.001Z"
    assert store.get("0009/big.ltx") == data
    assert store.stats.puts == 5  # create, three parts, complete
    assert store.stats.bytes_written == len(data)


def test_multipart_create_if_absent_conflict(s3_server: S3Server, prefix: str) -> None:
    store = multipart_store(s3_server, prefix)
    store.put("0009/big.ltx", b"the original")
    with pytest.raises(ObjectExistsError):
        store.put("0009/big.ltx", blob(2, MIN_PART_SIZE + 1), if_absent=True)
    assert store.get("0009/big.ltx") == b"the original"
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix + "/")
    assert uploads.get("Uploads", []) == []  # the failed upload was aborted


class _OneWay(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


# -- bucket and credential errors ------------------------------------------------------------------

def test_missing_bucket(s3_server: S3Server, prefix: str) -> None:
    store = open_store(s3_server.url(prefix, bucket="no-such-bucket-ltxvfs"))
    calls = [lambda: list(store.list("")), lambda: store.get("k"), lambda: store.get_range("k", 0, 4),
             lambda: store.put("k", b"x"), lambda: store.put("k", b"x", if_absent=True)]
    for call in calls:
        with pytest.raises(BucketNotFoundError, match="no-such-bucket-ltxvfs"):
            call()
    with pytest.raises(ObjectNotFoundError):  # a HEAD answer has no body to tell bucket from key
        store.head("k")


@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"])
def test_wrong_credentials(s3_server: S3Server, prefix: str, monkeypatch: pytest.MonkeyPatch,
                           variable: str) -> None:
    make_store(s3_server, prefix).put("k", b"x")
    wrong = "wrong-" + "q" * 30
    monkeypatch.setenv(variable, wrong)
    store = make_store(s3_server, prefix)
    calls = [lambda: store.get("k"), lambda: list(store.list("")), lambda: store.put("k2", b"x"),
             lambda: store.get_suffix("k", 1), lambda: store.open("k"), lambda: store.head("k")]
    for call in calls:
        with pytest.raises(StoreAuthError) as caught:
            call()
        text = messages(caught.value)
        assert wrong not in text and s3_server.secret_key not in text
        assert "credentials" in str(caught.value)
    assert store.stats.retries == 0  # a refusal is not retried


def test_no_credentials_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreAuthError, match="no AWS credentials"):
        open_store(s3_server.url("anything"))


# -- retries ---------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_gives_up_after_the_retries(s3_server: S3Server, prefix: str) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    store = make_store(s3_server, prefix, endpoint=endpoint, retry_policy=NO_BACKOFF, connect_timeout=1.0)
    for call, field in [(lambda: store.get_range("k", 0, 10), "gets"), (lambda: list(store.list("")), "lists"),
                        (lambda: store.put("k", b"x", if_absent=True), "puts")]:
        before = store.stats.snapshot()
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        after = store.stats.snapshot()
        assert after["retries"] - before["retries"] == 3
        assert after[field] - before[field] == 4
        assert endpoint in str(caught.value) and "4 attempts" in str(caught.value)
        assert s3_server.secret_key not in messages(caught.value)


@pytest.fixture
def proxied(s3_server: S3Server, prefix: str) -> Iterator[tuple[S3Store, list[Fault], FaultProxy]]:
    """A store reaching the server through a FaultProxy whose faults the test queues up per request
    (a request with nothing queued is forwarded)."""
    queue: list[Fault] = []

    def plan(method: str, path: str, index: int) -> Fault:
        return queue.pop(0) if queue else Fault.forward()

    with FaultProxy(s3_server.endpoint, plan) as proxy:
        store = make_store(s3_server, prefix, endpoint=proxy.endpoint, retry_policy=NO_BACKOFF)
        yield store, queue, proxy


@pytest.mark.parametrize("code,status", [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503),
                                         ("Throttling", 400)])
def test_transient_answers_are_retried(proxied: tuple[S3Store, list[Fault], FaultProxy], code: str,
                                       status: int) -> None:
    store, queue, _ = proxied
    data = blob(3, 10_000)
    queue.extend([Fault.status(status, code)] * 2)
    store.put("k", data)
    queue.extend([Fault.status(status, code)] * 2)
    assert store.get_range("k", 100, 1000) == data[100:1100]
    queue.extend([Fault.status(status, code)])
    assert [i.key for i in store.list("")] == ["k"]
    if status >= 500:  # a HEAD answer has no body: only its status can say "retry"
        queue.extend([Fault.status(status, code)])
    assert store.head("k").size == len(data)
    assert store.stats.retries == (6 if status >= 500 else 5)


def test_retries_run_out(proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    store, queue, _ = proxied
    store.put("k", b"data")
    queue.extend([Fault.status(503, "SlowDown")] * 10)
    with pytest.raises(StoreUnavailableError, match="SlowDown"):
        store.get("k")
    assert store.stats.retries == 3


def test_refusals_are_not_retried(proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    store, queue, _ = proxied
    store.put("k", b"data")
    queue.append(Fault.status(403, "AccessDenied"))
    with pytest.raises(StoreAuthError):
        store.get("k")
    queue.append(Fault.status(412, "PreconditionFailed"))
    with pytest.raises(ObjectExistsError):
        store.put("other", b"x", if_absent=True)
    assert store.stats.retries == 0


def test_create_whose_answer_was_lost_is_recognised_as_ours(
        proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    """The PUT reached the server, the answer did not reach us: the retry meets 412, and the
    store checks (put id metadata) that the object there is its own, so the commit succeeds."""
    store, queue, proxy = proxied
    queue.append(Fault.drop_after_forward())
    store.put("0000/0000000000000003-0000000000000003.ltx", b"mine", if_absent=True)
    assert store.get("0000/0000000000000003-0000000000000003.ltx") == b"mine"
    assert store.stats.retries == 1
    assert [s.method for s in proxy.seen[:3]] == ["PUT", "PUT", "HEAD"]


def _as_precondition_failed(response: Response) -> Response:
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
            b"<Message>rewritten by the test proxy</Message></Error>")
    return 412, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], body


def test_a_first_attempt_answered_with_a_conflict_is_checked_too(
        proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    """The create reached the server and succeeded, but the answer says 412 (a proxy, or a server
    that retried internally): even without a retry of ours, the put id tells it is our object."""
    store, queue, proxy = proxied
    queue.append(Fault.rewrite(_as_precondition_failed))
    store.put("0000/y.ltx", b"mine", if_absent=True)
    assert store.get("0000/y.ltx") == b"mine"
    assert store.stats.retries == 0
    assert [s.method for s in proxy.seen[:2]] == ["PUT", "HEAD"]


def test_a_foreign_object_met_on_retry_is_a_conflict(
        s3_server: S3Server, prefix: str, proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    """The first attempt fails before reaching the server (so, to the server, the rival's object
    came first), the retry meets 412: the object is not ours, so it is a conflict, and theirs stays."""
    store, queue, proxy = proxied
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{prefix}/0000/x.ltx", Body=b"theirs")
    queue.append(Fault.status(503, "SlowDown"))
    with pytest.raises(ObjectExistsError):
        store.put("0000/x.ltx", b"mine", if_absent=True)
    assert store.get("0000/x.ltx") == b"theirs"
    assert store.stats.retries == 1
    assert [s.method for s in proxy.seen[:3]] == ["PUT", "PUT", "HEAD"]


def _drop_last_byte(response: Response) -> Response:
    status, headers, body = response
    return status, headers, body[:-1]


def _shift_content_range(response: Response) -> Response:
    status, headers, body = response
    moved = [(k, "bytes 1-100/10000" if k.lower() == "content-range" else v) for k, v in headers]
    return status, moved, body


def _drop_content_range(response: Response) -> Response:
    status, headers, body = response
    return status, [(k, v) for k, v in headers if k.lower() != "content-range"], body


def _overlong_range(response: Response) -> Response:
    """A 206 answer naming and carrying more bytes than asked for (0-99 asked, 0-199 sent)."""
    status, headers, body = response
    moved = [(k, "bytes 0-199/10000" if k.lower() == "content-range" else v) for k, v in headers
             if k.lower() != "content-length"]
    return status, [*moved, ("Content-Length", "200")], body + bytes(100)


def test_short_range_answers_are_never_returned(proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    store, queue, _ = proxied
    data = blob(4, 10_000)
    store.put("k", data)
    queue.append(Fault.rewrite(_drop_last_byte))
    assert store.get_range("k", 0, 100) == data[:100]  # retried once, then right
    assert store.stats.retries == 1
    queue.extend([Fault.rewrite(_drop_last_byte)] * 10)
    with pytest.raises(StoreUnavailableError, match="asked for 100 bytes at 0, got 99"):
        store.get_range("k", 0, 100)
    queue.clear()
    queue.append(Fault.rewrite(_shift_content_range))
    with pytest.raises(StoreError, match="asked for bytes 0-99, server sent .bytes 1-100"):
        store.get_range("k", 0, 100)
    queue.clear()
    queue.append(Fault.rewrite(_overlong_range))  # more than asked for is refused too, never cut to fit
    with pytest.raises(StoreError, match="asked for bytes 0-99, server sent .bytes 0-199"):
        store.get_range("k", 0, 100)
    queue.clear()
    queue.append(Fault.rewrite(_drop_content_range))
    with pytest.raises(StoreError, match="missing or malformed Content-Range"):
        store.get_range("k", 0, 100)
    queue.clear()
    queue.append(Fault.truncate(50))
    assert store.get_range("k", 0, 100) == data[:100]
    queue.append(Fault.truncate(5000))
    assert store.get("k") == data


def test_stream_resumes_after_a_broken_body(proxied: tuple[S3Store, list[Fault], FaultProxy]) -> None:
    store, queue, proxy = proxied
    data = blob(5, 3 * 1024 * 1024 + 5)
    store.put("big", data)
    queue.append(Fault.truncate(1_000_000))
    with store.open("big") as stream:
        assert stream.read() == data
    resumed = [s for s in proxy.seen if s.method == "GET"][1]
    headers = {k.lower(): v for k, v in resumed.headers.items()}  # HTTP header names ignore case
    assert headers.get("range") == "bytes=1000000-"
    assert headers.get("if-match")
    assert store.stats.retries == 1
    assert store.stats.bytes_read == len(data)


def test_endpoint_is_reached_through_the_url(s3_server: S3Server, prefix: str) -> None:
    """The object URL (path style, quoting) is the one the server files the object under."""
    store = make_store(s3_server, prefix)
    key = "dir with space/ünï+code=%&.ltx"
    store.put(key, b"payload")
    assert store.get_range(key, 0, 3) == b"pay"
    assert urlsplit(store.endpoint or "").port == urlsplit(s3_server.endpoint).port
