"""The function's httpx transports: each request sent once, its encoded path kept byte for byte.

`AdaptiveTransport` starts on a lean path, so the first answer waits for neither aiohttp's
import (about 85 ms, half of it TLS contexts aiohttp builds at import) nor httpcore's and
anyio's (about 30 ms): a direct URL goes over a small HTTP/1.1 client of its own, h11 on
asyncio streams (importing h11 costs about 6 ms), and only a URL a proxy carries goes over
httpcore, imported then. After `switch_after` requests it moves to aiohttp, imported on a
worker thread meanwhile. `AiohttpTransport` is the aiohttp path alone.

Every path sends each request at most once: a connection that drops is an
`httpx.TransportError` for the caller's retry logic (aiohttp would otherwise re-send an
idempotent request once on its own; the h11 path drops an idle connection the server has
closed before sending anything on it). Proxies come from `HTTP_PROXY`, `HTTPS_PROXY` and
`ALL_PROXY` (either case) with `NO_PROXY`, read once when a transport is built; `.netrc` is
never read. TLS verification uses `httpx.create_ssl_context()` on every path, built at the first
https request. No path adds a User-Agent or Accept-Encoding of its own.

No path decompresses, and none reads a body whole whatever its size. The ECS API is called
without Accept-Encoding, so a `Content-Encoding` in a reply is the server's choice alone: the
body is handed to httpx as it came, its `Content-Encoding` header renamed `ENCODING_HEADER`
(`x-janitor-content-encoding`, same value) so that httpx does not inflate it (64 KB of gzip
can inflate to gigabytes). A body is read chunk by chunk, each read bounded by the request's
read timeout, up to a limit: an error reply (status >= 300) keeps its first
`MAX_ERROR_BODY_BYTES` (64 KiB; its outcome and detail need no more), marked by a
`TRUNCATED_HEADER` (`x-janitor-body-truncated`) that states the limit; a successful one longer
than `MAX_BODY_BYTES` (32 MiB) is an `httpx.RemoteProtocolError`. Either way the rest is never
read and that connection is closed, never reused.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import threading
import time
import urllib.request
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import unquote, urlsplit

import httpx

# asyncio is imported where it is used, always inside a running loop: importing it here would
# add about 10 ms to importing this module (httpx does not import it).
if TYPE_CHECKING:
    import asyncio
    import socket
    import ssl

    import aiohttp
    import httpcore


__all__ = [
    "ENCODING_HEADER",
    "MAX_BODY_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "TRUNCATED_HEADER",
    "AdaptiveTransport",
    "AiohttpTransport",
    "load_aiohttp",
    "proxy_configured",
    "proxy_error",
]

#: The requests sent over the lean path before AdaptiveTransport starts loading aiohttp; chosen
#: when that path was httpcore, which cost 2-4x aiohttp's CPU per request. Measured with the h11
#: path (3,000 DELETEs on loopback, through httpx.AsyncClient) its CPU per request is aiohttp's
#: or less: about 0.9x at 1 in flight, 0.92x at 16, 0.98x at 64. Events of 64 to 1,024
#: requests (16 in flight, one core, a fresh process each) then took 1.4-4x longer with a switch
#: at 64 than with none: the import is paid and never earned back. A URL a proxy carries
#: still goes over httpcore (4x aiohttp's CPU at 16 in flight), where switching would pay; a
#: proxy is rare, so the default is to never switch (pass `switch_after` to choose otherwise).
DEFAULT_SWITCH_AFTER: int | None = None

#: The longest body of a successful reply (status < 300) read: a server listing page with its
#: metadata is a few MiB. A longer one is an `httpx.RemoteProtocolError`, and is never read whole.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: The most of an error reply's body (status >= 300) read: its outcome and detail are decided
#: from a prefix. A longer body is cut there (the rest is never read).
MAX_ERROR_BODY_BYTES = 64 * 1024
#: The name a reply's `Content-Encoding` header is handed to httpx under, its value unchanged:
#: httpx would inflate the body it names, and no path decompresses.
ENCODING_HEADER = "x-janitor-content-encoding"
#: Added to an error reply whose body was cut; its value is the limit, in bytes.
TRUNCATED_HEADER = "x-janitor-body-truncated"

_PROXY_SCHEMES = ("http", "https")
#: Proxy schemes named in messages; any other is "unsupported" (it is the user's text).
_KNOWN_SCHEMES = frozenset({"https", "socks4", "socks4a", "socks5", "socks5h"})

# NO_PROXY matching exactly as urllib applies it (typeshed does not declare the function).
_proxy_bypass: Callable[[str, dict[str, str]], bool]
_proxy_bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


# --- aiohttp, loaded on demand --------------------------------------------------------------


class _AiohttpState:
    """Whether aiohttp has been imported by `load_aiohttp` or a transport's background load."""

    loaded = False


