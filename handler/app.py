"""The deployed function's entry points; what they run on is built at the first invocation.

`import handler.app` stays light (the platform's init phase); the runtime — configuration,
event loop, HTTP pool, pydantic models, aiohttp — is built once, by the first invocation, and
kept for the life of the warm container. Platforms that snapshot the init phase (Lambda
SnapStart) can pay that at init instead by calling `warm_up()` at module level of a wrapper.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handler.runtime import (
        CredentialsUnavailableError,
        DeadLetterWriteError,
        Runtime,
        deadline_margin_s,
    )

__all__ = [
    "CredentialsUnavailableError",
    "DeadLetterWriteError",
    "Runtime",
    "current_runtime",
    "deadline_margin_s",
    "handler",
    "lambda_handler",
    "reset_runtime",
    "set_runtime",
    "warm_up",
]

_RUNTIME: Runtime | None = None
#: Held while the runtime is built: invocations arriving together on a cold process share one.
_BUILDING = threading.Lock()
_LAZY = frozenset(
    {"CredentialsUnavailableError", "DeadLetterWriteError", "Runtime", "deadline_margin_s"}
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from handler import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def warm_up() -> None:
    """Build the runtime and load the HTTP stack now; raises ConfigError on a bad config."""
    runtime = _runtime()
    from handler.ecs.transport import preload

    config = runtime.config
    # With OS_AUTH_URL alone the endpoint comes from the catalog; Keystone is called first.
    preload(config.endpoint or config.os_auth_url or "")


def _runtime() -> Runtime:
    global _RUNTIME
    runtime = _RUNTIME
    if runtime is not None:
        return runtime
    with _BUILDING:
        if _RUNTIME is None:
            from handler.runtime import Runtime

            _RUNTIME = Runtime.from_environment()
        return _RUNTIME


def current_runtime() -> Runtime:
    """The runtime invocations run on, built from the environment at the first call."""
    return _runtime()


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime built by hand (tests, the CLI), or None to build one from the env."""
    global _RUNTIME
    _RUNTIME = runtime


def reset_runtime() -> None:
    """Close and forget the runtime, so the next invocation reads the environment again."""
    global _RUNTIME
    with _BUILDING:
        runtime, _RUNTIME = _RUNTIME, None
    if runtime is not None:
        runtime.close()


# A process that exits after invocations closes its pool first: no "Unclosed client session".
atexit.register(reset_runtime)


def handler(event: Any, context: Any = None) -> Any:
    """The function's entry point for AWS Lambda and Huawei FunctionGraph."""
    return _runtime().invoke(event, context)


lambda_handler = handler
