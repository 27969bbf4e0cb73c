"""CloudEvents 1.0: structured events invoked directly, batches of them, and webhook bodies.

The `cloudevents` SDK (its 2.x core API) checks each event's context attributes: their types,
`specversion` "1.0", an RFC 3339 `time` with an offset, the optional attributes, extension
names; in HTTP binary mode it also maps and percent-decodes the `ce-` headers. It is imported
when a CloudEvent arrives, not at the cold start (it costs about 8 ms on top of the runtime).
The pairs are read here from `data` or `data_base64` with the parsers every other body uses,
so an unreadable payload is an `invalid` result that keeps its text for the dead letter.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from handler import redaction
from handler.model import DETAIL_LIMIT, ParsedPayload, parse_payload, parse_text, truncate_raw
from handler.outcomes import Outcome, Result
from handler.sources.base import (
    HttpRequest,
    RejectedEvent,
    SummarySource,
    Unit,
)

#: The attributes every CloudEvent carries (checked here: the SDK invents `id` and `specversion`).
REQUIRED = ("id", "source", "type", "specversion")
#: HTTP structured mode: the body is one event in the JSON format.
STRUCTURED_MEDIA_TYPE = "application/cloudevents+json"
#: HTTP batched mode: the body is a JSON array of events.
BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
#: Any other `application/cloudevents…` media type is a CloudEvent format this function can't read.
_CLOUDEVENTS_MEDIA = "application/cloudevents"
#: The headers that make a request a binary-mode CloudEvent (any one of them).
_BINARY_HEADERS = tuple(f"ce-{name}" for name in ("specversion", "id", "source", "type"))
#: A JSON media type (parameters removed): application/json, text/json, application/…+json.
_JSON_MEDIA = re.compile(r"(application|text)/([a-z0-9.-]+\+)?json", re.IGNORECASE)
_DATA = ("data", "data_base64")


def is_event(value: Any) -> bool:
    """An object naming a `specversion`: a structured CloudEvent, valid or not."""
    return isinstance(value, dict) and "specversion" in value


class CloudEventsSource(SummarySource):
    """A structured CloudEvent, or a batch of them; the answer is a summary (SPEC §5)."""

    kind = "cloudevents"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """An object with `specversion`, or a non-empty array whose every element is one."""
        if isinstance(event, list):
            return bool(event) and all(is_event(e) for e in event)
        return is_event(event)

    def units(self, event: Any) -> list[Unit]:
        """One unit per event, named by its `id`; the pairs are read from its data."""
        events = event if isinstance(event, list) else [event]
        return [_event_unit(e, parse_event) for e in events]


def _event_unit(event: dict[str, Any], parse: Callable[[Any], ParsedPayload]) -> Unit:
    ident = event.get("id")
    name = ident if isinstance(ident, str) and ident else None
    return Unit(id=name, body=event, parse=parse, ref=name)


def parse_event(event: Any) -> ParsedPayload:
    """Check a structured event's attributes with the SDK, then read the pairs in its data."""
    problem = attribute_errors(event)
    if problem is not None:
        return _invalid_event(event, problem)
    return parse_event_data(event)


def attribute_errors(event: Any) -> str | None:
    """What is wrong with a structured event's attributes, or None when the SDK accepts them."""
    if not isinstance(event, dict):
        return "a CloudEvent must be a JSON object"
    # JSON null is an unset attribute (the JSON format's type mapping), as in the spec's samples.
    attributes = {k: v for k, v in event.items() if k not in _DATA and v is not None}
    missing = [name for name in REQUIRED if name not in attributes]
    if missing:
        return f"the CloudEvent lacks required attributes: {', '.join(missing)}"
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    try:
        # The SDK's own reader for the JSON format: it parses `time`, then CloudEvent (v1.0
        # only) validates every attribute. The data is left out: it is read by this module.
        JSONFormat().read(CloudEvent, json.dumps(attributes))
    except (BaseCloudEventException, ValueError, TypeError, OverflowError) as exc:
        return _sdk_error(exc)
    return None


def _sdk_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)  # CloudEventValidationError: {attribute: [errors]}
    if isinstance(errors, dict) and errors:
        parts = [f"{name}: {'; '.join(str(e) for e in errs)}" for name, errs in errors.items()]
        text = "invalid CloudEvent attributes: " + ", ".join(parts)
    else:  # the SDK parses one attribute itself before validating them all: `time`
        text = f"invalid CloudEvent attributes: time: not an RFC 3339 timestamp ({exc})"
    return redaction.current().cut(text, DETAIL_LIMIT)


def parse_event_data(event: dict[str, Any]) -> ParsedPayload:
    """Read the pairs in an event's `data` (JSON value or JSON text) or `data_base64`."""
    data = event.get("data")
    data_base64 = event.get("data_base64")
    if data is not None and data_base64 is not None:
        return _invalid_event(event, "the CloudEvent carries both data and data_base64")
    if data is None and data_base64 is None:
        return _invalid_event(event, "the CloudEvent carries no data")
    content_type = event.get("datacontenttype")
    if not is_json_media(content_type):
        raw = data if data is not None else data_base64
        return _invalid_text(raw, f"the data is {content_type!r}, not JSON")
    if data_base64 is not None:
        if not isinstance(data_base64, str):
            return _invalid_event(event, "data_base64 is not a string")
        try:
            decoded = base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError):
            return _invalid_text(data_base64, "data_base64 is not base64")
        return parse_text(decoded)
    if isinstance(data, str):
        return parse_text(data)
    return parse_payload(data)