_AIOHTTP = _AiohttpState()


def _import_aiohttp() -> None:
    import aiohttp  # noqa: F401
    import yarl  # noqa: F401

    _AIOHTTP.loaded = True


def load_aiohttp() -> None:
    """Import aiohttp now; adaptive transports that may switch then use it at their next request."""
    _import_aiohttp()


def preload(url: str) -> None:
    """Load what the first request to `url` needs (h11; the TLS context for https): warm-up."""
    import h11  # noqa: F401

    if url.lower().startswith("https:"):
        _ssl_context()


# --- proxies --------------------------------------------------------------------------------


def _variable(key: str, value: str) -> str:
    """The environment variable a `getproxies_environment()` entry came from (for messages)."""
    lower = f"{key}_proxy"
    return lower if os.environ.get(lower) == value else lower.upper()


def _check_proxy(key: str, value: str) -> str | None:
    """A one-line message when `value` is not an http:// proxy URL; it never quotes the value."""
    name = _variable(key, value)
    scheme, sep, _ = value.partition("://")
    scheme = scheme.lower() if sep else "http"  # "proxy:3128" is http, as for httpx and curl
    if scheme != "http":
        named = f"a {scheme}://" if scheme in _KNOWN_SCHEMES else "an unsupported"
        return f"{name} names {named} proxy: only http:// proxies are supported"
    full = value if sep else f"http://{value}"
    try:
        urlsplit(full).port  # noqa: B018 - raises on a bad port or an unbalanced [IPv6]
        host = httpx.URL(full).host
    except (httpx.InvalidURL, ValueError):
        host = ""
    if not host or "[" in host or "%" in host:
        return f"{name} is not a valid proxy URL (expected http://host:port)"
    return None


def proxy_error(url: str | None = None) -> str | None:
    """Return why a proxy the environment names (for `url`, if given) is unusable, else None."""
    proxies = _Proxies()
    if url is None:
        return next(iter(proxies.errors.values()), None)
    try:
        proxies.for_request(httpx.Request("GET", url))
    except httpx.ProxyError as exc:
        return str(exc)
    return None


def proxy_secrets() -> list[str]:
    """The credentials in the environment's proxy URLs, as they may be echoed back: the
    password, `user:password`, and the `Proxy-Authorization: Basic` value made of them."""
    secrets: list[str] = []
    for value in urllib.request.getproxies_environment().values():
        try:
            parts = urlsplit(value if "://" in value else f"http://{value}")
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if not password:
            continue
        for name, secret in ((user or "", password), (unquote(user or ""), unquote(password))):
            pair = f"{name}:{secret}"
            secrets += [secret, pair, base64.b64encode(pair.encode("utf-8")).decode("ascii")]
    return secrets


def proxy_configured() -> bool:
    """True when the environment names a proxy for http or https URLs."""
    proxies = urllib.request.getproxies_environment()
    return any(proxies.get(key) for key in ("all", *_PROXY_SCHEMES))


class _Proxies:
    """The environment's proxy rules, read once: which proxy, if any, carries a URL."""

    def __init__(self) -> None:
        self._environment = urllib.request.getproxies_environment()
        self.urls: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        for scheme in _PROXY_SCHEMES:
            key = scheme if self._environment.get(scheme) else "all"
            value = self._environment.get(key)
            if not value:
                continue
            message = _check_proxy(key, value)
            if message is not None:
                self.errors[scheme] = message
            else:
                self.urls[scheme] = value if "://" in value else f"http://{value}"
        self.active = bool(self.urls or self.errors)
        self._bypassed: dict[str, bool] = {}

    def for_request(self, request: httpx.Request) -> str | None:
        """The proxy URL for a request (None: connect directly); ProxyError for a bad one."""
        url = request.url
        scheme = url.scheme
        if scheme not in self.urls and scheme not in self.errors:
            return None
        netloc = url.netloc.decode("ascii")
        bypass = self._bypassed.get(netloc)
        if bypass is None:
            bypass = _proxy_bypass(netloc, self._environment)
            if len(self._bypassed) < 1024:
                self._bypassed[netloc] = bypass
        if bypass:
            return None
        if scheme in self.errors:
            raise httpx.ProxyError(self.errors[scheme], request=request)
        return self.urls[scheme]


