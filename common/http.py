"""HTTP with a total deadline and a size bound: the only way ctop talks HTTP to the outside.

`requests` (and urllib3) time out per socket read, not per call: an endpoint that drips a byte a
second keeps a "5 s" call alive for as long as it likes, and a reply is read whole, however big.
Here every call has a deadline for the whole exchange (connect, TLS, headers, body): a watchdog
shuts the socket down when it passes, which wakes any read blocked on it. Bodies are read up to
`max_bytes` and refused beyond. No redirects are followed and no compression is asked for (nothing
can expand after the size check). HTTP(S)_PROXY / NO_PROXY from the environment are honoured.

DNS resolution is the one step the deadline cannot interrupt (the resolver's own timeouts apply).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json as jsonlib
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit

from .text import redact_url

DEFAULT_MAX_BYTES = 8 * 2**20
_CHUNK = 64 * 1024
_SSL_CONTEXT: ssl.SSLContext | None = None


class HTTPError(Exception):
    """The call failed: unreachable, too slow, too big, or not HTTP. The message names the URL only
    in its redacted form, so it can be logged and shown."""

    def __init__(self, url: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(f"{redact_url(url)}: {message}")
        self.detail = message
        self.timeout = timeout


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return jsonlib.loads(self.body)


def _context() -> ssl.SSLContext:
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


def _proxy_for(scheme: str, host: str) -> str | None:
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _connection(scheme: str, host: str, port: int | None, timeout: float) -> http.client.HTTPConnection:
    proxy = _proxy_for(scheme, host)
    if proxy:
        p = urlsplit(proxy)
        if p.scheme != "http" or not p.hostname:
            raise ValueError(f"proxy {redact_url(proxy)}: only http:// proxies are supported")
        if scheme == "https":
            # TLS end to end through the proxy's CONNECT tunnel: the proxy sees only the host name.
            conn = http.client.HTTPSConnection(p.hostname, p.port or 8080, timeout=timeout, context=_context())
            conn.set_tunnel(host, port or 443)
            return conn
        return http.client.HTTPConnection(p.hostname, p.port or 8080, timeout=timeout)
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


class _Watchdog:
    """Shuts the connection's socket down at the deadline (whatever it is doing then)."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.sock: socket.socket | None = None
        self.fired = False
        self.timer = threading.Timer(max(seconds, 0.0), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.sock or self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.timer.cancel()


def request(
    method: str,
    url: str,
    *,
    params: dict | None = None,
    json: object = None,
    headers: dict[str, str] | None = None,
    deadline: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Response:
    """One HTTP exchange, finished within `deadline` seconds or failed with HTTPError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HTTPError(url, f"bad URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HTTPError(url, "not an http(s) URL")
    path = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
    target = path + (f"?{query}" if query else "")
    body = None
    hdrs = {"User-Agent": "ctop", "Accept-Encoding": "identity", "Connection": "close", **(headers or {})}
    if json is not None:
        body = jsonlib.dumps(json).encode()
        hdrs["Content-Type"] = "application/json"
    if parts.username or parts.password:
        token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        hdrs["Authorization"] = "Basic " + base64.b64encode(token).decode()
    started = time.monotonic()
    try:
        conn = _connection(scheme, parts.hostname, port, timeout=max(deadline, 0.001))
    except ValueError as exc:
        raise HTTPError(url, str(exc)) from None
    if _proxy_for(scheme, parts.hostname) and scheme == "http":
        target = f"http://{parts.hostname}{f':{port}' if port else ''}{target}"  # absolute form via a proxy
    dog = _Watchdog(conn, deadline)
    try:
        conn.request(method, target, body=body, headers=hdrs)
        # Held for the watchdog: with "Connection: close", getresponse() hands the socket to the
        # response and sets conn.sock to None, so a body dripped a byte at a time would otherwise
        # outlive the deadline (found by the REST status test: 2.8 s against a 1 s deadline).
        dog.sock = conn.sock
        response = conn.getresponse()
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise HTTPError(url, f"reply of {int(length)} bytes refused (limit {max_bytes})")
        chunks, size = [], 0
        while True:
            chunk = response.read(min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise HTTPError(url, f"reply longer than {max_bytes} bytes refused")
        if dog.fired:
            raise HTTPError(url, f"no complete reply within {deadline:g}s", timeout=True)
        return Response(response.status, b"".join(chunks))
    except HTTPError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if dog.fired or time.monotonic() - started >= deadline:
            raise HTTPError(url, f"no complete reply within {deadline:g}s", timeout=True) from None
        if isinstance(exc, ConnectionRefusedError):
            raise HTTPError(url, "connection refused") from None
        if isinstance(exc, socket.gaierror):
            raise HTTPError(url, "host name not resolved") from None
        if isinstance(exc, ssl.SSLError):
            raise HTTPError(url, f"TLS error ({exc.reason or type(exc).__name__})") from None
        raise HTTPError(url, f"{type(exc).__name__}: cannot complete the exchange") from None
    finally:
        dog.cancel()
        conn.close()


def get(url: str, **kw) -> Response:
    return request("GET", url, **kw)


def post(url: str, **kw) -> Response:
    return request("POST", url, **kw)
