"""Huawei's native v1 API (issue 9 §3, `ECS_API=native`): paths, error bodies, listing, e2e."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import app
from handler.ecs.client import EcsClient, ServerInfo
from handler.ecs.native import NativeApi, read_servers_page, servers_path
from handler.ecs.reply import Reply
from handler.ecs.signing import TokenAuth
from handler.outcomes import Outcome, Pair
from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import BUILD1, DB1, MISSING, OTHER1, PROJECT, TOKEN, WEB1, WEB2

API = NativeApi()
SERVER = WEB1
SERVER_MISSING = {
    "error": {"code": "Ecs.0114", "message": f"Instance[{SERVER}] could not be found."}
}
SERVER_MISSING_TERSE = {"error": {"code": "Ecs.0114", "message": "The ECS does not exist."}}
KEY_MISSING = {"itemNotFound": {"code": 404, "message": "Metadata item was not found"}}
BAD_REQUEST = {"error": {"code": "Ecs.0005", "message": "marker [x] not found"}}


def _response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = httpx.Request(
        "DELETE", f"https://ecs.example.com/v1/p/cloudservers/{SERVER}/metadata/k"
    )
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {}, request=request)


# --- paths ---------------------------------------------------------------------------------


def test_the_api_is_named_native() -> None:
    assert API.name == "native"


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("lease-owner", "lease-owner"),
        ("env:stage", "env%3Astage"),
        ("team name", "team%20name"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
    ],
)
def test_a_key_is_one_encoded_segment_of_the_native_path(key: str, encoded: str) -> None:
    pair = Pair("p1", SERVER, key)
    assert API.delete_path(pair) == f"/v1/p1/cloudservers/{SERVER}/metadata/{encoded}"
    assert API.metadata_path(pair) == f"/v1/p1/cloudservers/{SERVER}/metadata"


def test_the_project_and_server_are_encoded_segments_too() -> None:
    pair = Pair("..", "a/b", "k")
    assert API.delete_path(pair) == "/v1/%2E%2E/cloudservers/a%2Fb/metadata/k"


def test_the_listing_path_clamps_limit_to_1000_and_carries_the_marker() -> None:
    assert servers_path("p", limit=5) == "/v1/p/cloudservers/detail?limit=5"
    assert API.servers_path("p", limit=5000, marker=None) == "/v1/p/cloudservers/detail?limit=1000"
    assert (
        API.servers_path("p", limit=2, marker="id 1")
        == "/v1/p/cloudservers/detail?limit=2&marker=id+1"
    )


# --- classification of the native bodies --------------------------------------------------


@pytest.mark.parametrize("body", [SERVER_MISSING, SERVER_MISSING_TERSE])
def test_ecs_0114_is_server_not_found_from_the_body_alone(body: Any) -> None:
    reply = API.classify_delete(_response(404, body))
    assert reply.outcome is Outcome.SERVER_NOT_FOUND and reply.retry is False
    assert reply.detail is not None and "Ecs.0114" in reply.detail


def test_the_missing_key_answer_is_absent() -> None:
    reply = API.classify_delete(_response(404, KEY_MISSING))
    assert reply.outcome is Outcome.ABSENT
    assert reply.detail == "Metadata item was not found"


def test_an_unexplained_404_asks_for_the_probe() -> None:
    reply = API.classify_delete(_response(404, {"error": {"code": "Ecs.9999", "message": "?"}}))
    assert reply.outcome is None


@pytest.mark.parametrize(
    ("status", "outcome", "retry"),
    [
        (204, Outcome.DELETED, False),
        (200, Outcome.DELETED, False),
        (401, Outcome.FORBIDDEN, False),
        (403, Outcome.FORBIDDEN, False),
        (400, Outcome.REJECTED, False),
        (409, Outcome.CONFLICT, True),
        (429, Outcome.RETRIES_EXHAUSTED, True),
        (500, Outcome.RETRIES_EXHAUSTED, True),
        (503, Outcome.RETRIES_EXHAUSTED, True),
    ],
)
def test_other_native_answers_follow_the_generic_rules(
    status: int, outcome: Outcome, retry: bool
) -> None:
    body = None if status < 300 else {"error": {"code": "Ecs.0001", "message": "nope"}}
    reply = API.classify_delete(_response(status, body, {"X-Openstack-Request-Id": "req-n"}))
    assert (reply.outcome, reply.retry, reply.request_id) == (outcome, retry, "req-n")
    if body is not None:
        assert reply.detail == "Ecs.0001: nope"


def test_a_native_retry_after_is_honoured() -> None:
    reply = API.classify_delete(_response(429, None, {"Retry-After": "3"}))
    assert reply.retry and reply.retry_after == 3.0


def test_the_probe_reads_the_native_metadata_listing() -> None:
    first = Reply(404, None, detail="?")
    listed = _response(200, {"metadata": {"other": "x"}})
    assert API.classify_probe(listed, first, "k").outcome is Outcome.ABSENT
    still = _response(200, {"metadata": {"k": "x"}})
    assert API.classify_probe(still, first, "k").outcome is Outcome.REJECTED
    gone = _response(404, SERVER_MISSING)
    assert API.classify_probe(gone, first, "k").outcome is Outcome.SERVER_NOT_FOUND


# --- listing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"servers": "x"},
        {"servers": [{"name": "no id"}]},
        {"servers": [{"id": "a"}, {"id": "b"}], "page_info": {"next_marker": "z"}},
        {"servers": [{"id": "a"}], "page_info": {"next_marker": 7}},
    ],
)
def test_a_body_of_another_shape_is_not_a_native_listing(body: Any) -> None:
    with pytest.raises(ValueError, match="not"):
        read_servers_page(body)


def test_a_native_page_is_read_with_its_next_marker() -> None:
    body = {
        "count": 3,
        "servers": [{"id": "a", "name": "web-1", "OS-EXT-STS:vm_state": "active", "metadata": {}}],
        "page_info": {"current_count": 1, "next_marker": "a"},
    }
    page = read_servers_page(body)
    assert [s.id for s in page.servers] == ["a"] and page.next_marker == "a"
    assert page.servers[0].vm_state == "active"
    last = read_servers_page({"servers": [{"id": "b"}], "page_info": {"next_marker": None}})
    assert last.next_marker is None


async def _all(client: EcsClient, project: str, page_size: int) -> list[ServerInfo]:
    try:
        return [server async for server in client.list_servers(project, page_size=page_size)]
    finally:
        await client.aclose()


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_every_server_is_listed_once_through_the_native_routes(
    make_sandbox: SandboxFactory, page_size: int
) -> None:
    sb = make_sandbox()
    client = EcsClient(endpoint=sb.url, auth=TokenAuth(lambda: TOKEN), api=NativeApi())
    servers = asyncio.run(_all(client, PROJECT, page_size))
    assert sorted(s.id for s in servers) == sorted([WEB1, WEB2, BUILD1, DB1])
    web1 = next(s for s in servers if s.id == WEB1)
    assert web1.name == "web-1" and web1.vm_state == "active"
    assert web1.metadata["lease-owner"] == "batch-7"
    requests = sb.requests()
    assert all(r["path"] == f"/v1/{PROJECT}/cloudservers/detail" for r in requests)
    assert len(requests) == -(-4 // page_size)  # page_info says when there is no next page
    assert all(f"limit={page_size}" in r["query"] for r in requests)


# --- end to end: ECS_API=native through the handler ---------------------------------------


def _native(sb: Sandbox) -> None:
    """Every request the function sent went to a native /v1/ route."""
    paths = [r["path"] for r in sb.requests()]
    assert paths and all(path.startswith(f"/v1/{PROJECT}/cloudservers/") for path in paths)


@pytest.fixture
def native(sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    configure_for(monkeypatch, sandbox, dead_letters, ECS_API="Native", MAX_ATTEMPTS="2")
    return sandbox


def test_a_key_is_deleted_through_the_native_route(native: Sandbox) -> None:
    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    assert response["results"][0]["outcome"] == "deleted"
    assert "lease-owner" not in metadata_of(native, WEB1)
    assert [(r["method"], r["path"]) for r in native.requests()] == [
        ("DELETE", f"/v1/{PROJECT}/cloudservers/{WEB1}/metadata/lease-owner")
    ]


def test_a_key_with_odd_characters_is_deleted_as_one_segment(native: Sandbox) -> None:
    response = app.handler({"server_id": WEB1, "keys": ["env:stage", "team name"]}, None)
    assert [r["outcome"] for r in response["results"]] == ["deleted", "deleted"]
    assert not {"env:stage", "team name"} & set(metadata_of(native, WEB1))
    _native(native)


def test_an_absent_key_is_absent_without_a_probe(native: Sandbox) -> None:
    response = app.handler({"server_id": WEB1, "key": "never-set"}, None)
    assert response["results"][0]["outcome"] == "absent"
    assert [r["method"] for r in native.requests()] == ["DELETE"]
    _native(native)


def test_a_missing_server_is_server_not_found_with_no_follow_up_get(
    native: Sandbox, dead_letters: Path
) -> None:
    response = app.handler({"server_id": MISSING, "key": "lease-owner"}, None)
    assert response["results"][0]["outcome"] == "server_not_found"
    requests = native.requests()
    assert [(r["method"], r["status"]) for r in requests] == [("DELETE", 404)]
    _native(native)
    [letter] = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "server_not_found" and letter["attempts"] == 1
    assert letter["detail"].startswith("Ecs.0114: Instance[")


def test_a_cleanup_selector_lists_and_deletes_through_the_native_routes(
    native: Sandbox,
) -> None:
    response = app.handler({"cleanup": {"key_patterns": ["lease-*"]}}, None)
    summary = response["summary"]
    assert summary["cleanup"]["servers_scanned"] == 4
    assert summary["cleanup"]["list_pages"] == 1
    assert summary["cleanup"]["pairs_matched"] == 7
    assert summary["deleted"] == 4
    for server in (WEB1, DB1):
        assert not {"lease-owner", "lease-expires"} & set(metadata_of(native, server))
    assert metadata_of(native, OTHER1) == {"lease-owner": "batch-2"}  # another project
    listings = [r for r in native.requests() if r["method"] == "GET"]
    assert [r["path"] for r in listings] == [f"/v1/{PROJECT}/cloudservers/detail"]
    _native(native)
