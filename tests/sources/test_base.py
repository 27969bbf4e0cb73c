"""The seams every source stands on: raw requests in, a status out, events refused whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler.config import Config
from handler.engine import answer_status
from handler.model import parse_text
from handler.outcomes import Outcome, Pair, Result
from handler.runtime import Runtime
from handler.sources import (
    HttpAnswer,
    HttpRequest,
    OnTransient,
    RejectedEvent,
    Source,
    Unit,
    UnitReport,
)
from tests.sandbox._demo import DB1, PROJECT, WEB1


def test_header_names_are_read_in_any_case() -> None:
    request = HttpRequest.of("post", {"Webhook-ID": "msg_1", "X-None": None}, b"{}")
    assert request.method == "POST"
    assert request.header("webhook-id") == request.header("WEBHOOK-ID") == "msg_1"
    assert request.header("x-none") is None


class _Webhook(Source):
    """A minimal webhook source, as the coming ones will be: body and headers in, status out."""

    kind = "test-webhook"
    on_transient = OnTransient.ANSWER

    @classmethod
    def matches(cls, event: Any) -> bool:
        return isinstance(event, dict) and "test_request" in event

    def units(self, event: Any) -> list[Unit]:
        request = HttpRequest.of("POST", event["headers"], event["test_request"].encode())
        if request.header("x-signature") != "good":
            raise RejectedEvent(401, "the signature does not match")
        return [Unit(id=request.header("webhook-id"), body=request.body, parse=parse_text)]

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> HttpAnswer:
        return HttpAnswer(answer_status(reports), {"summary": summary})

    def reject(self, error: RejectedEvent) -> HttpAnswer:
        return HttpAnswer(error.status, {"error": error.message})


@pytest.fixture
def webhook_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Runtime, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if DB1 in str(request.url):
            return httpx.Response(503)
        return httpx.Response(204)

    monkeypatch.setattr(
        "handler.runtime.detect", lambda event, settings=None: _Webhook(event, settings)
    )
    config = Config(
        ecs_endpoint="http://ecs.test",
        huaweicloud_sdk_project_id=PROJECT,
        ecs_auth_token="tok-for-tests",
        dead_letter_url=str(tmp_path / "dl.jsonl"),
        max_attempts=2,
    )
    runtime = Runtime(config, transport=httpx.MockTransport(answer))
    yield runtime, seen
    runtime.close()


def test_an_event_refused_whole_is_answered_by_its_source_and_touches_nothing(
    webhook_runtime: tuple[Runtime, list[httpx.Request]],
) -> None:
    runtime, seen = webhook_runtime
    body = json.dumps({"server_id": WEB1, "key": "k"})
    answer = runtime.invoke({"test_request": body, "headers": {"X-Signature": "bad"}}, None)
    assert answer == HttpAnswer(401, {"error": "the signature does not match"})
    assert seen == []


def test_a_webhook_answers_with_the_status_of_its_pairs(
    webhook_runtime: tuple[Runtime, list[httpx.Request]], tmp_path: Path
) -> None:
    runtime, _ = webhook_runtime
    headers = {"X-SIGNATURE": "good", "Webhook-Id": "msg_1"}
    settled = runtime.invoke(
        {"test_request": json.dumps({"server_id": WEB1, "key": "k"}), "headers": headers}, None
    )
    assert settled.status == 200
    failing = runtime.run(
        {"test_request": json.dumps({"server_id": DB1, "key": "k"}), "headers": headers}, None
    )
    assert failing.response.status == 207
    # ANSWER: the caller is told and sends it again; nothing goes to the dead-letter sink.
    assert failing.reports[0].redeliver
    assert not (tmp_path / "dl.jsonl").exists()


def test_answer_status_for_settled_unsettled_and_unstored() -> None:
    pair = Pair(PROJECT, WEB1, "k")
    unit = Unit(id="u", body="[]")
    done = UnitReport(unit, [Result(Outcome.DELETED, pair=pair)])
    gone = UnitReport(unit, [Result(Outcome.SERVER_NOT_FOUND, pair=pair)])
    lost = UnitReport(unit, [Result(Outcome.SERVER_NOT_FOUND, pair=pair)], dead_letter_error="x")
    assert answer_status([done]) == 200
    assert answer_status([done, gone]) == 207
    assert answer_status([done, gone, lost]) == 503
