"""FunctionGraph SMN trigger: `record[].smn.message` (singular `record`), one unit per record."""

from __future__ import annotations

from typing import Any

from handler.model import parse_body
from handler.sources.base import SummarySource, Unit
from handler.sources.fg_common import odd_unit, text_or_none


def _records(event: Any) -> list[Any]:
    records = event.get("record") if isinstance(event, dict) else None
    return records if isinstance(records, list) else []


def _is_smn(record: Any) -> bool:
    return isinstance(record, dict) and (
        record.get("event_source") == "smn" or isinstance(record.get("smn"), dict)
    )


def _foreign(record: Any) -> bool:
    """A record that says it comes from a service other than SMN."""
    if not isinstance(record, dict):
        return False
    source = record.get("event_source")
    return source is not None and source != "smn"


class FgSmnSource(SummarySource):
    """A batch of SMN notifications; each record's `smn.message` is one payload."""

    kind = "smn"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """A `record` list with an SMN record in it and no record from another service."""
        records = _records(event)
        return any(_is_smn(r) for r in records) and not any(_foreign(r) for r in records)

    def units(self, event: Any) -> list[Unit]:
        """One unit per record, named by `smn.message_id`; a record without a message is invalid."""
        units = []
        for index, record in enumerate(_records(event)):
            smn = record.get("smn") if isinstance(record, dict) else None
            if not isinstance(smn, dict):
                units.append(odd_unit(None, record, f"record {index} has no 'smn' object"))
                continue
            message_id = text_or_none(smn.get("message_id"))
            units.append(Unit(id=message_id, body=smn.get("message"), parse=parse_body))
        return units
