"""Amazon Kinesis Data Streams: a unit per record, base64 `kinesis.data`, sequence numbers back."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from handler.model import ParsedPayload, parse_body, parse_text, truncate_raw
from handler.outcomes import Outcome, Result
from handler.sources.base import OnTransient, Source, Unit, UnitReport


def _records(event: Any) -> list[Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    return records if isinstance(records, list) else []


def parse_kinesis_data(data: Any) -> ParsedPayload:
    """Decode a record's base64 `data` and read it as JSON text; bad base64 is `invalid`."""
    if not isinstance(data, str):
        return parse_body(data)
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        detail = f"kinesis.data is not base64: {exc}"
        return ParsedPayload(
            invalid=[Result(Outcome.INVALID, raw=truncate_raw(data), detail=detail)]
        )
    return parse_text(decoded)


def _shard(record: dict[str, Any]) -> str | None:
    """The shard of a record: the part of `eventID` before ':' (`shardId-000000000006`)."""
    event_id = record.get("eventID")
    if isinstance(event_id, str) and ":" in event_id:
        return event_id.split(":", 1)[0] or None
    return None


class KinesisSource(Source):
    """A Kinesis batch; a unit going back takes the later units of its shard with it."""

    kind = "kinesis"
    on_transient = OnTransient.REDELIVER
    #: Lambda retries a shard from its lowest failed sequence number: keep each shard in order.
    ordered = True

    @classmethod
    def matches(cls, event: Any) -> bool:
        """Records whose eventSource is `aws:kinesis`."""
        records = _records(event)
        return bool(records) and all(
            isinstance(r, dict) and r.get("eventSource") == "aws:kinesis" for r in records
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per record, named by its sequence number, grouped by its shard."""
        units = []
        for record in _records(event):
            kinesis = record.get("kinesis")
            kinesis = kinesis if isinstance(kinesis, dict) else {}
            sequence = kinesis.get("sequenceNumber")
            ident = str(sequence) if sequence not in (None, "") else None
            units.append(
                Unit(
                    id=ident,
                    body=kinesis.get("data"),
                    parse=parse_kinesis_data,
                    group=_shard(record),
                    ref=ident,
                )
            )
        return units

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
        """Return `batchItemFailures` with the sequence number of each unit to redeliver.

        A failing record without a sequence number is reported with an empty id, which makes
        Lambda retry the whole batch: better than losing it.
        """
        failures = [
            {"itemIdentifier": report.unit.ref or ""} for report in reports if report.redeliver
        ]
        return {"batchItemFailures": failures}
