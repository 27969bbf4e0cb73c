"""Response bodies of Nova, Huawei's native API and the API gateway, as aiohttp responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

REQUEST_ID_HEADER = "X-Openstack-Request-Id"

NOVA_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
    500: "computeFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}
"""The top-level key of Nova's error body for each status."""

NOVA_500_MESSAGE = (
    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ "
    "and attach the Nova API log if possible."
)
AUTH_FAILED_MESSAGE = "Incorrect IAM authentication information: verify aksk signature fail"
ECS_SERVER_NOT_FOUND = "Ecs.0114"
ECS_BAD_REQUEST = "Ecs.0005"


def json_response(
    status: int, payload: Any, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response carrying the request id header."""
    all_headers = {REQUEST_ID_HEADER: request_id, "Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=json.dumps(payload).encode(), headers=all_headers)


def empty_response(status: int, request_id: str) -> web.Response:
    """A response without a body (204)."""
    return web.Response(status=status, headers={REQUEST_ID_HEADER: request_id})


def nova_error(status: int, message: str, request_id: str) -> web.Response:
    """Nova's error body: `{"<faultName>": {"code": status, "message": ...}}`."""
    name = NOVA_FAULT_NAMES.get(status, "computeFault")
    return json_response(status, {name: {"code": status, "message": message}}, request_id)


def ecs_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """Huawei's native error body: `{"error": {"code": "Ecs.xxxx", "message": ...}}`."""
    return json_response(status, {"error": {"code": code, "message": message}}, request_id)


def gateway_error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The API gateway's error body: `{"error_msg", "error_code", "request_id"}`."""
    body = {"error_msg": message, "error_code": code, "request_id": gateway_request_id(request_id)}
    return json_response(status, body, request_id, headers)


def gateway_request_id(request_id: str) -> str:
    """The gateway's form of a request id: 32 hex digits, derived from `req-<uuid>`."""
    return request_id.removeprefix("req-").replace("-", "")


def unauthorized(request_id: str) -> web.Response:
    """The gateway's 401 for any authentication failure."""
    return gateway_error(401, "APIGW.0301", AUTH_FAILED_MESSAGE, request_id)


def throttled(limit: int, request_id: str, retry_after: str | None) -> web.Response:
    """The gateway's 429 (APIGW.0308), with Retry-After when given."""
    message = (
        "The throttling threshold has been reached: policy user over ratelimit,"
        f"limit:{limit},time:1 second"
    )
    headers = None if retry_after is None else {"Retry-After": retry_after}
    return gateway_error(429, "APIGW.0308", message, request_id, headers)


def injected_error(status: int, request_id: str) -> web.Response:
    """The body of an injected 5xx: Nova's for 500/503, the gateway's for 502/504."""
    if status == 502:
        return gateway_error(502, "APIGW.0202", "Backend unavailable", request_id)
    if status == 504:
        return gateway_error(504, "APIGW.0203", "Backend timeout", request_id)
    if status == 503:
        return nova_error(503, "Service Unavailable", request_id)
    return nova_error(500, NOVA_500_MESSAGE, request_id)
