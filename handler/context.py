"""The platform's invocation context, read alike from AWS Lambda and Huawei FunctionGraph."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handler.ecs.signing import Credentials


def _call(context: Any, name: str) -> Any:
    method = getattr(context, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:  # noqa: BLE001 - a platform accessor failing must not fail the invocation
        return None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # None, "soon", float("inf"), NaN
        return None


@dataclass(frozen=True, slots=True)
class Invocation:
    """What one invocation knows of itself: ids for the logs and the time it has left."""

    request_id: str
    function_name: str | None = None
    function_memory_size: int | None = None
    function_arn: str | None = None
    platform: str = "local"
    remaining_ms: Callable[[], int | None] | None = None

    def remaining_s(self) -> float | None:
        """Return the seconds left before the platform stops the invocation, if known."""
        if self.remaining_ms is None:
            return None
        value = self.remaining_ms()
        return None if value is None else value / 1000.0

    def log_fields(self) -> dict[str, Any]:
        """Return the Powertools context fields of this invocation."""
        return {
            "function_name": self.function_name,
            "function_memory_size": self.function_memory_size,
            "function_arn": self.function_arn,
            "function_request_id": self.request_id,
        }


def read_invocation(context: Any) -> Invocation:
    """Read a Lambda or FunctionGraph context object (an Invocation, or None) into an Invocation."""
    if isinstance(context, Invocation):  # built by an adapter that is its own platform (ASGI)
        return context
    if context is None:
        return Invocation(request_id=str(uuid.uuid4()))
    if hasattr(context, "aws_request_id"):
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return Invocation(
            request_id=_text(context.aws_request_id) or str(uuid.uuid4()),
            function_name=_text(getattr(context, "function_name", None)),
            function_memory_size=_int(getattr(context, "memory_limit_in_mb", None)),
            function_arn=_text(getattr(context, "invoked_function_arn", None)),
            platform="aws-lambda",
            remaining_ms=(lambda: _int(_call(context, "get_remaining_time_in_millis")))
            if callable(remaining)
            else None,
        )
    if hasattr(context, "getRequestID"):
        has_remaining = callable(getattr(context, "getRemainingTimeInMilliSeconds", None))
        return Invocation(
            request_id=_text(_call(context, "getRequestID")) or str(uuid.uuid4()),
            function_name=_text(_call(context, "getFunctionName")),
            function_memory_size=_int(_call(context, "getMemorySize")),
            function_arn=_text(_call(context, "getFunctionURN")),
            platform="functiongraph",
            remaining_ms=(lambda: _int(_call(context, "getRemainingTimeInMilliSeconds")))
            if has_remaining
            else None,
        )
    return Invocation(request_id=str(uuid.uuid4()), platform="unknown")


def functiongraph_credentials(context: Any) -> Credentials | None:
    """Return FunctionGraph's temporary credentials from the context (its agency), if any."""
    if context is None:
        return None
    ak = _text(_call(context, "getSecurityAccessKey"))
    sk = _text(_call(context, "getSecuritySecretKey"))
    if not ak or not sk:
        return None
    return Credentials(ak, sk, _text(_call(context, "getSecurityToken")))
