"""A request-counting HTTP proxy for an S3 endpoint, on 127.0.0.1 with TCP_NODELAY.

Point a client's endpoint at `proxy.url`; every request is forwarded unchanged (the Host header
too, so SigV4 signatures stay valid) and counted by kind: GET (with or without Range), LIST
(a GET of the bucket), PUT, HEAD, DELETE, with the response bytes. Optional fixed delay per
request imitates a region's round trip. `stop()` drops every connection and refuses new ones
(the store "goes away"); `start()` brings it back on the same port.

    with CountingProxy("http://127.0.0.1:8333") as proxy:
        ...  # use proxy.url as the S3 endpoint
        print(proxy.counts())
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: Bytes copied per read when streaming a response body.
COPY_CHUNK = 256 * 1024
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class Request:
    """One forwarded request: when it arrived and finished (monotonic seconds), what it was."""

    started: float
    finished: float
    kind: str
    path: str
    range: str | None
    status: int
    bytes_out: int


def sequential_rounds(log: list[Request]) -> int:
    """Round trips a client waited for one after another: requests are grouped into waves, a new
    wave starting when a request arrives after every request of the current wave has finished."""
    waves = 0
    wave_end = float("-inf")
    for r in sorted(log, key=lambda r: r.started):
        if r.started >= wave_end:
            waves += 1
            wave_end = r.finished
        else:
            wave_end = max(wave_end, r.finished)
    return waves


def request_kind(method: str, path: str) -> str:
    """LIST for a GET of a bucket (a listing), else the HTTP method."""
    parts = urlsplit(path)
    if method == "GET":
        query = parse_qs(parts.query)
        segments = [s for s in parts.path.split("/") if s]
        if "list-type" in query or len(segments) <= 1:
            return "LIST"
    return method


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], proxy: CountingProxy) -> None:
        self.proxy = proxy
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy._track(sock)
        return sock, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    _conn: http.client.HTTPConnection | None = None

    def _upstream(self) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            p = self.server.proxy
            conn = http.client.HTTPConnection(p.upstream_host, p.upstream_port, timeout=60)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return conn

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        proxy = self.server.proxy
        started = time.monotonic()
        body = self._read_body()
        if proxy.delay:
            time.sleep(proxy.delay)
        conn = self._upstream()
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "content-length":
                continue
            conn.putheader(name, value)
        if body or self.command in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for name, value in resp.getheaders():
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            self.send_header(name, value)
        sent = 0
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            resp.read()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := resp.read(COPY_CHUNK):
                self.wfile.write(chunk)
                sent += len(chunk)
        else:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            sent = len(data)
        self.wfile.flush()
        proxy._count(started, self.command, self.path, self.headers.get("Range"), resp.status, sent, len(body))

    def _handle(self) -> None:
        try:
            self._forward()
        except (ConnectionError, OSError, http.client.HTTPException):
            self.close_connection = True
            conn = self._conn
            if conn is not None:
                conn.close()
                self._conn = None

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


class CountingProxy:
    """Forward HTTP to `upstream` (http://host:port), counting requests and bytes."""

    def __init__(self, upstream: str, port: int = 0, delay: float = 0.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.delay = delay
        self.port = port
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.log: list[Request] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CountingProxy:
        """Listen (again, on the same port after a stop)."""
        server = _Server(("127.0.0.1", self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._server = None
        with self._lock:
            socks, self._sockets = self._sockets, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _count(self, started: float, method: str, path: str, rng: str | None, status: int, sent: int,
               received: int) -> None:
        kind = request_kind(method, path)
        with self._lock:
            self._counts[kind] += 1
            self._counts["requests"] += 1
            self._counts["bytes_out"] += sent
            self._counts["bytes_in"] += received
            if kind == "GET" and rng:
                self._counts["RANGE_GET"] += 1
            self.log.append(Request(started, time.monotonic(), kind, path, rng, status, sent))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.log.clear()

    def __enter__(self) -> CountingProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["CountingProxy", "Request", "request_kind", "sequential_rounds"]
