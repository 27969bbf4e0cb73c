"""What the FunctionGraph trigger sources share: ids and units for odd records."""

from __future__ import annotations

import json
from typing import Any

from handler.model import ParsedPayload, truncate_raw
from handler.outcomes import Outcome, Result
from handler.sources.base import Unit


def text_or_none(value: Any) -> str | None:
    """A string or number as an id; anything else (None, "", an object) as None."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    return str(value) if isinstance(value, str | int) else None


def odd_unit(unit_id: str | None, record: Any, detail: str) -> Unit:
    """A unit for a record that carries no payload: one `invalid` result keeping the record."""

    def parse(body: Any) -> ParsedPayload:
        try:
            raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=repr)
        except (TypeError, ValueError, RecursionError):
            raw = repr(body)
        return ParsedPayload(
            invalid=[Result(Outcome.INVALID, raw=truncate_raw(raw), detail=detail)]
        )

    return Unit(id=unit_id, body=record, parse=parse)
