"""The default transport, `AdaptiveTransport`: the lean path (h11, httpcore) first, then aiohttp."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import httpx

from handler.ecs.transport import _loading
from handler.ecs.transport._aiohttp import AiohttpTransport
from handler.ecs.transport._common import MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES, _Limits
from handler.ecs.transport._h11 import _H11Pool
from handler.ecs.transport._httpcore import _HttpcoreTransport
from handler.ecs.transport._proxies import _Proxies

# asyncio is imported where it is used, always inside a running loop.
if TYPE_CHECKING:
    import asyncio

#: The requests sent over the lean path before AdaptiveTransport starts loading aiohttp; chosen
#: when that path was httpcore, which cost 2-4x aiohttp's CPU per request. Measured with the h11
#: path (3,000 DELETEs on loopback, through httpx.AsyncClient) its CPU per request is aiohttp's
#: or less: about 0.9x at 1 in flight, 0.92x at 16, 0.98x at 64. Events of 64 to 1,024
#: requests (16 in flight, one core, a fresh process each) then took 1.4-4x longer with a switch
#: at 64 than with none: the import is paid and never earned back. A URL a proxy carries
#: still goes over httpcore (4x aiohttp's CPU at 16 in flight), where switching would pay; a
#: proxy is rare, so the default is to never switch (pass `switch_after` to choose otherwise).
DEFAULT_SWITCH_AFTER: int | None = None


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
    package's docstring).
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

        loading = asyncio.get_running_loop().run_in_executor(None, _loading._import_aiohttp)
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
            if _loading._AIOHTTP.loaded:
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
