"""Amazon API Gateway: REST API (v1 proxy), HTTP API (v2) and Lambda Function URLs (v2 shape)."""

from __future__ import annotations

from typing import Any

from handler.sources.base import HttpAnswer, HttpRequest, SourceSettings
from handler.sources.webhook import WebhookSource, header_map, json_body, request_of


def _context(event: Any) -> dict[str, Any]:
    context = event.get("requestContext") if isinstance(event, dict) else None
    return context if isinstance(context, dict) else {}


def _request_id(event: Any) -> str | None:
    value = _context(event).get("requestId")
    return str(value) if value not in (None, "") else None


class ApiGatewayV1Source(WebhookSource):
    """A REST API proxy integration event; answered in its shape (multi-value when it was)."""

    kind = "apigw-v1"

    def __init__(self, event: Any = None, settings: SourceSettings | None = None) -> None:
        """Note whether the request came with multiValueHeaders (the answer then does too)."""
        super().__init__(event, settings)
        self.multi_value = isinstance(event, dict) and isinstance(
            event.get("multiValueHeaders"), dict
        )

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`requestContext` (not an ALB's), `httpMethod` and `resource`."""
        return (
            isinstance(event, dict)
            and bool(_context(event))
            and "elb" not in _context(event)
            and "httpMethod" in event
            and "resource" in event
        )

    def request(self, event: Any) -> HttpRequest:
        """Method, path, headers (the caller's case) and body."""
        return request_of(event, event.get("httpMethod"), event.get("path"))

    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """`requestContext.requestId`."""
        return _request_id(event)

    def render(self, answer: HttpAnswer) -> dict[str, Any]:
        """`statusCode`, `headers` (and `multiValueHeaders`), `body`, `isBase64Encoded`."""
        headers = header_map(answer)
        response: dict[str, Any] = {"statusCode": answer.status, "headers": headers}
        if self.multi_value:
            response["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        response["body"] = json_body(answer)
        response["isBase64Encoded"] = False
        return response


class ApiGatewayV2Source(WebhookSource):
    """An HTTP API (payload format 2.0) or Lambda Function URL event."""

    kind = "apigw-v2"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`version` "2.0" and `requestContext.http`."""
        return (
            isinstance(event, dict)
            and event.get("version") == "2.0"
            and isinstance(_context(event).get("http"), dict)
        )

    def request(self, event: Any) -> HttpRequest:
        """Method and path from `requestContext.http`, headers (lower case) and body."""
        http = _context(event)["http"]
        return request_of(event, http.get("method"), event.get("rawPath") or http.get("path"))

    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """`requestContext.requestId`."""
        return _request_id(event)

    def render(self, answer: HttpAnswer) -> dict[str, Any]:
        """`statusCode`, `headers`, `body`, `isBase64Encoded`."""
        return {
            "statusCode": answer.status,
            "headers": header_map(answer),
            "body": json_body(answer),
            "isBase64Encoded": False,
        }
