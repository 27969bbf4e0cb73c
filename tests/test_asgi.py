"""The ASGI app (handler/asgi.py) through httpx's ASGI transport: routes, doors, shutdown."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import app as entry
from handler.asgi import MAX_BODY_BYTES, App
from handler.config import load_config
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import EVENTS, SandboxFactory, configure_for, lines_of, metadata_of
from tests.sandbox._demo import DB1, SK, WEB1, WEB2
from tests.sources.test_webhook import SECRET, sign

pytestmark = pytest.mark.anyio


#: The project's Function URL sample body: WEB1 env:stage, and WEB2 (locked) lease-owner.
SAMPLE_BODY = json.loads((EVENTS / "function-url.json").read_text())["body"]
#: Two pairs the demo seed lets go.
WEBHOOK_BODY = json.dumps(
    [{"server_id": WEB1, "key": "env:stage"}, {"server_id": DB1, "key": "backup-policy"}]
)
#: The project's CloudEvent sample: WEB1 lease-owner and lease-expires, DB1 backup-policy.
CLOUDEVENT = json.loads((EVENTS / "cloudevent.json").read_text())


def binary_mode(event: dict[str, Any]) -> tuple[dict[str, str], str]:
    """A CloudEvent as an HTTP binary-mode request: `ce-` headers, the data as the body."""
    headers = {
        f"ce-{name}": str(value)
        for name, value in event.items()
        if name not in ("data", "datacontenttype")
    }
    headers["content-type"] = event["datacontenttype"]
    return headers, json.dumps(event["data"])


@pytest.fixture
def runtime(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> Iterator[Runtime]:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    built = Runtime(load_config())
    yield built
    built.close()


def client_for(asgi: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://janitor")


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(App(runtime)) as c:
        yield c


async def eventually(check: Callable[[], Any], timeout_s: float = 10) -> None:
    """Wait until `check()` is truthy (fail after `timeout_s`)."""
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


# --- the doors ---------------------------------------------------------------------------------


async def test_a_signed_webhook_deletes_its_pairs(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    response = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["summary"]["deleted"] == 2
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert "backup-policy" not in metadata_of(sandbox, DB1)


async def test_a_locked_server_is_answered_207_for_the_caller_to_send_again(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    response = await client.post("/", content=SAMPLE_BODY, headers=sign(SAMPLE_BODY))
    assert response.status_code == 207
    outcomes = {r["item"]["server_id"]: r["outcome"] for r in response.json()["results"]}
    assert outcomes == {WEB1: "deleted", WEB2: "conflict"}
    assert "lease-owner" in metadata_of(sandbox, WEB2)


async def test_an_unsigned_webhook_is_refused_and_touches_nothing(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    before = metadata_of(sandbox, WEB1)
    response = await client.post("/webhook", content=WEBHOOK_BODY)
    assert response.status_code == 401
    assert "webhook-signature" in response.json()["error"]
    assert metadata_of(sandbox, WEB1) == before
    assert not [r for r in sandbox.requests() if r["method"] == "DELETE"]


async def test_a_binary_mode_cloudevent_deletes_its_pairs(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    headers, body = binary_mode(CLOUDEVENT)
    response = await client.post("/cloudevents", content=body, headers={**headers, **sign(body)})
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["deleted"] == 3
    assert not {"lease-owner", "lease-expires"} & set(metadata_of(sandbox, WEB1))
    assert "backup-policy" not in metadata_of(sandbox, DB1)


async def test_a_structured_cloudevent_behind_a_gateway_that_authenticates(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_AUTH="none")
    runtime = Runtime(load_config())
    try:
        async with client_for(App(runtime)) as client:
            response = await client.post(
                "/",
                content=json.dumps(CLOUDEVENT),
                headers={"content-type": "application/cloudevents+json"},
            )
    finally:
        runtime.close()
    assert response.status_code == 200, response.text
    assert "backup-policy" not in metadata_of(sandbox, DB1)


async def test_a_resent_webhook_gets_the_first_answer_and_deletes_nothing_again(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    headers = sign(WEBHOOK_BODY, msg_id="msg_resent")
    first = await client.post("/", content=WEBHOOK_BODY, headers=headers)
    deletes = len([r for r in sandbox.requests() if r["method"] == "DELETE"])
    second = await client.post("/", content=WEBHOOK_BODY, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert len([r for r in sandbox.requests() if r["method"] == "DELETE"]) == deletes


async def test_two_requests_at_once_are_answered_each_with_its_own_pairs(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    one = json.dumps({"server_id": WEB1, "key": "env:stage"})
    two = json.dumps({"server_id": DB1, "key": "backup-policy"})
    first, second = await asyncio.gather(
        client.post("/", content=one, headers=sign(one, msg_id="msg_a")),
        client.post("/", content=two, headers=sign(two, msg_id="msg_b")),
    )
    assert first.status_code == second.status_code == 200
    assert [r["item"]["server_id"] for r in first.json()["results"]] == [WEB1]
    assert [r["item"]["server_id"] for r in second.json()["results"]] == [DB1]


@pytest.mark.parametrize(
    ("request_id", "named"),
    [("knative-req-7", "knative-req-7"), ("bad\x1b[31m", None), ("x" * 201, None)],
)
async def test_a_proxy_request_id_names_the_unit_when_printable_and_short(
    monkeypatch: pytest.MonkeyPatch,
    sandbox: Sandbox,
    dead_letters: Path,
    log_lines: io.StringIO,
    request_id: str,
    named: str | None,
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_AUTH="none")
    runtime = Runtime(load_config())
    body = json.dumps({"server_id": WEB1, "key": "env:stage"})
    try:
        async with client_for(App(runtime)) as client:
            response = await client.post("/", content=body, headers={"x-request-id": request_id})
    finally:
        runtime.close()
    assert response.status_code == 200
    pair = [line for line in lines_of(log_lines) if line["message"] == "pair settled"]
    assert pair and pair[0]["source"] == "http"
    assert pair[0].get("source_id") == named


# --- routes, methods, sizes ---------------------------------------------------------------------


async def test_healthz_answers_ok_and_head_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    head = await client.head("/healthz")
    assert head.status_code == 200 and head.content == b""
    refused = await client.post("/healthz")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/", 405), ("POST", "/x", 404)])
async def test_other_routes_and_methods_are_refused_in_json(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert "error" in response.json()


async def test_a_body_over_the_limit_is_refused_unread(client: httpx.AsyncClient) -> None:
    response = await client.post("/", content=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.json()["error"]


async def test_a_streamed_body_over_the_limit_is_refused(runtime: Runtime) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 400

    async with client_for(App(runtime, max_body_bytes=1000)) as client:
        response = await client.post("/", content=chunks())
    assert response.status_code == 413


# --- starting and stopping ------------------------------------------------------------------------


async def test_a_bad_configuration_is_answered_503_and_logged_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "ftp://nowhere")
    async with client_for(App()) as client:
        health = await client.get("/healthz")
        response = await client.post("/", content=b"{}")
    assert health.status_code == 503
    assert response.status_code == 503
    assert response.json() == {"error": "the function is not configured; see its logs"}
    errors = [line for line in lines_of(log_lines) if line["message"] == "cold start failed"]
    assert errors and "ECS_ENDPOINT" in errors[0]["error"]
    assert "Traceback" not in log_lines.getvalue()


async def test_without_credentials_it_will_not_start(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, log_lines: io.StringIO
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "0123456789abcdef0123456789abcdef")
    asgi = App()
    messages = iter([{"type": "lifespan.startup"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await asgi({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "HUAWEICLOUD_SDK_AK" in sent[0]["message"]


async def test_without_a_webhook_secret_it_will_not_start(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    async with client_for(App()) as client:
        health = await client.get("/healthz")
    assert health.status_code == 503


async def test_lifespan_builds_the_functions_runtime_and_closes_it(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    asgi = App()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    task = asyncio.create_task(asgi({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await eventually(lambda: sent)
    assert sent == ["lifespan.startup.complete"]
    runtime = entry.current_runtime()
    assert runtime.config.endpoint == sandbox.url
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert runtime.loop.is_closed()


async def test_shutdown_finishes_the_requests_in_flight_then_refuses(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory, dead_letters: Path
) -> None:
    slow = make_sandbox(latency_ms=300)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    runtime = Runtime(load_config())
    asgi = App(runtime)
    try:
        async with client_for(asgi) as client:
            request = asyncio.create_task(
                client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
            )
            await eventually(slow.requests)
            stopping = asyncio.create_task(asgi.shutdown())
            await asyncio.sleep(0.05)
            assert not stopping.done()  # waits for the request in flight
            refused = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
            health = await client.get("/healthz")
            response = await request
            await asyncio.wait_for(stopping, 10)
    finally:
        runtime.close()
    assert response.status_code == 200 and response.json()["summary"]["deleted"] == 2
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert health.status_code == 503
    assert "backup-policy" not in metadata_of(slow, DB1)


async def test_a_runtime_closed_under_a_request_is_answered_503(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory, dead_letters: Path
) -> None:
    slow = make_sandbox(latency_ms=2000)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    runtime = Runtime(load_config())
    async with client_for(App(runtime)) as client:
        request = asyncio.create_task(
            client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
        )
        await eventually(slow.requests)
        await asyncio.to_thread(runtime.close)
        response = await asyncio.wait_for(request, 10)
        after = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
    assert response.status_code == 503
    assert after.status_code == 503


async def test_an_unexpected_failure_is_a_500_without_details_or_secrets(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, log_lines: io.StringIO
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom with {SK}")

    monkeypatch.setattr(runtime, "invoke_async", broken)
    async with client_for(App(runtime)) as client:
        response = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
    assert response.status_code == 500
    assert set(response.json()) == {"error", "request_id"}
    assert SK not in response.text
    assert SK not in log_lines.getvalue()
    failed = [line for line in lines_of(log_lines) if line["message"] == "request failed"]
    assert failed and failed[0]["request_id"] == response.json()["request_id"]


async def test_an_answer_holding_a_lone_surrogate_is_written_as_json(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler.sources.base import HttpAnswer

    async def answered(*args: Any, **kwargs: Any) -> Any:
        from handler.runtime import Invoked

        return Invoked(HttpAnswer(200, {"detail": "key k\ud800"}), [], {})

    monkeypatch.setattr(runtime, "invoke_async", answered)
    async with client_for(App(runtime)) as client:
        response = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
    assert response.status_code == 200
    assert response.json() == {"detail": "key k\ud800"}
