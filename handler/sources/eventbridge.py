"""Amazon EventBridge rule and scheduled events: the payload is `detail`; the answer a summary."""

from __future__ import annotations

from typing import Any

from handler import redaction
from handler.model import parse_payload
from handler.sources.base import (
    SummarySource,
    Unit,
    UnknownEventError,
)

#: A `detail` holding one of these keys is a work-item payload (`cleanup`: a selector).
PAYLOAD_KEYS = ("server_id", "items", "cleanup")
#: How much of a `source` or `detail-type` an error quotes.
_QUOTE_LIMIT = 100


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:_QUOTE_LIMIT] + ("…" if len(text) > _QUOTE_LIMIT else ""))


def _seen(detail: Any) -> str:
    if isinstance(detail, dict):
        keys = sorted(str(k) for k in detail)[:12]
        return f"an object with keys {keys}" if keys else "an empty object"
    return "null" if detail is None else f"a {type(detail).__name__}"


def _has_payload(detail: Any) -> bool:
    if isinstance(detail, list):
        return True
    return isinstance(detail, dict) and any(key in detail for key in PAYLOAD_KEYS)


class EventBridgeSource(SummarySource):
    """An EventBridge event (a rule's match or a schedule); transient pairs are dead-lettered."""

    kind = "eventbridge"
    accepts_cleanup = True

    @classmethod
    def matches(cls, event: Any) -> bool:
        """An object with string `detail-type` and `source`, and a `detail`."""
        return (
            isinstance(event, dict)
            and isinstance(event.get("detail-type"), str)
            and isinstance(event.get("source"), str)
            and "detail" in event
        )

    def units(self, event: Any) -> list[Unit]:
        """The `detail` is one unit, named by the event's `id`.

        A `detail` that is no work-item payload (an S3 or EC2 event routed here, a schedule
        without input) raises UnknownEventError naming what was seen: never answered as success.
        """
        detail = event.get("detail")
        if not _has_payload(detail):
            schedule = event.get("source") == "aws.events" and (
                event.get("detail-type") == "Scheduled Event"
            )
            hint = (
                "; a scheduled rule puts no payload in detail: set the rule's input to the "
                "payload (it then arrives as a direct invocation)"
                if schedule
                else ""
            )
            message = (
                f"unrecognised event: an EventBridge event (source {_quote(event.get('source'))}, "
                f"detail-type {_quote(event.get('detail-type'))}) whose detail is {_seen(detail)}; "
                f"expected a work-item payload with one of {list(PAYLOAD_KEYS)}{hint}"
            )
            raise UnknownEventError(redaction.current().text(message))
        event_id = event.get("id")
        ident = str(event_id) if event_id not in (None, "") else None
        return [Unit(id=ident, body=detail, parse=parse_payload, ref=ident)]