# --- shared pieces --------------------------------------------------------------------------

_SSL_CONTEXT: list[ssl.SSLContext] = []
_SSL_LOCK = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """The process's one verifying TLS context, built as httpx builds it, at the first use."""
    if not _SSL_CONTEXT:
        with _SSL_LOCK:
            if not _SSL_CONTEXT:
                _SSL_CONTEXT.append(httpx.create_ssl_context())
    return _SSL_CONTEXT[0]


class _Limits:
    """How much of a reply's body is read: `success` for status < 300, `error` for the others."""

    __slots__ = ("error", "success")

    def __init__(self, success: int, error: int) -> None:
        if success < 0 or error < 0:
            raise ValueError("body limits must be >= 0")
        self.success = success
        self.error = error


class _Body:
    """A reply's body, read chunk by chunk up to its status's limit."""

    __slots__ = ("chunks", "cut", "error", "limit", "request", "size")

    def __init__(self, request: httpx.Request, limits: _Limits, status: int) -> None:
        self.request = request
        self.error = status >= 300
        self.limit = limits.error if self.error else limits.success
        self.chunks: list[bytes] = []
        self.size = 0
        self.cut = False

    def add(self, data: bytes) -> bool:
        """Keep `data`; False once an error body is cut (read no more: close the connection).

        Past the limit, an error body keeps its first `limit` bytes; a successful reply's body
        is a RemoteProtocolError.
        """
        size = self.size + len(data)
        if size <= self.limit:
            self.chunks.append(data)
            self.size = size
            return True
        if not self.error:
            message = f"response body larger than {self.limit} bytes"
            raise httpx.RemoteProtocolError(message, request=self.request)
        self.chunks.append(data[: self.limit - self.size])
        self.size = self.limit
        self.cut = True
        return False


_DEFAULT_LIMITS = _Limits(MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES)
_CONTENT_ENCODING = b"content-encoding"
_ENCODING_HEADER = ENCODING_HEADER.encode("ascii")
_TRUNCATED_HEADER = TRUNCATED_HEADER.encode("ascii")


def _response(
    request: httpx.Request,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: _Body,
    http_version: bytes,
) -> httpx.Response:
    """The httpx.Response of a reply, its body as it came: httpx is not shown Content-Encoding."""
    raw = [
        (_ENCODING_HEADER, value) if name.lower() == _CONTENT_ENCODING else (name, value)
        for name, value in headers
    ]
    if body.cut:
        raw.append((_TRUNCATED_HEADER, b"%d" % body.limit))
    return httpx.Response(
        status_code=status,
        headers=raw,
        content=b"".join(body.chunks),
        request=request,
        extensions={"http_version": http_version},
    )


