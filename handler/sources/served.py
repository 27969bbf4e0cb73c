"""Requests served by the function's own HTTP server (`handler.asgi`): a container's door.

The ASGI adapter hands the engine the request itself (an `HttpRequest`), not a platform's event,
and writes the `HttpAnswer` it gets back; everything else is what every webhook door does.
"""

from __future__ import annotations

from typing import Any

from handler.sources.base import HttpAnswer, HttpRequest
from handler.sources.webhook import WebhookSource

#: The longest `X-Request-Id` kept as the request's correlation id (longer ones are ignored).
MAX_REQUEST_ID = 200


class ServedSource(WebhookSource):
    """An HTTP request received by `ecs-metadata-janitor serve` (or any ASGI server)."""

    kind = "http"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """The event is an `HttpRequest` (no platform builds one; the ASGI adapter does)."""
        return isinstance(event, HttpRequest)

    def request(self, event: Any) -> HttpRequest:
        """The request as received."""
        request: HttpRequest = event
        return request

    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """`X-Request-Id` when a proxy in front set a printable one (Knative's queue-proxy does)."""
        value = request.header("x-request-id")
        if value and len(value) <= MAX_REQUEST_ID and value.isprintable():
            return value
        return None

    def render(self, answer: HttpAnswer) -> HttpAnswer:
        """The answer itself: the ASGI adapter writes it."""
        return answer
