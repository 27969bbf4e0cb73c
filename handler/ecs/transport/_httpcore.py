"""The httpcore path: httpcore proxy pools for the URLs a proxy carries, and its errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, cast

import httpx

from handler.ecs.transport._common import (
    _DEFAULT_LIMITS,
    _Body,
    _close_on,
    _Limits,
    _response,
    _ssl_context,
)

# httpcore (and asyncio) are imported where they are used, at the first proxied request.
if TYPE_CHECKING:
    import asyncio

    import httpcore

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
