"""A plain-HTTP/1.1 client connection on a socket, for the S3 store's http:// endpoints.

`http.client` loads `email.parser`, `email.message` and `ssl` at import (~20-25 ms of a new
process's CPU, before a cold open's first request can leave); an S3 endpoint on plain HTTP needs
none of them. This connection has the subset of `http.client.HTTPConnection` that the transport
(s3_http.py) uses: `connect`, `request`, `getresponse`, `close`, `sock`; its response has
`status`, `read(amt)`, `getheader(s)`, `will_close` and `close`. HTTPS endpoints keep
`http.client` (and `ssl`).

What it checks: the status line and every header line are well formed (at most MAX_HEADERS
lines of at most MAX_LINE bytes), a body is exactly its Content-Length or well-formed chunks; a
body cut short raises IncompleteBody (an OSError: the transport treats it as any failure of
the connection, and the store retries). An empty answer where a status line was due is
RemoteDisconnected (the server closed a kept-alive connection), as http.client reports it.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Mapping

#: Longest status or header line accepted, and most header lines (http.client's limits).
MAX_LINE = 65536
MAX_HEADERS = 100
#: Bodies up to this size leave in one send with the request head (one segment, not two).
COALESCE_BODY_BYTES = 64 * 1024
#: Statuses whose answers have no body whatever their headers say.
_NO_BODY = frozenset({204, 304})


class HTTPProtocolError(OSError):
    """The server's answer is not well-formed HTTP/1.x."""


class IncompleteBody(HTTPProtocolError):
    """The connection ended before the whole body arrived."""


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection without answering (a kept-alive connection it dropped)."""


class PlainResponse:
    """An answer whose head has been read; the body is read from the connection's stream."""

    def __init__(self, stream: io.BufferedReader, method: str) -> None:
        self._fp = stream
        line = self._readline()
        if not line:
            raise RemoteDisconnected("remote end closed connection without response")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, self.reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise HTTPProtocolError(f"malformed status line {line[:80]!r}")
        self.status = int(code)
        self.version = 11 if version == "HTTP/1.1" else 10
        self._headers: list[tuple[str, str]] = []
        while True:
            raw = self._readline()
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                raise IncompleteBody("connection closed inside the answer's headers")
            if len(self._headers) >= MAX_HEADERS:
                raise HTTPProtocolError(f"more than {MAX_HEADERS} header lines")
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPProtocolError(f"malformed header line {raw[:80]!r}")
            self._headers.append((name, value.strip()))
        fields = {k.lower(): v for k, v in self._headers}
        connection = fields.get("connection", "").lower()
        self._chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        self._left: int | None = None  # body bytes still to read (None: until close, or chunked)
        if method == "HEAD" or self.status in _NO_BODY or 100 <= self.status < 200:
            self._left = 0
            self._chunked = False
        elif not self._chunked and "content-length" in fields:
            try:
                self._left = int(fields["content-length"])
            except ValueError:
                raise HTTPProtocolError(f"bad Content-Length {fields['content-length']!r}") from None
            if self._left < 0:
                raise HTTPProtocolError(f"bad Content-Length {fields['content-length']!r}")
        self._chunk_left = 0
        self._done = self._left == 0
        self.will_close = (connection == "close" or (self.version == 10 and connection != "keep-alive")
                           or (self._left is None and not self._chunked))

    def _readline(self) -> bytes:
        line = self._fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HTTPProtocolError("header line too long")
        return line

    def _read_exact(self, n: int) -> bytes:
        data = self._fp.read(n)
        if len(data) < n:
            raise IncompleteBody(f"body cut short: {len(data)} of {n} bytes")
        return data

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for k, v in self._headers:
            if k.lower() == lowered:
                return v
        return default

    def read(self, amt: int | None = None) -> bytes:
        """The rest of the body, or at most `amt` bytes of it (b"" at its end)."""
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(amt)
        if self._left is None:  # until the server closes
            data = self._fp.read() if amt is None else self._fp.read(amt)
            if amt is None or not data:
                self._done = True
            return data
        if amt is None:
            data = self._read_exact(self._left)
        else:
            # A stream reader keeps what arrived before a connection broke (it resumes from
            # there): a short read is returned, and the next one, finding nothing, raises.
            data = self._fp.read(min(amt, self._left))
            if not data:
                raise IncompleteBody(f"body cut short: {self._left} bytes missing")
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _read_chunked(self, amt: int | None) -> bytes:
        parts: list[bytes] = []
        want = amt
        while want is None or want > 0:
            if self._chunk_left == 0:
                line = self._readline()
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPProtocolError(f"malformed chunk size {line[:40]!r}") from None
                if size == 0:
                    while self._readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers: none that we use
                    self._done = True
                    break
                self._chunk_left = size
            n = self._chunk_left if want is None else min(want, self._chunk_left)
            parts.append(self._read_exact(n))
            self._chunk_left -= n
            if want is not None:
                want -= n
            if self._chunk_left == 0 and self._read_exact(2) != b"\r\n":
                raise HTTPProtocolError("chunk not followed by CRLF")
        return b"".join(parts)

    def close(self) -> None:
        self._done = True


def split_host(host: str) -> tuple[str, int]:
    """(name, port) of `name`, `name:port`, `[v6]` or `[v6]:port` (port 80 by default)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"invalid host {host!r}")
        rest = host[end + 1:]
        return host[1:end], int(rest[1:]) if rest.startswith(":") and len(rest) > 1 else 80
    name, sep, text = host.rpartition(":")
    if sep and ":" not in name:  # a bare IPv6 address has several colons and no port
        return name, int(text) if text else 80
    return host, 80


class PlainConnection:
    """One keep-alive TCP connection to `host` (`name` or `name:port`, port 80 by default)."""

    def __init__(self, host: str, port: int | None = None, timeout: float | None = None) -> None:
        if port is None:
            host, port = split_host(host)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._fp: io.BufferedReader | None = None
        self._method = "GET"

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self._fp = self.sock.makefile("rb")

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        given = dict(headers or {})
        names = {k.lower() for k in given}
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {self.host}" if self.port == 80 else f"Host: {self.host}:{self.port}")
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        if body is not None or method in ("PUT", "POST"):
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(body or b'')}")
        for name, value in given.items():
            text = str(value)
            if "\r" in text or "\n" in text or "\r" in name or "\n" in name or ":" in name:
                raise ValueError(f"invalid header {name!r}")
            lines.append(f"{name}: {text}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body and len(body) <= COALESCE_BODY_BYTES:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            if body:
                self.sock.sendall(body)
        self._method = method

    def getresponse(self) -> PlainResponse:
        """The answer to the request sent; interim 1xx answers (a server may send 100 Continue
        unasked) are read past, as http.client does, so they are never taken for the answer."""
        assert self._fp is not None
        while True:
            response = PlainResponse(self._fp, self._method)
            if not 100 <= response.status < 200 or response.status == 101:
                return response

    def close(self) -> None:
        fp, self._fp = self._fp, None
        sock, self.sock = self.sock, None
        if fp is not None:
            fp.close()
        if sock is not None:
            sock.close()


__all__ = ["HTTPProtocolError", "IncompleteBody", "PlainConnection", "PlainResponse", "RemoteDisconnected",
           "split_host"]
