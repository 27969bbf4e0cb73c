"""The aiohttp-backed transport, against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from handler.ecs.transport import AiohttpTransport

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    server = web.Server(handler)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_the_encoded_path_is_sent_byte_for_byte() -> None:
    seen: list[str] = []

    async def handler(request: web.BaseRequest) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=204)

    async def main() -> int:
        async with serving(handler) as url:
            transport = AiohttpTransport()
            async with httpx.AsyncClient(transport=transport) as client:
                response = await client.delete(f"{url}/m/env%3Astage/team%20name/%2E%2E")
            return response.status_code

    assert asyncio.run(main()) == 204
    assert seen == ["/m/env%3Astage/team%20name/%2E%2E"]


def test_a_body_that_cannot_be_decoded_is_a_protocol_error() -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(status=200, body=b"not gzip", headers={"Content-Encoding": "gzip"})

    async def main() -> None:
        async with serving(handler) as url, httpx.AsyncClient(transport=AiohttpTransport()) as c:
            await c.get(f"{url}/x")

    with pytest.raises(httpx.RemoteProtocolError, match="decompress"):
        asyncio.run(main())


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
                await client.get(f"http://127.0.0.1:{port}/")

        with pytest.raises(httpx.ConnectError):
            asyncio.run(main())


def test_a_dropped_connection_is_a_protocol_error() -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=204)

    async def main() -> None:
        async with serving(handler) as url, httpx.AsyncClient(transport=AiohttpTransport()) as c:
            await c.delete(f"{url}/x")

    with pytest.raises(httpx.TransportError):
        asyncio.run(main())


def test_requests_go_through_a_proxy_named_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    async def proxy(request: web.BaseRequest) -> web.Response:
        seen.append(str(request.url))  # a forward proxy sees the absolute URL
        return web.Response(status=204)

    async def main() -> int:
        async with serving(proxy) as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
                response = await client.delete("http://ecs.internal.test/v2.1/p/x")
            return response.status_code

    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert asyncio.run(main()) == 204
    assert seen == ["http://ecs.internal.test/v2.1/p/x"]
