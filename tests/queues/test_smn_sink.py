"""DEAD_LETTER_URL=smn://…: dead letters published to the sandbox's SMN topic, end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from handler import app
from handler.config import ConfigError
from handler.deadletter import DeadLetterError, DeadLetterSink, make_sink
from handler.ecs.signing import AkSkAuth, Credentials, StaticCredentials
from handler.local import FakeContext
from handler.queues.sinks import SmnSink, pack
from handler.queues.smn import MAX_MESSAGE_BYTES, parse_topic
from handler.runtime import DeadLetterWriteError
from handler.sandbox import DEMO_SEED, Sandbox
from tests.conftest import DEMO_PROJECT, configure_for
from tests.sandbox._demo import MISSING, WEB1

TOPIC = "janitor-dlq-topic"
PASSWORD = DEMO_SEED["keystone"]["users"][0]["password"]


def _configure(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, tmp_path: Path, **extra: str) -> None:
    settings = {"DEAD_LETTER_URL": f"smn://{sb.topic_urn(TOPIC)}", "SMN_ENDPOINT": sb.url}
    configure_for(monkeypatch, sb, tmp_path / "unused.jsonl", **{**settings, **extra})


def _messages(sb: Sandbox) -> list[dict[str, Any]]:
    topic = next(t for t in sb.state()["topics"] if t["name"] == TOPIC)
    return list(topic["messages"])


def _letters(sb: Sandbox) -> list[dict[str, Any]]:
    return [letter for m in _messages(sb) for letter in json.loads(m["message"])]


def _sqs(*bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "eventSource": "aws:sqs",
                "attributes": {},
                "body": json.dumps(body),
            }
            for index, body in enumerate(bodies)
        ]
    }


def test_a_dead_letter_lands_in_the_topic(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    response = app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    assert response["summary"]["dead_lettered"] == 1
    (message,) = _messages(sandbox)
    assert message["subject"] == "ecs-metadata-janitor: 1 dead letter"
    assert message["time_to_live"] == "604800" and message["auth"] == "aksk"
    (letter,) = json.loads(message["message"])
    assert letter["item"]["server_id"] == MISSING and letter["reason"] == "server_not_found"
    assert letter["schema"] == "ecs-metadata-janitor/dead-letter/1"


def test_an_invocations_dead_letters_go_in_one_message(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    items = [{"server_id": MISSING, "key": f"k{i}"} for i in range(30)]
    response = app.handler({"items": items}, FakeContext(10_000))
    assert response["summary"]["dead_lettered"] == 30
    (message,) = _messages(sandbox)
    assert message["subject"] == "ecs-metadata-janitor: 30 dead letters"
    assert sorted(letter["item"]["key"] for letter in json.loads(message["message"])) == sorted(
        f"k{i}" for i in range(30)
    )


def test_the_token_the_ecs_calls_use_publishes_too(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(
        monkeypatch,
        sandbox,
        tmp_path,
        HUAWEICLOUD_SDK_AK="",
        HUAWEICLOUD_SDK_SK="",
        ECS_AUTH_TOKEN=sandbox.credentials["token"],
    )
    app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    assert [m["auth"] for m in _messages(sandbox)] == ["token"]


def test_a_keystone_token_publishes_too(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ECS_ENDPOINT", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "")
    monkeypatch.setenv("OS_AUTH_URL", f"{sandbox.url}/v3")
    monkeypatch.setenv("OS_USERNAME", "demo")
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    monkeypatch.setenv("OS_PROJECT_NAME", "demo")
    monkeypatch.setenv("DEAD_LETTER_URL", f"smn://{sandbox.topic_urn(TOPIC)}")
    monkeypatch.setenv("SMN_ENDPOINT", sandbox.url)
    app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    assert [m["auth"] for m in _messages(sandbox)] == ["keystone"]


def test_when_the_topic_takes_nothing_the_sqs_messages_go_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    sandbox.set_queue_faults({"seed": 1, "smn_throttle": 1.0})
    event = _sqs({"server_id": MISSING, "key": "k"}, {"server_id": WEB1, "key": "absent-key"})
    response = app.handler(event, FakeContext(10_000))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert _messages(sandbox) == []


def test_an_unknown_topic_sends_the_sqs_messages_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    urn = f"urn:smn:sandbox-1:{DEMO_PROJECT}:no-such-topic"
    _configure(monkeypatch, sandbox, tmp_path, DEAD_LETTER_URL=f"smn://{urn}")
    event = _sqs({"server_id": MISSING, "key": "a"}, {"server_id": MISSING, "key": "b"})
    response = app.handler(event, FakeContext(10_000))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]
    publishes = [r for r in sandbox.requests() if "/notifications/topics/" in r["path"]]
    assert [r["status"] for r in publishes] == [404]  # one message, refused once, not retried


def test_no_secret_reaches_the_logs_or_the_error(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _configure(monkeypatch, sandbox, tmp_path, POWERTOOLS_LOG_LEVEL="DEBUG")
    sandbox.set_queue_faults({"seed": 1, "smn_throttle": 1.0})
    # Nothing stored: a direct invocation raises, so the platform retries it (SPEC §7).
    with pytest.raises(DeadLetterWriteError, match="not stored") as raised:
        app.handler({"server_id": MISSING, "key": "k"}, FakeContext(5_000))
    out = capsys.readouterr()
    text = out.out + out.err + str(raised.value)
    assert "HTTP 429" in text
    creds = sandbox.credentials
    for secret in (creds["sk"], creds["ak"]):
        assert secret not in text


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"DEAD_LETTER_URL": "smn://janitor-dlq"}, "DEAD_LETTER_URL: an SMN topic is smn://urn"),
        ({"SMN_ENDPOINT": "ftp://smn.example.com"}, "SMN_ENDPOINT: must be an http"),
    ],
)
def test_an_smn_sink_that_cannot_work_fails_the_cold_start_saying_why(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    extra: dict[str, str],
    problem: str,
) -> None:
    _configure(monkeypatch, sandbox, tmp_path, **extra)
    with pytest.raises(ConfigError, match=problem):
        app.handler({"server_id": MISSING, "key": "k"}, FakeContext(5_000))


# --- the sink on its own ------------------------------------------------------------------


def test_records_are_packed_in_order_within_the_limit() -> None:
    texts = ["a" * 10] * 7
    # [x,x,x] is 2 + 3*10 + 2 = 34 bytes: three a message at 34, two at 33.
    assert pack(texts, 34) == [[0, 1, 2], [3, 4, 5], [6]]
    assert pack(texts, 33) == [[0, 1], [2, 3], [4, 5], [6]]
    assert pack(["b" * 50, "c"], 20) == [[0], [1]]  # too big alone: its own (refused) message
    assert pack([], 10) == []


def _sink(sb: Sandbox, max_bytes: int) -> SmnSink:
    creds = sb.credentials
    auth = AkSkAuth(StaticCredentials(Credentials(creds["ak"], creds["sk"])))
    topic = parse_topic(f"smn://{sb.topic_urn(TOPIC)}", endpoint=sb.url)
    return SmnSink(topic, auth, max_message_bytes=max_bytes)


def _write(sink: DeadLetterSink, records: list[dict[str, Any]]) -> None:
    async def main() -> None:
        try:
            await sink.write(records, deadline=asyncio.get_running_loop().time() + 5.0)
        finally:
            await sink.aclose()

    asyncio.run(main())


def test_more_records_than_one_message_holds_go_in_several(sandbox: Sandbox) -> None:
    records = [{"n": i, "pad": "x" * 100} for i in range(20)]
    _write(_sink(sandbox, 1_000), records)
    messages = _messages(sandbox)
    assert len(messages) > 1
    assert all(len(m["message"]) <= 1_000 for m in messages)
    assert sorted(letter["n"] for letter in _letters(sandbox)) == list(range(20))


def test_a_failed_message_names_exactly_its_records_as_unstored(sandbox: Sandbox) -> None:
    records: list[dict[str, Any]] = [{"n": 0}, {"n": 1, "pad": "x" * MAX_MESSAGE_BYTES}, {"n": 2}]
    with pytest.raises(DeadLetterError, match="1 of 3 not stored") as raised:
        _write(_sink(sandbox, MAX_MESSAGE_BYTES), records)
    assert raised.value.unstored_of(3) == [1]
    assert sorted(letter["n"] for letter in _letters(sandbox)) == [0, 2]


@respx.mock
def test_a_5xx_then_success_stores_everything() -> None:
    urn = f"urn:smn:cn-north-4:{DEMO_PROJECT}:janitor-dlq"
    route = respx.post(
        f"https://smn.cn-north-4.myhuaweicloud.com/v2/{DEMO_PROJECT}/notifications/topics/"
        f"{urn}/publish"
    ).mock(side_effect=[httpx.Response(502), httpx.Response(200, json={"message_id": "m"})])
    sink = make_sink(f"smn://{urn}", huawei_auth=httpx.Auth())
    _write(sink, [{"n": 1}])
    assert route.call_count == 2
    body = json.loads(route.calls[-1].request.content)
    assert json.loads(body["message"]) == [{"n": 1}]


def test_an_smn_sink_needs_the_ecs_auth() -> None:
    urn = f"urn:smn:cn-north-4:{DEMO_PROJECT}:janitor-dlq"
    with pytest.raises(ValueError, match="ECS calls' credentials"):
        make_sink(f"smn://{urn}")
