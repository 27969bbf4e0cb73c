from __future__ import annotations

import json
from pathlib import Path

from handler.outcomes import Outcome
from handler.sources import UnknownEventError, detect
from handler.sources.base import Unit, UnitReport
from handler.sources.direct import DirectSource
from handler.sources.sqs import SqsSource

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_standard_batch_is_split_into_messages() -> None:
    event = json.loads((EVENTS / "sqs-batch.json").read_text())
    source = detect(event)
    assert isinstance(source, SqsSource)
    assert not source.ordered
    units = source.units(event)
    assert [u.id for u in units] == [r["messageId"] for r in event["Records"]]
    assert len(units[0].payload.items) == 2
    poison = units[2].payload
    assert poison.items == []
    assert poison.invalid[0].outcome is Outcome.INVALID
    assert poison.invalid[0].raw == "delete lease-owner on web-1 please"


def test_fifo_batch_keeps_message_groups() -> None:
    event = json.loads((EVENTS / "sqs-fifo-batch.json").read_text())
    source = detect(event)
    assert source.ordered
    assert [u.group for u in source.units(event)] == ["web-2", "web-2", "web-1", "web-1"]


def test_fifo_is_recognised_by_queue_arn_alone() -> None:
    event = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "a",
                "body": "[]",
                "eventSourceARN": "arn:x:q.fifo",
            }
        ]
    }
    assert SqsSource(event).ordered


def test_response_lists_only_redelivered_messages_and_survives_missing_ids() -> None:
    source = SqsSource()
    ok = UnitReport(Unit("m-1", "[]", ref="m-1"))
    bad = UnitReport(Unit("m-2", "[]", ref="m-2"), redeliver=True)
    anonymous = UnitReport(Unit(None, "[]"), redeliver=True)
    assert source.respond([ok, bad, anonymous], {}) == {
        "batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": ""}]
    }


def test_record_with_non_string_body_is_invalid_not_a_crash() -> None:
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "x", "body": None}]}
    (unit,) = SqsSource(event).units(event)
    assert unit.payload.invalid[0].outcome is Outcome.INVALID


def test_detect_prefers_sqs_and_accepts_direct_payloads() -> None:
    assert isinstance(detect([{"server_id": "x", "key": "y"}]), DirectSource)
    assert isinstance(detect({"items": []}), DirectSource)
    assert isinstance(detect({"server_id": "x", "key": "y"}), DirectSource)


def test_unknown_shapes_raise_and_name_what_was_seen() -> None:
    for event, seen in [
        ({"Records": [{"eventSource": "aws:s3"}]}, "['Records']"),
        ({}, "an empty object"),
        (None, "null"),
        ("text", "a str"),
    ]:
        try:
            detect(event)
        except UnknownEventError as exc:
            assert seen in str(exc)
        else:  # pragma: no cover - the assertion is the point
            raise AssertionError(f"{event!r} was accepted")


def test_a_standard_queue_with_message_groups_is_not_fifo() -> None:
    """Fair queues (standard) carry MessageGroupId too; only the .fifo ARN means FIFO."""
    record = {
        "eventSource": "aws:sqs",
        "messageId": "a",
        "body": "[]",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:standard-fair",
        "attributes": {"MessageGroupId": "tenant-1"},
    }
    assert not SqsSource({"Records": [record]}).ordered
