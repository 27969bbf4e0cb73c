from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.outcomes import Outcome
from handler.sandbox import Sandbox
from handler.sources import UnknownEventError, detect
from handler.sources.base import Unit, UnitReport
from handler.sources.direct import DirectSource
from handler.sources.sqs import SqsSource, parse_message_body
from tests.conftest import configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

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


# --- SNS → SQS: a body that is an SNS envelope -------------------------------------------------


def sns_envelope(message: Any, **changes: Any) -> str:
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "n-1",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:janitor",
        "Message": message,
        "Timestamp": "2026-11-27T10:00:00.000Z",
        **changes,
    }
    return json.dumps({k: v for k, v in envelope.items() if v is not None})


def test_sns_envelope_bodies_are_unwrapped_and_keep_the_sqs_message_id() -> None:
    event = json.loads((EVENTS / "sns-sqs.json").read_text())
    source = detect(event)
    assert isinstance(source, SqsSource)
    units = source.units(event)
    assert [u.id for u in units] == [r["messageId"] for r in event["Records"]]
    assert [u.ref for u in units] == [r["messageId"] for r in event["Records"]]
    assert [(i.server_id, i.key) for i in units[0].payload.items] == [
        (DB1, "lease-owner"),
        (DB1, "lease-expires"),
    ]
    assert [(i.server_id, i.key) for i in units[1].payload.items] == [(WEB2, "lease-owner")]


def test_an_envelope_whose_message_is_no_payload_keeps_the_message_as_raw() -> None:
    payload = parse_message_body(sns_envelope("hello world"))
    assert payload.items == []
    assert payload.invalid[0].raw == "hello world"
    assert parse_message_body(sns_envelope("")).invalid[0].detail == "the body is empty"


def test_only_the_exact_envelope_shape_is_unwrapped() -> None:
    inner = json.dumps({"server_id": WEB1, "key": "owner"})
    assert len(parse_message_body(sns_envelope(inner)).items) == 1
    for lookalike in (
        sns_envelope(inner, Type="SubscriptionConfirmation"),
        sns_envelope(inner, TopicArn=None),
        sns_envelope({"server_id": WEB1, "key": "owner"}),  # Message not a string
    ):
        payload = parse_message_body(lookalike)
        assert payload.items == []
        assert payload.invalid[0].outcome is Outcome.INVALID


def test_raw_message_delivery_and_plain_bodies_read_as_before() -> None:
    assert len(parse_message_body(json.dumps({"server_id": WEB1, "key": "owner"})).items) == 1
    assert parse_message_body("garbage").invalid[0].raw == "garbage"
    assert parse_message_body("  ").invalid[0].detail == "the body is empty"
    assert parse_message_body(None).invalid[0].outcome is Outcome.INVALID
    assert parse_message_body(12).invalid[0].detail == "the body is not text (got int)"
    assert parse_message_body("[" * 100_000).invalid[0].outcome is Outcome.INVALID


def test_sns_to_fifo_queue_keeps_the_sqs_group() -> None:
    body = sns_envelope(json.dumps({"server_id": WEB1, "key": "owner"}))
    event = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "f-1",
                "body": body,
                "attributes": {"MessageGroupId": "g-1", "SequenceNumber": "1"},
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:janitor.fifo",
            }
        ]
    }
    source = SqsSource(event)
    assert source.ordered
    (unit,) = source.units(event)
    assert unit.group == "g-1" and len(unit.payload.items) == 1


def test_sns_sqs_event_end_to_end_redelivers_the_sqs_message(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    event = json.loads((EVENTS / "sns-sqs.json").read_text())

    response = app.handler(event, None)

    # The envelope for the locked web-2 goes back as the SQS message it arrived in.
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert "lease-expires" not in metadata_of(sandbox, DB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)
    assert not dead_letters.exists()
