"""Authentication over HTTP: token, signed requests, tampering, dates, project and STS token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.sandbox._demo import AK, DB1, PROJECT, SK, TOKEN, WEB1, item_path
from tests.sandbox._sign import sign

AUTH_FAILED = "Incorrect IAM authentication information: verify aksk signature fail"


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url) as client:
        yield client


def send_signed(
    http: httpx.Client,
    method: str,
    path: str,
    *,
    ak: str = AK,
    sk: str = SK,
    when: datetime | None = None,
    **kwargs: Any,
) -> httpx.Response:
    request = http.build_request(method, path, **kwargs)
    return http.send(sign(request, ak, sk, when=when))


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error_msg"] == AUTH_FAILED
    assert body["error_code"] == "APIGW.0301"
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    header = response.headers["X-Openstack-Request-Id"]
    assert header.removeprefix("req-").replace("-", "") == body["request_id"]


def metadata_of(sandbox: Sandbox, server_id: str) -> dict[str, str]:
    servers = {s["id"]: s for s in sandbox.state()["servers"]}
    metadata: dict[str, str] = servers[server_id]["metadata"]
    return metadata


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "key"), [("env%3Astage", "env:stage"), ("team%20name", "team name")]
)
def test_signed_delete_with_colon_or_space_in_key_is_accepted(
    sandbox: Sandbox, http: httpx.Client, encoded: str, key: str
) -> None:
    response = send_signed(http, "DELETE", item_path(WEB1, encoded))
    assert response.status_code == 204
    assert key not in metadata_of(sandbox, WEB1)
    assert sandbox.requests()[-1]["auth"] == "aksk"


def test_signed_get_with_query_is_accepted(http: httpx.Client) -> None:
    response = send_signed(
        http, "GET", f"/v2.1/{PROJECT}/servers/detail", params={"limit": "1", "marker": WEB1}
    )
    assert response.status_code == 200
    assert len(response.json()["servers"]) == 1


def test_signed_post_with_body_is_accepted(sandbox: Sandbox, http: httpx.Client) -> None:
    response = send_signed(
        http, "POST", f"/v2.1/{PROJECT}/servers/{DB1}/metadata", json={"metadata": {"a": "1"}}
    )
    assert response.status_code == 200
    assert metadata_of(sandbox, DB1)["a"] == "1"


def test_signed_request_with_matching_project_header_is_accepted(http: httpx.Client) -> None:
    response = send_signed(
        http, "DELETE", item_path(WEB1, "owner"), headers={"X-Project-Id": PROJECT}
    )
    assert response.status_code == 204


def test_date_within_fifteen_minutes_is_accepted(http: httpx.Client) -> None:
    past = datetime.now(UTC) - timedelta(minutes=14)
    assert send_signed(http, "DELETE", item_path(WEB1, "owner"), when=past).status_code == 204
    future = datetime.now(UTC) + timedelta(minutes=14)
    assert (
        send_signed(http, "DELETE", item_path(WEB1, "lease-owner"), when=future).status_code == 204
    )


def test_token_is_accepted(http: httpx.Client) -> None:
    response = http.delete(item_path(WEB1, "owner"), headers={"X-Auth-Token": TOKEN})
    assert response.status_code == 204


# --- tampering and other refusals --------------------------------------------------------------


def test_tampered_path_is_401(sandbox: Sandbox, http: httpx.Client) -> None:
    request = sign(http.build_request("DELETE", item_path(WEB1, "owner")), AK, SK)
    request.url = request.url.copy_with(raw_path=item_path(WEB1, "lease-owner").encode())
    assert_unauthorized(http.send(request))
    assert "lease-owner" in metadata_of(sandbox, WEB1)


def test_tampered_query_is_401(http: httpx.Client) -> None:
    request = http.build_request("GET", f"/v2.1/{PROJECT}/servers", params={"limit": "1"})
    sign(request, AK, SK)
    request.url = request.url.copy_merge_params({"limit": "2"})
    assert_unauthorized(http.send(request))


def test_tampered_signed_header_is_401(http: httpx.Client) -> None:
    request = http.build_request("DELETE", item_path(WEB1, "owner"), headers={"X-Custom": "a"})
    sign(request, AK, SK, extra_signed=("x-custom",))
    request.headers["X-Custom"] = "b"
    assert_unauthorized(http.send(request))


def test_tampered_host_is_401(http: httpx.Client) -> None:
    request = sign(http.build_request("DELETE", item_path(WEB1, "owner")), AK, SK)
    request.headers["Host"] = "ecs.cn-north-4.myhuaweicloud.com"
    assert_unauthorized(http.send(request))


def test_tampered_body_is_401(sandbox: Sandbox, http: httpx.Client) -> None:
    path = f"/v2.1/{PROJECT}/servers/{DB1}/metadata"
    signed = sign(http.build_request("POST", path, content=b'{"metadata": {"a": "1"}}'), AK, SK)
    headers = {k: v for k, v in signed.headers.items() if k.lower() != "content-length"}
    tampered = http.build_request(
        "POST", path, content=b'{"metadata": {"a": "2"}}', headers=headers
    )
    assert_unauthorized(http.send(tampered))
    assert "a" not in metadata_of(sandbox, DB1)


def test_tampered_date_is_401(http: httpx.Client) -> None:
    request = sign(http.build_request("DELETE", item_path(WEB1, "owner")), AK, SK)
    # Still inside the 15-minute window, so only the signature can refuse it.
    moved = datetime.now(UTC) - timedelta(seconds=60)
    request.headers["X-Sdk-Date"] = moved.strftime("%Y%m%dT%H%M%SZ")
    assert_unauthorized(http.send(request))


@pytest.mark.parametrize("minutes", [-16, 16, -60 * 24 * 365 * 7])
def test_stale_or_future_date_is_401(http: httpx.Client, minutes: int) -> None:
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    assert_unauthorized(send_signed(http, "DELETE", item_path(WEB1, "owner"), when=when))


@pytest.mark.parametrize(("ak", "sk"), [("OTHERACCESSKEY000001", SK), (AK, SK + "x")])
def test_wrong_key_pair_is_401(http: httpx.Client, ak: str, sk: str) -> None:
    assert_unauthorized(send_signed(http, "DELETE", item_path(WEB1, "owner"), ak=ak, sk=sk))


def test_wrong_project_header_is_401(http: httpx.Client) -> None:
    wrong = "ffffffffffffffffffffffffffffffff"
    signed = send_signed(http, "DELETE", item_path(WEB1, "owner"), headers={"X-Project-Id": wrong})
    assert_unauthorized(signed)
    token = http.delete(
        item_path(WEB1, "owner"), headers={"X-Auth-Token": TOKEN, "X-Project-Id": wrong}
    )
    assert_unauthorized(token)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Auth-Token": "wrong"},
        {"Authorization": "Bearer x"},
        {"Authorization": "SDK-HMAC-SHA256 x"},
    ],
)
def test_missing_or_bad_credentials_are_401(http: httpx.Client, headers: dict[str, str]) -> None:
    assert_unauthorized(http.delete(item_path(WEB1, "owner"), headers=headers))


def test_missing_date_is_401(http: httpx.Client) -> None:
    request = sign(http.build_request("DELETE", item_path(WEB1, "owner")), AK, SK)
    del request.headers["X-Sdk-Date"]
    assert_unauthorized(http.send(request))


def test_auth_is_checked_on_every_api_route(http: httpx.Client) -> None:
    assert_unauthorized(http.get(f"/v2.1/{PROJECT}/servers/detail"))
    assert_unauthorized(http.get(f"/v1/{PROJECT}/cloudservers/detail"))
    assert_unauthorized(http.get("/no/such/route"))
    assert http.get("/_sandbox/state").status_code == 200


# --- seeds with a security token, or without a token / AK-SK -------------------------------------


def seed_with(credentials: dict[str, Any]) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "credentials": credentials,
        "servers": [{"id": WEB1, "metadata": {"a": "1", "b": "2", "c": "3"}}],
    }


def test_security_token_is_required_when_seeded(make_sandbox: SandboxFactory) -> None:
    seed = seed_with({"ak": AK, "sk": SK, "security_token": "sts-token"})
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url) as http:
        assert_unauthorized(send_signed(http, "DELETE", item_path(WEB1, "a")))
        wrong = send_signed(
            http, "DELETE", item_path(WEB1, "a"), headers={"X-Security-Token": "other"}
        )
        assert_unauthorized(wrong)
        right = send_signed(
            http, "DELETE", item_path(WEB1, "a"), headers={"X-Security-Token": "sts-token"}
        )
        assert right.status_code == 204


def test_token_only_seed_refuses_signatures_and_aksk_seed_refuses_tokens(
    make_sandbox: SandboxFactory,
) -> None:
    sb = make_sandbox(seed_with({"token": "t"}))
    with httpx.Client(base_url=sb.url) as http:
        assert_unauthorized(send_signed(http, "DELETE", item_path(WEB1, "a")))
        assert http.delete(item_path(WEB1, "a"), headers={"X-Auth-Token": "t"}).status_code == 204
    sb = make_sandbox(seed_with({"ak": AK, "sk": SK}))
    with httpx.Client(base_url=sb.url) as http:
        assert_unauthorized(http.delete(item_path(WEB1, "a"), headers={"X-Auth-Token": TOKEN}))
        assert send_signed(http, "DELETE", item_path(WEB1, "a")).status_code == 204
