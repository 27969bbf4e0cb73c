"""Reading any compute API's response: a Reply (outcome, retry, Retry-After, detail, request id)."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from handler import redaction
from handler.ecs.transport import ENCODING_HEADER
from handler.outcomes import Outcome

#: Statuses worth another attempt: a locked or transitional server, throttling, a failing gateway.
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
#: The longest a server's Retry-After is honoured for, in seconds.
MAX_RETRY_AFTER_S = 30.0
#: The longest detail kept from an error body, cut after its secrets are redacted.
DETAIL_LIMIT = 512


@dataclass(frozen=True, slots=True)
class Reply:
    """One response, read: its outcome (None for "ask again"), whether to retry, and details."""

    status: int
    outcome: Outcome | None
    retry: bool = False
    retry_after: float | None = None
    detail: str | None = None
    request_id: str | None = None


def http_date(value: str) -> dt.datetime | None:
    """An HTTP date (`Date`, `Retry-After`) as an aware datetime, or None if it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a huge year overflows
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Return Retry-After in seconds (from seconds or an HTTP date), clamped to 0..30, or None."""
    if value is None:
        return None
    value = value.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        when = http_date(value)
        if when is None:
            return None
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _short(text: str) -> str:
    return redaction.current().cut(text, DETAIL_LIMIT, note=False)


def detail_of(response: httpx.Response) -> str | None:
    """The detail of an error reply: its message, or what it is when it cannot be read."""
    encoding = response.headers.get(ENCODING_HEADER)  # the transport never decompresses
    if encoding:
        return f"a {encoding}-encoded body of {len(response.content)} bytes (not decoded)"
    return message_of(response.content)


def message_of(body: bytes) -> str | None:
    """The error message of a response body (OpenStack or Huawei shape), redacted and cut."""
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", errors="replace").strip()
        return _short(text) or None
    if isinstance(data, dict):
        if isinstance(data.get("error_msg"), str):
            code = data.get("error_code")
            error_msg: str = data["error_msg"]
            return _short(f"{code}: {error_msg}" if code else error_msg)
        for value in data.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                code = value.get("code")
                message: str = value["message"]
                if isinstance(code, str) and code not in message:
                    message = f"{code}: {message}"
                return _short(message)
    try:
        return _short(json.dumps(data))
    except RecursionError:
        return "(a JSON body nested too deeply to show)"


def request_id_of(response: httpx.Response) -> str | None:
    """Return the cloud's request id of a response, from its headers."""
    for name in ("x-openstack-request-id", "x-compute-request-id", "x-request-id"):
        value: str | None = response.headers.get(name)
        if value:
            return value
    return None


def path_segment(value: str) -> str:
    """Percent-encode one path segment; `.` and `..` too, so no key is a dot segment."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")
