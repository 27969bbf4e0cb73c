"""Amazon SQS (standard and FIFO): one unit per message, failures as batchItemFailures.

A message an SNS topic delivered to the queue (without raw message delivery) is an SNS envelope:
its payload is the envelope's `Message`, and it is redelivered as the SQS message it came in.
"""

from __future__ import annotations

import json
from typing import Any

from handler.model import ParsedPayload, parse_body, parse_payload, parse_text
from handler.sources.base import OnTransient, Source, SourceSettings, Unit, UnitReport


def _records(event: Any) -> list[Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    return records if isinstance(records, list) else []


class SqsSource(Source):
    """An SQS batch; transient failures go back to the queue, FIFO groups stop at a failure."""

    kind = "sqs"
    on_transient = OnTransient.REDELIVER

    def __init__(self, event: Any = None, settings: SourceSettings | None = None) -> None:
        """Note whether the batch comes from a FIFO queue."""
        super().__init__(event, settings)
        records = _records(event)
        self.ordered = any(_is_fifo(r) for r in records if isinstance(r, dict))

    @classmethod
    def matches(cls, event: Any) -> bool:
        """Records whose eventSource is `aws:sqs`."""
        records = _records(event)
        return bool(records) and all(
            isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per message; the body (or the SNS envelope's `Message`) is the payload."""
        units = []
        for record in _records(event):
            message_id = record.get("messageId")
            attributes = record.get("attributes")
            group = attributes.get("MessageGroupId") if isinstance(attributes, dict) else None
            message = str(message_id) if message_id not in (None, "") else None
            units.append(
                Unit(
                    id=message,
                    body=record.get("body"),
                    parse=parse_message_body,
                    group=str(group) if group is not None else None,
                    ref=message,
                )
            )
        return units

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
        """Return `batchItemFailures` with the message id of each unit to redeliver.

        A failing message without an id is reported with an empty id, which makes Lambda
        retry the whole batch: better than losing it.
        """
        failures = [
            {"itemIdentifier": report.unit.ref or ""} for report in reports if report.redeliver
        ]
        return {"batchItemFailures": failures}


def _is_fifo(record: dict[str, Any]) -> bool:
    """A FIFO queue's ARN ends in `.fifo`; without an ARN, FIFO messages carry a SequenceNumber.

    MessageGroupId alone says nothing: standard queues use it too (fair queues).
    """
    arn = record.get("eventSourceARN")
    if isinstance(arn, str) and arn:
        return arn.endswith(".fifo")
    attributes = record.get("attributes")
    return isinstance(attributes, dict) and "SequenceNumber" in attributes


def is_sns_envelope(value: Any) -> bool:
    """An SNS notification as SNS delivers it to a queue: Type, Message and TopicArn."""
    return (
        isinstance(value, dict)
        and value.get("Type") == "Notification"
        and isinstance(value.get("Message"), str)
        and isinstance(value.get("TopicArn"), str)
    )


def parse_message_body(body: Any) -> ParsedPayload:
    """Read an SQS body: an SNS envelope's `Message` when it is one, else the body itself."""
    if not isinstance(body, str):
        return parse_body(body)
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return parse_body(body)  # the same invalid result, with its reason
    if is_sns_envelope(decoded):
        return parse_text(decoded["Message"])
    return parse_payload(decoded)
