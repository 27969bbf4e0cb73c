"""The sandbox's Keystone v3: password tokens, their catalog, expiry and revocation."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from handler.sandbox import DEMO_SEED, Sandbox, SandboxConfigError
from handler.sandbox.seed import parse_seed
from tests.conftest import SandboxFactory, demo_seed
from tests.sandbox._demo import PROJECT, WEB1

PASSWORD = DEMO_SEED["keystone"]["users"][0]["password"]
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
OTHER1 = "0badc0de-0000-4000-8000-000000000001"


@pytest.fixture
def anon(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url) as http:
        yield http


def auth_body(
    *,
    name: str = "demo",
    password: str = PASSWORD,
    user_domain: dict[str, str] | None = None,
    project: dict[str, Any] | None = None,
) -> dict[str, Any]:
    user = {"name": name, "password": password, "domain": user_domain or {"name": "Default"}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project or {"id": PROJECT}},
        }
    }


def take_token(http: httpx.Client, **kwargs: Any) -> httpx.Response:
    return http.post("/v3/auth/tokens", json=auth_body(**kwargs))


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_a_token_with_its_catalog(sandbox: Sandbox, anon: httpx.Client) -> None:
    response = take_token(anon)
    assert response.status_code == 201
    token = response.headers["X-Subject-Token"]
    assert len(token) > 32
    body = response.json()["token"]
    assert body["methods"] == ["password"]
    assert body["project"]["id"] == PROJECT
    assert body["project"]["name"] == "demo"
    assert body["user"]["name"] == "demo"
    life = parse_time(body["expires_at"]) - parse_time(body["issued_at"])
    assert life == dt.timedelta(seconds=3600)
    assert parse_time(body["expires_at"]) > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)
    catalog = {service["type"]: service for service in body["catalog"]}
    assert set(catalog) == {"compute", "ecs", "identity"}
    public = {
        kind: next(e for e in service["endpoints"] if e["interface"] == "public")
        for kind, service in catalog.items()
    }
    assert public["compute"]["url"] == f"{sandbox.url}/v2.1/{PROJECT}"
    assert public["ecs"]["url"] == f"{sandbox.url}/v1/{PROJECT}"
    assert public["identity"]["url"] == f"{sandbox.url}/v3"
    assert {e["region_id"] for e in public.values()} == {"sandbox-1"}
    interfaces = {e["interface"] for e in catalog["compute"]["endpoints"]}
    assert interfaces == {"public", "internal"}


def test_the_token_is_accepted_by_the_api(sandbox: Sandbox, anon: httpx.Client) -> None:
    token = take_token(anon).headers["X-Subject-Token"]
    path = f"/v2.1/{PROJECT}/servers/{WEB1}/metadata"
    assert anon.get(path, headers={"X-Auth-Token": token}).status_code == 200
    assert anon.get(path, headers={"X-Auth-Token": token + "x"}).status_code == 401
    assert anon.get(path).status_code == 401
    logged = [r for r in sandbox.requests() if r["path"] == path]
    assert [r["auth"] for r in logged] == ["keystone", None, None]


def test_scope_by_project_name_in_its_domain(anon: httpx.Client) -> None:
    response = take_token(anon, project={"name": "other", "domain": {"name": "Default"}})
    assert response.status_code == 201
    assert response.json()["token"]["project"]["id"] == OTHER_PROJECT
    by_domain_id = take_token(anon, project={"name": "demo", "domain": {"id": "default"}})
    assert by_domain_id.json()["token"]["project"]["id"] == PROJECT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"password": "not-the-password"},
        {"name": "nobody"},
        {"user_domain": {"name": "Elsewhere"}},
        {"project": {"id": "ffffffffffffffffffffffffffffffff"}},
        {"project": {"name": "demo", "domain": {"name": "Elsewhere"}}},
    ],
)
def test_refused_with_keystone_401(
    sandbox: Sandbox, anon: httpx.Client, kwargs: dict[str, Any]
) -> None:
    response = take_token(anon, **kwargs)
    assert response.status_code == 401
    assert "X-Subject-Token" not in response.headers
    assert response.json() == {
        "error": {
            "code": 401,
            "message": "The request you have made requires authentication.",
            "title": "Unauthorized",
        }
    }
    assert "not-the-password" not in str(sandbox.requests())


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"auth": {"identity": {"methods": ["token"]}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "demo"}}},'
        b' "scope": {"project": {"id": "x"}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
        b'{"name": "demo", "password": "p"}}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
        b'{"name": "demo", "password": "p", "domain": {"name": "Default"}}}}, '
        b'"scope": {"project": {"name": "demo"}}}}',
    ],
)
def test_malformed_requests_are_400(anon: httpx.Client, body: bytes) -> None:
    response = anon.post("/v3/auth/tokens", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_only_post(anon: httpx.Client) -> None:
    assert anon.get("/v3/auth/tokens").status_code == 405


def test_tokens_expire(make_sandbox: SandboxFactory) -> None:
    seed = demo_seed()
    seed["keystone"]["token_ttl_s"] = 0.3
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url) as http:
        response = take_token(http)
        body = response.json()["token"]
        life = parse_time(body["expires_at"]) - parse_time(body["issued_at"])
        assert life == dt.timedelta(seconds=0.3)
        token = response.headers["X-Subject-Token"]
        path = f"/v2.1/{PROJECT}/servers/{WEB1}/metadata"
        assert http.get(path, headers={"X-Auth-Token": token}).status_code == 200
        time.sleep(0.4)
        assert http.get(path, headers={"X-Auth-Token": token}).status_code == 401


def test_revoked_tokens_are_refused(sandbox: Sandbox, anon: httpx.Client) -> None:
    token = take_token(anon).headers["X-Subject-Token"]
    path = f"/v2.1/{PROJECT}/servers/{WEB1}/metadata"
    assert anon.get(path, headers={"X-Auth-Token": token}).status_code == 200
    assert sandbox.revoke_tokens() == 1
    assert anon.get(path, headers={"X-Auth-Token": token}).status_code == 401
    fresh = take_token(anon).headers["X-Subject-Token"]
    assert fresh != token
    assert anon.get(path, headers={"X-Auth-Token": fresh}).status_code == 200


def test_a_token_works_in_its_project_only(anon: httpx.Client) -> None:
    token = take_token(anon).headers["X-Subject-Token"]
    other = f"/v2.1/{OTHER_PROJECT}/servers/{OTHER1}/metadata"
    response = anon.get(other, headers={"X-Auth-Token": token})
    assert response.status_code == 403
    scoped = take_token(anon, project={"id": OTHER_PROJECT}).headers["X-Subject-Token"]
    assert anon.get(other, headers={"X-Auth-Token": scoped}).status_code == 200


def test_the_seed_token_and_signatures_still_work(sandbox: Sandbox, anon: httpx.Client) -> None:
    path = f"/v2.1/{PROJECT}/servers/{WEB1}/metadata"
    token = sandbox.credentials["token"]
    assert anon.get(path, headers={"X-Auth-Token": token}).status_code == 200


def test_no_keystone_seeded_means_no_token_route(make_sandbox: SandboxFactory) -> None:
    seed = demo_seed()
    del seed["keystone"]
    sb = make_sandbox(seed)
    assert sb.keystone is None
    assert sb.revoke_tokens() == 0
    with httpx.Client(base_url=sb.url) as http:
        assert take_token(http).status_code == 404


def test_seed_projects_default_to_the_seeds_own() -> None:
    seed = demo_seed()
    seed["keystone"] = {"users": [{"name": "u", "password": "p"}], "region": "r-1"}
    keystone = parse_seed(seed).keystone
    assert keystone is not None
    assert [(p.id, p.name) for p in keystone.projects] == [
        (PROJECT, PROJECT),
        (OTHER_PROJECT, OTHER_PROJECT),
    ]
    assert keystone.token_ttl_s == 3600


@pytest.mark.parametrize(
    ("keystone", "message"),
    [
        ({"users": []}, "keystone.users"),
        ({"users": [{"name": "u"}]}, "password"),
        ({"users": [{"name": "u", "password": "p"}], "token_ttl_s": 0}, "token_ttl_s"),
        ({"users": [{"name": "u", "password": "p"}], "extra": 1}, "extra"),
    ],
)
def test_bad_keystone_seeds_are_refused(keystone: dict[str, Any], message: str) -> None:
    seed = demo_seed()
    seed["keystone"] = keystone
    with pytest.raises(SandboxConfigError, match=message):
        parse_seed(seed)
