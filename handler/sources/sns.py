"""Amazon SNS: one unit per record, the payload in `Sns.Message`, the answer a summary."""

from __future__ import annotations

from typing import Any

from handler.model import parse_body
from handler.sources.base import SummarySource, Unit


def _records(event: Any) -> list[Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    return records if isinstance(records, list) else []


class SnsSource(SummarySource):
    """An SNS notification; SNS retries whole invocations, so transient pairs are dead-lettered."""

    kind = "sns"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """Records whose `EventSource` (capital E and S, as SNS spells it) is `aws:sns`."""
        records = _records(event)
        return bool(records) and all(
            isinstance(r, dict) and r.get("EventSource") == "aws:sns" for r in records
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per record: `Sns.Message` is the payload's JSON text, `Sns.MessageId` its id."""
        units = []
        for record in _records(event):
            sns = record.get("Sns")
            sns = sns if isinstance(sns, dict) else {}
            message_id = sns.get("MessageId")
            ident = str(message_id) if message_id not in (None, "") else None
            units.append(Unit(id=ident, body=sns.get("Message"), parse=parse_body, ref=ident))
        return units
