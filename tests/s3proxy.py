"""An HTTP proxy in front of the real S3 server, for tests and benchmarks: it counts, delays,
injects faults, and can go away and come back.

Every request is forwarded unchanged (Host header included, so SigV4 signatures still match) and
logged; `counts()` sums them by kind: GET (with or without Range), LIST (a GET of the bucket),
PUT, HEAD, DELETE, POST, with the bytes in and out. `delay` adds a fixed wait to every request
(a region's round trip); `bandwidth` (bytes/s) caps the answers' bytes on one shared link.
`stop()` cuts every connection and refuses new ones; `start()` listens
again on the same port.

What happens to a request is a `Fault`, chosen by either
- `plan(method, path, index)`: any callable (a test's queue of faults, say), or
- `schedule`: a seeded `FaultSchedule`, whose choice depends only on the seed, the request
  (method, path, Range) and how often that same request came before, never on the order in which
  parallel requests arrive, so a run replays.

Faults: `status` (an S3 XML error answer: 500 InternalError, 503 SlowDown, ...; the server never
sees the request), `reset` (the connection is reset before forwarding), `drop` (forwarded, the
server acts, the answer is never sent), `truncate` (the answer's headers promise the full body,
fewer bytes come, the connection closes), `stall` (forwarded, the answer held back a while),
`wrong_range` (a 206 answer whose Content-Range names other bytes than asked) and `rewrite`
(the answer replaced by a function's). Injected faults are counted in `fault_counts()`.

    with S3Proxy(server.endpoint, schedule=FaultSchedule(seed=7, rate=0.3)) as proxy:
        url = server.url(prefix).replace(server.endpoint, proxy.url)
        ...
        print(proxy.counts(), proxy.fault_counts())
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: How long `counts()` waits for requests in flight to be counted.
SETTLE_TIMEOUT = 2.0
#: Bytes copied per read when streaming a response body that no fault touches.
COPY_CHUNK = 256 * 1024
#: How long the proxy waits for the upstream server's answer.
UPSTREAM_TIMEOUT_S = 60.0
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}

#: An answer as the proxy holds it: status, headers (without hop-by-hop ones), body.
Response = tuple[int, list[tuple[str, str]], bytes]

FORWARD, STATUS, RESET, DROP, TRUNCATE, STALL, WRONG_RANGE, REWRITE = (
    "forward", "status", "reset", "drop", "truncate", "stall", "wrong_range", "rewrite")


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request (build with the static methods)."""

    kind: str
    status_code: int = 0
    code: str = ""
    #: truncate: body bytes sent (`keep`), or a share of the body (`share`, 0..1) when set.
    keep: int = 0
    share: float | None = None
    #: stall: seconds the answer is held back.
    seconds: float = 0.0
    rewrite_fn: Callable[[Response], Response] | None = None

    @property
    def name(self) -> str:
        """How the fault is counted: the kind, or for an error answer its status and code."""
        return f"{self.status_code} {self.code}" if self.kind == STATUS else self.kind

    @staticmethod
    def forward() -> Fault:
        return Fault(FORWARD)

    @staticmethod
    def status(status_code: int, code: str) -> Fault:
        return Fault(STATUS, status_code=status_code, code=code)

    @staticmethod
    def reset() -> Fault:
        return Fault(RESET)

    @staticmethod
    def drop_after_forward() -> Fault:
        return Fault(DROP)

    @staticmethod
    def truncate(keep: int = 0, share: float | None = None) -> Fault:
        return Fault(TRUNCATE, keep=keep, share=share)

    @staticmethod
    def stall(seconds: float) -> Fault:
        return Fault(STALL, seconds=seconds)

    @staticmethod
    def wrong_range() -> Fault:
        return Fault(WRONG_RANGE)

    @staticmethod
    def rewrite(fn: Callable[[Response], Response]) -> Fault:
        return Fault(REWRITE, rewrite_fn=fn)


#: Faults that change an answer's body: they apply to GETs (other answers have next to none).
BODY_FAULTS = frozenset({TRUNCATE, WRONG_RANGE})
#: Faults a client is expected to retry through: error answers, broken connections, short bodies
#: and slow answers.
TRANSIENT_FAULTS: tuple[Fault, ...] = (
    Fault.status(500, "InternalError"),
    Fault.status(503, "ServiceUnavailable"),
    Fault.status(503, "SlowDown"),
    Fault.reset(),
    Fault.drop_after_forward(),
    Fault.truncate(share=0.5),
    Fault.stall(0.05),
)
#: Every kind, including answers that lie about their bytes (which a client must refuse).
ALL_FAULTS: tuple[Fault, ...] = (*TRANSIENT_FAULTS, Fault.wrong_range())