def is_json_media(content_type: Any) -> bool:
    """True for a JSON media type, or none (the JSON format's default is application/json)."""
    if content_type is None:
        return True
    if not isinstance(content_type, str):
        return False
    return bool(_JSON_MEDIA.fullmatch(content_type.split(";", 1)[0].strip()))


def _invalid_event(event: Any, detail: str) -> ParsedPayload:
    """An invalid result keeping the whole event (its attributes say where it came from)."""
    return _invalid_text(event, detail)


def _invalid_text(raw: Any, detail: str) -> ParsedPayload:
    """An invalid result keeping `raw`: text as it came, anything else as JSON."""
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = json.dumps(raw, ensure_ascii=False, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(raw)
    result = Result(Outcome.INVALID, raw=truncate_raw(text), detail=detail)
    return ParsedPayload(invalid=[result])


def http_units(request: HttpRequest) -> list[Unit] | None:
    """The units of a webhook request carrying CloudEvents, or None when it carries none.

    Structured mode (`application/cloudevents+json`) is one event, batched mode
    (`application/cloudevents-batch+json`) an array of them, binary mode (`ce-` headers) one
    event whose data is the body. A malformed CloudEvent raises RejectedEvent(400); data that
    names no pairs (absent, XML, not JSON) is an `invalid` result of its unit.
    """
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media == STRUCTURED_MEDIA_TYPE:
        event = _json_body(request, "structured-mode CloudEvent")
        return [_event_unit(_check(event, "the structured-mode body"), parse_event_data)]
    if media == BATCH_MEDIA_TYPE:
        events = _json_body(request, "CloudEvents batch")
        if not isinstance(events, list):
            raise RejectedEvent(400, "a CloudEvents batch must be a JSON array of events")
        if not events:
            raise RejectedEvent(400, "the CloudEvents batch is empty: it names no pairs")
        checked = [_check(e, f"event {i} of the batch") for i, e in enumerate(events)]
        return [_event_unit(event, parse_event_data) for event in checked]
    if media.startswith(_CLOUDEVENTS_MEDIA):
        raise RejectedEvent(400, _cut(f"unsupported CloudEvents format {media!r}: send JSON"))
    headers = {str(k).lower(): v for k, v in request.headers.items()}
    if any(name in headers for name in _BINARY_HEADERS):
        return [_binary_unit(headers, request.body)]
    return None


def _json_body(request: HttpRequest, what: str) -> Any:
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, ValueError) else "it nests too deeply"
        raise RejectedEvent(400, _cut(f"the {what} is not JSON: {reason}")) from None


def _check(event: Any, where: str) -> dict[str, Any]:
    """Return the event when the SDK accepts its attributes; else raise RejectedEvent(400)."""
    if not isinstance(event, dict) or not is_event(event):
        raise RejectedEvent(400, f"{where} is not a CloudEvent (an object with 'specversion')")
    problem = attribute_errors(event)
    if problem is not None:
        raise RejectedEvent(400, _cut(f"{where}: {problem}"))
    return event


def _binary_unit(headers: dict[str, str], body: bytes) -> Unit:
    missing = [name for name in _BINARY_HEADERS if not headers.get(name)]
    if missing:
        raise RejectedEvent(
            400, f"a binary-mode CloudEvent lacks the headers: {', '.join(sorted(missing))}"
        )
    from cloudevents.core.bindings.http import HTTPMessage, from_binary
    from cloudevents.core.exceptions import BaseCloudEventException
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    # Only the attributes go through the SDK (`ce-` headers, Content-Type as datacontenttype);
    # the body is read once, below, by the parser that keeps unreadable text for a dead letter.
    wanted = {k: v for k, v in headers.items() if k.startswith("ce-") or k == "content-type"}
    try:
        event = from_binary(HTTPMessage(wanted, b""), JSONFormat(), CloudEvent)
    except (BaseCloudEventException, ValueError, TypeError, OverflowError) as exc:
        raise RejectedEvent(400, _cut(f"binary-mode CloudEvent: {_sdk_error(exc)}")) from None
    ident = event.get_id()
    content_type = event.get_datacontenttype()
    return Unit(id=ident, body=body, parse=_binary_parser(content_type), ref=ident)


def _binary_parser(content_type: str | None) -> Callable[[Any], ParsedPayload]:
    def parse(body: Any) -> ParsedPayload:
        if not body:
            return _invalid_text("", "the CloudEvent carries no data (the body is empty)")
        if not is_json_media(content_type):
            text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
            return _invalid_text(text, f"the data is {content_type!r}, not JSON")
        return parse_text(body)

    return parse


def _cut(text: str) -> str:
    return redaction.current().cut(text, DETAIL_LIMIT)
