"""FunctionGraph triggers: TIMER, SMN, DMS for Kafka / open-source Kafka / RabbitMQ / RocketMQ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import handler.sources
from handler import app
from handler.outcomes import Outcome
from handler.sandbox import Sandbox
from handler.sources import UnknownEventError, detect
from handler.sources.base import OnTransient, Source, Unit, UnitReport
from handler.sources.fg_dms import (
    FG_MESSAGE_SOURCES,
    FgKafkaSource,
    FgRabbitMqSource,
    FgRocketMqSource,
)
from handler.sources.fg_smn import FgSmnSource
from handler.sources.fg_timer import FgTimerSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

FG_SOURCES: tuple[type[Source], ...] = (FgTimerSource, FgSmnSource, *FG_MESSAGE_SOURCES)


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def matching(event: Any) -> list[type[Source]]:
    return [source for source in FG_SOURCES if source.matches(event)]


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def pair(server_id: str, key: str) -> str:
    return json.dumps({"server_id": server_id, "key": key})


#: A pair on the locked server: a 409 that outlasts MAX_ATTEMPTS=1, a transient outcome.
LOCKED = pair(WEB2, "lease-owner")


def timer(user_event: Any) -> dict[str, Any]:
    return {
        "version": "v1.0",
        "time": "2026-11-27T10:05:00+08:00",
        "trigger_type": "TIMER",
        "trigger_name": "expire-leases",
        "user_event": user_event,
    }


def smn_record(message: Any, message_id: Any = "m-1") -> dict[str, Any]:
    return {
        "event_version": "1.0",
        "smn": {"message": message, "message_id": message_id, "type": "notification"},
        "event_source": "smn",
    }


def mq(trigger_type: Any, *records: Any) -> dict[str, Any]:
    return {
        "event_version": "v1.0",
        "trigger_type": trigger_type,
        "region": "cn-north-4",
        "instance_id": "5d2a8c1e-3b4f-4e6a-9c7d-1f2e3a4b5c6d",
        "records": list(records),
    }


# --- TIMER -----------------------------------------------------------------------------------


def test_timer_user_event_is_the_payload_text() -> None:
    event = load("fg-timer.json")
    assert matching(event) == [FgTimerSource]
    (unit,) = FgTimerSource(event).units(event)
    assert unit.id == "expire-leases@2026-11-27T10:05:00+08:00"
    assert [(i.server_id, i.key) for i in unit.payload.items] == [
        (WEB1, "lease-owner"),
        (WEB1, "lease-expires"),
        (DB1, "lease-owner"),
    ]


def test_timer_text_that_is_not_json_is_invalid_and_kept() -> None:
    event = timer("Hello world")
    (unit,) = FgTimerSource(event).units(event)
    (result,) = unit.payload.invalid
    assert result.outcome is Outcome.INVALID
    assert result.raw == "Hello world"
    assert unit.payload.items == []


@pytest.mark.parametrize("user_event", [None, "", {"server_id": WEB1, "key": "owner"}, 7])
def test_timer_user_event_that_is_not_text_is_invalid_not_a_crash(user_event: Any) -> None:
    event = timer(user_event)
    (unit,) = FgTimerSource(event).units(event)
    assert unit.payload.items == []
    assert unit.payload.invalid[0].outcome is Outcome.INVALID


def test_timer_unit_id_falls_back_to_what_the_event_has() -> None:
    assert FgTimerSource().units({"trigger_type": "TIMER", "user_event": "[]"})[0].id is None
    event = {"trigger_type": "TIMER", "trigger_name": "nightly", "user_event": "[]"}
    assert FgTimerSource().units(event)[0].id == "nightly"


def test_timer_needs_its_trigger_type_and_user_event() -> None:
    assert not FgTimerSource.matches({"trigger_type": "TIMER"})
    assert not FgTimerSource.matches({"trigger_type": "timer", "user_event": "[]"})
    assert not FgTimerSource.matches({"user_event": "[]"})
    assert not FgTimerSource.matches([{"trigger_type": "TIMER", "user_event": "[]"}])


# --- SMN -------------------------------------------------------------------------------------


def test_smn_one_unit_per_record_named_by_message_id() -> None:
    event = load("fg-smn.json")
    assert matching(event) == [FgSmnSource]
    units = FgSmnSource(event).units(event)
    assert [u.id for u in units] == [r["smn"]["message_id"] for r in event["record"]]
    assert [(i.server_id, i.key) for i in units[0].payload.items] == [
        (DB1, "lease-owner"),
        (DB1, "lease-expires"),
    ]
    assert len(units[1].payload.items) == 2


def test_smn_odd_records_are_invalid_units_not_a_crash() -> None:
    event = {
        "record": [
            smn_record(pair(WEB1, "owner")),
            {"event_source": "smn"},  # no smn object
            {"event_source": "smn", "smn": None},
            smn_record(None, message_id=None),  # no message
            smn_record({"server_id": WEB1, "key": "owner"}, message_id={"x": 1}),  # not text
            "garbage",
        ]
    }
    assert FgSmnSource.matches(event)
    units = FgSmnSource(event).units(event)
    assert len(units) == 6
    assert len(units[0].payload.items) == 1
    for unit in units[1:]:
        assert unit.payload.items == []
        assert unit.payload.invalid[0].outcome is Outcome.INVALID
    assert units[3].id is None and units[4].id is None
    assert "has no 'smn' object" in (units[1].payload.invalid[0].detail or "")
    assert units[5].payload.invalid[0].raw == '"garbage"'


def test_smn_is_told_apart_from_aws_records_and_other_services() -> None:
    # AWS SNS: `Records` with a capital R, and a different record shape.
    assert not FgSmnSource.matches({"Records": [{"EventSource": "aws:sns", "Sns": {}}]})
    assert not FgSmnSource.matches({"record": []})
    assert not FgSmnSource.matches({"record": {"smn": {}}})
    assert not FgSmnSource.matches({"record": ["text", 1]})
    # A record from another service in the batch: not ours.
    assert not FgSmnSource.matches(
        {"record": [smn_record("[]"), {"event_source": "dds", "dds": {}}]}
    )


# --- DMS for Kafka, open-source Kafka, DMS for RabbitMQ, DMS for RocketMQ ---------------------


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("fg-dms-kafka.json", FgKafkaSource),
        ("fg-kafka-opensource.json", FgKafkaSource),
        ("fg-dms-rabbitmq.json", FgRabbitMqSource),
        ("fg-dms-rocketmq.json", FgRocketMqSource),
    ],
)
def test_each_message_string_is_a_unit(name: str, source: type[Source]) -> None:
    event = load(name)
    assert matching(event) == [source]
    units = source(event).units(event)
    (record,) = event["records"]
    topic = record["topic_id"]
    assert [u.id for u in units] == [f"{topic}-{n}" for n in range(len(record["messages"]))]
    assert [u.body for u in units] == record["messages"]
    assert units[0].payload.items


def test_kafka_poison_message_is_invalid_and_kept() -> None:
    event = load("fg-dms-kafka.json")
    poison = FgKafkaSource(event).units(event)[2].payload
    assert poison.items == []
    assert poison.invalid[0].raw == "delete lease-owner on web-1 please"


def test_trigger_type_picks_the_source() -> None:
    message = {"messages": [pair(WEB1, "owner")], "topic_id": "t"}
    assert matching(mq("KAFKA", message)) == [FgKafkaSource]
    assert matching(mq("OPENSOURCEKAFKA", message)) == [FgKafkaSource]
    assert matching(mq("RABBITMQ", message)) == [FgRabbitMqSource]
    assert matching(mq("ROCKETMQ", message)) == [FgRocketMqSource]
    assert matching(mq("DIS", message)) == []
    assert matching(mq("kafka", message)) == []
    assert matching(mq(["KAFKA"], message)) == []  # unhashable: no match, no crash
    assert matching(mq(None, message)) == []


def test_ids_stay_unique_across_records_of_one_topic_and_records_without_topic() -> None:
    event = mq(
        "KAFKA",
        {"messages": ["[]", "[]"], "topic_id": "t"},
        {"messages": ["[]"], "topic_id": "t"},
        {"messages": ["[]"]},
    )
    assert [u.id for u in FgKafkaSource(event).units(event)] == ["t-0", "t-1", "t-2", "record2-0"]


def test_odd_records_and_messages_are_invalid_not_a_crash() -> None:
    event = mq(
        "ROCKETMQ",
        {"messages": [pair(WEB1, "owner"), None, 7, {"server_id": WEB1}], "topic_id": "t"},
        {"messages": "not a list", "topic_id": "t"},
        {"topic_id": "t"},
        "garbage",
        None,
    )
    assert FgRocketMqSource.matches(event)
    units = FgRocketMqSource(event).units(event)
    assert len(units) == 8
    assert len(units[0].payload.items) == 1
    for unit in units[1:]:
        assert unit.payload.items == []
        assert unit.payload.invalid[0].outcome is Outcome.INVALID
    assert "has no 'messages' list" in (units[4].payload.invalid[0].detail or "")


def test_aws_kafka_and_records_without_messages_are_not_matched() -> None:
    # AWS MSK / self-managed Kafka: lower-case `records`, but an object keyed by topic-partition.
    aws_kafka = {
        "eventSource": "aws:kafka",
        "records": {"topic-0": [{"topic": "topic", "partition": 0, "offset": 1, "value": "e30="}]},
    }
    assert matching(aws_kafka) == []
    assert matching({"trigger_type": "KAFKA", "records": aws_kafka["records"]}) == []
    assert matching(mq("KAFKA")) == []  # no records at all
    assert matching(mq("KAFKA", {"topic_id": "t"}, "x")) == []  # no record holds messages


# --- what is shared --------------------------------------------------------------------------


@pytest.mark.parametrize("source", FG_SOURCES, ids=lambda s: s.kind)
def test_every_source_dead_letters_transients_and_answers_a_summary(
    source: type[Source],
) -> None:
    assert source.on_transient is OnTransient.DEAD_LETTER
    assert not source().redelivers
    assert not source.ordered
    report = UnitReport(Unit("u-1", "[]"), redeliver=True)
    assert source().respond([report], {"deleted": 1}) == {"summary": {"deleted": 1}}


def test_kinds_are_distinct() -> None:
    kinds = [source.kind for source in FG_SOURCES]
    assert kinds == ["fg-timer", "smn", "fg-kafka", "dms-rabbitmq", "dms-rocketmq"]


#: Minimal shapes of FunctionGraph triggers this function is not wired to (from Huawei's samples).
NON_TRIGGER_SHAPES = {
    "cts": {
        "cts": {
            "trace_name": "deleteGraph",
            "trace_type": "ConsoleAction",
            "service_type": "FunctionGraph",
            "request": {},
            "response": {},
        }
    },
    "lts": {"lts": {"data": "eyJsb2dzIjoiW10ifQ=="}},
    "obs": {
        "Records": [
            {
                "eventVersion": "2.0",
                "eventName": "ObjectCreated:Post",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "job.png"}},
            }
        ]
    },
    "dds": {
        "records": [
            {
                "event_source": "dds",
                "event_name": "insert",
                "dds": {"full_document": "{}", "ns": "{}"},
            }
        ]
    },
    "empty": {},
    "null": None,
    "array-of-text": ["kafka message1"],
}


@pytest.mark.parametrize("event", NON_TRIGGER_SHAPES.values(), ids=list(NON_TRIGGER_SHAPES))
def test_other_functiongraph_shapes_fall_through(event: Any) -> None:
    assert matching(event) == []


@pytest.mark.parametrize("name", ["cts", "lts", "obs", "dds"])
def test_other_functiongraph_shapes_still_raise_once_registered(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (*FG_SOURCES, *handler.sources.SOURCES))
    with pytest.raises(UnknownEventError, match="unrecognised event"):
        detect(NON_TRIGGER_SHAPES[name])


# --- end to end ------------------------------------------------------------------------------


class FunctionGraphContext:
    """FunctionGraph's camelCase context object (credentials come from the AK/SK variables).

    Its method names are FunctionGraph's own.
    """

    def getRequestID(self) -> str:
        return "fg-req-7"

    def getRemainingTimeInMilliSeconds(self) -> int:
        return 30_000

    def getFunctionName(self) -> str:
        return "ecs-metadata-janitor"

    def getMemorySize(self) -> int:
        return 256

    def getFunctionURN(self) -> str:
        return "urn:fss:cn-north-4:0123456789abcdef0123456789abcdef:function:default:janitor:latest"


@pytest.fixture
def fg_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the FunctionGraph sources first, whether or not they are registered yet."""
    monkeypatch.setattr("handler.sources.SOURCES", (*FG_SOURCES, *handler.sources.SOURCES))


