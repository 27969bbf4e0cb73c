"""The aiohttp path: `AiohttpTransport`, one aiohttp session that sends each request once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from handler.ecs.transport._common import (
    _READ_SIZE,
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    _Body,
    _close_on,
    _Limits,
    _response,
    _ssl_context,
)
from handler.ecs.transport._proxies import _Proxies

# aiohttp (and asyncio) are imported where they are used: see `AiohttpTransport._open_session`.
if TYPE_CHECKING:
    import asyncio

    import aiohttp


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
