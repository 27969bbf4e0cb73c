"""Event sources: each knows one platform's event shape and the response it expects."""

from __future__ import annotations

from typing import Any

from handler.sources.base import (
    HttpAnswer,
    HttpRequest,
    OnTransient,
    RejectedEvent,
    Source,
    Unit,
    UnitReport,
    UnknownEventError,
)
from handler.sources.direct import DirectSource
from handler.sources.sqs import SqsSource

#: Checked in this order; the first whose `matches` is true handles the event.
SOURCES: tuple[type[Source], ...] = (SqsSource, DirectSource)

__all__ = [
    "SOURCES",
    "HttpAnswer",
    "HttpRequest",
    "OnTransient",
    "RejectedEvent",
    "Source",
    "Unit",
    "UnitReport",
    "UnknownEventError",
    "detect",
]


def _shape(event: Any) -> str:
    if isinstance(event, dict):
        keys = sorted(str(k) for k in event)[:12]
        return f"an object with keys {keys}" if keys else "an empty object"
    if event is None:
        return "null"
    return f"a {type(event).__name__}"


def detect(event: Any) -> Source:
    """Return the source for an event, or raise UnknownEventError saying what was seen."""
    for source in SOURCES:
        if source.matches(event):
            return source(event)
    raise UnknownEventError(
        f"unrecognised event: got {_shape(event)}; expected an SQS batch or a work-item payload "
        "(an object with 'server_id' or 'items', or an array)"
    )