#: What each sample deletes from the demo seed, and what it dead-letters.
SAMPLES: dict[str, tuple[set[tuple[str, str]], list[str]]] = {
    "fg-timer.json": ({(WEB1, "lease-owner"), (WEB1, "lease-expires"), (DB1, "lease-owner")}, []),
    "fg-smn.json": ({(DB1, "lease-owner"), (DB1, "lease-expires"), (WEB1, "team name")}, []),
    "fg-dms-kafka.json": (
        {(DB1, "lease-owner"), (WEB1, "lease-owner"), (WEB1, "lease-expires")},
        ["invalid"],
    ),
    "fg-kafka-opensource.json": ({(WEB1, "env:stage"), (DB1, "lease-expires")}, []),
    "fg-dms-rabbitmq.json": ({(WEB1, "owner"), (DB1, "lease-owner")}, ["protected"]),
    "fg-dms-rocketmq.json": (
        {(WEB1, "lease-owner"), (WEB1, "team name"), (DB1, "lease-expires")},
        [],
    ),
}


def test_every_functiongraph_sample_is_covered() -> None:
    # fg-apig.json is a webhook: tests/sources/test_webhook.py covers it.
    names = {p.name for p in EVENTS.glob("fg-*.json")} - {"fg-apig.json"}
    assert sorted(names) == sorted(SAMPLES)


