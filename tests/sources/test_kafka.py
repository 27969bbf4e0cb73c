"""Kafka (MSK, self-managed): shape detection, units, the summary answer, end to end."""

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
from handler.sources.kafka import KafkaSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def b64(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def kafka_event(records: Any, source: str = "aws:kafka") -> dict[str, Any]:
    return {"eventSource": source, "bootstrapServers": "b-1:9092", "records": records}


def record(offset: int, value: Any, topic: str = "t", partition: int = 0) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset, "value": value}


@pytest.fixture
def kafka_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (KafkaSource, *handler.sources.SOURCES))


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- matches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kafka-msk.json", "kafka-self-managed.json"])
def test_sample_events_match(name: str) -> None:
    assert KafkaSource.matches(load(name))


@pytest.mark.parametrize("source", ["aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka"])
def test_msk_and_self_managed_event_sources_match(source: str) -> None:
    assert KafkaSource.matches(kafka_event({}, source))


@pytest.mark.parametrize(
    "event",
    [
        # An SQS batch: capital-R Records.
        {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "body": "[]"}]},
        # Huawei DMS for Kafka: lower-case records, but a LIST, and no eventSource.
        {
            "event_version": "v1.0",
            "trigger_type": "KAFKA",
            "records": [{"messages": ["kafka message1"], "topic_id": "topic-test"}],
        },
        # A Kafka eventSource whose records are a list, or missing.
        {"eventSource": "aws:kafka", "records": [record(1, b64([]))]},
        {"eventSource": "aws:kafka"},
        # Records as an object without a Kafka eventSource.
        {"records": {"t-0": [record(1, b64([]))]}},
        {"eventSource": "aws:rmq", "records": {}},
        {"server_id": WEB1, "key": "lease-owner"},
        [],
        None,
        "aws:kafka",
    ],
)
def test_other_shapes_do_not_match(event: Any) -> None:
    assert not KafkaSource.matches(event)


# --- units -----------------------------------------------------------------------------------


def test_msk_sample_is_one_unit_per_record_named_topic_partition_offset() -> None:
    event = load("kafka-msk.json")
    source = KafkaSource(event)
    assert source.kind == "kafka"
    assert source.on_transient is OnTransient.DEAD_LETTER and not source.redelivers
    units = source.units(event)
    assert [u.id for u in units] == [
        "janitor-requests-0-41",
        "janitor-requests-0-42",
        "janitor-requests-1-7",
        "janitor-requests-1-8",
    ]
    assert units[0].ref == ("janitor-requests", 0, 41)
    assert units[2].group == "janitor-requests-1"
    first = units[0].payload
    assert [(i.server_id, i.key) for i in first.items] == [
        (WEB1, "lease-owner"),
        (WEB1, "lease-expires"),
    ]
    poison = units[3].payload
    assert poison.items == []
    assert poison.invalid[0].outcome is Outcome.INVALID
    assert poison.invalid[0].raw == "delete lease-owner on web-1 please"


def test_self_managed_sample_keeps_an_invalid_base64_value_as_it_came() -> None:
    event = load("kafka-self-managed.json")
    units = KafkaSource(event).units(event)
    assert [u.id for u in units] == [
        "janitor.requests-0-1200",
        "janitor.requests-0-1201",
        "janitor.requests-2-310",
        "janitor.requests-2-311",
    ]
    bad = units[-1].payload.invalid[0]
    assert bad.outcome is Outcome.INVALID
    assert bad.raw == "not base64!"
    assert bad.detail is not None and "base64" in bad.detail
    assert len(units[0].payload.items) == 2


@pytest.mark.parametrize(
    ("value", "raw", "detail"),
    [
        (None, "", "no value"),
        ("%%%", "%%%", "not valid base64"),
        (12, "12", "not base64 text"),
        (base64.b64encode(b"\xff\xfe{").decode(), "//57", "not UTF-8"),
        (base64.b64encode(b"not json").decode(), "not json", "not JSON"),
    ],
)
def test_unreadable_values_are_invalid_results(value: Any, raw: str, detail: str) -> None:
    event = kafka_event({"t-0": [record(5, value)]})
    (unit,) = KafkaSource(event).units(event)
    assert unit.id == "t-0-5"
    (result,) = unit.payload.invalid
    assert result.outcome is Outcome.INVALID
    assert result.raw == raw
    assert result.detail is not None and detail in result.detail


