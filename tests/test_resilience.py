"""Nothing is lost, even for hostile payloads, odd log levels and slow dead-letter sinks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from handler import app
from handler.config import load_config
from handler.deadletter import DeadLetterError, HttpSink
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import configure_for, metadata_of

DB1 = "c0ffee00-1234-4abc-8def-0123456789ab"
# Valid JSON whose string holds a lone surrogate: fine for json.loads, not encodable as UTF-8.
SURROGATE_BODY = '{"server_id": "\\ud800", "key": "a"}'


def _batch() -> dict[str, object]:
    good = json.dumps({"server_id": DB1, "key": "lease-owner"})
    return {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "poison", "body": SURROGATE_BODY},
            {"eventSource": "aws:sqs", "messageId": "good", "body": good},
        ]
    }


def test_a_lone_surrogate_is_dead_lettered_alone_to_a_file(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    assert app.handler(_batch(), None) == {"batchItemFailures": []}
    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "invalid"
    assert "\\ud800" in letter["raw"]
    assert "lease-owner" not in metadata_of(sandbox, DB1)


def test_a_lone_surrogate_reaches_the_log_sink(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, DEAD_LETTER_URL="log")
    assert app.handler(_batch(), None) == {"batchItemFailures": []}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    letters = [line["dead_letter"] for line in lines if line["message"] == "dead letter"]
    assert [letter["source"]["id"] for letter in letters] == ["poison"]


def test_a_lone_surrogate_reaches_the_http_sink(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    posted: list[object] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.extend(json.loads(request.content))
        return httpx.Response(204)

    sink = HttpSink("http://dead-letters.test/in", transport=httpx.MockTransport(receive))
    app.set_runtime(Runtime(load_config(), sink=sink))
    assert app.handler(_batch(), None) == {"batchItemFailures": []}
    assert [letter["source"]["id"] for letter in posted] == ["poison"]  # type: ignore[index]


def test_dead_letters_are_logged_even_at_critical_level(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(
        monkeypatch, sandbox, dead_letters, DEAD_LETTER_URL="log", POWERTOOLS_LOG_LEVEL="CRITICAL"
    )
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "not json"}]}
    assert app.handler(event, None) == {"batchItemFailures": []}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in lines] == ["dead letter"]  # nothing else at CRITICAL
    assert lines[0]["dead_letter"]["raw"] == "not json"


def test_a_sink_that_raises_anything_returns_the_message_instead_of_crashing(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)

    class Broken:
        description = "a broken sink"

        async def write(self, records: object, *, deadline: float | None = None) -> None:
            raise TypeError("a bug in the sink")

        async def aclose(self) -> None:
            pass

    app.set_runtime(Runtime(load_config(), sink=Broken()))
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "not json"}]}
    assert app.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    with pytest.raises(app.DeadLetterWriteError, match="a broken sink: TypeError: a bug"):
        app.handler({"server_id": DB1, "key": "__protected"}, None)


def test_the_http_sink_gives_up_by_the_deadline() -> None:
    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return httpx.Response(500)

    async def main() -> float:
        sink = HttpSink("http://dead-letters.test/in", transport=Slow())
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        with pytest.raises(DeadLetterError, match=r"cannot POST http://dead-letters\.test: ") as e:
            await sink.write([{"a": 1}], deadline=loop.time() + 0.3)
        assert "/in" not in str(e.value)  # a sink URL's path may hold a token
        await sink.aclose()
        return time.perf_counter() - started

    assert asyncio.run(main()) < 1.5


def test_no_message_body_makes_the_function_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property: whatever the bodies, the batch is answered and every poison body dead-lettered."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    monkeypatch.setenv("ECS_ENDPOINT", "http://ecs.test")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("ECS_AUTH_TOKEN", "token-for-the-property")
    sink_file = tmp_path / "dl.jsonl"
    monkeypatch.setenv("DEAD_LETTER_URL", str(sink_file))
    answers = httpx.MockTransport(lambda request: httpx.Response(204))
    app.set_runtime(Runtime(load_config(), transport=answers))

    any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)
    item = st.fixed_dictionaries(
        {"server_id": st.one_of(st.uuids().map(str), any_text), "key": any_text}
    )
    body = st.one_of(
        any_text,
        item.map(json.dumps),
        st.lists(item, max_size=3).map(json.dumps),
        st.builds(lambda t: json.dumps({"server_id": t, "key": t}), any_text),
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies=st.lists(body, min_size=1, max_size=4))
    def check(bodies: list[str]) -> None:
        sink_file.unlink(missing_ok=True)
        event = {
            "Records": [
                {"eventSource": "aws:sqs", "messageId": f"m{i}", "body": text}
                for i, text in enumerate(bodies)
            ]
        }
        response = app.handler(event, None)
        assert response == {"batchItemFailures": []}  # the API always answers 204 here
        letters = sink_file.read_text("utf-8").splitlines() if sink_file.exists() else []
        for line in letters:
            # "__…" keys are valid but protected by default: dead-lettered, not invalid.
            assert json.loads(line)["reason"] in {"invalid", "protected"}

    check()
