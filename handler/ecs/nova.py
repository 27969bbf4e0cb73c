"""What an ECS response means for a pair: an outcome, a retry, or a question for a follow-up GET."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from dataclasses import dataclass

import httpx

from handler.outcomes import Outcome

#: Statuses worth another attempt: a locked or transitional server, throttling, a failing gateway.
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
#: The longest a server's Retry-After is honoured for, in seconds.
MAX_RETRY_AFTER_S = 30.0
_DETAIL_LIMIT = 512

_KEY_MISSING = "metadata item was not found"
_SERVER_MISSING = ("could not be found", "ecs.0114")


@dataclass(frozen=True, slots=True)
class Reply:
    """One response, read: its outcome (None for "ask again"), whether to retry, and details."""

    status: int
    outcome: Outcome | None
    retry: bool = False
    retry_after: float | None = None
    detail: str | None = None
    request_id: str | None = None


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Return Retry-After in seconds (from seconds or an HTTP date), clamped to 0..30, or None."""
    if value is None:
        return None
    value = value.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _message_of(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        text = body.decode("utf-8", errors="replace").strip()
        return text[:_DETAIL_LIMIT] or None
    if isinstance(data, dict):
        if isinstance(data.get("error_msg"), str):
            code = data.get("error_code")
            error_msg: str = data["error_msg"]
            return (f"{code}: {error_msg}" if code else error_msg)[:_DETAIL_LIMIT]
        for value in data.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                code = value.get("code")
                message: str = value["message"]
                if isinstance(code, str) and code not in message:
                    message = f"{code}: {message}"
                return message[:_DETAIL_LIMIT]
    try:
        return json.dumps(data)[:_DETAIL_LIMIT]
    except RecursionError:
        return "(a JSON body nested too deeply to show)"


def request_id_of(response: httpx.Response) -> str | None:
    """Return the cloud's request id of a response, from its headers."""
    for name in ("x-openstack-request-id", "x-compute-request-id", "x-request-id"):
        value: str | None = response.headers.get(name)
        if value:
            return value
    return None


def classify_delete(response: httpx.Response) -> Reply:
    """Read the response to a metadata DELETE."""
    status = response.status_code
    detail = _message_of(response.content) if status >= 300 else None
    request_id = request_id_of(response)
    if 200 <= status < 300:
        return Reply(status, Outcome.DELETED, request_id=request_id)
    if status == 404:
        lowered = (detail or "").lower()
        if _KEY_MISSING in lowered:
            outcome: Outcome | None = Outcome.ABSENT
        elif any(marker in lowered for marker in _SERVER_MISSING):
            outcome = Outcome.SERVER_NOT_FOUND
        else:
            outcome = None
        return Reply(status, outcome, detail=detail, request_id=request_id)
    if status in (401, 403):
        return Reply(status, Outcome.FORBIDDEN, detail=detail, request_id=request_id)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in RETRYABLE_STATUSES or (status == 413 and retry_after is not None):
        outcome = Outcome.CONFLICT if status == 409 else Outcome.RETRIES_EXHAUSTED
        return Reply(status, outcome, True, retry_after, detail, request_id)
    if status >= 500:
        return Reply(status, Outcome.RETRIES_EXHAUSTED, True, retry_after, detail, request_id)
    return Reply(status, Outcome.REJECTED, detail=detail, request_id=request_id)


def classify_probe(response: httpx.Response, first: Reply, key: str) -> Reply:
    """Decide an ambiguous 404 from `GET …/metadata`: absent only if the key is not listed."""
    status = response.status_code
    if status == 200:
        try:
            listed = response.json().get("metadata")
        except (ValueError, AttributeError, RecursionError):
            listed = None
        if isinstance(listed, dict) and key not in listed:
            return Reply(
                first.status, Outcome.ABSENT, detail=first.detail, request_id=first.request_id
            )
        why = "is still listed" if isinstance(listed, dict) else "could not be checked"
        detail = f"DELETE answered 404 ({first.detail}) but the key {why} by GET …/metadata"
        return Reply(first.status, Outcome.REJECTED, detail=detail, request_id=first.request_id)
    if status == 404:
        return Reply(
            first.status, Outcome.SERVER_NOT_FOUND, detail=first.detail, request_id=first.request_id
        )
    probe = classify_delete(response)
    if probe.retry or probe.outcome is Outcome.FORBIDDEN:
        return probe
    return Reply(status, Outcome.REJECTED, detail=probe.detail, request_id=probe.request_id)