async def _close_on(
    loop: asyncio.AbstractEventLoop | None, close: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `close()` on `loop`, where its connections live, whichever loop is running now."""
    import asyncio

    running = asyncio.get_running_loop()
    if loop is None or loop is running:
        await close()
    elif loop.is_closed():
        # Its sockets were left to that loop; closing now only marks the pool closed.
        with contextlib.suppress(RuntimeError):  # "Event loop is closed", from a transport
            await close()
    elif loop.is_running():  # on another thread
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop))
    else:  # idle between run_until_complete calls: run it there, off this loop's thread
        await asyncio.to_thread(loop.run_until_complete, close())


# --- the aiohttp path -----------------------------------------------------------------------


class _SentOnce(Exception):
    """A connection error of a request already on the wire, carried past aiohttp's re-send."""


def _send_once_middleware() -> Callable[
    [aiohttp.ClientRequest, Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]],
    Awaitable[aiohttp.ClientResponse],
]:
    """An aiohttp client middleware that turns its one automatic re-send off.

    `ClientSession._request` sends an idempotent request again when the first attempt fails
    with `ClientOSError` or `ServerDisconnectedError` (meant for a kept-alive connection the
    server closed; it also fires on a fresh one). Those errors are carried out of the handler
    inside `_SentOnce`, which that loop does not catch, and unwrapped by the transport.
    """
    from aiohttp import ClientConnectorError, ClientOSError, ServerDisconnectedError

    async def send_once(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        try:
            return await handler(request)
        except ClientConnectorError:  # nothing was sent; aiohttp does not re-send these
            raise
        except (ClientOSError, ServerDisconnectedError) as exc:
            raise _SentOnce(exc) from exc

    return send_once


def _aiohttp_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx error for an aiohttp (or socket) error; None when it is not one."""
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"timed out: {exc!s}", request=request)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(f"timed out: {exc!s}", request=request)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.NetworkError(message, request=request)
    return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one aiohttp session, created lazily inside the running loop.

    Measured on loopback it costs a quarter of the CPU per request of httpx's default transport
    at 16 requests in flight. Unlike a plain `str(url)` hand-over, it passes the URL as already
    encoded, so a key's `%3A` stays `%3A` on the wire: the path signed is the path sent. It
    sends each request at most once (see `_send_once_middleware`), and reads a body up to
    `max_body_bytes` (`max_error_body_bytes` for an error reply), never decompressed.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_error_body_bytes: int = MAX_ERROR_BODY_BYTES,
        _proxies: _Proxies | None = None,
    ) -> None:
        self._limits = _Limits(max_body_bytes, max_error_body_bytes)
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._proxies = _proxies if _proxies is not None else _Proxies()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        # aiohttp is imported on the first request, not with the module: it builds its TLS
        # contexts at import (~35 ms), which belongs to the first call, not to every import.
        import asyncio

        import aiohttp

        if self._closed:
            raise RuntimeError("the transport is closed")
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            trust_env=False,  # proxies are chosen here; .netrc is never read
            middlewares=(_send_once_middleware(),),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through aiohttp, at most once, and return the response, read."""
        session = self._session or self._open_session()
        import aiohttp
        from yarl import URL

        url = request.url
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        try:
            proxy = self._proxies.for_request(request) if self._proxies.active else None
            async with session.request(
                request.method,
                URL(str(url), encoded=True),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy,
                ssl=_ssl_context() if url.scheme == "https" else True,
            ) as response:
                body = _Body(request, self._limits, response.status)
                stream = response.content  # as it came: the session does not decompress
                try:
                    while chunk := await stream.read(_READ_SIZE):
                        if not body.add(chunk):
                            break
                finally:
                    if not stream.is_eof():  # cut, or failed: never reuse the connection
                        response.close()
                return _response(
                    request, response.status, list(response.raw_headers), body, b"HTTP/1.1"
                )
        except _SentOnce as exc:
            cause = exc.args[0]
            raise (_aiohttp_error(cause, request) or httpx.NetworkError(str(cause))) from cause
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            mapped = _aiohttp_error(exc, request)
            if mapped is None:  # pragma: no cover - every ClientError or OSError maps
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await _close_on(self._loop, session.close)


# --- the h11 path: direct connections on asyncio streams -----------------------------------

#: The most a response's head may take (httpcore's limit too); a longer one is a protocol error.
_MAX_HEAD = 100 * 1024
_READ_SIZE = 64 * 1024
#: How long `aclose()` lets connections close politely (a TLS close_notify) before aborting them.
_CLOSE_WAIT_S = 1.0
_DEFAULT_PORTS = {b"http": 80, b"https": 443}

#: scheme, host, port: the connections a request may reuse.
_Origin = tuple[bytes, bytes, int]


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read on the socket would not block: bytes or the peer's close are waiting."""
    fileno = -1 if sock is None else sock.fileno()
    if fileno < 0:
        return True  # closed already
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fileno], [], [], 0)[0])  # pragma: no cover - Windows


