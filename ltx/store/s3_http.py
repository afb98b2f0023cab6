"""The S3 store's HTTP transport: keep-alive connections to one endpoint, directly or through the
HTTP proxy the environment names, in the standard library only: on plain HTTP our own small
HTTP/1.1 connection (http11.py: a new process does not load http.client, email and ssl before
its first request), on HTTPS http.client's, with ssl.

One transport carries every request the store signs itself (GET, HEAD, LIST, PUT, DELETE, and
the streams of `open`). Idle connections wait in a pool for the next request of any thread.
A connection that the server closed while it sat idle gets one immediate second try on a new
one (unless the caller counts every send as an attempt, as a PUT does). Failures of the
connection become TransientError (the store's retry policy decides), a TLS failure a
TransientError too unless the certificate was refused, which no retry cures.

Proxies: `proxy_for(url)` is the one place that decides, from `http_proxy` / `https_proxy` /
`all_proxy` and `no_proxy` as urllib (and botocore) read them. A plain-HTTP endpoint is reached
by sending the absolute URL to the proxy; an HTTPS one through a CONNECT tunnel. Proxy
credentials in the proxy URL go in `Proxy-Authorization` (basic).
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ltx.store.http11 import PlainConnection
from ltx.store.retry import TransientError

if TYPE_CHECKING:
    import http.client
    import ssl

    Connection = http.client.HTTPConnection | PlainConnection

#: Idle connections kept for reuse; more are closed once their answer is read.
DEFAULT_MAX_IDLE_CONNECTIONS = 64
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Longest silence while waiting for response bytes before the attempt counts as failed.
DEFAULT_READ_TIMEOUT_S = 60.0
#: Failures of a reused connection that mean the server had closed it while idle (http.client's
#: and http11's RemoteDisconnected are ConnectionResetErrors).
_STALE = (ConnectionResetError, BrokenPipeError)


def connection_errors() -> tuple[type[BaseException], ...]:
    """What a failure of a connection raises: OSError, and http.client's HTTPException once an
    HTTPS transport has loaded it (http11's errors are OSErrors)."""
    client = sys.modules.get("http.client")
    return (OSError,) if client is None else (OSError, client.HTTPException)


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens and the Proxy-Authorization header value ('' for none)."""

    host: str
    port: int
    authorization: str = ""


class ProxyConfigError(ValueError):
    """The environment names a proxy this transport cannot use (`url` is credential-free)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"proxy {url}: {reason}")


def proxy_for(url: str) -> Proxy | None:
    """The HTTP proxy the environment routes `url` through, or None."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    from urllib.request import getproxies_environment, proxy_bypass  # ~20 ms: only when needed

    parts = urlsplit(url)
    proxies = getproxies_environment()
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    if not chosen or proxy_bypass(parts.hostname or ""):
        return None
    if "://" not in chosen:
        chosen = "http://" + chosen
    proxy = urlsplit(chosen)
    shown = f"{proxy.scheme}://{proxy.hostname}:{proxy.port}" if proxy.port else f"{proxy.scheme}://{proxy.hostname}"
    if proxy.scheme != "http":
        raise ProxyConfigError(shown, "only http:// proxies are supported")
    if not proxy.hostname:
        raise ProxyConfigError(shown, "no host")
    authorization = ""
    if proxy.username is not None:
        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(proxy.hostname, proxy.port or 80, authorization)


@dataclass
class Answer:
    """A response read in full."""

    status: int
    headers: dict[str, str]
    body: bytes


class Transport:
    """Requests to one endpoint (`https`, `host` with its port if any)."""

    def __init__(self, host: str, *, https: bool, proxy: Proxy | None, verify: bool, ca_file: str | None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
                 read_timeout: float = DEFAULT_READ_TIMEOUT_S,
                 max_idle: int = DEFAULT_MAX_IDLE_CONNECTIONS) -> None:
        self.host = host
        self.https = https
        self.proxy = proxy
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        if https:
            import ssl  # HTTPS only

            self._ssl = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    def _target(self, path: str, query: str) -> str:
        target = path + ("?" + query if query else "")
        if self.proxy is not None and not self.https:
            return f"http://{self.host}{target}"  # a plain-HTTP proxy takes the absolute URL
        return target

    def _new_connection(self) -> Connection:
        conn: Connection
        proxy = self.proxy
        if not self.https:
            if proxy is None:
                conn = PlainConnection(self.host, timeout=self._connect_timeout)
            else:
                conn = PlainConnection(proxy.host, proxy.port, timeout=self._connect_timeout)
        else:
            import http.client  # HTTPS only

            if proxy is None:
                conn = http.client.HTTPSConnection(self.host, timeout=self._connect_timeout, context=self._ssl)
            else:
                conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=self._connect_timeout,
                                                   context=self._ssl)
                tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                where = urlsplit("//" + self.host)
                conn.set_tunnel(where.hostname or self.host, where.port or 443, headers=tunnel_headers)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(self._read_timeout)
        return conn

    def _take(self) -> tuple[Connection | None, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return None, False

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        out = dict(headers)
        if self.proxy is not None and not self.https and self.proxy.authorization:
            out["proxy-authorization"] = self.proxy.authorization
        return out

    def request(self, method: str, path: str, query: str, headers: Mapping[str, str],
                body: bytes | None = None, *, resend: bool = True) -> Answer:
        """Send one request and read its answer in full. `resend`: a reused connection that the
        server had closed while idle is retried at once on a new one."""
        for second in (False, True) if resend else (False,):
            conn, reused = (None, False) if second else self._take()
            try:
                if conn is None:
                    conn = self._new_connection()
                conn.request(method, self._target(path, query), body=body, headers=self._headers(headers))
                resp = conn.getresponse()
                data = resp.read()
            except connection_errors() as exc:
                if conn is not None:
                    conn.close()
                if reused and resend and isinstance(exc, _STALE):
                    continue
                raise transient(method, exc) from exc
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def open(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> tuple[Any, Connection]:
        """Send a request on a connection of its own and return the answer unread (a stream);
        the caller closes the connection when done with it."""
        conn: Connection | None = None
        try:
            conn = self._new_connection()
            conn.request(method, self._target(path, query), headers=self._headers(headers))
            return conn.getresponse(), conn
        except connection_errors() as exc:
            if conn is not None:
                conn.close()
            raise transient(method, exc) from exc

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()




class TLSError(Exception):
    """The server's certificate was refused (no retry cures it)."""


def transient(method: str, exc: BaseException) -> Exception:
    """The error for a failure of the connection: TransientError, or TLSError for a refused
    certificate. Credential-free: the text is the exception's own, which never holds headers."""
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(f"{method}: TLS failure ({type(exc).__name__}: {exc})")
    return TransientError(f"{method}: {type(exc).__name__}: {exc}")


__all__ = ["Answer", "Proxy", "ProxyConfigError", "TLSError", "Transport", "connection_errors", "proxy_for",
           "transient"]
