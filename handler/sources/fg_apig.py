"""Huawei FunctionGraph APIG triggers: answered EXACTLY as APIG expects, or the caller gets 500."""

from __future__ import annotations

from typing import Any

from handler.sources.base import HttpAnswer, HttpRequest
from handler.sources.webhook import WebhookSource, header_map, json_body, request_of


def _context(event: Any) -> dict[str, Any]:
    context = event.get("requestContext") if isinstance(event, dict) else None
    return context if isinstance(context, dict) else {}


class FgApigSource(WebhookSource):
    """An APIG (API Gateway) trigger event: `requestContext` with `apiId`, no AWS-only field."""

    kind = "fg-apig"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`httpMethod` and a `requestContext` naming `apiId` and `requestId`, without the
        fields that mark AWS's shapes (`resource`, `version`, `elb`, `http`)."""
        context = _context(event)
        return (
            isinstance(event, dict)
            and "httpMethod" in event
            and "apiId" in context
            and "requestId" in context
            and not {"resource", "version"} & set(event)
            and not {"elb", "http"} & set(context)
        )

    def request(self, event: Any) -> HttpRequest:
        """Method, path, headers and body (base64 when `isBase64Encoded`)."""
        return request_of(event, event.get("httpMethod"), event.get("path"))

    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """`requestContext.requestId`."""
        value = _context(event).get("requestId")
        return str(value) if value not in (None, "") else None

    def render(self, answer: HttpAnswer) -> dict[str, Any]:
        """Exactly `statusCode` (int), `headers` (map), `body` (string), `isBase64Encoded`."""
        return {
            "statusCode": int(answer.status),
            "headers": header_map(answer),
            "body": json_body(answer),
            "isBase64Encoded": False,
        }