class FaultSchedule:
    """A seeded choice of fault per request: with probability `rate` one of `faults` (those that
    change a body only for GETs), else forward.

    The draw for the n-th occurrence of a request (method, path, Range) depends on (seed, request,
    n) only. `max_in_a_row` (None: unbounded) forwards a request after that many faults in a row
    on it, so a client that retries at least that often always gets through."""

    def __init__(self, seed: int, rate: float, faults: Sequence[Fault] = TRANSIENT_FAULTS,
                 max_in_a_row: int | None = 2, methods: frozenset[str] | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate {rate} is not within 0..1")
        self.seed = seed
        self.rate = rate
        self.faults = tuple(faults)
        self.max_in_a_row = max_in_a_row
        self.methods = methods
        self._lock = threading.Lock()
        self._seen: Counter[tuple[str, str, str]] = Counter()
        self._streak: Counter[tuple[str, str, str]] = Counter()

    def decide(self, method: str, path: str, byte_range: str | None) -> Fault:
        key = (method, path, byte_range or "")
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
            if self.methods is not None and method not in self.methods:
                return Fault.forward()
            applicable = [f for f in self.faults if method == "GET" or f.kind not in BODY_FAULTS]
            rng = random.Random(f"{self.seed}|{method}|{path}|{byte_range}|{n}")
            hit = rng.random() < self.rate and (self.max_in_a_row is None or self._streak[key] < self.max_in_a_row)
            if not applicable:
                hit = False
            if not hit:
                self._streak[key] = 0
                return Fault.forward()
            self._streak[key] += 1
            return rng.choice(applicable)


Plan = Callable[[str, str, int], Fault]  # (method, path, index of the request) -> what to do


@dataclass
class Request:
    """One request the proxy received: what it was, what was done to it, how it ended."""

    started: float
    method: str
    path: str
    headers: dict[str, str]
    kind: str
    range: str | None
    fault: str = FORWARD
    finished: float = 0.0
    status: int = 0
    bytes_out: int = 0
    bytes_in: int = 0


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


def _error_body(code: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            "<Message>injected by the test proxy</Message></Error>").encode()


def _shift_content_range(headers: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """Headers whose Content-Range names the bytes one further on (None without one)."""
    out: list[tuple[str, str]] = []
    found = False
    for name, value in headers:
        if name.lower() == "content-range" and value.startswith("bytes ") and "-" in value:
            span, _, total = value[6:].partition("/")
            first, _, last = span.partition("-")
            if first.isdigit() and last.isdigit():
                value = f"bytes {int(first) + 1}-{int(last) + 1}/{total}"
                found = True
        out.append((name, value))
    return out if found else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: socketserver's default backlog is 5: a burst of parallel connections (a cold open's ~35
    #: index GETs) overflowed it, and the kernel's SYN retry added a whole second to some opens.
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], proxy: S3Proxy) -> None:
        self.proxy = proxy
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy._track(sock)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that went away, or a connection the proxy cut on purpose: not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _conn: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature; quiet
        return

    def _upstream(self) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            p = self.server.proxy
            conn = http.client.HTTPConnection(p.upstream_host, p.upstream_port, timeout=UPSTREAM_TIMEOUT_S)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return conn

    def _close_upstream(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_upstream(self, body: bytes) -> http.client.HTTPResponse:
        conn = self._upstream()
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            conn.putheader(name, value)
        if body or self.command in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        return conn.getresponse()

    def _handle(self) -> None:
        proxy = self.server.proxy
        record = Request(time.monotonic(), self.command, self.path, dict(self.headers.items()),
                         request_kind(self.command, self.path), self.headers.get("Range"))
        proxy._begin()
        try:
            body = self._read_body()
            record.bytes_in = len(body)
            fault = proxy._choose(record)
            if proxy.delay:
                time.sleep(proxy.delay)
            self._serve(record, fault, body)
        except (ConnectionError, OSError, http.client.HTTPException):
            self.close_connection = True
            self._close_upstream()
        finally:
            proxy._finish(record)

    def _serve(self, record: Request, fault: Fault, body: bytes) -> None:
        proxy = self.server.proxy
        if fault.kind == STATUS:
            proxy._injected(record, fault)
            self._reply(record, (fault.status_code, [("Content-Type", "application/xml")], _error_body(fault.code)))
            return
        if fault.kind == RESET:
            proxy._injected(record, fault)
            self._reset()
            return
        resp = self._send_upstream(body)
        if fault.kind == FORWARD:
            self._stream(record, resp)
            return
        data = resp.read()
        headers = [(k, v) for k, v in resp.getheaders()
                   if k.lower() not in _HOP_BY_HOP and (k.lower() != "content-length" or self.command == "HEAD")]
        response: Response = (resp.status, headers, data)
        if fault.kind == DROP:
            proxy._injected(record, fault)
            self._reset()
            return
        if fault.kind == STALL:
            proxy._injected(record, fault)
            proxy._stopping.wait(fault.seconds)
        elif fault.kind == REWRITE and fault.rewrite_fn is not None:
            proxy._injected(record, fault)
            response = fault.rewrite_fn(response)
        elif fault.kind == WRONG_RANGE and resp.status == 206:
            moved = _shift_content_range(headers)
            if moved is not None:
                proxy._injected(record, fault)
                response = (resp.status, moved, data)
        elif fault.kind == TRUNCATE and data and self.command != "HEAD":
            keep = int(len(data) * fault.share) if fault.share is not None else fault.keep
            keep = min(max(keep, 0), len(data) - 1)
            proxy._injected(record, fault)
            self._send_head(resp.status, headers, len(data))
            self.wfile.write(data[:keep])
            self.wfile.flush()
            record.status, record.bytes_out = resp.status, keep
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(record, response)

    def _reset(self) -> None:
        """Close the client's connection with a TCP reset (no answer at all)."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _send_head(self, status: int, headers: list[tuple[str, str]], length: int) -> None:
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            declared = next((v for k, v in headers if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", declared)
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(self, record: Request, response: Response) -> None:
        status, headers, data = response
        self._send_head(status, headers, len(data))
        if self.command != "HEAD":
            self.server.proxy._throttle(len(data))
            self.wfile.write(data)
        self.wfile.flush()
        record.status = status
        record.bytes_out = 0 if self.command == "HEAD" else len(data)

    def _stream(self, record: Request, resp: http.client.HTTPResponse) -> None:
        """Pass an untouched answer on, copying the body in chunks."""
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
                self.server.proxy._throttle(len(chunk))
                self.wfile.write(chunk)
                sent += len(chunk)
        else:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.server.proxy._throttle(len(data))
            self.wfile.write(data)
            sent = len(data)
        self.wfile.flush()
        record.status, record.bytes_out = resp.status, sent

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


class S3Proxy:
    """Forward HTTP to `upstream` (http://host:port), counting, delaying and injecting faults."""

    def __init__(self, upstream: str, plan: Plan | None = None, *, schedule: FaultSchedule | None = None,
                 port: int = 0, delay: float = 0.0, bandwidth: float = 0.0) -> None:
        if plan is not None and schedule is not None:
            raise ValueError("give a plan or a schedule, not both")
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan = plan
        self.schedule = schedule
        self.delay = delay
        #: Bytes per second that all answers share (0: unlimited), like one link to a region.
        self.bandwidth = bandwidth
        self._link_free = 0.0
        self.port = port
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._active = 0
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._index = 0
        #: Every request received, in arrival order (a request is logged as it arrives).
        self.log: list[Request] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to use as an S3 endpoint."""
        return self.url

    @property
    def seen(self) -> list[Request]:
        """A copy of the log."""
        with self._lock:
            return list(self.log)

    def start(self) -> S3Proxy:
        """Listen (again, on the same port after a stop)."""
        server = _Server(("127.0.0.1", self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse new connections, cut the open ones, end stalls."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
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

    # -- called by the handlers ----------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _choose(self, record: Request) -> Fault:
        with self._lock:
            index = self._index
            self._index += 1
            self.log.append(record)
        if self.schedule is not None:
            return self.schedule.decide(record.method, record.path, record.range)
        if self.plan is not None:
            return self.plan(record.method, record.path, index)
        return Fault.forward()

    def _throttle(self, n: int) -> None:
        """Hold a writer of `n` answer bytes until the shared link has carried them."""
        if self.bandwidth <= 0 or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._link_free)
            self._link_free = start + n / self.bandwidth
            until = self._link_free
        left = until - time.monotonic()
        if left > 0:
            time.sleep(left)

    def _injected(self, record: Request, fault: Fault) -> None:
        record.fault = fault.kind
        with self._lock:
            self._faults[fault.name] += 1

    def _begin(self) -> None:
        with self._lock:
            self._active += 1

    def _finish(self, record: Request) -> None:
        record.finished = time.monotonic()
        with self._lock:
            self._active -= 1
            self._settled.notify_all()
            self._counts[record.kind] += 1
            self._counts["requests"] += 1
            self._counts["bytes_out"] += record.bytes_out
            self._counts["bytes_in"] += record.bytes_in
            if record.kind == "GET" and record.range:
                self._counts["RANGE_GET"] += 1

    # -- reading the counters ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests by kind, in all (`requests`), and bytes out and in. A client can hold a whole
        answer before its handler has counted it, so this first waits (at most SETTLE_TIMEOUT)
        until no request is in flight."""
        with self._lock:
            self._settled.wait_for(lambda: self._active == 0, timeout=SETTLE_TIMEOUT)
            return dict(self._counts)

    def fault_counts(self) -> dict[str, int]:
        """Faults injected, by name (`503 SlowDown`, `reset`, `truncate`, ...)."""
        with self._lock:
            return dict(self._faults)

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return sum(self._faults.values())

    def reset(self) -> None:
        """Forget the counts and the log (faults injected included). Waits first, as counts() does,
        for requests in flight: one whose answer the client already holds is not counted after."""
        with self._lock:
            self._settled.wait_for(lambda: self._active == 0, timeout=SETTLE_TIMEOUT)
            self._counts.clear()
            self._faults.clear()
            self.log.clear()

    def __enter__(self) -> S3Proxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ALL_FAULTS", "TRANSIENT_FAULTS", "Fault", "FaultSchedule", "Plan", "Request", "Response", "S3Proxy",
           "request_kind", "sequential_rounds"]
