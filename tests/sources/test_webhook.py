"""Webhooks: API Gateway v1/v2, Function URL, ALB, FunctionGraph APIG; Standard Webhooks auth."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

import handler.sources
from handler import app, logs
from handler.local import FakeContext
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from handler.sources import RejectedEvent, Source, SourceSettings
from handler.sources.alb import AlbSource
from handler.sources.apigw import ApiGatewayV1Source, ApiGatewayV2Source
from handler.sources.base import HttpAnswer, OnTransient
from handler.sources.fg_apig import FgApigSource
from handler.sources.webhook import ReplayCache, WebhookSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

SECRET = "whsec_" + base64.b64encode(b"webhook-test-secret-0123456789ab").decode()
RAW_SECRET = SECRET.removeprefix("whsec_")
MINE: tuple[type[Source], ...] = (ApiGatewayV2Source, ApiGatewayV1Source, AlbSource, FgApigSource)


# --- building requests ---------------------------------------------------------------------


def sign(
    body: str | bytes, msg_id: str = "msg_1", when: datetime | None = None, secret: str = SECRET
) -> dict[str, str]:
    """Standard Webhooks headers for a body, signed now (or at `when`)."""
    text = body.decode() if isinstance(body, bytes) else body
    when = when or datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, text),
    }


def title(headers: dict[str, str]) -> dict[str, str]:
    """The same headers with Title-Case names (`Webhook-Id`), as API Gateway v1 keeps them."""
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}


def v2_event(body: str, headers: dict[str, str], *, b64: bool = False) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "headers": {"content-type": "application/json", **headers},
        "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "req-v2"},
        "body": base64.b64encode(body.encode()).decode() if b64 else body,
        "isBase64Encoded": b64,
    }


def v1_event(
    body: str, headers: dict[str, str], *, b64: bool = False, multi: bool = True
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resource": "/hook",
        "path": "/hook",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", **headers},
        "requestContext": {"requestId": "req-v1", "stage": "prod"},
        "body": base64.b64encode(body.encode()).decode() if b64 else body,
        "isBase64Encoded": b64,
    }
    if multi:
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    return event


def alb_event(body: str, headers: dict[str, str], *, multi: bool = False) -> dict[str, Any]:
    all_headers = {"x-amzn-trace-id": "Root=1-abc", **headers}
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:x"}},
        "httpMethod": "POST",
        "path": "/hook",
        "body": body,
        "isBase64Encoded": False,
    }
    if multi:
        event["multiValueHeaders"] = {k: [v] for k, v in all_headers.items()}
    else:
        event["headers"] = all_headers
    return event


def fg_event(body: str, headers: dict[str, str], *, b64: bool = False) -> dict[str, Any]:
    return {
        "body": base64.b64encode(body.encode()).decode() if b64 else body,
        "requestContext": {"apiId": "api-1", "requestId": "req-fg", "stage": "RELEASE"},
        "httpMethod": "POST",
        "headers": headers,
        "path": "/",
        "pathParameters": {},
        "queryStringParameters": {},
        "isBase64Encoded": b64,
    }


def settings(**overrides: Any) -> SourceSettings:
    return SourceSettings(**{"webhook_secret": SECRET, "replays": ReplayCache(), **overrides})


def units_of(event: dict[str, Any], how: SourceSettings | None = None) -> list[Any]:
    source = detect_mine(event)(event, how or settings())
    return source.units(event)


def detect_mine(event: Any) -> type[WebhookSource]:
    found = [s for s in MINE if s.matches(event)]
    assert len(found) == 1, found
    source = found[0]
    assert issubclass(source, WebhookSource)
    return source


def rejected(event: dict[str, Any], how: SourceSettings | None = None) -> RejectedEvent:
    with pytest.raises(RejectedEvent) as caught:
        units_of(event, how)
    return caught.value


BODY = json.dumps({"server_id": WEB1, "keys": ["lease-owner", "lease-expires"]})
BUILDERS = [v2_event, v1_event, alb_event, fg_event]


# --- shapes --------------------------------------------------------------------------------


WEBHOOK_SAMPLES = {
    "apigw-v1.json": ApiGatewayV1Source,
    "apigw-v2.json": ApiGatewayV2Source,
    "function-url.json": ApiGatewayV2Source,
    "alb.json": AlbSource,
    "fg-apig.json": FgApigSource,
}


@pytest.mark.parametrize("name", sorted(WEBHOOK_SAMPLES))
def test_each_sample_is_matched_by_its_door_only(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    assert detect_mine(event) is WEBHOOK_SAMPLES[name]
    door = WEBHOOK_SAMPLES[name]
    others = [s for s in handler.sources.SOURCES if s.matches(event) and s is not door]
    assert others == [], f"{name} is also matched by {others}"


def test_no_other_sample_is_taken_for_a_webhook() -> None:
    for sample in sorted(EVENTS.glob("*.json")):
        if sample.name not in WEBHOOK_SAMPLES:
            event = json.loads(sample.read_text())
            assert [s for s in MINE if s.matches(event)] == [], sample.name


def test_the_samples_bodies_name_demo_pairs_and_one_is_base64() -> None:
    encoded = 0
    for name in WEBHOOK_SAMPLES:
        event = json.loads((EVENTS / name).read_text())
        encoded += bool(event.get("isBase64Encoded"))
        units = units_of(event, settings(webhook_auth="none"))
        assert units and all(u.payload.items for u in units), name
    assert encoded >= 1


def test_webhooks_answer_their_callers() -> None:
    for door in MINE:
        assert door.on_transient is OnTransient.ANSWER
        assert door.kind


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDERS)
def test_a_valid_signature_is_accepted_with_any_header_case(build: Any) -> None:
    for headers in (sign(BODY), title(sign(BODY)), {k.upper(): v for k, v in sign(BODY).items()}):
        units = units_of(build(BODY, headers))
        assert [u.id for u in units] == ["msg_1"]
        assert [(i.server_id, i.key) for i in units[0].payload.items] == [
            (WEB1, "lease-owner"),
            (WEB1, "lease-expires"),
        ]


@pytest.mark.parametrize("build", BUILDERS)
def test_base64_bodies_are_decoded_before_the_signature_is_checked(build: Any) -> None:
    if build is alb_event:
        event = alb_event(base64.b64encode(BODY.encode()).decode(), sign(BODY))
        event["isBase64Encoded"] = True
    else:
        event = build(BODY, sign(BODY), b64=True)
    assert len(units_of(event)[0].payload.items) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "1"},
        {k: v for k, v in sign(BODY).items() if k != "webhook-signature"},
        {k: v for k, v in sign(BODY).items() if k != "webhook-id"},
    ],
)
def test_missing_headers_are_401(headers: dict[str, str]) -> None:
    error = rejected(v2_event(BODY, headers))
    assert error.status == 401
    assert "missing" in error.message


def test_a_forged_or_altered_request_is_401() -> None:
    forged = sign(BODY, secret="whsec_" + base64.b64encode(b"someone-else-s-key").decode())
    assert rejected(v2_event(BODY, forged)).status == 401
    other_body = json.dumps({"server_id": WEB2, "key": "lease-owner"})
    assert rejected(v2_event(other_body, sign(BODY))).status == 401
    renamed = {**sign(BODY), "webhook-id": "msg_2"}
    assert rejected(v2_event(BODY, renamed)).status == 401
    for garbage in ("v1", "v1,!!!", "nonsense", ""):
        assert rejected(v2_event(BODY, {**sign(BODY), "webhook-signature": garbage})).status == 401


@pytest.mark.parametrize("minutes", [-6, 6, -60 * 24])
def test_a_stale_or_future_timestamp_is_401(minutes: int) -> None:
    when = datetime.now(tz=UTC) + timedelta(minutes=minutes)
    error = rejected(v1_event(BODY, title(sign(BODY, when=when))))
    assert error.status == 401
    assert "timestamp" in error.message


def test_a_timestamp_inside_the_window_is_accepted() -> None:
    when = datetime.now(tz=UTC) - timedelta(minutes=4)
    assert units_of(v2_event(BODY, sign(BODY, when=when)))


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "1e400", "-1"])
def test_a_malformed_timestamp_is_401(value: str) -> None:
    headers = {**sign(BODY), "webhook-timestamp": value}
    assert rejected(v2_event(BODY, headers)).status == 401


def test_signature_mode_without_a_secret_refuses_every_request() -> None:
    how = SourceSettings(webhook_secret=None, webhook_auth="signature")
    error = rejected(v2_event(BODY, sign(BODY)), how)
    assert error.status == 401
    assert "WEBHOOK_SECRET" in error.message


def test_auth_none_checks_nothing() -> None:
    how = SourceSettings(webhook_secret=None, webhook_auth="none")
    units = units_of(v2_event(BODY, {}), how)
    assert [u.id for u in units] == ["req-v2"]  # no webhook-id: the platform's request id
    forged = {**sign(BODY), "webhook-signature": "v1,AAAA"}
    assert units_of(v2_event(BODY, forged), how)


def test_correlation_ids_fall_back_to_each_platforms_request_id() -> None:
    how = SourceSettings(webhook_auth="none")
    assert units_of(v1_event(BODY, {}), how)[0].id == "req-v1"
    assert units_of(v2_event(BODY, {}), how)[0].id == "req-v2"
    assert units_of(alb_event(BODY, {}), how)[0].id == "Root=1-abc"
    assert units_of(fg_event(BODY, {}), how)[0].id == "req-fg"
    assert units_of(fg_event(BODY, {"Webhook-Id": "msg_9"}), how)[0].id == "msg_9"


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["", "not json", "{}", "[]", '{"items": []}', '"a string"', "null"]
)
def test_a_body_naming_no_pair_is_400(body: str) -> None:
    error = rejected(v2_event(body, sign(body)))
    assert error.status == 400


def test_a_body_that_is_not_base64_when_it_says_so_is_400() -> None:
    event = v2_event(BODY, sign(BODY))
    event["isBase64Encoded"] = True
    event["body"] = "%%% not base64 %%%"
    assert rejected(event).status == 400


def test_more_pairs_than_allowed_is_413_before_anything_is_touched() -> None:
    body = json.dumps({"server_id": WEB1, "keys": [f"k{i}" for i in range(11)]})
    error = rejected(v2_event(body, sign(body)), settings(max_pairs_per_request=10))
    assert error.status == 413
    ten = json.dumps({"server_id": WEB1, "keys": [f"k{i}" for i in range(10)]})
    assert units_of(v2_event(ten, sign(ten)), settings(max_pairs_per_request=10))


# --- responses -----------------------------------------------------------------------------


def answer() -> HttpAnswer:
    return HttpAnswer(207, {"summary": {"pairs": 1}, "results": []})


def test_api_gateway_v1_answers_multi_value_headers_when_the_request_had_them() -> None:
    multi = ApiGatewayV1Source(v1_event(BODY, {}, multi=True))
    response = multi.render(answer())
    assert response["statusCode"] == 207
    assert response["multiValueHeaders"] == {"Content-Type": ["application/json"]}
    assert response["headers"] == {"Content-Type": "application/json"}
    assert response["isBase64Encoded"] is False
    assert json.loads(response["body"])["summary"] == {"pairs": 1}
    single = ApiGatewayV1Source(v1_event(BODY, {}, multi=False)).render(answer())
    assert "multiValueHeaders" not in single


def test_api_gateway_v2_answer_shape() -> None:
    response = ApiGatewayV2Source(v2_event(BODY, {})).render(answer())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}


@pytest.mark.parametrize("multi", [False, True])
def test_alb_answers_in_the_requests_header_form_with_a_status_description(multi: bool) -> None:
    response = AlbSource(alb_event(BODY, {}, multi=multi)).render(answer())
    assert response["statusDescription"] == "207 Multi-Status"
    assert ("multiValueHeaders" in response) is multi
    assert ("headers" in response) is not multi
    ok = AlbSource(alb_event(BODY, {})).render(HttpAnswer(200, {}))
    assert ok["statusDescription"] == "200 OK"


def test_functiongraph_apig_answer_is_exactly_its_four_fields() -> None:
    response = FgApigSource(fg_event(BODY, {})).render(answer())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert type(response["statusCode"]) is int
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in response["headers"].items())
    assert isinstance(response["body"], str)
    assert response["isBase64Encoded"] is False


def test_a_rejection_is_answered_in_the_platforms_shape() -> None:
    event = fg_event(BODY, {})
    source = FgApigSource(event, settings())
    with pytest.raises(RejectedEvent) as caught:
        source.units(event)
    response = source.reject(caught.value)
    assert response["statusCode"] == 401
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert "error" in json.loads(response["body"])


# --- the replay cache ----------------------------------------------------------------------


def test_replay_cache_keeps_final_answers_until_they_expire() -> None:
    now = [1000.0]
    cache = ReplayCache(clock=lambda: now[0])
    assert cache.claim("a", "d").state == "new"
    assert cache.claim("a", "d").state == "running"
    assert cache.claim("a", "other").state == "other-body"
    cache.keep("a", "d", HttpAnswer(200, {"x": 1}), until=1300.0)
    replay = cache.claim("a", "d")
    assert replay.state == "answered"
    assert replay.answer == HttpAnswer(200, {"x": 1})
    now[0] = 1300.0
    assert cache.claim("a", "d").state == "new"  # expired: a new request


def test_replay_cache_releases_and_forgets_a_running_claim_after_a_while() -> None:
    now = [0.0]
    cache = ReplayCache(clock=lambda: now[0])
    cache.claim("a", "d")
    cache.release("a", "d")
    assert cache.claim("a", "d").state == "new"
    now[0] = 61.0  # the first request never answered (a crash): the id is free again
    assert cache.claim("a", "d").state == "new"


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(max_entries=100, max_bytes=2_000)
    for i in range(1_000):
        cache.claim(f"id{i}", "d")
        cache.keep(f"id{i}", "d", HttpAnswer(200, {"n": i}), until=1e12)
    assert len(cache) <= 100
    assert cache._bytes <= 2_000
    assert cache.claim("id999", "d").state == "answered"
    assert cache.claim("id0", "d").state == "new"  # the oldest was let go
    big = HttpAnswer(200, {"blob": "x" * 5_000})
    cache.claim("big", "d")
    cache.keep("big", "d", big, until=1e12)
    assert cache.claim("big", "d").state == "new"  # too big to keep: not kept


def test_replay_cache_is_thread_safe() -> None:
    cache = ReplayCache(max_entries=500)
    new: list[str] = []

    def work(n: int) -> None:
        for i in range(300):
            if cache.claim(f"id{i}", "d").state == "new":
                new.append(f"id{i}")
                cache.keep(f"id{i}", "d", HttpAnswer(200, {"n": n}), until=1e12)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(new) == sorted({f"id{i}" for i in range(300)})  # each id claimed once


# --- end to end through handler.app.handler ------------------------------------------------


@pytest.fixture
def doors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler.sources, "SOURCES", (*MINE, *handler.sources.SOURCES))


def start(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, dead_letters: Path, **env: str) -> Runtime:
    """Configure the environment and install a runtime with a replay cache, as deployed."""
    env = {"WEBHOOK_SECRET": SECRET, "MAX_ATTEMPTS": "2", **env}
    configure_for(monkeypatch, sb, dead_letters, **env)
    runtime = Runtime.from_environment()
    runtime.source_settings = dataclasses.replace(runtime.source_settings, replays=ReplayCache())
    app.set_runtime(runtime)
    return runtime


def call(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    response = app.handler(event, FakeContext(30_000))
    assert isinstance(response, dict)
    return response, json.loads(response["body"])


def deletes(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "DELETE")


@pytest.mark.usefixtures("doors")
@pytest.mark.parametrize("build", [v2_event, v1_event, fg_event])
def test_a_signed_request_deletes_its_pairs_and_answers_200(
    build: Any, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    headers = title(sign(BODY)) if build is v1_event else sign(BODY)
    response, body = call(build(BODY, headers, b64=True))
    assert response["statusCode"] == 200
    assert body["summary"]["deleted"] == 2
    assert [r["outcome"] for r in body["results"]] == ["deleted", "deleted"]
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert not dead_letters.exists()


@pytest.mark.usefixtures("doors")
@pytest.mark.parametrize("multi", [False, True])
def test_alb_end_to_end(
    multi: bool, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    response, body = call(alb_event(BODY, sign(BODY), multi=multi))
    assert response["statusCode"] == 200
    assert response["statusDescription"] == "200 OK"
    assert body["summary"]["deleted"] == 2


@pytest.mark.usefixtures("doors")
def test_a_replayed_webhook_gets_the_first_answer_without_deleting_again(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    event = v2_event(BODY, sign(BODY, msg_id="msg_replay"))
    first = call(event)
    assert first[0]["statusCode"] == 200
    done = deletes(sandbox)
    assert done == 2
    # The same webhook again (its retry, or a replay by a third party), with Title-Case names.
    again = v1_event(BODY, title(sign(BODY, msg_id="msg_replay")))
    assert call(event) == first
    assert call(again)[1] == first[1]
    assert deletes(sandbox) == done
    # Another webhook-id is a new request (the key is absent now).
    _, body = call(v2_event(BODY, sign(BODY, msg_id="msg_other")))
    assert body["summary"]["absent"] == 2
    assert deletes(sandbox) == done + 2


@pytest.mark.usefixtures("doors")
def test_rejected_requests_touch_nothing_and_dead_letter_nothing(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters, MAX_PAIRS_PER_REQUEST="1")
    stale = sign(BODY, when=datetime.now(tz=UTC) - timedelta(minutes=10))
    for event, status in [
        (v2_event(BODY, {}), 401),
        (v2_event(BODY, {**sign(BODY), "webhook-signature": "v1,Zm9yZ2Vk"}), 401),
        (v2_event(BODY, stale), 401),
        (v2_event(BODY, sign(BODY)), 413),
        (v2_event("nope", sign("nope")), 400),
    ]:
        response, body = call(event)
        assert response["statusCode"] == status, body
        assert "error" in body
    assert deletes(sandbox) == 0
    assert not dead_letters.exists()


@pytest.mark.usefixtures("doors")
def test_some_pairs_dead_lettered_is_207_and_replayed(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    body = json.dumps(
        [{"server_id": DB1, "key": "lease-owner"}, {"server_id": "not-a-uuid", "key": "k"}]
    )
    event = v2_event(body, sign(body, msg_id="msg_207"))
    response, answer_body = call(event)
    assert response["statusCode"] == 207
    assert sorted(r["outcome"] for r in answer_body["results"]) == ["deleted", "invalid"]
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert [d["reason"] for d in letters] == ["invalid"]
    assert letters[0]["source"] == {"kind": "apigw-v2", "id": "msg_207"}
    assert call(event) == (response, answer_body)  # final: answered again from memory
    assert len(dead_letters.read_text().splitlines()) == 1


@pytest.mark.usefixtures("doors")
def test_transient_pairs_are_207_for_the_caller_to_resend_and_not_replayed(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    body = json.dumps(
        [
            {"server_id": DB1, "key": "lease-owner"},
            {"server_id": WEB2, "key": "lease-owner"},  # locked: conflict, the caller resends
        ]
    )
    event = v2_event(body, sign(body, msg_id="msg_conflict"))
    response, answer_body = call(event)
    assert response["statusCode"] == 207
    assert sorted(r["outcome"] for r in answer_body["results"]) == ["conflict", "deleted"]
    assert not dead_letters.exists()  # ANSWER: the caller is told, the sink is not used
    before = deletes(sandbox)
    response, answer_body = call(event)  # the resend is processed again, not replayed
    assert deletes(sandbox) > before
    assert sorted(r["outcome"] for r in answer_body["results"]) == ["absent", "conflict"]


@pytest.mark.usefixtures("doors")
def test_a_dead_letter_that_cannot_be_written_is_503_and_is_not_replayed(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    dead_letters.mkdir()  # the sink's file is now a directory: every write fails
    body = json.dumps([{"server_id": DB1, "key": "lease-owner"}, {"server_id": "x", "key": "k"}])
    event = v2_event(body, sign(body, msg_id="msg_503"))
    response, _ = call(event)
    assert response["statusCode"] == 503
    dead_letters.rmdir()
    response, answer_body = call(event)  # sent again: processed again, not answered from memory
    assert response["statusCode"] == 207
    assert answer_body["summary"]["absent"] == 1


@pytest.mark.usefixtures("doors")
def test_auth_none_and_signature_without_secret_end_to_end(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters, WEBHOOK_AUTH="none")
    response, _ = call(fg_event(BODY, {}))
    assert response["statusCode"] == 200
    app.reset_runtime()
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("WEBHOOK_AUTH", "signature")
    runtime = Runtime.from_environment()
    app.set_runtime(runtime)
    assert runtime.source_settings.webhook_secret is None
    response, body = call(v2_event(BODY, sign(BODY)))
    assert response["statusCode"] == 401
    assert "WEBHOOK_SECRET" in body["error"]


@pytest.mark.usefixtures("doors")
def test_the_secret_never_appears_in_an_answer_a_log_or_a_dead_letter(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    logs.set_stream(stream)
    start(monkeypatch, sandbox, dead_letters)
    answers = []
    # A body that carries the secret itself, valid and forged requests, a stale one.
    body = json.dumps([{"server_id": WEB1, "key": "owner"}, {"server_id": SECRET, "key": "k"}])
    for event in [
        v2_event(body, sign(body)),
        v2_event(body, {**sign(body), "webhook-signature": f"v1,{RAW_SECRET}"}),
        v1_event(RAW_SECRET, title(sign(RAW_SECRET))),
        alb_event(body, sign(body, when=datetime.now(tz=UTC) - timedelta(hours=1))),
    ]:
        answers.append(json.dumps(app.handler(event, FakeContext(30_000))))
    seen = "\n".join([*answers, stream.getvalue(), dead_letters.read_text()])
    assert "owner" in seen  # the logs and answers were captured
    assert SECRET not in seen
    assert RAW_SECRET not in seen


# --- CloudEvents in a webhook (when handler.sources.cloudevents is there) -------------------


@pytest.mark.usefixtures("doors")
def test_cloudevents_in_a_signed_webhook_structured_and_binary(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("handler.sources.cloudevents")
    start(monkeypatch, sandbox, dead_letters)
    data = {"server_id": WEB1, "key": "lease-owner"}
    structured = json.dumps(
        {"specversion": "1.0", "id": "ce-1", "source": "/janitor", "type": "t", "data": data}
    )
    headers = {**sign(structured, msg_id="msg_ce1"), "content-type": "application/cloudevents+json"}
    response, body = call(v2_event(structured, headers))
    assert response["statusCode"] == 200, body
    assert body["summary"]["deleted"] == 1
    binary = json.dumps({"server_id": DB1, "key": "lease-owner"})
    ce = {"Ce-Id": "ce-2", "Ce-Source": "/janitor", "Ce-Type": "t", "Ce-Specversion": "1.0"}
    response, body = call(v1_event(binary, {**title(sign(binary, msg_id="msg_ce2")), **ce}))
    assert response["statusCode"] == 200, body
    assert body["summary"]["deleted"] == 1
    malformed = {**ce}
    del malformed["Ce-Type"]
    response, body = call(v1_event(binary, {**title(sign(binary, msg_id="msg_ce3")), **malformed}))
    assert response["statusCode"] == 400
    assert "ce-type" in body["error"]


def test_the_same_webhook_id_while_the_first_runs_is_409_with_retry_after() -> None:
    how = settings()
    first_event = v2_event(BODY, sign(BODY, msg_id="msg_busy"))
    assert ApiGatewayV2Source(first_event, how).units(first_event)  # claimed, not answered yet
    second = ApiGatewayV2Source(first_event, how)
    with pytest.raises(RejectedEvent) as caught:
        second.units(first_event)
    response = second.reject(caught.value)
    assert response["statusCode"] == 409
    assert response["headers"]["Retry-After"] == "5"
