"""An HTTP proxy in front of the real S3 server that injects failures on chosen requests.

Each request is forwarded unchanged (Host header included, so SigV4 signatures still match)
unless the test's `plan` says otherwise for it:

- `Fault.forward()`: pass through.
- `Fault.status(503, "SlowDown")`: answer with an S3 XML error, upstream never sees the request.
- `Fault.drop_after_forward()`: forward, let the server act, then close the connection without
  an answer (the client sees a broken connection: its request's outcome is unknown to it).
- `Fault.rewrite(fn)`: forward, then replace the response (status, headers, body) with `fn`'s.
- `Fault.truncate(n)`: forward, then send the answer's headers (full Content-Length) and only
  its first `n` body bytes, and close the connection (a body cut short mid-transfer).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Response = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class Fault:
    kind: str
    status_code: int = 0
    code: str = ""
    keep: int = 0
    rewrite_fn: Callable[[Response], Response] | None = None

    @staticmethod
    def forward() -> Fault:
        return Fault("forward")

    @staticmethod
    def status(status_code: int, code: str) -> Fault:
        return Fault("status", status_code=status_code, code=code)

    @staticmethod
    def drop_after_forward() -> Fault:
        return Fault("drop")

    @staticmethod
    def rewrite(fn: Callable[[Response], Response]) -> Fault:
        return Fault("rewrite", rewrite_fn=fn)

    @staticmethod
    def truncate(keep: int) -> Fault:
        return Fault("truncate", keep=keep)


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    path: str
    headers: dict[str, str]
    fault: str


Plan = Callable[[str, str, int], Fault]  # (method, path, index of request) -> what to do


@dataclass
class _State:
    upstream: str
    plan: Plan
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        with state.lock:
            index = len(state.seen)
            fault = state.plan(self.command, self.path, index)
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), fault.kind))
        if fault.kind == "status":
            payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{fault.code}</Code>"
                       f"<Message>injected by the test proxy</Message></Error>").encode()
            self._reply((fault.status_code, [("Content-Type", "application/xml")], payload))
            return
        response = self._forward(body)
        if fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.kind == "rewrite" and fault.rewrite_fn is not None:
            response = fault.rewrite_fn(response)
        if fault.kind == "truncate":
            status, headers, data = response
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:fault.keep])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(response)

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _forward(self, body: bytes) -> Response:
        up = urlsplit(self.server.state.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() in ("transfer-encoding", "content-length", "connection"):
                    continue
                conn.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            dropped = ("transfer-encoding", "connection") + (() if self.command == "HEAD" else ("content-length",))
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in dropped]
            return resp.status, headers, data
        finally:
            conn.close()

    def _reply(self, response: Response) -> None:
        status, headers, data = response
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class FaultProxy:
    """Start with `with FaultProxy(upstream, plan) as proxy:`; `proxy.endpoint` is its URL."""

    def __init__(self, upstream: str, plan: Plan) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(upstream=upstream, plan=plan)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def seen(self) -> list[Seen]:
        with self._server.state.lock:
            return list(self._server.state.seen)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
