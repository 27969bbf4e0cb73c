"""Reading through the compute API: a server's metadata, and every server page by page."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from handler.ecs.client import ComputeApiError, EcsClient, ServerInfo
from handler.ecs.nova import read_servers_page
from handler.ecs.signing import TokenAuth
from tests.conftest import SandboxFactory
from tests.sandbox._demo import BUILD1, DB1, OTHER1, PROJECT, TOKEN, WEB1, WEB2


def _client(url: str, transport: httpx.AsyncBaseTransport | None = None) -> EcsClient:
    return EcsClient(endpoint=url, auth=TokenAuth(lambda: TOKEN), transport=transport)


async def _all(client: EcsClient, project: str, page_size: int) -> list[ServerInfo]:
    try:
        return [server async for server in client.list_servers(project, page_size=page_size)]
    finally:
        await client.aclose()


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_every_server_is_listed_once_whatever_the_page_size(
    make_sandbox: SandboxFactory, page_size: int
) -> None:
    sb = make_sandbox()
    servers = asyncio.run(_all(_client(sb.url), PROJECT, page_size))
    assert sorted(s.id for s in servers) == sorted([WEB1, WEB2, BUILD1, DB1])
    web1 = next(s for s in servers if s.id == WEB1)
    assert web1.name == "web-1" and web1.vm_state == "active"
    assert web1.metadata["lease-owner"] == "batch-7"
    pages = [r for r in sb.requests() if "/servers/detail" in r["path"]]
    assert len(pages) >= -(-4 // page_size)  # a full last page is followed by an empty one


def test_a_clamped_page_with_a_next_link_is_followed() -> None:
    # Nova clamps limit to [api]max_limit: 1,000 asked, 2 given, and a link to the rest.
    ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(5)]
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        marker = request.url.params.get("marker")
        start = ids.index(marker) + 1 if marker else 0
        chunk = ids[start : start + 2]
        body: dict[str, Any] = {"servers": [{"id": i, "metadata": {}} for i in chunk]}
        if start + 2 < len(ids):
            href = f"http://ecs.test/v2.1/p/servers/detail?limit=1000&marker={chunk[-1]}"
            body["servers_links"] = [{"rel": "next", "href": href}]
        return httpx.Response(200, json=body)

    servers = asyncio.run(_all(_client("http://ecs.test", httpx.MockTransport(answer)), "p", 1000))
    assert [s.id for s in servers] == ids
    assert len(asked) == 3
    assert all("limit=1000" in url for url in asked)


def test_a_listing_that_pages_in_a_loop_is_an_error_not_a_hang() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        href = "http://ecs.test/v2.1/p/servers/detail?marker=a"
        return httpx.Response(
            200, json={"servers": [{"id": "a"}], "servers_links": [{"rel": "next", "href": href}]}
        )

    with pytest.raises(ComputeApiError, match="loop"):
        asyncio.run(_all(_client("http://ecs.test", httpx.MockTransport(answer)), "p", 1))


def test_listing_failures_say_what_the_api_answered() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503)  # retried
        return httpx.Response(403, json={"forbidden": {"message": "Policy doesn't allow it"}})

    with pytest.raises(ComputeApiError, match="HTTP 403: Policy") as error:
        asyncio.run(_all(_client("http://ecs.test", httpx.MockTransport(answer)), "p", 10))
    assert error.value.status == 403
    assert len(calls) == 2


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"servers": "x"},
        {"servers": [{"name": "no id"}]},
        {
            "servers": [{"id": "a"}, {"id": "b"}],
            "servers_links": [{"rel": "next", "href": "http://x/?marker=z"}],
        },
    ],
)
def test_a_body_of_another_shape_is_not_a_listing(body: Any) -> None:
    with pytest.raises(ValueError, match="not"):
        read_servers_page(body)


def test_a_servers_metadata_is_read(make_sandbox: SandboxFactory) -> None:
    sb = make_sandbox()

    async def main() -> tuple[dict[str, str], str]:
        client = _client(sb.url)
        try:
            found = await client.read_metadata(PROJECT, DB1)
            with pytest.raises(ComputeApiError) as missing:
                await client.read_metadata(PROJECT, OTHER1)  # in another project: 404
            return found, json.dumps(missing.value.status)
        finally:
            await client.aclose()

    found, status = asyncio.run(main())
    assert found["backup-policy"] == "daily"
    assert status == "404"
