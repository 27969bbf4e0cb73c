"""Reading ECS responses into outcomes, retries and Retry-After waits."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from handler.ecs.nova import classify_delete, classify_probe
from handler.ecs.reply import MAX_RETRY_AFTER_S, Reply, parse_retry_after
from handler.outcomes import Outcome

SERVER = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
KEY_MISSING = {"itemNotFound": {"code": 404, "message": "Metadata item was not found"}}
SERVER_MISSING = {
    "itemNotFound": {"code": 404, "message": f"Instance {SERVER} could not be found."}
}
HUAWEI_SERVER_MISSING = {"error": {"code": "Ecs.0114", "message": "The ECS does not exist."}}
THROTTLED = {
    "error_msg": "The throttling threshold has been reached: policy user over ratelimit",
    "error_code": "APIGW.0308",
    "request_id": "abc",
}


def _response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("DELETE", f"https://ecs.example.com/v2.1/p/servers/{SERVER}/metadata/k")
    if body is None:
        content = b""
    elif isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {}, request=request)


@pytest.mark.parametrize("status", [200, 204])
def test_success_is_deleted(status: int) -> None:
    reply = classify_delete(_response(status, headers={"X-Openstack-Request-Id": "req-1"}))
    assert reply.outcome is Outcome.DELETED
    assert reply.retry is False
    assert reply.status == status
    assert reply.request_id == "req-1"


def test_request_id_from_compute_header() -> None:
    reply = classify_delete(_response(204, headers={"X-Compute-Request-Id": "req-c"}))
    assert reply.request_id == "req-c"


def test_404_key_missing_is_absent() -> None:
    reply = classify_delete(_response(404, KEY_MISSING))
    assert reply.outcome is Outcome.ABSENT
    assert reply.retry is False
    assert reply.status == 404
    assert reply.detail is not None
    assert "Metadata item was not found" in reply.detail


def test_404_instance_missing_is_server_not_found() -> None:
    reply = classify_delete(_response(404, SERVER_MISSING))
    assert reply.outcome is Outcome.SERVER_NOT_FOUND
    assert reply.detail == f"Instance {SERVER} could not be found."


def test_404_huawei_ecs_0114_is_server_not_found() -> None:
    reply = classify_delete(_response(404, HUAWEI_SERVER_MISSING))
    assert reply.outcome is Outcome.SERVER_NOT_FOUND
    assert reply.detail is not None
    assert "Ecs.0114" in reply.detail


def test_404_huawei_error_code_form_is_server_not_found() -> None:
    body = {"error_code": "Ecs.0114", "error_msg": "The ECS does not exist."}
    reply = classify_delete(_response(404, body))
    assert reply.outcome is Outcome.SERVER_NOT_FOUND


@pytest.mark.parametrize(
    "body",
    [
        None,
        "Not Found",
        "<html><body>404 Not Found</body></html>",
        {"itemNotFound": {"code": 404, "message": "The resource could not be located."}},
        {
            "error_code": "APIG.0101",
            "error_msg": "The API does not exist or has not been published",
        },
    ],
)
def test_ambiguous_404_needs_a_probe(body: Any) -> None:
    reply = classify_delete(_response(404, body))
    assert reply.outcome is None
    assert reply.retry is False
    assert reply.status == 404


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_forbidden(status: int) -> None:
    reply = classify_delete(_response(status, {"error": {"code": "x", "message": "denied"}}))
    assert reply.outcome is Outcome.FORBIDDEN
    assert reply.retry is False


def test_409_retries_as_conflict() -> None:
    body = {"conflictingRequest": {"code": 409, "message": "Instance is locked"}}
    reply = classify_delete(_response(409, body))
    assert reply.retry is True
    assert reply.outcome is Outcome.CONFLICT
    assert reply.detail == "Instance is locked"


def test_429_throttled_retries_with_retry_after() -> None:
    reply = classify_delete(_response(429, THROTTLED, {"Retry-After": "3"}))
    assert reply.retry is True
    assert reply.outcome is Outcome.RETRIES_EXHAUSTED
    assert reply.retry_after == 3.0
    assert reply.detail is not None
    assert "APIGW.0308" in reply.detail


def test_429_without_retry_after_still_retries() -> None:
    reply = classify_delete(_response(429, THROTTLED))
    assert reply.retry is True
    assert reply.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_retry(status: int) -> None:
    reply = classify_delete(_response(status, "upstream trouble"))
    assert reply.retry is True
    assert reply.outcome is Outcome.RETRIES_EXHAUSTED
    assert reply.detail == "upstream trouble"


def test_413_with_retry_after_retries() -> None:
    reply = classify_delete(_response(413, "slow down", {"Retry-After": "2"}))
    assert reply.retry is True
    assert reply.outcome is Outcome.RETRIES_EXHAUSTED
    assert reply.retry_after == 2.0


def test_413_without_retry_after_is_rejected() -> None:
    reply = classify_delete(_response(413, "too large"))
    assert reply.retry is False
    assert reply.outcome is Outcome.REJECTED


@pytest.mark.parametrize("status", [400, 405])
def test_other_client_errors_are_rejected(status: int) -> None:
    reply = classify_delete(_response(status, {"badRequest": {"code": 400, "message": "nope"}}))
    assert reply.outcome is Outcome.REJECTED
    assert reply.retry is False
    assert reply.status == status
    assert reply.detail == "nope"


def test_long_detail_is_cut() -> None:
    reply = classify_delete(_response(400, "x" * 5000))
    assert reply.detail is not None
    assert 0 < len(reply.detail) <= 512


# --- Retry-After -------------------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_missing_is_none() -> None:
    assert parse_retry_after(None) is None


def test_retry_after_http_date() -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:12 GMT", now=now) == 12.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0


def test_retry_after_http_date_far_ahead_is_clamped() -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 09:00:00 GMT", now=now) == MAX_RETRY_AFTER_S


def test_retry_after_clamped_to_30_seconds() -> None:
    assert MAX_RETRY_AFTER_S == 30.0
    assert parse_retry_after("31") == 30.0
    assert parse_retry_after("86400") == 30.0
    assert parse_retry_after("30") == 30.0


def test_retry_after_negative_is_zero() -> None:
    assert parse_retry_after("-5") == 0.0


@pytest.mark.parametrize("value", ["soon", "", "nan", "12 seconds", "Wed, 99 Foo 2015"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_garbage_header_on_503_still_retries() -> None:
    reply = classify_delete(_response(503, None, {"Retry-After": "whenever"}))
    assert reply.retry is True
    assert reply.retry_after is None


# --- the GET probe of an ambiguous 404 ---------------------------------------------------------


def _first() -> Reply:
    reply = classify_delete(_response(404, "Not Found", {"X-Openstack-Request-Id": "req-first"}))
    assert reply.outcome is None
    return reply


def test_probe_200_means_absent() -> None:
    reply = classify_probe(_response(200, {"metadata": {"other": "v"}}), _first(), "lease-owner")
    assert reply.outcome is Outcome.ABSENT
    assert reply.retry is False
    assert reply.status == 404
    assert reply.request_id == "req-first"


def test_probe_404_means_server_not_found() -> None:
    reply = classify_probe(_response(404, "Not Found"), _first(), "lease-owner")
    assert reply.outcome is Outcome.SERVER_NOT_FOUND
    assert reply.retry is False


def test_probe_503_retries() -> None:
    reply = classify_probe(_response(503, "busy", {"Retry-After": "1"}), _first(), "lease-owner")
    assert reply.retry is True
    assert reply.status == 503
    assert reply.retry_after == 1.0


def test_probe_400_is_rejected() -> None:
    reply = classify_probe(_response(400, "bad"), _first(), "lease-owner")
    assert reply.outcome is Outcome.REJECTED
    assert reply.retry is False


def test_probe_403_is_forbidden() -> None:
    reply = classify_probe(_response(403, "denied"), _first(), "lease-owner")
    assert reply.outcome is Outcome.FORBIDDEN


def test_probe_200_listing_the_key_is_not_absent() -> None:
    """A 404 from something in between (a gateway) must not settle a key that is still there."""
    reply = classify_probe(
        _response(200, {"metadata": {"lease-owner": "x"}}), _first(), "lease-owner"
    )
    assert reply.outcome is Outcome.REJECTED
    assert "still listed" in (reply.detail or "")


def test_probe_200_that_cannot_be_read_is_not_absent() -> None:
    reply = classify_probe(_response(200, "<html>ok</html>"), _first(), "lease-owner")
    assert reply.outcome is Outcome.REJECTED


@pytest.mark.parametrize("status", [501, 505, 599])
def test_every_5xx_is_retried(status: int) -> None:
    reply = classify_delete(_response(status, "x"))
    assert reply.retry and reply.outcome is Outcome.RETRIES_EXHAUSTED


def test_an_error_body_nested_too_deeply_is_still_classified() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    reply = classify_delete(httpx.Response(503, content=deep))
    assert reply.retry and reply.detail
