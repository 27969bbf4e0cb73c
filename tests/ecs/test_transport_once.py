"""Attempts are what was sent: one call puts at most one request on the wire, on both paths."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from handler.sandbox import Sandbox
from tests.ecs._servers import PATHS, Make, RawServer, Reply, Seen
from tests.sandbox._demo import TOKEN, WEB1, item_path


@pytest.fixture(params=sorted(PATHS))
def make(request: pytest.FixtureRequest) -> Make:
    return PATHS[request.param]


def test_a_dropped_delete_reaches_the_sandbox_once_per_call(make: Make) -> None:
    async def main(url: str) -> list[type[BaseException]]:
        errors: list[type[BaseException]] = []
        headers = {"X-Auth-Token": TOKEN}
        async with httpx.AsyncClient(transport=make(), base_url=url, headers=headers) as client:
            for key in ("owner", "env%3Astage", "owner"):
                try:
                    await client.delete(item_path(WEB1, key))
                except httpx.TransportError as exc:
                    errors.append(type(exc))
        return errors

    with Sandbox(faults={"rates": {"drop": 1.0}}) as sandbox:
        errors = asyncio.run(main(sandbox.url))
        log = sandbox.requests()
    assert errors == [httpx.RemoteProtocolError] * 3
    assert [(e["method"], e["path"], e["fault"]) for e in log] == [
        ("DELETE", item_path(WEB1, "owner"), "drop"),
        ("DELETE", item_path(WEB1, "env%3Astage"), "drop"),
        ("DELETE", item_path(WEB1, "owner"), "drop"),
    ]


def test_a_reused_connection_the_server_closes_is_not_sent_again(make: Make) -> None:
    """The server answers the first request of a connection and drops the second one."""

    async def first_only(seen: Seen) -> Reply:
        first = all(s.connection != seen.connection for s in server.seen[:-1])
        return (204, [], b"") if first else None

    server = RawServer(first_only)

    async def main() -> None:
        async with server, httpx.AsyncClient(transport=make()) as client:
            assert (await client.delete(f"{server.url}/one")).status_code == 204
            with pytest.raises(httpx.RemoteProtocolError):
                await client.delete(f"{server.url}/two")

    asyncio.run(main())
    # "/two" went over the kept-alive connection of "/one", and nowhere else
    assert [(s.connection, s.target) for s in server.seen] == [(0, "/one"), (0, "/two")]
