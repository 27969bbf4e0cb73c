"""Amazon MQ (RabbitMQ, ActiveMQ): shape detection, units, the summary answer, end to end."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import handler.sources
from handler import app
from handler.outcomes import Outcome
from handler.sandbox import Sandbox
from handler.sources import detect
from handler.sources.base import OnTransient, Unit, UnitReport
from handler.sources.mq import ActiveMqSource, RabbitMqSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def b64(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mq_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "handler.sources.SOURCES", (RabbitMqSource, ActiveMqSource, *handler.sources.SOURCES)
    )


def rmq_event(messages_by_queue: Any) -> dict[str, Any]:
    return {"eventSource": "aws:rmq", "rmqMessagesByQueue": messages_by_queue}


def amq_event(messages: Any) -> dict[str, Any]:
    return {"eventSource": "aws:amq", "messages": messages}


# --- matches ---------------------------------------------------------------------------------


def test_sample_events_match_their_own_source_only() -> None:
    rabbit, active = load("rabbitmq.json"), load("activemq.json")
    assert RabbitMqSource.matches(rabbit) and not ActiveMqSource.matches(rabbit)
    assert ActiveMqSource.matches(active) and not RabbitMqSource.matches(active)


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "[]"}]},
        {"trigger_type": "RABBITMQ", "records": [{"messages": ["x"]}]},
        {"eventSource": "aws:rmq", "rmqMessagesByQueue": [{"data": b64([])}]},
        {"eventSource": "aws:rmq"},
        {"eventSource": "aws:amq", "messages": {"m": {}}},
        {"eventSource": "aws:amq"},
        {"eventSource": "aws:kafka", "records": {}},
        {"messages": [{"data": b64([])}]},
        {"rmqMessagesByQueue": {}},
        [],
        None,
    ],
)
def test_other_shapes_do_not_match(event: Any) -> None:
    assert not RabbitMqSource.matches(event)
    assert not ActiveMqSource.matches(event)


# --- units -----------------------------------------------------------------------------------


def test_rabbitmq_sample_is_one_unit_per_message_named_by_message_id() -> None:
    event = load("rabbitmq.json")
    source = RabbitMqSource(event)
    assert source.kind == "rabbitmq"
    assert source.on_transient is OnTransient.DEAD_LETTER and not source.redelivers
    units = source.units(event)
    assert [u.id for u in units] == ["rmq-0001", "rmq-0002", None, "rmq-0003"]
    assert [u.group for u in units] == [
        "janitor-requests::/",
        "janitor-requests::/",
        "janitor-requests::/",
        "janitor-requests::ops",
    ]
    assert [(i.server_id, i.key) for i in units[0].payload.items] == [
        (WEB1, "lease-owner"),
        (WEB1, "owner"),
    ]
    assert [(i.server_id, i.key) for i in units[2].payload.items] == [(DB1, "backup-policy")]


def test_activemq_sample_is_one_unit_per_message_named_by_message_id() -> None:
    event = load("activemq.json")
    source = ActiveMqSource(event)
    assert source.kind == "activemq"
    assert source.on_transient is OnTransient.DEAD_LETTER
    units = source.units(event)
    assert [u.id for u in units] == [m["messageID"] for m in event["messages"]]
    assert all(u.group == "janitor.requests" for u in units)
    assert [(i.server_id, i.key) for i in units[1].payload.items] == [(DB1, "lease-owner")]


@pytest.mark.parametrize(
    ("data", "raw", "detail"),
    [
        (None, "", "no data"),
        ("not base64!", "not base64!", "not valid base64"),
        (["x"], '["x"]', "not base64 text"),
        ("3DTOOW7crj51prgVLQaGQ82S48k=", "3DTOOW7crj51prgVLQaGQ82S48k=", "not UTF-8"),
        (base64.b64encode(b"ABC:AAAA").decode(), "ABC:AAAA", "not JSON"),
    ],
)
def test_unreadable_data_is_an_invalid_result(data: Any, raw: str, detail: str) -> None:
    for source, event in [
        (RabbitMqSource, rmq_event({"q::/": [{"basicProperties": {}, "data": data}]})),
        (ActiveMqSource, amq_event([{"messageID": "ID:1", "data": data}])),
    ]:
        (unit,) = source(event).units(event)
        (result,) = unit.payload.invalid
        assert result.outcome is Outcome.INVALID
        assert result.raw == raw
        assert result.detail is not None and detail in result.detail


def test_odd_rabbitmq_messages_become_invalid_units() -> None:
    event = rmq_event(
        {
            "q::/": [
                "not a message",
                {"data": b64({"server_id": WEB1, "key": "owner"})},  # no basicProperties
                {"basicProperties": "odd", "data": b64([])},
                {"basicProperties": {"messageId": ""}, "data": b64([])},
                {"basicProperties": {"messageId": 7}},  # no data
            ],
            "q::other": {"not": "a list"},
        }
    )
    units = RabbitMqSource(event).units(event)
    assert [u.id for u in units] == [None, None, None, None, "7", None]
    assert units[0].payload.invalid[0].outcome is Outcome.INVALID
    assert [(i.server_id, i.key) for i in units[1].payload.items] == [(WEB1, "owner")]
    assert units[4].payload.invalid[0].detail == "the message has no data"
    assert units[5].payload.invalid[0].outcome is Outcome.INVALID
    assert units[5].group == "q::other"


def test_odd_activemq_messages_become_invalid_units() -> None:
    event = amq_event(
        [
            42,
            {"data": b64({"server_id": WEB1, "key": "owner"}), "destination": "odd"},
            {"messageID": {"x": 1}, "data": b64([])},
        ]
    )
    units = ActiveMqSource(event).units(event)
    assert [u.id for u in units] == [None, None, None]
    (result,) = units[0].payload.invalid
    assert result.outcome is Outcome.INVALID and result.raw == "42"
    assert len(units[1].payload.items) == 1 and units[1].group is None


def test_respond_is_the_summary() -> None:
    report = UnitReport(Unit("ID:1", b64([])))
    summary = {"deleted": 1}
    assert RabbitMqSource().respond([report], summary) == {"summary": summary}
    assert ActiveMqSource().respond([report], summary) == {"summary": summary}


def test_detect_finds_mq_sources_when_registered(mq_first: None) -> None:
    assert isinstance(detect(load("rabbitmq.json")), RabbitMqSource)
    assert isinstance(detect(load("activemq.json")), ActiveMqSource)


# --- end to end ------------------------------------------------------------------------------


def test_rabbitmq_event_end_to_end(
    mq_first: None, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    response = app.handler(load("rabbitmq.json"), None)

    assert set(response) == {"summary"}
    summary = response["summary"]
    assert summary["deleted"] == 5 and summary["conflict"] == 1
    assert summary["dead_lettered"] == 1 and summary["returned_to_queue"] == 0
    assert not {"lease-owner", "owner"} & set(metadata_of(sandbox, WEB1))
    assert not {"lease-owner", "lease-expires", "backup-policy"} & set(metadata_of(sandbox, DB1))
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: dead-lettered, not raised
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "conflict"
    assert letter["source"] == {"kind": "rabbitmq", "id": "rmq-0002"}
    assert letter["item"]["server_id"] == WEB2


def test_activemq_event_end_to_end(
    mq_first: None, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    event = load("activemq.json")
    response = app.handler(event, None)

    assert set(response) == {"summary"}
    summary = response["summary"]
    assert summary["deleted"] == 3
    assert summary["conflict"] == 1 and summary["protected"] == 1
    assert summary["dead_lettered"] == 2
    assert not {"lease-owner", "lease-expires"} & set(metadata_of(sandbox, WEB1))
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert "lease-expires" in metadata_of(sandbox, WEB2)
    letters = read_lines(dead_letters)
    ids = [m["messageID"] for m in event["messages"]]
    assert {(x["reason"], x["source"]["kind"], x["source"]["id"]) for x in letters} == {
        ("conflict", "activemq", ids[2]),
        ("protected", "activemq", ids[3]),
    }


@pytest.mark.parametrize("name", ["rabbitmq.json", "activemq.json"])
def test_a_dead_letter_that_cannot_be_written_raises(
    name: str,
    mq_first: None,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "not-a-dir"
    configure_for(monkeypatch, sandbox, blocker / "dl.jsonl", MAX_ATTEMPTS="1")
    app.warm_up()
    blocker.write_text("")  # the sink's folder became a file after the cold start
    with pytest.raises(app.DeadLetterWriteError, match="could not be dead-lettered"):
        app.handler(load(name), None)