class _H11Connection:
    """One HTTP/1.1 connection: asyncio streams carry the bytes, h11 writes and reads them."""

    __slots__ = ("h11", "idle_since", "origin", "reader", "writer")

    def __init__(
        self, origin: _Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        import h11

        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def stale(self) -> bool:
        """True when the server closed it (or sent anything) while it was idle."""
        reader = self.reader
        return (
            self.writer.transport.is_closing()
            or reader.at_eof()
            or reader.exception() is not None
            # Bytes on an idle connection (a late "408", then a close): never read them as the
            # next request's reply. StreamReader has no public way to ask.
            or bool(getattr(reader, "_buffer", None))
            # A close (or bytes) the loop has not read yet, as httpcore checks (a few µs)
            or _readable(self.writer.get_extra_info("socket"))
        )

    def abort(self) -> None:
        """Close at once: nothing more is written, read or awaited."""
        with contextlib.suppress(RuntimeError):  # "Event loop is closed": it died with its loop
            self.writer.transport.abort()

    async def exchange(
        self,
        request: httpx.Request,
        content: bytes,
        timeouts: dict[str, float | None],
        limits: _Limits,
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body, bytes, bool]:
        """Send the request once; read the reply: status, headers, body, version, reusable.

        The body is read up to its limit (see `_Body`): an error body cut there leaves the
        connection unusable (the rest is never read).
        """
        import asyncio

        import h11

        state = self.h11
        try:
            data = state.send(
                h11.Request(
                    method=request.method,
                    target=request.url.raw_path,
                    headers=request.headers.raw,
                )
            )
            if content:
                data += state.send(h11.Data(data=content))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(_message(exc), request=request) from exc
        writer = self.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():  # else the kernel has it all already
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpx.WriteTimeout("timed out writing the request", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(_message(exc), request=request) from exc

        reader = self.reader
        read_timeout = timeouts.get("read")
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        version = b"HTTP/1.1"
        body = _Body(request, limits, 0)  # until the reply's head comes
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(_message(exc), request=request) from exc
            if event is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(read_timeout):
                        chunk = await reader.read(_READ_SIZE)
                except TimeoutError as exc:
                    raise httpx.ReadTimeout("timed out reading the reply", request=request) from exc
                except OSError as exc:
                    raise httpx.ReadError(_message(exc), request=request) from exc
                if not chunk and state.their_state is h11.SEND_RESPONSE:
                    message = "Server disconnected without sending a response."
                    raise httpx.RemoteProtocolError(message, request=request)
                state.receive_data(chunk)  # b"": the end of the stream, for h11 to judge
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = event.headers.raw_items()
                version = b"HTTP/" + event.http_version
                body = _Body(request, limits, status)
            elif isinstance(event, h11.Data):
                if not body.add(event.data):
                    break  # an error body cut at its limit
            elif isinstance(event, h11.EndOfMessage):
                break
            elif not isinstance(event, h11.InformationalResponse):  # 1xx: the reply follows
                # ConnectionClosed or PAUSED cannot come before the reply's end
                raise httpx.RemoteProtocolError(f"unexpected {event!r}", request=request)
        trailing, closed = state.trailing_data
        reusable = (
            not body.cut
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not trailing
            and not closed
        )
        if reusable:
            state.start_next_cycle()
        return status, headers, body, version, reusable


async def _shut(connections: list[_H11Connection]) -> None:
    """Close connections politely, then abort those not closed within `_CLOSE_WAIT_S`."""
    import asyncio

    closing: dict[asyncio.Future[None], _H11Connection] = {}
    for connection in connections:
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to wait for
            connection.writer.close()
            closing[asyncio.ensure_future(connection.writer.wait_closed())] = connection
    if closing:
        _, pending = await asyncio.wait(closing, timeout=_CLOSE_WAIT_S)
        for waiting in pending:
            waiting.cancel()
        for waiting in closing:  # wait_closed raises what ended the connection, if anything
            if waiting.done() and not waiting.cancelled():
                waiting.exception()
    for connection in connections:
        connection.abort()


class _H11Pool:
    """Direct HTTP/1.1 connections on asyncio streams and h11, kept alive per origin.

    At most `max_connections` are open (or opening) at once; idle ones are reused last in,
    first out, and one the server has closed, or that was idle longer than `keepalive_s`, is
    dropped before anything is sent on it. A request that was sent and then failed raises: it
    is never sent again. A connection is reused only when h11 says both sides are done with
    the last exchange; any error or cancellation aborts it, as does a body cut at its limit.
    """

    def __init__(
        self, *, max_connections: int, keepalive_s: float, limits: _Limits | None = None
    ) -> None:
        self._limits = limits or _DEFAULT_LIMITS
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._idle: dict[_Origin, list[_H11Connection]] = {}
        self._connections: set[_H11Connection] = set()  # open: idle or carrying a request
        self._slots = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request over an idle or a new connection and read the reply."""
        url = request.url
        scheme = url.raw_scheme
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port is None:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{url.scheme}://'.", request=request
            )
        origin = (scheme, url.raw_host, url.port or default_port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        content = await request.aread()
        connection = await self._acquire(origin, timeouts.get("pool"), request)
        if connection is None:
            try:
                connection = await self._connect(origin, timeouts.get("connect"), request)
            except BaseException:
                self._slots -= 1
                self._wake()
                raise
        try:
            status, headers, body, version, reusable = await connection.exchange(
                request, content, timeouts, self._limits
            )
        except BaseException:
            self._drop(connection)
            raise
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
            self._wake()
        else:
            self._drop(connection)
        return _response(request, status, headers, body, version)

    async def _acquire(
        self, origin: _Origin, pool_s: float | None, request: httpx.Request
    ) -> _H11Connection | None:
        """An idle connection to `origin`; or None, a slot reserved to open a new one."""
        import asyncio

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        if not self._waiters:  # first come, first served
            taken = self._take(origin)
            if taken is not False:
                return taken
        deadline = None if pool_s is None else loop.time() + pool_s
        woken = False
        while True:
            waiter = loop.create_future()
            if woken:  # its turn came and went to a newcomer: it stays first in line
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the turn passes to the next
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    message = "timed out waiting for a connection"
                    raise httpx.PoolTimeout(message, request=request) from exc
                raise
            taken = self._take(origin)
            if taken is not False:
                return taken
            woken = True

    def _take(self, origin: _Origin) -> _H11Connection | Literal[False] | None:
        """An idle connection, None for a slot reserved, or False: none free (wait)."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        idle = self._idle.get(origin)
        if idle:
            fresh_since = time.monotonic() - self._keepalive_s
            while idle:
                connection = idle.pop()
                if connection.idle_since >= fresh_since and not connection.stale():
                    return connection
                self._drop(connection)
        if self._slots < self._max_connections:
            self._slots += 1
            return None
        for others in self._idle.values():  # all busy but some idle elsewhere: close the oldest
            if others:
                self._drop(others.pop(0))
                self._slots += 1
                return None
        return False

    async def _connect(
        self, origin: _Origin, connect_s: float | None, request: httpx.Request
    ) -> _H11Connection:
        import asyncio

        scheme, host, port = origin
        name = host.decode("ascii")
        tls = _ssl_context() if scheme == b"https" else None
        try:
            async with asyncio.timeout(connect_s):
                reader, writer = await asyncio.open_connection(
                    name, port, ssl=tls, server_hostname=name if tls is not None else None
                )
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpx.ConnectTimeout("timed out connecting", request=request) from exc
        except OSError as exc:  # refused, unreachable, unresolved, a certificate not trusted
            raise httpx.ConnectError(_message(exc), request=request) from exc
        if self._closed:  # aclose() ran meanwhile: it could not close this one
            writer.transport.abort()
            raise RuntimeError("the transport is closed")
        connection = _H11Connection(origin, reader, writer)
        self._connections.add(connection)
        return connection

    def _drop(self, connection: _H11Connection) -> None:
        """Abort a connection and free its slot for whoever waits."""
        connection.abort()
        self._connections.discard(connection)
        self._slots -= 1
        self._wake()

    def _wake(self) -> None:
        """Let the first request waiting for a connection try again."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve `loop` from now on: idle connections opened on another loop cannot be used."""
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())
        self._waiters.clear()
        self._loop = loop

    async def aclose(self) -> None:
        """Close every connection, idle or carrying a request; waiting requests then fail."""
        self._closed = True
        if self._connections or self._waiters:
            await _close_on(self._loop, self._close_all)

    async def _close_all(self) -> None:
        self._idle.clear()
        connections = list(self._connections)
        self._connections.clear()
        while self._waiters:
            self._wake()  # each finds the pool closed
        await _shut(connections)


# --- the httpcore path, for proxies ---------------------------------------------------------

_CORE_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {}


def _core_error(exc: Exception, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx error for an httpcore error (httpx's own mapping); None when it is not one."""
    if not _CORE_ERRORS:
        import httpcore

        _CORE_ERRORS.update(
            {
                httpcore.ConnectTimeout: httpx.ConnectTimeout,
                httpcore.ReadTimeout: httpx.ReadTimeout,
                httpcore.WriteTimeout: httpx.WriteTimeout,
                httpcore.PoolTimeout: httpx.PoolTimeout,
                httpcore.TimeoutException: httpx.TimeoutException,
                httpcore.ConnectError: httpx.ConnectError,
                httpcore.ReadError: httpx.ReadError,
                httpcore.WriteError: httpx.WriteError,
                httpcore.NetworkError: httpx.NetworkError,
                httpcore.ProxyError: httpx.ProxyError,
                httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
                httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
                httpcore.LocalProtocolError: httpx.LocalProtocolError,
                httpcore.ProtocolError: httpx.ProtocolError,
            }
        )
    for kind in type(exc).__mro__:
        mapped = _CORE_ERRORS.get(kind)
        if mapped is not None:
            return mapped(str(exc) or type(exc).__name__, request=request)
    return None


class _HttpcoreTransport:
    """httpcore proxy pools, one per (proxy, scheme); httpcore is imported at the first."""

    def __init__(
        self, *, max_connections: int, keepalive_s: float, limits: _Limits | None = None
    ) -> None:
        self._limits = limits or _DEFAULT_LIMITS
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._pools: dict[tuple[str, bool], httpcore.AsyncHTTPProxy] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pool(self, proxy: str, https: bool) -> httpcore.AsyncHTTPProxy:
        pool = self._pools.get((proxy, https))
        if pool is not None:
            return pool
        import asyncio

        import httpcore

        self._loop = asyncio.get_running_loop()
        config = httpx.Proxy(proxy)  # takes user:password out of the URL
        pool = httpcore.AsyncHTTPProxy(
            proxy_url=httpcore.URL(
                scheme=config.url.raw_scheme,
                host=config.url.raw_host,
                port=config.url.port,
                target=config.url.raw_path,
            ),
            proxy_auth=config.raw_auth,
            ssl_context=_ssl_context() if https else None,
            max_connections=self._max_connections,
            keepalive_expiry=self._keepalive_s,
        )
        self._pools[(proxy, https)] = pool
        return pool

    async def handle_async_request(self, request: httpx.Request, proxy: str) -> httpx.Response:
        """Send one request through `proxy` (httpcore never re-sends) and read the reply.

        The body is read up to its limit (see `_Body`); closing a reply not read to its end
        closes its connection (httpcore reuses only a connection whose exchange is done).
        """
        import httpcore

        url = request.url
        try:
            pool = self._pool(proxy, url.scheme == "https")
            response = await pool.handle_async_request(
                httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(
                        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                    ),
                    headers=request.headers.raw,
                    content=await request.aread(),
                    extensions=request.extensions,
                )
            )
            body = _Body(request, self._limits, response.status)
            try:
                # aiter_stream is an async generator: closed here, not left to the collector
                chunks = cast("AsyncGenerator[bytes, None]", response.aiter_stream())
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        if not body.add(chunk):
                            break
            finally:
                await response.aclose()
        except Exception as exc:
            mapped = _core_error(exc, request)
            if mapped is None:
                raise
            raise mapped from exc
        version = response.extensions.get("http_version", b"HTTP/1.1")
        return _response(request, response.status, response.headers, body, version)

    async def aclose(self) -> None:
        """Close every pool and its connections."""
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await _close_on(self._loop, pool.aclose)


class _LeanTransport:
    """The cold start's path: direct URLs over h11, URLs a proxy carries over httpcore."""

    def __init__(
        self, *, max_connections: int, keepalive_s: float, limits: _Limits, proxies: _Proxies
    ) -> None:
        self._proxies = proxies
        self._direct = _H11Pool(
            max_connections=max_connections, keepalive_s=keepalive_s, limits=limits
        )
        self._proxied = _HttpcoreTransport(
            max_connections=max_connections, keepalive_s=keepalive_s, limits=limits
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request, at most once, directly or through its proxy."""
        proxy = self._proxies.for_request(request) if self._proxies.active else None
        if proxy is None:
            return await self._direct.handle_async_request(request)
        return await self._proxied.handle_async_request(request, proxy)

    async def aclose(self) -> None:
        """Close the direct connections and the proxy pools."""
        await self._direct.aclose()
        await self._proxied.aclose()


# --- the default: the lean path first, aiohttp once it pays ----------------------------------


class AdaptiveTransport(httpx.AsyncBaseTransport):
    """The default transport: cheap to start on the lean path, cheap to run on aiohttp.

    Requests go over the lean path (h11 on asyncio streams; httpcore for a URL a proxy carries)
    until `switch_after` have been sent; aiohttp is then imported on a worker thread while
    requests keep going over the lean path, and the requests after the import go over aiohttp
    (requests already under way finish on the lean path, whose connections are then closed).
    `switch_after=0` uses aiohttp from the first request, `None` never does. Once
    `load_aiohttp()` has run (warm-up), the next request moves to aiohttp at once, whenever
    the transport was built. One transport serves one event loop at a time; `aclose()` may be
    called from another (it closes the connections on the loop that opened them). Every path
    reads a body up to `max_body_bytes`, or `max_error_body_bytes` for an error reply (see the
    module's docstring).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        switch_after: int | None = DEFAULT_SWITCH_AFTER,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_error_body_bytes: int = MAX_ERROR_BODY_BYTES,
    ) -> None:
        if switch_after is not None and switch_after < 0:
            raise ValueError("switch_after must be >= 0 or None")
        self._limits = _Limits(max_body_bytes, max_error_body_bytes)
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._switch_after = switch_after
        self._proxies = _Proxies()
        self._lean = _LeanTransport(
            max_connections=max_connections,
            keepalive_s=keepalive_s,
            limits=self._limits,
            proxies=self._proxies,
        )
        self._aiohttp: AiohttpTransport | None = None
        self._sent = 0  # requests sent over the lean path
        self._lean_in_flight = 0
        self._lean_open = True
        self._loading: asyncio.Future[None] | None = None
        self._closed = False
        if switch_after == 0:
            self._switch()

    @property
    def path(self) -> Literal["lean", "aiohttp"]:
        """Which path carries new requests now."""
        return "lean" if self._aiohttp is None else "aiohttp"

    def _switch(self) -> AiohttpTransport:
        self._aiohttp = AiohttpTransport(
            max_connections=self._max_connections,
            keepalive_s=self._keepalive_s,
            max_body_bytes=self._limits.success,
            max_error_body_bytes=self._limits.error,
            _proxies=self._proxies,
        )
        return self._aiohttp

    def _start_loading(self) -> None:
        import asyncio

        loading = asyncio.get_running_loop().run_in_executor(None, _import_aiohttp)
        loading.add_done_callback(self._loaded)
        self._loading = loading

    def _loaded(self, loading: asyncio.Future[None]) -> None:
        if loading.cancelled() or loading.exception() is not None:
            self._switch_after = None  # aiohttp cannot be imported: stay on the lean path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request, at most once, over the current path and return the response."""
        fast = self._aiohttp
        if fast is not None:
            return await fast.handle_async_request(request)
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._switch_after is not None:
            if _AIOHTTP.loaded:
                fast = self._switch()  # first: a request arriving meanwhile goes there too
                if self._lean_in_flight == 0:
                    await self._close_lean()
                return await fast.handle_async_request(request)
            self._sent += 1
            if self._sent >= self._switch_after and self._loading is None:
                self._start_loading()
        self._lean_in_flight += 1
        try:
            return await self._lean.handle_async_request(request)
        finally:
            self._lean_in_flight -= 1
            if self._aiohttp is not None and self._lean_in_flight == 0:
                await self._close_lean()

    async def _close_lean(self) -> None:
        if self._lean_open:
            self._lean_open = False
            await self._lean.aclose()

    async def aclose(self) -> None:
        """Close both paths (an aiohttp import still under way is left to finish on its own)."""
        self._closed = True
        self._lean_open = False
        await self._lean.aclose()
        if self._aiohttp is not None:
            await self._aiohttp.aclose()
