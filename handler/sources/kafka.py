"""Kafka (Amazon MSK and self-managed): one unit per record, base64 `value`, a summary answer.

Lambda's Kafka event source has no partial batch response: a raised error re-runs the whole
batch and blocks the partition. Transient outcomes are therefore dead-lettered, and only a dead
letter that cannot be written raises (handler.runtime does that for non-redelivering sources).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from handler.model import ParsedPayload, parse_text, truncate_raw
from handler.outcomes import Outcome, Result
from handler.sources.base import SummarySource, Unit

#: `eventSource` of MSK and of self-managed Kafka (AWS documents `SelfManagedKafka`; some
#: tools, Powertools' sample among them, write `aws:SelfManagedKafka`).
EVENT_SOURCES = frozenset({"aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka"})


def invalid_payload(raw: Any, detail: str) -> ParsedPayload:
    """A payload that is one `invalid` result keeping what came (as text, redacted and cut)."""
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(raw)
    return ParsedPayload(invalid=[Result(Outcome.INVALID, raw=truncate_raw(text), detail=detail)])


def base64_parser(field: str, holder: str = "record") -> Callable[[Any], ParsedPayload]:
    """A parser of a base64 field (`value`, `data`) holding the JSON text of a payload.

    A missing or null field, text that is not base64, or bytes that are not UTF-8 make one
    `invalid` result keeping the field as it came; the decoded text is read by parse_text.
    """

    def parse(encoded: Any) -> ParsedPayload:
        if encoded is None:
            return invalid_payload("", f"the {holder} has no {field}")
        if not isinstance(encoded, str):
            kind = type(encoded).__name__
            return invalid_payload(encoded, f"the {field} is not base64 text (got {kind})")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return invalid_payload(encoded, f"the {field} is not valid base64")
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            return invalid_payload(encoded, f"the decoded {field} is not UTF-8 (kept as base64)")
        return parse_text(text)

    return parse


def odd_record(detail: str) -> Callable[[Any], ParsedPayload]:
    """A parser for a record of the wrong shape: always one `invalid` result keeping it."""

    def parse(record: Any) -> ParsedPayload:
        return invalid_payload(record, detail)

    return parse


_parse_value = base64_parser("value")


def _records(event: Any) -> dict[Any, Any] | None:
    if not isinstance(event, dict) or event.get("eventSource") not in EVENT_SOURCES:
        return None
    records = event.get("records")
    return records if isinstance(records, dict) else None


def _scalar(value: Any) -> str | int | None:
    """A topic, partition or offset as it came, if it is text or a number (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


class KafkaSource(SummarySource):
    """An MSK or self-managed Kafka batch; transient outcomes are dead-lettered, not raised."""

    kind = "kafka"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`eventSource` of MSK or self-managed Kafka, and `records` an object (not a list)."""
        return _records(event) is not None

    def units(self, event: Any) -> list[Unit]:
        """One unit per record, named `topic-partition-offset`; odd records are invalid units."""
        units: list[Unit] = []
        for name, records in (_records(event) or {}).items():
            batch = str(name)
            if not isinstance(records, list):
                detail = f"the records of {batch!r} are not a list"
                units.append(Unit(id=batch, body=records, parse=odd_record(detail), group=batch))
                continue
            for index, record in enumerate(records):
                units.append(_unit(batch, index, record))
        return units


def _unit(batch: str, index: int, record: Any) -> Unit:
    """The unit of one record of the `topic-partition` list `batch`."""
    if not isinstance(record, dict):
        kind = type(record).__name__
        detail = f"the record is not an object (got {kind})"
        return Unit(id=f"{batch}[{index}]", body=record, parse=odd_record(detail), group=batch)
    topic, partition, offset = (_scalar(record.get(k)) for k in ("topic", "partition", "offset"))
    group = f"{topic}-{partition}" if topic is not None and partition is not None else batch
    unit_id = f"{group}-{offset}" if offset is not None else f"{group}[{index}]"
    # A missing or null value (a tombstone) is an invalid unit too, named like the others.
    return Unit(
        id=unit_id,
        body=record.get("value"),
        parse=_parse_value,
        group=group,
        ref=(topic, partition, offset),
    )
