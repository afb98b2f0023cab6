"""The S3 store's plain-HTTP/1.1 connection (ltx/store/http11.py) against canned answers from a
real socket: bodies by Content-Length, by chunks and until close; answers without a body; what
it refuses (malformed status and header lines, bodies cut short) and how a dropped kept-alive
connection is told apart. The S3 store's suites run it against the real SeaweedFS."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ltx.store.http11 import (
    MAX_HEADERS,
    HTTPProtocolError,
    IncompleteBody,
    PlainConnection,
    RemoteDisconnected,
    split_host,
)


@contextmanager
def canned(*answers: bytes) -> Iterator[tuple[PlainConnection, list[bytes]]]:
    """A server that, for each request on one connection, reads the head (and a body by
    Content-Length) and sends the next answer, then closes; yields a connection and the requests."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            stream = conn.makefile("rb")
            for answer in answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen.append(head + stream.read(length))
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conn = PlainConnection(f"127.0.0.1:{listener.getsockname()[1]}", timeout=5)
    try:
        yield conn, seen
    finally:
        conn.close()
        thread.join(5)
        listener.close()


def test_content_length_bodies_on_one_kept_alive_connection() -> None:
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello",
                b"HTTP/1.1 206 Partial Content\r\ncontent-length: 3\r\n\r\nabc") as (conn, seen):
        conn.request("GET", "/a", headers={"host": "h", "range": "bytes=0-4"})
        first = conn.getresponse()
        assert (first.status, first.read(), first.will_close) == (200, b"hello", False)
        assert first.getheader("etag") == '"x"' and first.getheader("missing", "d") == "d"
        conn.request("PUT", "/b", body=b"payload", headers={"host": "h"})
        second = conn.getresponse()
        assert (second.status, second.read(2), second.read(), second.read()) == (206, b"ab", b"c", b"")
    assert seen[0].startswith(b"GET /a HTTP/1.1\r\n") and b"range: bytes=0-4\r\n" in seen[0]
    assert b"Content-Length: 7\r\n" in seen[1] and seen[1].endswith(b"\r\n\r\npayload")


def test_chunked_body_and_trailers() -> None:
    body = b"4;ext=1\r\nWiki\r\n6\r\npedia \r\n0\r\nX-Trailer: y\r\n\r\n"
    with canned(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body) as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        resp = conn.getresponse()
        assert resp.read(3) == b"Wik"
        assert resp.read() == b"ipedia "
        assert not resp.will_close


def test_answers_without_a_body() -> None:
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n") as (conn, _):
        conn.request("HEAD", "/", headers={"host": "h"})
        assert conn.getresponse().read() == b""
        conn.request("DELETE", "/", headers={"host": "h"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (204, b"")


def test_body_until_close_and_connection_close() -> None:
    with canned(b"HTTP/1.0 200 OK\r\n\r\nall of it") as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        resp = conn.getresponse()
        assert resp.will_close
        assert resp.read() == b"all of it"


@pytest.mark.parametrize("answer", [b"HTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n"])
def test_malformed_answers_are_refused(answer: bytes) -> None:
    with canned(answer) as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        with pytest.raises(HTTPProtocolError):
            conn.getresponse()


def test_a_body_cut_short_is_an_error_and_a_stream_keeps_what_came() -> None:
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        with pytest.raises(IncompleteBody):
            conn.getresponse().read()
    with canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        resp = conn.getresponse()
        assert resp.read(8) == b"abc"
        with pytest.raises(IncompleteBody):
            resp.read(8)


def test_no_answer_at_all_is_remote_disconnected() -> None:
    with canned(b"") as (conn, _):
        conn.request("GET", "/", headers={"host": "h"})
        with pytest.raises(RemoteDisconnected):
            conn.getresponse()


def test_header_injection_is_refused() -> None:
    conn = PlainConnection("127.0.0.1:1")
    conn.sock = socket.socket()  # never sent: the check comes first
    try:
        with pytest.raises(ValueError):
            conn.request("GET", "/", headers={"x-amz-meta-a": "b\r\nevil: 1"})
    finally:
        conn.close()


def test_split_host() -> None:
    assert split_host("example.com") == ("example.com", 80)
    assert split_host("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert split_host("[::1]:9000") == ("::1", 9000)
    assert split_host("[::1]") == ("::1", 80)
    assert split_host("::1") == ("::1", 80)


def test_an_interim_100_continue_is_read_past() -> None:
    with canned(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as (conn, _):
        conn.request("PUT", "/", body=b"x", headers={"host": "h"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok")
