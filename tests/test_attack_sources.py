"""Attacks on the event sources (issue 8): webhooks, CloudEvents, queues and streams.

Tests marked xfail(strict=True) are confirmed problems; the others are attacks that held.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.local import FakeContext
from handler.sandbox import Sandbox
from handler.sources import UnknownEventError, detect
from handler.sources.base import RejectedEvent
from handler.sources.eventbridge import EventBridgeSource
from tests.conftest import SandboxFactory, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2
from tests.sources.test_webhook import (
    call,
    deletes,
    fg_event,
    settings,
    sign,
    start,
    v2_event,
)

#: A valid Standard Webhooks secret whose base64 body happens to be all lower case.
LOWER_SECRET = "whsec_abcdefghijklmnopqrstuvwxyz012345"


def letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pair(server: str, key: str) -> str:
    return json.dumps({"server_id": server, "key": key})


# --- confirmed problems --------------------------------------------------------------------


def test_a_webhook_answer_names_every_pair_the_caller_must_resend(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters, MAX_PAIRS_PER_REQUEST="2000", PROTECTED_KEYS="p*")
    items = [{"server_id": WEB1, "key": f"p{i}"} for i in range(1000)]
    items.append({"server_id": WEB2, "key": "lease-owner"})  # locked: conflict, to resend
    body = json.dumps(items)
    response, answer = call(v2_event(body, sign(body, msg_id="m-trunc")))
    assert response["statusCode"] == 207
    assert answer["summary"]["conflict"] == 1
    # The caller is told "send again what you want retried" -- but not which pair that is,
    # and nothing was dead-lettered either: the conflicting pair is lost.
    told = [r for r in answer["results"] if r["outcome"] == "conflict"]
    stored = [d for d in letters(dead_letters) if d["reason"] == "conflict"]
    assert told or stored


def test_a_permanent_failure_beside_a_transient_pair_is_dead_lettered(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    body = json.dumps(
        [{"server_id": "not-a-uuid", "key": "k"}, {"server_id": WEB2, "key": "lease-owner"}]
    )
    response, answer = call(v2_event(body, sign(body, msg_id="m-mix")))
    assert response["statusCode"] == 207
    assert sorted(r["outcome"] for r in answer["results"]) == ["conflict", "invalid"]
    # Alone, the invalid pair is dead-lettered (tests/sources/test_webhook.py); next to a
    # conflict the whole body counts as "returned to the queue" -- a webhook has no queue.
    assert [d["reason"] for d in letters(dead_letters)] == ["invalid"]
    assert answer["summary"]["returned_to_queue"] <= 1


def test_the_unsupported_cloudevents_format_answer_does_not_echo_the_secret(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=LOWER_SECRET)
    body = pair(WEB1, "lease-owner")
    headers = {
        **sign(body, msg_id="m-ct", secret=LOWER_SECRET),
        "content-type": "application/cloudevents+" + LOWER_SECRET + "x" * 20_000,
    }
    response, answer = call(v2_event(body, headers))
    assert response["statusCode"] == 400
    assert LOWER_SECRET not in response["body"]  # the log line has it as ***
    assert len(answer["error"]) < 2_000  # every other 400 reason is cut to DETAIL_LIMIT


# --- attacks that held ---------------------------------------------------------------------


def test_racing_replays_delete_once_and_answer_in_the_apig_shape(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(latency_ms=150)
    start(monkeypatch, sb, dead_letters)
    body = pair(WEB1, "lease-owner")
    event = fg_event(body, sign(body, msg_id="m-race"))
    out: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: out.append(app.handler(event, FakeContext(30_000))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["statusCode"] for r in out) == [200, 409, 409, 409]
    assert deletes(sb) == 1
    for response in out:
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert type(response["statusCode"]) is int
        assert response["isBase64Encoded"] is False
        assert all(isinstance(v, str) for v in response["headers"].values())
    assert call(event)[0]["statusCode"] == 200  # the replay, from memory
    assert deletes(sb) == 1


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"server_id": WEB1, "keys": [f"k{i}" for i in range(5)]}, None),
        ({"server_id": WEB1, "keys": [f"k{i}" for i in range(6)]}, 413),
        (
            {
                "items": [
                    {"server_id": WEB1, "keys": list("abc")},
                    {"server_id": DB1, "keys": list("abc")},
                ]
            },
            413,
        ),
        ([{"server_id": WEB1, "key": "a"}] * 6, 413),
        ([0] * 200 + [{"server_id": WEB1, "key": f"k{i}"} for i in range(5)], 413),
    ],
)
def test_pair_limit_boundaries_count_nested_duplicate_and_invalid_parts(
    payload: Any, status: int | None
) -> None:
    body = json.dumps(payload)
    event = v2_event(body, sign(body))
    source = detect(event, settings(max_pairs_per_request=5))
    if status is None:
        assert source.units(event)
        return
    with pytest.raises(RejectedEvent) as caught:
        source.units(event)
    assert caught.value.status == status


def test_a_cloudevents_batch_is_counted_across_events_and_refused_whole_when_mixed() -> None:
    events = [
        {
            "specversion": "1.0",
            "id": f"e{i}",
            "source": "/s",
            "type": "t",
            "data": json.loads(pair(WEB1, f"k{i}")),
        }
        for i in range(6)
    ]
    ctype = {"content-type": "application/cloudevents-batch+json"}
    for batch, status in [(events, 413), ([*events[:3], {"server_id": WEB1, "key": "x"}], 400)]:
        body = json.dumps(batch)
        event = v2_event(body, {**sign(body), **ctype})
        with pytest.raises(RejectedEvent) as caught:
            detect(event, settings(max_pairs_per_request=5)).units(event)
        assert caught.value.status == status


def kinesis(shard: str, seq: str, body: str) -> dict[str, Any]:
    return {
        "eventSource": "aws:kinesis",
        "eventID": f"{shard}:{seq}",
        "kinesis": {"sequenceNumber": seq, "data": b64(body)},
    }


def test_kinesis_stops_only_the_failed_shard(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(monkeypatch, sandbox, dead_letters)
    event = {
        "Records": [
            kinesis("shardA", "1", pair(WEB2, "lease-owner")),  # locked: goes back
            kinesis("shardB", "2", pair(DB1, "lease-owner")),
            kinesis("shardA", "3", pair(WEB1, "lease-owner")),  # after it: back, untouched
            kinesis("shardB", "4", "not json"),  # dead-lettered
        ]
    }
    response = app.handler(event, FakeContext(30_000))
    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]}
    assert "lease-owner" in metadata_of(sandbox, WEB1)
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert [d["source"]["id"] for d in letters(dead_letters)] == ["4"]


def test_events_two_sources_could_claim() -> None:
    # An EventBridge event carrying CloudEvents attributes is EventBridge's (a CloudEvent
    # cannot carry `detail-type`: extension names are lower-case alphanumerics).
    hybrid = {"detail-type": "x", "source": "s", "detail": {"server_id": WEB1, "key": "k"}}
    assert isinstance(
        detect({**hybrid, "specversion": "1.0", "id": "1", "type": "t"}), EventBridgeSource
    )
    mixed = {"Records": [{"eventSource": "aws:sqs", "body": "{}"}, {"eventSource": "aws:kinesis"}]}
    for event in (
        mixed,
        {"eventSource": "aws:kafka", "records": []},
        {"record": [{"event_source": "SMN", "smn": {}}]},
    ):
        with pytest.raises(UnknownEventError):
            detect(event)