@pytest.mark.usefixtures("fg_sources")
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_deletes_its_pairs_and_answers_a_summary(
    name: str, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    deleted, letters = SAMPLES[name]
    response = app.handler(load(name), FunctionGraphContext())

    assert list(response) == ["summary"]
    summary = response["summary"]
    assert summary["deleted"] == len(deleted)
    assert summary["dead_lettered"] == len(letters)
    assert summary["returned_to_queue"] == 0
    for server_id, key in deleted:
        assert key not in metadata_of(sandbox, server_id)
    assert sorted(letter["reason"] for letter in read_lines(dead_letters)) == sorted(letters)


@pytest.mark.usefixtures("fg_sources")
@pytest.mark.parametrize(
    ("event", "kind", "unit_id"),
    [
        (timer(LOCKED), "fg-timer", "expire-leases@2026-11-27T10:05:00+08:00"),
        ({"record": [smn_record(LOCKED, "smn-1")]}, "smn", "smn-1"),
        (
            mq("KAFKA", {"messages": [LOCKED], "topic_id": "t"}),
            "fg-kafka",
            "t-0",
        ),
        (
            mq("RABBITMQ", {"messages": [LOCKED], "topic_id": "q"}),
            "dms-rabbitmq",
            "q-0",
        ),
        (
            mq("ROCKETMQ", {"messages": [LOCKED], "topic_id": "r"}),
            "dms-rocketmq",
            "r-0",
        ),
    ],
    ids=["timer", "smn", "kafka", "rabbitmq", "rocketmq"],
)
def test_a_transient_pair_is_dead_lettered_not_raised(
    event: dict[str, Any],
    kind: str,
    unit_id: str,
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    response = app.handler(event, FunctionGraphContext())

    assert response["summary"]["conflict"] == 1
    assert response["summary"]["dead_lettered"] == 1
    assert response["summary"]["returned_to_queue"] == 0
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "conflict"
    assert letter["source"] == {"kind": kind, "id": unit_id}
    assert letter["invocation_id"] == "fg-req-7"
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: untouched


@pytest.mark.usefixtures("fg_sources")
def test_a_dead_letter_that_cannot_be_written_raises_so_the_trigger_retries(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    configure_for(monkeypatch, sandbox, blocker / "dl.jsonl")
    app.warm_up()
    blocker.write_text("")  # the sink's folder became a file after the cold start
    event = {"record": [smn_record("garbage", "smn-9")]}
    with pytest.raises(app.DeadLetterWriteError, match="could not be dead-lettered"):
        app.handler(event, FunctionGraphContext())


@pytest.mark.usefixtures("fg_sources")
def test_logs_carry_the_functiongraph_context_and_the_message_id(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    app.handler(load("fg-smn.json"), FunctionGraphContext())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pairs = [line for line in lines if line["message"].startswith("pair ")]
    assert {line["correlation_id"] for line in pairs} == {
        "4f0c6f1e0a9b4c7d8e2f1a3b5c7d9e01",
        "4f0c6f1e0a9b4c7d8e2f1a3b5c7d9e02",
    }
    assert {line["source"] for line in pairs} == {"smn"}
    assert pairs[0]["function_request_id"] == "fg-req-7"
    assert pairs[0]["function_name"] == "ecs-metadata-janitor"
    assert pairs[0]["function_memory_size"] == 256
