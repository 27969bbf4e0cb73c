"""Application Load Balancer targets: single- or multi-value headers, answered in the same form."""

from __future__ import annotations

import http
from typing import Any

from handler.sources.base import HttpAnswer, HttpRequest, SourceSettings
from handler.sources.webhook import WebhookSource, header_map, json_body, request_of


def status_description(status: int) -> str:
    """ALB's `statusDescription`: the code and its reason phrase (`200 OK`)."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


class AlbSource(WebhookSource):
    """An ALB request (`requestContext.elb`); the trace header names it when no webhook-id does."""

    kind = "alb"

    def __init__(self, event: Any = None, settings: SourceSettings | None = None) -> None:
        """Note whether the target group has multi-value headers on (the answer must match)."""
        super().__init__(event, settings)
        self.multi_value = isinstance(event, dict) and "multiValueHeaders" in event

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`requestContext.elb`."""
        context = event.get("requestContext") if isinstance(event, dict) else None
        return isinstance(context, dict) and isinstance(context.get("elb"), dict)

    def request(self, event: Any) -> HttpRequest:
        """Method, path, headers (lower case) and body."""
        return request_of(event, event.get("httpMethod"), event.get("path"))

    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """ALB has no request id: the `X-Amzn-Trace-Id` header it adds."""
        return request.header("x-amzn-trace-id")

    def render(self, answer: HttpAnswer) -> dict[str, Any]:
        """`statusCode`, `statusDescription`, `headers` or `multiValueHeaders`, `body`, …."""
        headers = header_map(answer)
        response: dict[str, Any] = {
            "statusCode": answer.status,
            "statusDescription": status_description(answer.status),
        }
        if self.multi_value:
            response["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        else:
            response["headers"] = headers
        response["body"] = json_body(answer)
        response["isBase64Encoded"] = False
        return response
