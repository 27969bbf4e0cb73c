"""FunctionGraph TIMER trigger: `user_event` is a string holding the work-item payload."""

from __future__ import annotations

from typing import Any

from handler.model import parse_body
from handler.sources.base import SummarySource, Unit
from handler.sources.fg_common import text_or_none


class FgTimerSource(SummarySource):
    """A FunctionGraph timer event; its one unit is the `user_event` text, read as JSON."""

    kind = "fg-timer"
    accepts_cleanup = True

    @classmethod
    def matches(cls, event: Any) -> bool:
        """An object with `trigger_type: "TIMER"` and a `user_event`."""
        return (
            isinstance(event, dict)
            and event.get("trigger_type") == "TIMER"
            and "user_event" in event
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit: `user_event` parsed as JSON text (anything else is invalid, kept as text)."""
        name = text_or_none(event.get("trigger_name"))
        time = text_or_none(event.get("time"))
        unit_id = f"{name}@{time}" if name and time else name or time
        return [Unit(id=unit_id, body=event.get("user_event"), parse=parse_body)]
