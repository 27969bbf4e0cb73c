"""KeystoneAuth: password tokens taken once, renewed before expiry and after a 401, shared by
concurrent requests; the compute endpoint from the catalog; Keystone failures as outcomes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
import respx

from handler.ecs.client import ComputeApiError, EcsClient
from handler.ecs.keystone import (
    CATALOG_TYPES,
    KeystoneAuth,
    KeystoneError,
    KeystoneUnavailableError,
    PasswordSettings,
    base_of,
)
from handler.ecs.native import NativeApi
from handler.ecs.pacing import Pacer
from handler.ecs.transport import AdaptiveTransport
from handler.outcomes import Outcome, Pair
from handler.sandbox import DEMO_SEED, Sandbox
from tests.conftest import FakeClock, SandboxFactory, demo_seed, metadata_of
from tests.sandbox._demo import OTHER1, OTHER_PROJECT, PROJECT, WEB1

T = TypeVar("T")
PASSWORD = DEMO_SEED["keystone"]["users"][0]["password"]
TOKENS = "/v3/auth/tokens"
MANY = "11111111-2222-4333-8444-000000000001"


def settings(sb: Sandbox | None = None, **changes: Any) -> PasswordSettings:
    values: dict[str, Any] = {
        "auth_url": sb.url if sb is not None else "https://keystone.example.com:5000",
        "username": "demo",
        "password": PASSWORD,
        "project_id": PROJECT,
    }
    values.update(changes)
    return PasswordSettings(**values)


def many_keys_seed(count: int) -> dict[str, Any]:
    seed = demo_seed()
    seed["servers"].append(
        {"id": MANY, "name": "many", "metadata": {f"k{i}": "v" for i in range(count)}}
    )
    return seed


def run(
    sb: Sandbox | None,
    body: Callable[[EcsClient, KeystoneAuth], Awaitable[T]],
    *,
    password: PasswordSettings | None = None,
    endpoint: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    max_attempts: int = 6,
    max_in_flight: int = 16,
    api: NativeApi | None = None,
    pacer: Pacer | None = None,
) -> T:
    """Run `body` with an EcsClient and its KeystoneAuth sharing one transport."""

    async def main() -> T:
        shared = transport or AdaptiveTransport(max_connections=max_in_flight)
        auth = KeystoneAuth(password or settings(sb), transport=shared, clock=clock)
        client = EcsClient(
            endpoint=endpoint,
            auth=auth,
            resolve_endpoint=auth.endpoint if endpoint is None else None,
            transport=shared,
            max_attempts=max_attempts,
            max_in_flight=max_in_flight,
            api=api,
            pacer=pacer,
        )
        try:
            return await body(client, auth)
        finally:
            await client.aclose()

    return asyncio.run(main())


def token_posts(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["path"] == TOKENS]


def api_calls(sb: Sandbox) -> list[tuple[str, int | None]]:
    return [(r["method"], r["status"]) for r in sb.requests() if r["path"] != TOKENS]


# --- a token, taken once ------------------------------------------------------------------


def test_one_token_serves_every_request_and_the_endpoint_is_the_catalogs(
    sandbox: Sandbox,
) -> None:
    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        first = [await client.delete_metadata(Pair(PROJECT, WEB1, k)) for k in ("owner", "x")]
        second = await client.delete_metadata(Pair(PROJECT, WEB1, "lease-owner"))
        assert client.endpoint == sandbox.url  # `/v2.1/{project}` taken off the catalog URL
        return [r.outcome for r in [*first, second]]

    assert run(sandbox, body) == [Outcome.DELETED, Outcome.ABSENT, Outcome.DELETED]
    assert len(token_posts(sandbox)) == 1
    paths = [r["path"] for r in sandbox.requests()]
    assert f"/v2.1/{PROJECT}/servers/{WEB1}/metadata/owner" in paths
    assert all(r["auth"] == "keystone" for r in sandbox.requests() if r["path"] != TOKENS)


def test_ecs_endpoint_overrides_the_catalog(sandbox: Sandbox) -> None:
    async def body(client: EcsClient, auth: KeystoneAuth) -> Outcome:
        return (await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))).outcome

    # The catalog says 127.0.0.1; the override names the same sandbox as localhost.
    override = sandbox.url.replace("127.0.0.1", "localhost")
    assert run(sandbox, body, endpoint=override) == Outcome.DELETED
    assert len(token_posts(sandbox)) == 1


def test_project_by_name_and_domain(sandbox: Sandbox) -> None:
    scope = settings(sandbox, project_id=None, project_name="other")

    async def body(client: EcsClient, auth: KeystoneAuth) -> tuple[str, Outcome]:
        project = await auth.project_id()
        result = await client.delete_metadata(Pair(project, OTHER1, "lease-owner"))
        return project, result.outcome

    assert run(sandbox, body, password=scope) == (OTHER_PROJECT, Outcome.DELETED)
    assert "lease-owner" not in metadata_of(sandbox, OTHER1)


# --- renewal ------------------------------------------------------------------------------


def test_renewed_before_it_expires(sandbox: Sandbox) -> None:
    clock = FakeClock()

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[int]:
        posts = []
        for key, moved_to in (("owner", 1000.0), ("x1", 4299.0), ("x2", 4301.0), ("x3", 4302.0)):
            clock.now = moved_to
            await client.delete_metadata(Pair(PROJECT, WEB1, key))
            posts.append(len(token_posts(sandbox)))
        return posts

    # A one-hour token is renewed once less than five minutes of it are left (at 3300 s).
    assert run(sandbox, body, clock=clock) == [1, 1, 2, 2]
    assert all(status != 401 for _, status in api_calls(sandbox))


@pytest.mark.parametrize(
    ("ttl", "renew_after"),
    [(3600, 3300.0), (600, 540.0), (60, 54.0)],
)
def test_renewal_rule_is_five_minutes_or_ten_percent(
    make_sandbox: SandboxFactory, ttl: int, renew_after: float
) -> None:
    seed = demo_seed()
    seed["keystone"]["token_ttl_s"] = ttl
    sb = make_sandbox(seed)
    clock = FakeClock(500.0)

    async def body(client: EcsClient, auth: KeystoneAuth) -> tuple[float, float]:
        token = await auth.token()
        return token.renew_at - 500.0, token.expires_at - 500.0

    renew, expires = run(sb, body, clock=clock)
    assert renew == pytest.approx(renew_after, abs=0.01)
    assert expires == pytest.approx(ttl, abs=0.01)


def test_a_short_lived_token_is_renewed_before_the_server_refuses_it(
    make_sandbox: SandboxFactory,
) -> None:
    seed = demo_seed()
    seed["keystone"]["token_ttl_s"] = 1.0
    sb = make_sandbox(seed)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        first = await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))
        await asyncio.sleep(1.1)  # the first token has expired on the server
        second = await client.delete_metadata(Pair(PROJECT, WEB1, "lease-owner"))
        return [first.outcome, second.outcome]

    assert run(sb, body) == [Outcome.DELETED, Outcome.DELETED]
    assert len(token_posts(sb)) == 2
    assert api_calls(sb) == [("DELETE", 204), ("DELETE", 204)]  # never a 401


def test_a_401_renews_once_and_sends_again_once(sandbox: Sandbox) -> None:
    async def body(client: EcsClient, auth: KeystoneAuth) -> tuple[Outcome, int]:
        await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))
        sandbox.revoke_tokens()
        sandbox.clear_requests()
        result = await client.delete_metadata(Pair(PROJECT, WEB1, "lease-owner"))
        return result.outcome, result.attempts

    assert run(sandbox, body) == (Outcome.DELETED, 2)  # the re-send counts as an attempt
    assert [(r["method"], r["status"]) for r in sandbox.requests()] == [
        ("DELETE", 401),
        ("POST", 201),
        ("DELETE", 204),
    ]


def test_concurrent_401s_share_one_renewal(make_sandbox: SandboxFactory) -> None:
    sb = make_sandbox(many_keys_seed(30), latency_ms=20)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))
        sb.revoke_tokens()
        pairs = [Pair(PROJECT, MANY, f"k{i}") for i in range(30)]
        results = await asyncio.gather(*(client.delete_metadata(p) for p in pairs))
        return [r.outcome for r in results]

    assert run(sb, body, max_in_flight=30) == [Outcome.DELETED] * 30
    assert len(token_posts(sb)) == 2
    assert metadata_of(sb, MANY) == {}


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("from_catalog", [True, False])
def test_concurrent_first_requests_make_one_token_request(
    make_sandbox: SandboxFactory, from_catalog: bool
) -> None:
    sb = make_sandbox(many_keys_seed(40), latency_ms=20)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        pairs = [Pair(PROJECT, MANY, f"k{i}") for i in range(40)]
        results = await asyncio.gather(*(client.delete_metadata(p) for p in pairs))
        return [r.outcome for r in results]

    endpoint = None if from_catalog else sb.url
    assert run(sb, body, endpoint=endpoint, max_in_flight=40) == [Outcome.DELETED] * 40
    assert len(token_posts(sb)) == 1
    assert auth_requests_of(sb) == 1


def auth_requests_of(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "POST")


def test_paced_requests_and_token_requests_do_not_block_each_other(
    make_sandbox: SandboxFactory,
) -> None:
    sb = make_sandbox(many_keys_seed(20))

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        pairs = [Pair(PROJECT, MANY, f"k{i}") for i in range(20)]
        async with asyncio.timeout(10):
            results = await asyncio.gather(*(client.delete_metadata(p) for p in pairs))
        return [r.outcome for r in results]

    assert run(sb, body, pacer=Pacer(200.0), max_in_flight=8) == [Outcome.DELETED] * 20
    assert len(token_posts(sb)) == 1


# --- failures as outcomes ---------------------------------------------------------------


def test_a_wrong_password_is_forbidden_asked_once_never_quoted(sandbox: Sandbox) -> None:
    wrong = "Wrong-Password-Very-Recognisable-77"

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Any]:
        return [
            await client.delete_metadata(Pair(PROJECT, WEB1, key))
            for key in ("owner", "lease-owner", "env:stage")
        ]

    results = run(sandbox, body, password=settings(sandbox, password=wrong))
    for result in results:
        assert result.outcome is Outcome.FORBIDDEN
        assert result.detail.startswith("OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401)")
        assert wrong not in json.dumps(result.as_dict())
    # Rejected once, remembered: a user is not locked out by one failed login per pair.
    assert [r["status"] for r in sandbox.requests()] == [401]
    assert "owner" in metadata_of(sandbox, WEB1)


def test_a_catalog_without_the_service_is_rejected_and_says_what_it_has(
    sandbox: Sandbox,
) -> None:
    scope = settings(sandbox, service_types=("volumev3",))

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))

    result = run(sandbox, body, password=scope)
    assert result.outcome is Outcome.REJECTED
    assert result.detail == (
        "the Keystone catalog has no 'volumev3' service (it has: compute, ecs, identity): "
        "set ECS_ENDPOINT, or check ECS_API"
    )
    assert api_calls(sandbox) == []  # nothing sent anywhere else


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"region": "eu-west-9"}, "in region 'eu-west-9'"),
        ({"interface": "admin"}, "no admin http(s) endpoint"),
    ],
)
def test_a_catalog_without_the_region_or_interface(
    sandbox: Sandbox, changes: dict[str, str], missing: str
) -> None:
    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))

    result = run(sandbox, body, password=settings(sandbox, **changes))
    assert result.outcome is Outcome.REJECTED
    assert missing in result.detail
    assert "compute public in sandbox-1" in result.detail  # what the catalog does have
    assert "check OS_REGION_NAME and OS_INTERFACE" in result.detail


def test_the_internal_interface_and_the_region_choose_the_entry(sandbox: Sandbox) -> None:
    scope = settings(sandbox, region="sandbox-1", interface="internal")

    async def body(client: EcsClient, auth: KeystoneAuth) -> Outcome:
        return (await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))).outcome

    assert run(sandbox, body, password=scope) == Outcome.DELETED


def test_keystone_unreachable_is_transient_and_asked_once_per_second() -> None:
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))

    result = run(None, body, transport=httpx.MockTransport(refuse), max_attempts=4)
    assert result.outcome is Outcome.RETRIES_EXHAUSTED
    assert result.outcome.transient
    assert "Keystone unreachable at keystone.example.com:5000 (OS_AUTH_URL)" in result.detail
    assert calls == [TOKENS]  # the retries reuse the failure of the last second


def test_keystone_5xx_is_transient() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.post(f"https://keystone.example.com:5000{TOKENS}").respond(
        503, json={"error": {"code": 503, "message": "Service Unavailable", "title": "x"}}
    )

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(PROJECT, WEB1, "owner"))

    result = run(None, body, transport=httpx.MockTransport(router.handler))
    assert result.outcome is Outcome.RETRIES_EXHAUSTED
    assert "Keystone at keystone.example.com:5000 answered HTTP 503: Service Unavailable" in (
        result.detail
    )


def test_a_listing_says_why_keystone_failed(sandbox: Sandbox) -> None:
    async def body(client: EcsClient, auth: KeystoneAuth) -> str:
        with pytest.raises(ComputeApiError) as info:
            await client.read_metadata(PROJECT, WEB1)
        assert isinstance(info.value.__cause__, KeystoneError)
        return str(info.value)

    message = run(sandbox, body, password=settings(sandbox, password="nope-nope"))
    assert message.startswith("OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401)")


# --- respx: the answers of a real cloud --------------------------------------------------

IAM = "https://iam.cn-north-4.myhuaweicloud.com"
ECS = "https://ecs.cn-north-4.myhuaweicloud.com"
HW_PROJECT = "0b5a7e3c5d8f4f6e9a1b2c3d4e5f6a7b"


def iam_catalog() -> list[dict[str, Any]]:
    def service(kind: str, url: str, region: str = "cn-north-4") -> dict[str, Any]:
        endpoint = {"id": "e", "interface": "public", "region": region, "region_id": region}
        return {"id": "s", "name": kind, "type": kind, "endpoints": [{**endpoint, "url": url}]}

    return [
        service("iam", f"{IAM}/v3.0", region="*"),
        service("compute", f"{ECS}/v2.1/{HW_PROJECT}"),
        service("ecs", f"{ECS}/v1/{HW_PROJECT}"),
        service("ecsv1.1", f"{ECS}/v1.1/{HW_PROJECT}"),
    ]


def iam_router(
    seen: list[dict[str, Any]],
    *,
    token_status: int = 201,
    catalog: list[Any] | None = None,
    delete_status: int = 204,
    state: dict[str, int] | None = None,
) -> respx.Router:
    """IAM and ECS as respx routes; `state["token_status"]` may change the answers later."""
    router = respx.Router(assert_all_mocked=True)
    answers = state if state is not None else {}
    answers.setdefault("token_status", token_status)

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        token_status = answers["token_status"]
        if token_status != 201:
            body = {
                "error": {"code": token_status, "message": "The username or password is wrong."}
            }
            return httpx.Response(token_status, json=body)
        body = {
            "token": {
                "methods": ["password"],
                "expires_at": "2026-06-02T09:05:22.701000Z",
                "issued_at": "2026-06-01T09:05:22.701000Z",
                "project": {"id": HW_PROJECT, "name": "cn-north-4", "domain": {"name": "acme"}},
                "user": {"name": "janitor", "domain": {"name": "acme"}},
                "catalog": iam_catalog() if catalog is None else catalog,
            }
        }
        return httpx.Response(201, json=body, headers={"X-Subject-Token": "MIIhuawei" + "A" * 9000})

    router.post(f"{IAM}/v3/auth/tokens").mock(side_effect=token)
    router.delete(url__startswith=f"{ECS}/").respond(
        delete_status, json={"error": {"message": "no"}} if delete_status >= 400 else None
    )
    return router


@pytest.mark.parametrize(
    ("api", "path"),
    [
        (None, f"/v2.1/{HW_PROJECT}/servers/{WEB1}/metadata/owner"),
        (NativeApi(), f"/v1/{HW_PROJECT}/cloudservers/{WEB1}/metadata/owner"),
    ],
)
def test_huawei_iam_password_tokens(api: NativeApi | None, path: str) -> None:
    seen: list[dict[str, Any]] = []
    router = iam_router(seen)
    scope = PasswordSettings(
        auth_url=IAM,
        username="janitor",
        password="Iam-Password-1",
        user_domain_name="acme",
        project_name="cn-north-4",
        project_domain_name="acme",
        service_types=CATALOG_TYPES["native" if api else "nova"],
    )

    async def body(client: EcsClient, auth: KeystoneAuth) -> tuple[Outcome, str]:
        result = await client.delete_metadata(Pair(await auth.project_id(), WEB1, "owner"))
        return result.outcome, await auth.project_id()

    outcome, project = run(
        None, body, password=scope, transport=httpx.MockTransport(router.handler), api=api
    )
    assert (outcome, project) == (Outcome.DELETED, HW_PROJECT)
    assert seen == [
        {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "janitor",
                            "password": "Iam-Password-1",
                            "domain": {"name": "acme"},
                        }
                    },
                },
                "scope": {"project": {"name": "cn-north-4", "domain": {"name": "acme"}}},
            }
        }
    ]
    deletes = [call.request for call in router.calls if call.request.method == "DELETE"]
    assert [d.url.path for d in deletes] == [path]
    assert deletes[0].headers["X-Auth-Token"].startswith("MIIhuawei")


def test_huawei_iam_wrong_password() -> None:
    router = iam_router([], token_status=401)
    scope = PasswordSettings(auth_url=IAM, username="janitor", password="x", project_id=HW_PROJECT)

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(HW_PROJECT, WEB1, "owner"))

    result = run(None, body, password=scope, transport=httpx.MockTransport(router.handler))
    assert result.outcome is Outcome.FORBIDDEN
    assert result.detail.startswith(
        "OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401) at "
        "iam.cn-north-4.myhuaweicloud.com: The username or password is wrong;"
    )


def test_catalog_choice_falls_back_to_the_other_compute_type() -> None:
    only_compute = [s for s in iam_catalog() if s["type"] != "ecs"]
    router = iam_router([], catalog=only_compute)
    scope = PasswordSettings(
        auth_url=IAM,
        username="janitor",
        password="x",
        project_id=HW_PROJECT,
        service_types=CATALOG_TYPES["native"],
    )

    async def body(client: EcsClient, auth: KeystoneAuth) -> str:
        return await auth.endpoint()

    assert run(None, body, password=scope, transport=httpx.MockTransport(router.handler)) == ECS


def test_a_401_after_renewal_is_forbidden_after_exactly_one_resend() -> None:
    router = iam_router([], delete_status=401)  # every DELETE is refused
    scope = PasswordSettings(auth_url=IAM, username="janitor", password="x", project_id=HW_PROJECT)

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(HW_PROJECT, WEB1, "owner"))

    result = run(None, body, password=scope, transport=httpx.MockTransport(router.handler))
    assert result.outcome is Outcome.FORBIDDEN
    methods = [call.request.method for call in router.calls]
    assert methods == ["POST", "DELETE", "POST", "DELETE"]


def test_a_401_with_the_attempt_budget_spent_is_not_sent_again() -> None:
    router = iam_router([], delete_status=401)
    scope = PasswordSettings(auth_url=IAM, username="janitor", password="x", project_id=HW_PROJECT)

    async def body(client: EcsClient, auth: KeystoneAuth) -> Any:
        return await client.delete_metadata(Pair(HW_PROJECT, WEB1, "owner"))

    transport = httpx.MockTransport(router.handler)
    result = run(None, body, password=scope, transport=transport, max_attempts=1)
    assert result.outcome is Outcome.FORBIDDEN
    assert [call.request.method for call in router.calls] == ["POST", "DELETE"]


def test_a_failed_renewal_keeps_the_live_token() -> None:
    state: dict[str, int] = {}
    router = iam_router([], state=state)
    clock = FakeClock()
    scope = PasswordSettings(auth_url=IAM, username="janitor", password="x", project_id=HW_PROJECT)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        first = await client.delete_metadata(Pair(HW_PROJECT, WEB1, "a"))
        state["token_status"] = 503
        clock.now += 24 * 3600 - 60  # inside the renewal window, still alive
        second = await client.delete_metadata(Pair(HW_PROJECT, WEB1, "b"))
        clock.now += 120  # expired: no token to fall back on
        third = await client.delete_metadata(Pair(HW_PROJECT, WEB1, "c"))
        return [first.outcome, second.outcome, third.outcome]

    transport = httpx.MockTransport(router.handler)
    outcomes = run(None, body, password=scope, transport=transport, clock=clock)
    assert outcomes == [Outcome.DELETED, Outcome.DELETED, Outcome.RETRIES_EXHAUSTED]


@pytest.mark.parametrize(
    ("headers", "body", "says"),
    [
        ({}, {"token": {"project": {"id": "p"}}}, "no X-Subject-Token header"),
        ({"X-Subject-Token": "t"}, {"nothing": 1}, "no token in its body"),
        ({"X-Subject-Token": "t"}, {"token": {"catalog": []}}, "no project scope"),
        (
            {"X-Subject-Token": "t"},
            {
                "token": {
                    "project": {"id": "p"},
                    "issued_at": "2026-01-01T10:00:00Z",
                    "expires_at": "2026-01-01T09:00:00Z",
                }
            },
            "already expired",
        ),
    ],
)
def test_unusable_token_answers(headers: dict[str, str], body: Any, says: str) -> None:
    router = respx.Router(assert_all_mocked=True)
    router.post(f"https://keystone.example.com:5000{TOKENS}").respond(
        201, json=body, headers=headers
    )

    async def main(client: EcsClient, auth: KeystoneAuth) -> KeystoneError:
        with pytest.raises(KeystoneError) as info:
            await auth.token()
        return info.value

    error = run(None, main, transport=httpx.MockTransport(router.handler))
    assert says in str(error)
    assert error.outcome is Outcome.REJECTED


def test_other_keystone_answers_name_the_url() -> None:
    router = respx.Router(assert_all_mocked=True)
    router.post(f"https://keystone.example.com:5000{TOKENS}").respond(404)

    async def main(client: EcsClient, auth: KeystoneAuth) -> KeystoneError:
        with pytest.raises(KeystoneError) as info:
            await auth.token()
        return info.value

    error = run(None, main, transport=httpx.MockTransport(router.handler))
    assert not isinstance(error, KeystoneUnavailableError)
    assert str(error) == (
        "Keystone at keystone.example.com:5000 answered HTTP 404 to POST /v3/auth/tokens: is "
        "OS_AUTH_URL its v3 URL?"
    )


@pytest.mark.parametrize(
    ("url", "base"),
    [
        (f"{ECS}/v2.1/{HW_PROJECT}", ECS),
        (f"{ECS}/v2.1/{HW_PROJECT}/", ECS),
        (f"{ECS}/v1/{HW_PROJECT}", ECS),
        (f"{ECS}/v1.1/{HW_PROJECT}", ECS),
        (f"{ECS}/v2/{HW_PROJECT}", ECS),
        (f"{ECS}/v2.1", ECS),
        ("http://10.0.0.5/compute/v2.1", "http://10.0.0.5/compute"),
        ("http://10.0.0.5:8774/v2.1/abc", "http://10.0.0.5:8774"),
        (ECS, ECS),
    ],
)
def test_base_of_catalog_urls(url: str, base: str) -> None:
    assert base_of(url) == base


def test_the_sync_flow_is_refused() -> None:
    auth = KeystoneAuth(settings(), transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with httpx.Client(auth=auth) as client, pytest.raises(RuntimeError, match="AsyncClient"):
        client.get("https://ecs.example.com/")


def test_settings_hide_the_password() -> None:
    assert PASSWORD not in repr(settings())
