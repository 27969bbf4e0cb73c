"""The function's httpx transports: each request sent once, its encoded path kept byte for byte.

`AdaptiveTransport` starts on a lean httpcore pool, so the first answer does not wait for
aiohttp's import (about 85 ms, half of it TLS contexts aiohttp builds at import; the httpcore
path's first request costs about 33 ms, mostly importing httpcore and anyio), then moves to
aiohttp, which costs far less CPU per request (measured on loopback: about 0.65x httpcore's
with 1 request in flight, 0.25x with 16, 0.12x with 32), once enough requests have been sent
to pay for the import; aiohttp is imported on a worker thread meanwhile. `AiohttpTransport`
is the aiohttp path alone.

Both paths send every request at most once: a connection that drops is an
`httpx.TransportError` for the caller's retry logic (aiohttp would otherwise re-send an
idempotent request once on its own). Proxies come from `HTTP_PROXY`, `HTTPS_PROXY` and
`ALL_PROXY` (either case) with `NO_PROXY`, read once when a transport is built; `.netrc` is
never read. TLS verification uses `httpx.create_ssl_context()` on both paths, built at the first
https request. Neither path decompresses, nor adds a User-Agent or Accept-Encoding of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

import httpx

# asyncio is imported where it is used, always inside a running loop: importing it here would
# add about 10 ms to importing this module (httpx does not import it).
if TYPE_CHECKING:
    import asyncio
    import ssl

    import aiohttp
    import httpcore


__all__ = [
    "AdaptiveTransport",
    "AiohttpTransport",
    "load_aiohttp",
    "proxy_configured",
    "proxy_error",
]

#: The requests sent over httpcore before AdaptiveTransport starts loading aiohttp. Measured
#: (16 in flight, one core, a fresh process per event): an event of fewer than 64 requests
#: never loads aiohttp; after switching at 64 an event breaks even with staying on httpcore by
#: about 256 requests and takes half the time at 1,024. Switching at 256 cost 40-200 ms more
#: on events of 256-1,024 requests; at 16-32, 20-70 ms more on events of 16-64.
DEFAULT_SWITCH_AFTER = 64

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
    """Import aiohttp now (warm-up); adaptive transports then use it from their next request."""
    _import_aiohttp()


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
    try:
        host = httpx.URL(value if sep else f"http://{value}").host
    except httpx.InvalidURL:
        host = ""
    if not host:
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


def _response(
    request: httpx.Request,
    status: int,
    headers: list[tuple[bytes, bytes]],
    content: bytes,
    http_version: bytes,
) -> httpx.Response:
    try:
        return httpx.Response(
            status_code=status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": http_version},
        )
    except httpx.DecodingError as exc:  # e.g. "gzip" that is not: a broken reply
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


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
    sends each request at most once (see `_send_once_middleware`).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        _proxies: _Proxies | None = None,
    ) -> None:
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
        """Send one request through aiohttp, at most once, and return the whole response."""
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
                content = await response.read()
                return _response(
                    request, response.status, list(response.raw_headers), content, b"HTTP/1.1"
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


# --- the httpcore path ----------------------------------------------------------------------

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
    """httpcore pools, one per (proxy, scheme): plain http never builds a TLS context."""

    def __init__(self, *, max_connections: int, keepalive_s: float, proxies: _Proxies) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._proxies = proxies
        self._pools: dict[tuple[str | None, bool], httpcore.AsyncConnectionPool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pool(self, proxy: str | None, https: bool) -> httpcore.AsyncConnectionPool:
        pool = self._pools.get((proxy, https))
        if pool is not None:
            return pool
        import asyncio

        import httpcore

        self._loop = asyncio.get_running_loop()
        ssl_context = _ssl_context() if https else None
        if proxy is None:
            pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=self._max_connections,
                keepalive_expiry=self._keepalive_s,
            )
        else:
            config = httpx.Proxy(proxy)  # takes user:password out of the URL
            pool = httpcore.AsyncHTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=config.url.raw_scheme,
                    host=config.url.raw_host,
                    port=config.url.port,
                    target=config.url.raw_path,
                ),
                proxy_auth=config.raw_auth,
                ssl_context=ssl_context,
                max_connections=self._max_connections,
                keepalive_expiry=self._keepalive_s,
            )
        self._pools[(proxy, https)] = pool
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through httpcore (which never re-sends) and read the whole reply."""
        import httpcore

        url = request.url
        try:
            proxy = self._proxies.for_request(request) if self._proxies.active else None
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
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except Exception as exc:
            mapped = _core_error(exc, request)
            if mapped is None:
                raise
            raise mapped from exc
        version = response.extensions.get("http_version", b"HTTP/1.1")
        return _response(request, response.status, response.headers, content, version)

    async def aclose(self) -> None:
        """Close every pool and its connections."""
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await _close_on(self._loop, pool.aclose)


# --- the default: httpcore first, aiohttp once it pays ---------------------------------------


class AdaptiveTransport(httpx.AsyncBaseTransport):
    """The default transport: cheap to start on httpcore, cheap to run on aiohttp.

    Requests go over httpcore until `switch_after` have been sent; aiohttp is then imported on
    a worker thread while requests keep going over httpcore, and the requests after the import
    go over aiohttp (requests already under way finish on httpcore, whose pool is then closed).
    `switch_after=0` uses aiohttp from the first request, `None` never does. Once
    `load_aiohttp()` has run (warm-up), the next request moves to aiohttp at once, whenever
    the transport was built. One transport serves one event loop at a time; `aclose()` may be
    called from another (it closes the connections on the loop that opened them).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        switch_after: int | None = DEFAULT_SWITCH_AFTER,
    ) -> None:
        if switch_after is not None and switch_after < 0:
            raise ValueError("switch_after must be >= 0 or None")
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._switch_after = switch_after
        self._proxies = _Proxies()
        self._core = _HttpcoreTransport(
            max_connections=max_connections, keepalive_s=keepalive_s, proxies=self._proxies
        )
        self._aiohttp: AiohttpTransport | None = None
        self._sent = 0  # requests sent over httpcore
        self._core_in_flight = 0
        self._core_open = True
        self._loading: asyncio.Future[None] | None = None
        self._closed = False
        if switch_after == 0:
            self._switch()

    @property
    def path(self) -> Literal["httpcore", "aiohttp"]:
        """Which library carries new requests now."""
        return "httpcore" if self._aiohttp is None else "aiohttp"

    def _switch(self) -> AiohttpTransport:
        self._aiohttp = AiohttpTransport(
            max_connections=self._max_connections,
            keepalive_s=self._keepalive_s,
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
            self._switch_after = None  # aiohttp cannot be imported: stay on httpcore

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
                if self._core_in_flight == 0:
                    await self._close_core()
                return await fast.handle_async_request(request)
            self._sent += 1
            if self._sent >= self._switch_after and self._loading is None:
                self._start_loading()
        self._core_in_flight += 1
        try:
            return await self._core.handle_async_request(request)
        finally:
            self._core_in_flight -= 1
            if self._aiohttp is not None and self._core_in_flight == 0:
                await self._close_core()

    async def _close_core(self) -> None:
        if self._core_open:
            self._core_open = False
            await self._core.aclose()

    async def aclose(self) -> None:
        """Close both pools (an aiohttp import still under way is left to finish on its own)."""
        self._closed = True
        self._core_open = False
        await self._core.aclose()
        if self._aiohttp is not None:
            await self._aiohttp.aclose()
