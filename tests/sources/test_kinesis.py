"""Kinesis: base64 records, shards kept in order, sequence numbers back; end to end too."""

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
from handler.sources.base import Unit, UnitReport
from handler.sources.kinesis import KinesisSource, parse_kinesis_data
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

SAMPLE = json.loads((EVENTS / "kinesis.json").read_text())
SEQUENCES = [r["kinesis"]["sequenceNumber"] for r in SAMPLE["Records"]]


def b64(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def record(data: Any, sequence: Any, shard: str | None = "shardId-000000000001") -> dict[str, Any]:
    kinesis: dict[str, Any] = {"partitionKey": "p", "data": data}
    if sequence is not None:
        kinesis["sequenceNumber"] = sequence
    out: dict[str, Any] = {"eventSource": "aws:kinesis", "kinesis": kinesis}
    if shard is not None:
        out["eventID"] = f"{shard}:{sequence}"
    return out


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_sample_is_one_unit_per_record_in_one_shard() -> None:
    source = KinesisSource(SAMPLE)
    assert KinesisSource.matches(SAMPLE)
    assert source.ordered and source.redelivers
    units = source.units(SAMPLE)
    assert [u.id for u in units] == SEQUENCES
    assert [u.ref for u in units] == SEQUENCES
    assert {u.group for u in units} == {"shardId-000000000000"}
    assert [(i.server_id, i.key) for i in units[0].payload.items] == [
        (WEB1, "owner"),
        (WEB1, "env:stage"),
    ]


def test_matches_only_kinesis_records() -> None:
    assert KinesisSource.matches({"Records": [record("", "1")]})
    assert not KinesisSource.matches({"Records": [record("", "1"), {"eventSource": "aws:sqs"}]})
    assert not KinesisSource.matches({"Records": [{"eventSource": "aws:dynamodb"}]})
    assert not KinesisSource.matches({"Records": [{"EventSource": "aws:kinesis"}]})
    assert not KinesisSource.matches({"Records": []})
    assert not KinesisSource.matches({"kinesis": {}})


def test_data_that_is_not_base64_is_invalid_and_keeps_the_raw_text() -> None:
    (invalid,) = parse_kinesis_data("not base64 at all!").invalid
    assert invalid.outcome is Outcome.INVALID
    assert invalid.raw == "not base64 at all!"
    assert invalid.detail is not None and "base64" in invalid.detail


def test_decoded_text_that_is_no_payload_keeps_the_decoded_text() -> None:
    data = base64.b64encode(b"Hello, this is a test.").decode()
    (invalid,) = parse_kinesis_data(data).invalid
    assert invalid.raw == "Hello, this is a test."
    assert parse_kinesis_data(None).invalid[0].outcome is Outcome.INVALID
    assert parse_kinesis_data(b64([])).invalid[0].outcome is Outcome.INVALID


def test_records_are_grouped_by_shard_and_missing_ids_do_not_crash() -> None:
    event = {
        "Records": [
            record(b64([]), "1", "shardId-a"),
            record(b64([]), "2", "shardId-b"),
            record(b64([]), None, None),
            {"eventSource": "aws:kinesis"},
        ]
    }
    units = KinesisSource(event).units(event)
    assert [u.group for u in units] == ["shardId-a", "shardId-b", None, None]
    assert [u.id for u in units] == ["1", "2", None, None]
    assert all(u.payload.invalid for u in units)


def test_response_names_each_redelivered_sequence_number_or_an_empty_one() -> None:
    source = KinesisSource()
    ok = UnitReport(Unit("1", "", ref="1"))
    bad = UnitReport(Unit("2", "", ref="2"), redeliver=True)
    anonymous = UnitReport(Unit(None, ""), redeliver=True)
    assert source.respond([ok, bad, anonymous], {}) == {
        "batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": ""}]
    }


@pytest.fixture
def kinesis_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (KinesisSource, *handler.sources.SOURCES))


@pytest.mark.usefixtures("kinesis_first")
def test_kinesis_sample_end_to_end_returns_the_failed_record_and_the_rest_of_its_shard(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    assert isinstance(detect(SAMPLE), KinesisSource)

    response = app.handler(SAMPLE, None)

    # The locked web-2 goes back, and so does the record after it in the shard, unprocessed.
    assert response == {
        "batchItemFailures": [{"itemIdentifier": SEQUENCES[1]}, {"itemIdentifier": SEQUENCES[2]}]
    }
    assert "owner" not in metadata_of(sandbox, WEB1)
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)
    assert "backup-policy" in metadata_of(sandbox, DB1)
    deletes = [r["path"] for r in sandbox.requests() if r["method"] == "DELETE"]
    assert not any(path.endswith("/backup-policy") for path in deletes)
    assert read_lines(dead_letters) == []  # redelivered, not dead-lettered


@pytest.mark.usefixtures("kinesis_first")
def test_other_shards_go_on_and_poison_records_are_dead_lettered_not_returned(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    event = {
        "Records": [
            record(b64({"server_id": WEB2, "key": "lease-owner"}), "10", "shardId-a"),
            record(b64({"server_id": WEB1, "key": "owner"}), "11", "shardId-a"),
            record("%%%", "20", "shardId-b"),
            record(b64({"server_id": DB1, "key": "backup-policy"}), "21", "shardId-b"),
        ]
    }
    response = app.handler(event, None)

    assert response == {"batchItemFailures": [{"itemIdentifier": "10"}, {"itemIdentifier": "11"}]}
    assert "owner" in metadata_of(sandbox, WEB1)  # after the failure in its shard: not run
    assert "backup-policy" not in metadata_of(sandbox, DB1)  # the other shard went on
    (letter,) = read_lines(dead_letters)
    assert (letter["reason"], letter["raw"], letter["source"]) == (
        "invalid",
        "%%%",
        {"kind": "kinesis", "id": "20"},
    )


@pytest.mark.usefixtures("kinesis_first")
def test_a_failing_record_without_sequence_number_retries_the_batch(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    event = {"Records": [record(b64({"server_id": WEB2, "key": "lease-owner"}), None, None)]}
    assert app.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": ""}]}