def test_a_record_without_value_is_invalid() -> None:
    event = kafka_event({"t-0": [{"topic": "t", "partition": 0, "offset": 9}]})
    (unit,) = KafkaSource(event).units(event)
    assert unit.payload.invalid[0].outcome is Outcome.INVALID


def test_odd_records_become_invalid_units_not_crashes() -> None:
    event = kafka_event(
        {
            "t-0": [
                "not a record",
                None,
                {"value": b64({"server_id": WEB1, "key": "owner"})},  # no topic/partition/offset
                {"topic": {"x": 1}, "partition": True, "offset": [1], "value": b64([])},
            ],
            "t-1": {"not": "a list"},
            "t-2": [],
        }
    )
    units = KafkaSource(event).units(event)
    assert [u.id for u in units] == ["t-0[0]", "t-0[1]", "t-0[2]", "t-0[3]", "t-1"]
    for unit in (units[0], units[1], units[4]):
        (result,) = unit.payload.invalid
        assert result.outcome is Outcome.INVALID and result.raw
    # A record missing its coordinates is still read, named by its place in the batch.
    assert [(i.server_id, i.key) for i in units[2].payload.items] == [(WEB1, "owner")]
    assert units[3].ref == (None, None, None)


def test_respond_is_the_summary() -> None:
    report = UnitReport(Unit("t-0-1", b64([]), ref=("t", 0, 1)))
    summary = {"deleted": 1, "dead_lettered": 0}
    assert KafkaSource().respond([report], summary) == {"summary": summary}


def test_detect_finds_kafka_when_registered(kafka_first: None) -> None:
    assert isinstance(detect(load("kafka-msk.json")), KafkaSource)
    assert isinstance(detect(load("kafka-self-managed.json")), KafkaSource)


# --- end to end ------------------------------------------------------------------------------


def test_msk_event_end_to_end(
    kafka_first: None, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    response = app.handler(load("kafka-msk.json"), None)

    assert set(response) == {"summary"}
    summary = response["summary"]
    assert summary["deleted"] == 3
    assert summary["conflict"] == 1 and summary["invalid"] == 1
    assert summary["dead_lettered"] == 2 and summary["returned_to_queue"] == 0
    assert summary["units"] == 4
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert "lease-expires" not in metadata_of(sandbox, WEB1)
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: dead-lettered, not raised

    letters = read_lines(dead_letters)
    assert {(x["reason"], x["source"]["kind"], x["source"]["id"]) for x in letters} == {
        ("conflict", "kafka", "janitor-requests-1-7"),
        ("invalid", "kafka", "janitor-requests-1-8"),
    }


def test_self_managed_event_end_to_end(
    kafka_first: None, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    response = app.handler(load("kafka-self-managed.json"), None)

    summary = response["summary"]
    assert set(response) == {"summary"}
    assert summary["deleted"] == 3
    assert summary["protected"] == 1 and summary["conflict"] == 2 and summary["invalid"] == 1
    assert summary["dead_lettered"] == 4
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert "team name" not in metadata_of(sandbox, WEB1)
    assert "lease-expires" not in metadata_of(sandbox, DB1)
    assert {"lease-owner", "lease-expires"} <= set(metadata_of(sandbox, WEB2))
    letters = read_lines(dead_letters)
    assert sorted(x["reason"] for x in letters) == ["conflict", "conflict", "invalid", "protected"]
    invalid = next(x for x in letters if x["reason"] == "invalid")
    assert invalid["raw"] == "not base64!"
    assert invalid["source"]["id"] == "janitor.requests-2-311"


@pytest.mark.parametrize("name", ["kafka-msk.json", "kafka-self-managed.json"])
def test_a_dead_letter_that_cannot_be_written_raises(
    name: str,
    kafka_first: None,
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
