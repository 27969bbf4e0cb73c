"""Keystone hardening beyond the attack tests: tokens as rotating secrets, renewal that never
blocks a request for long, the memory of refusals, catalog URLs, cleartext, configuration."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from handler import app, logs, redaction
from handler.commands import check
from handler.commands.check import Verdict, run_check
from handler.config import ConfigError, http_url_problem, load_config
from handler.ecs.client import EcsClient
from handler.ecs.keystone import (
    KEPT_TOKENS,
    REJECTED_FOR_S,
    KeystoneAuth,
    KeystoneError,
    KeystoneUnavailableError,
    PasswordSettings,
)
from handler.outcomes import Outcome, Pair
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, FakeClock
from tests.sandbox._demo import WEB1

T = TypeVar("T")
TOKENS = "/v3/auth/tokens"
KEYSTONE = "https://keystone.hardening.test"
ECS = "https://ecs.hardening.test"


def token_answer(
    value: str,
    *,
    catalog: list[dict[str, Any]] | None = None,
    expires_at: str = "2030-01-01T01:00:00Z",
) -> httpx.Response:
    token = {
        "project": {"id": DEMO_PROJECT},
        "issued_at": "2030-01-01T00:00:00Z",
        "expires_at": expires_at,
        "catalog": catalog
        if catalog is not None
        else [
            {
                "type": "compute",
                "endpoints": [{"interface": "public", "url": f"{ECS}/v2.1/{DEMO_PROJECT}"}],
            }
        ],
    }
    return httpx.Response(201, headers={"X-Subject-Token": value}, json={"token": token})


def password(**changes: Any) -> PasswordSettings:
    values: dict[str, Any] = {
        "auth_url": KEYSTONE,
        "username": "janitor",
        "password": "Hardening-Password-1",
        "project_id": DEMO_PROJECT,
    }
    values.update(changes)
    return PasswordSettings(**values)


def run(
    handler: Callable[..., Any],
    body: Callable[[EcsClient, KeystoneAuth], Awaitable[T]],
    *,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float = 10.0,
    settings: PasswordSettings | None = None,
    max_attempts: int = 3,
) -> T:
    async def main() -> T:
        transport = httpx.MockTransport(handler)
        auth = KeystoneAuth(
            settings or password(), transport=transport, timeout_s=timeout_s, clock=clock
        )
        client = EcsClient(
            endpoint=None,
            auth=auth,
            resolve_endpoint=auth.endpoint,
            transport=transport,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )
        try:
            return await body(client, auth)
        finally:
            await client.aclose()

    return asyncio.run(main())


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("janitor", "DEBUG")
    logs.set_stream(stream)
    yield stream


# --- tokens are rotating secrets -------------------------------------------------------------


def test_only_the_last_few_tokens_stay_secrets() -> None:
    issued = [secrets.token_urlsafe(40) for _ in range(KEPT_TOKENS + 2)]  # nothing shared
    answers = iter(issued)
    clock = FakeClock()

    def handle(request: httpx.Request) -> httpx.Response:
        return token_answer(next(answers))

    async def body(client: EcsClient, auth: KeystoneAuth) -> None:
        for _ in issued:
            await auth.token()
            clock.now += 3600  # expired: the next call takes a new one

    run(handle, body, clock=clock)
    redactor = redaction.current()
    for old in issued[:2]:
        assert redactor.text(old) == old  # forgotten: the set stays bounded
    for kept in issued[2:]:
        assert redactor.text(f"x {kept} y") == "x *** y"


def test_a_token_issued_during_an_invocation_is_redacted_in_it() -> None:
    value = "gAAAAA-issued-mid-invocation-" + "W" * 30
    base = redaction.set_process_secrets(["a-configured-secret"])
    own = base.with_secrets(["an-invocation-credential"])

    async def main() -> tuple[str, str]:
        with redaction.use(own):
            auth = KeystoneAuth(
                password(), transport=httpx.MockTransport(lambda r: token_answer(value))
            )
            await auth.token()
            text = f"{value} an-invocation-credential a-configured-secret"
            inside = redaction.current().text(text)
        return inside, redaction.current().text(text)

    inside, outside = asyncio.run(main())
    assert inside == "*** *** ***"
    assert outside == "*** an-invocation-credential ***"


def test_redactor_forms_never_compound() -> None:
    secret = 'pa"ss\\wo/rd'
    redactor = redaction.Redactor([secret])
    for _ in range(20):
        redactor = redactor.with_secrets(["another-one"])
    assert redactor.secrets == redaction.Redactor([secret, "another-one"]).secrets
    for form in (repr(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/")):
        assert redactor.text(f"<{form}>") == "<***>"


def test_a_reset_is_not_undone_by_an_older_redactor() -> None:
    old = redaction.set_process_secrets(["from-an-older-runtime"])
    redaction.reset()
    with redaction.use(old):
        assert redaction.current() is old  # another lineage: kept as it was


# --- renewal ---------------------------------------------------------------------------------


def test_a_hung_renewal_holds_up_only_the_request_that_started_it() -> None:
    clock = FakeClock()
    posts: list[float] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            posts.append(time.monotonic())
            if len(posts) > 1:
                await asyncio.sleep(30)
            return token_answer("first-token-" + "A" * 20)
        return httpx.Response(204)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[float]:
        await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "a"))
        clock.now += 3600 - 100
        took = []
        for key in ("b", "c", "d"):
            started = time.monotonic()
            result = await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, key))
            assert result.outcome is Outcome.DELETED
            took.append(time.monotonic() - started)
        return took

    took = run(handle, body, clock=clock, timeout_s=2.0)
    assert len(posts) == 2  # one renewal, still in flight: never a second one
    assert took[0] < 0.6  # waited a moment (a fifth of the timeout) for it
    assert max(took[1:]) < 0.1  # the others do not wait for it at all


def test_a_fast_renewal_is_used_by_the_request_that_started_it() -> None:
    clock = FakeClock()
    sent: list[str] = []
    posts: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            posts.append(1)
            return token_answer(f"token-{len(posts)}-" + "B" * 20)
        sent.append(request.headers["X-Auth-Token"])
        return httpx.Response(204)

    async def body(client: EcsClient, auth: KeystoneAuth) -> None:
        await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "a"))
        clock.now += 3600 - 100
        await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "b"))

    run(handle, body, clock=clock)
    assert [s[:8] for s in sent] == ["token-1-", "token-2-"]


# --- the API refusing fresh tokens ---------------------------------------------------------


def refusing_api(posts: list[int]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            posts.append(1)
            return token_answer(f"refused-token-{len(posts)}-" + "C" * 20)
        return httpx.Response(401, json={"error": {"message": "nope"}})

    return handle


def test_the_memory_of_refused_fresh_tokens_ends() -> None:
    clock = FakeClock()
    posts: list[int] = []

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[int]:
        counts = []
        for step in (0.0, 1.0, REJECTED_FOR_S):
            clock.now += step
            result = await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "k"))
            assert result.outcome is Outcome.FORBIDDEN
            counts.append(len(posts))
        return counts

    # Taken, renewed once after the 401, then refused fresh: nothing more for a minute; then
    # one more login (the old token's 401), whose token is refused fresh again.
    assert run(refusing_api(posts), body, clock=clock) == [2, 2, 3]


def test_a_replacement_token_refused_long_after_its_issue_is_renewed() -> None:
    clock = FakeClock()
    refused = {"t-1-"}
    posts: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            posts.append(1)
            return token_answer(f"t-{len(posts)}-" + "D" * 20)
        if request.headers["X-Auth-Token"][:4] in refused:
            return httpx.Response(401)
        return httpx.Response(204)

    async def body(client: EcsClient, auth: KeystoneAuth) -> list[Outcome]:
        first = await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "a"))  # t-1 refused
        clock.now += 600  # t-2, a replacement, has long stopped being fresh
        refused.add("t-2-")  # revoked: a 401 that a new token cures
        second = await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "b"))
        return [first.outcome, second.outcome]

    assert run(handle, body, clock=clock) == [Outcome.DELETED, Outcome.DELETED]
    assert len(posts) == 3


# --- what Keystone answers -----------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "held_s"), [("7", 7.0), ("3600", 30.0), ("x", 1.0)])
def test_keystone_retry_after_holds_the_failure_capped(retry_after: str, held_s: float) -> None:
    clock = FakeClock()
    posts: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        posts.append(clock.now)
        return httpx.Response(503, headers={"Retry-After": retry_after})

    async def main() -> None:
        auth = KeystoneAuth(password(), transport=httpx.MockTransport(handle), clock=clock)
        for _ in range(80):
            with pytest.raises(KeystoneUnavailableError):
                await auth.token()
            clock.now += 0.5

    asyncio.run(main())
    assert posts[1] - posts[0] == pytest.approx(held_s, abs=0.51)


def test_a_remembered_failure_is_logged_once_and_says_until_when(log_stream: io.StringIO) -> None:
    clock = FakeClock()
    wall = iter([dt.datetime(2030, 1, 1, 10, 0, 0, tzinfo=dt.UTC)])

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "requires auth"}})

    async def main() -> list[str]:
        auth = KeystoneAuth(
            password(),
            transport=httpx.MockTransport(handle),
            clock=clock,
            wall_clock=lambda: next(wall),
        )
        messages = []
        for _ in range(3):
            with pytest.raises(KeystoneError) as info:
                await auth.token()
            messages.append(str(info.value))
            clock.now += 10
        return messages

    first, second, third = asyncio.run(main())
    assert "remembered" not in first
    assert second.endswith(
        "(remembered from 10:00:00 UTC; Keystone is asked again after 10:01:00 UTC)"
    )
    assert third == second
    told = [line for line in log_lines(log_stream) if "remembered" in line["message"]]
    assert len(told) == 1
    assert told[0]["asked_again_after"] == "10:01:00 UTC"


# --- the catalog ---------------------------------------------------------------------------


def catalog_of(*urls: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "compute",
            "endpoints": [{"interface": "public", "region": "r1", "url": url} for url in urls],
        }
    ]


def test_an_unusable_catalog_url_is_skipped_for_a_usable_one() -> None:
    sent: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            return token_answer(
                "tok-" + "E" * 20,
                catalog=catalog_of(
                    "https://bad.hardening.test/v2.1?x=1", f"{ECS}/v2.1/{DEMO_PROJECT}"
                ),
            )
        sent.append(str(request.url))
        return httpx.Response(204)

    async def body(client: EcsClient, auth: KeystoneAuth) -> Outcome:
        return (await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, "k"))).outcome

    assert run(handle, body) is Outcome.DELETED
    assert sent == [f"{ECS}/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/k"]


def test_a_catalog_url_with_user_info_is_unusable_and_never_quoted() -> None:
    url = f"https://svc:Catalog-Secret-9@ecs.hardening.test/v2.1/{DEMO_PROJECT}"

    def handle(request: httpx.Request) -> httpx.Response:
        return token_answer("tok-" + "F" * 20, catalog=catalog_of(url))

    async def body(client: EcsClient, auth: KeystoneAuth) -> KeystoneError:
        with pytest.raises(KeystoneError) as info:
            await auth.endpoint()
        return info.value

    error = run(handle, body)
    assert error.reason == "catalog"
    assert "no user info" in str(error)
    assert "Catalog-Secret-9" not in str(error)
    assert http_url_problem(url) is not None


# --- cleartext -----------------------------------------------------------------------------


def warnings(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in log_lines(stream) if line["level"] == "WARNING"]


@pytest.mark.parametrize(
    ("auth_url", "catalog_url", "warned"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:8774/v2.1", []),
        ("http://localhost:5000", "http://[::1]:8774/v2.1", []),
        ("https://keystone.hardening.test", "https://ecs.hardening.test/v2.1", []),
        ("http://keystone.hardening.test", "http://keystone.hardening.test:8774", ["OS_AUTH_URL"]),
        (
            "http://keystone.hardening.test",
            "http://ecs.hardening.test/v2.1",
            ["OS_AUTH_URL", "ecs.hardening.test"],
        ),
        ("https://keystone.hardening.test", "http://10.1.2.3/v2.1", ["10.1.2.3"]),
    ],
)
def test_cleartext_is_warned_about_once_where_it_leaves_the_machine(
    auth_url: str, catalog_url: str, warned: list[str], log_stream: io.StringIO
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            return token_answer("tok-" + "G" * 20, catalog=catalog_of(catalog_url))
        return httpx.Response(204)

    async def body(client: EcsClient, auth: KeystoneAuth) -> None:
        for key in ("a", "b", "c"):
            await client.delete_metadata(Pair(DEMO_PROJECT, WEB1, key))

    run(handle, body, settings=password(auth_url=auth_url))
    lines = warnings(log_stream)
    assert len(lines) == len(warned)
    for line, expected in zip(lines, warned, strict=True):
        assert expected in json.dumps(line)


# --- the deadline with OS_PROJECT_NAME alone ----------------------------------------------


class Deadline:
    aws_request_id = "req-hardening"
    function_name = "janitor"

    def __init__(self, ms: int) -> None:
        self._end = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._end - time.monotonic()) * 1000), 0)


def test_a_token_late_for_one_invocation_serves_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posts: list[int] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKENS:
            posts.append(1)
            await asyncio.sleep(0.8)
            return token_answer("late-token-" + "H" * 20)
        return httpx.Response(204)

    environ = {
        "OS_AUTH_URL": f"{KEYSTONE}/v3",
        "OS_USERNAME": "janitor",
        "OS_PASSWORD": "Hardening-Password-1",
        "OS_PROJECT_NAME": "demo",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    }
    app.set_runtime(Runtime(load_config(environ), transport=httpx.MockTransport(handle)))
    started = time.monotonic()
    with pytest.raises(KeystoneUnavailableError, match="before the invocation's deadline"):
        app.handler({"server_id": WEB1, "key": "a"}, Deadline(500))
    assert time.monotonic() - started < 0.6
    response = app.handler({"server_id": WEB1, "key": "b"}, None)
    assert response["results"][0]["outcome"] == "deleted"
    assert len(posts) == 1  # the second invocation waited for the same token request


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["OS_USERNAME", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME"]
)
def test_keystone_names_that_are_not_unicode_are_config_errors(name: str) -> None:
    environ = {
        "OS_AUTH_URL": f"{KEYSTONE}/v3",
        "OS_USERNAME": "janitor",
        "OS_PASSWORD": "pw",
        "OS_PROJECT_ID": DEMO_PROJECT,
        name: "na\udcefme",
    }
    with pytest.raises(ConfigError, match=f"{name}: is not valid UTF-8") as info:
        load_config(environ)
    assert "\udcef" not in str(info.value)
    assert "\\udcef" not in str(info.value)


# --- check ---------------------------------------------------------------------------------


def test_check_turns_any_unexpected_exception_into_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug\nover two lines")

    monkeypatch.setattr(check, "_run_check", broken)
    environ = {
        "OS_AUTH_URL": f"{KEYSTONE}/v3",
        "OS_USERNAME": "janitor",
        "OS_PASSWORD": "pw-pw-pw",
        "OS_PROJECT_ID": DEMO_PROJECT,
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    }
    diagnosis = run_check(load_config(environ))
    assert diagnosis.verdict is Verdict.API
    assert diagnosis.line == "unexpected error (a bug): ZeroDivisionError: a bug over two lines"


def test_check_says_an_unexpected_error_in_the_probe_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(self: KeystoneAuth) -> str:
        raise LookupError("no such thing")

    monkeypatch.setattr(KeystoneAuth, "project_id", broken)
    environ = {
        "OS_AUTH_URL": f"{KEYSTONE}/v3",
        "OS_USERNAME": "janitor",
        "OS_PASSWORD": "pw-pw-pw",
        "OS_PROJECT_NAME": "demo",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    }
    handler = httpx.MockTransport(lambda r: token_answer("tok-" + "I" * 20))
    diagnosis = run_check(load_config(environ), transport=handler)
    assert (diagnosis.verdict, diagnosis.line) == (
        Verdict.API,
        "unexpected error (a bug): LookupError: no such thing",
    )


# --- the sandbox's Keystone ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"auth": ' * 3000 + b"1" + b"}" * 3000,
        json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": "de\udc80mo",
                                "password": "x",
                                "domain": {"name": "Default"},
                            }
                        },
                    },
                    "scope": {"project": {"id": DEMO_PROJECT}},
                }
            }
        ).encode(),
    ],
    ids=["nested-objects", "surrogate-name"],
)
def test_the_sandbox_keystone_answers_400_to_more_hostile_bodies(
    sandbox: Sandbox, body: bytes
) -> None:
    with httpx.Client(base_url=sandbox.url) as client:
        answer = client.post(TOKENS, content=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 400
