"""The transports on both paths (lean: h11 or httpcore; aiohttp), against real servers on 127.0.0.1.

The servers and `PATHS` are in `tests/ecs/_servers.py`, shared with the other transport tests.
"""

from __future__ import annotations

import asyncio
import gzip
import socket

import httpx
import pytest

from tests.ecs._servers import PATHS, Make, RawServer, Reply, Seen


@pytest.fixture(params=sorted(PATHS))
def make(request: pytest.FixtureRequest) -> Make:
    return PATHS[request.param]


def test_the_encoded_path_is_sent_byte_for_byte(make: Make) -> None:
    async def main() -> int:
        async with RawServer() as server, httpx.AsyncClient(transport=make()) as client:
            response = await client.delete(f"{server.url}/m/env%3Astage/team%20name/%2E%2E")
        assert [s.target for s in server.seen] == ["/m/env%3Astage/team%20name/%2E%2E"]
        return response.status_code

    assert asyncio.run(main()) == 204


def test_nothing_is_added_to_the_request_headers(make: Make) -> None:
    async def main() -> list[tuple[str, str]]:
        async with RawServer() as server:
            transport = make()
            request = httpx.Request("DELETE", f"{server.url}/x", headers={"X-Auth-Token": "t"})
            response = await transport.handle_async_request(request)
            assert response.status_code == 204
            await transport.aclose()
        return server.seen[0].headers

    headers = {name.lower(): value for name, value in asyncio.run(main())}
    # aiohttp states an empty body as `Content-Length: 0`; nothing else is added
    assert headers.keys() - {"content-length"} == {"host", "x-auth-token"}
    assert headers.get("content-length", "0") == "0"


def test_a_body_is_sent_once_with_its_length(make: Make) -> None:
    async def main() -> Seen:
        async with RawServer() as server, httpx.AsyncClient(transport=make()) as client:
            await client.put(f"{server.url}/x", content=b'{"a": 1}')
        [seen] = server.seen
        return seen

    seen = asyncio.run(main())
    assert (seen.method, seen.body, seen.header("Content-Length")) == ("PUT", b'{"a": 1}', "8")


def test_a_body_is_never_decompressed(make: Make) -> None:
    # The API is called without Accept-Encoding; a compressed reply is kept as it came (a gzip
    # bomb in an error reply must cost nothing), its encoding visible under another name.
    packed = gzip.compress(b'{"ok": true}')

    async def reply(seen: Seen) -> Reply:
        return 200, [("Content-Encoding", "gzip")], packed

    async def main() -> httpx.Response:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=make()) as client:
            return await client.get(f"{server.url}/x")

    response = asyncio.run(main())
    assert response.content == packed
    assert "content-encoding" not in response.headers
    assert response.headers["x-janitor-content-encoding"] == "gzip"


def test_a_body_that_is_not_the_gzip_it_claims_is_returned_as_it_came(make: Make) -> None:
    async def reply(seen: Seen) -> Reply:
        return 200, [("Content-Encoding", "gzip")], b"not gzip"

    async def main() -> httpx.Response:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=make()) as client:
            return await client.get(f"{server.url}/x")

    assert asyncio.run(main()).content == b"not gzip"


def test_a_refused_connection_is_a_connect_error(make: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            async with httpx.AsyncClient(transport=make()) as client:
                await client.get(f"http://127.0.0.1:{port}/")

        with pytest.raises(httpx.ConnectError):
            asyncio.run(main())


def test_a_dropped_connection_is_a_protocol_error(make: Make) -> None:
    async def drop(seen: Seen) -> Reply:
        return None

    async def main() -> None:
        async with RawServer(drop) as server, httpx.AsyncClient(transport=make()) as client:
            try:
                await client.delete(f"{server.url}/x")
            finally:
                assert len(server.seen) == 1

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(main())


def test_the_request_read_timeout_is_honoured(make: Make) -> None:
    async def slow(seen: Seen) -> Reply:
        await asyncio.sleep(5)
        return 204, [], b""

    async def main() -> float:
        async with RawServer(slow) as server, httpx.AsyncClient(transport=make()) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{server.url}/x", timeout=httpx.Timeout(5.0, read=0.2))
            return loop.time() - start

    assert asyncio.run(main()) < 2.0
