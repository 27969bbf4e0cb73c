"""When to try a DELETE again and how long to wait: stamina, with Retry-After and the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import structlog

from handler.ecs.classify import Reply

if TYPE_CHECKING:
    import stamina
    from stamina.instrumentation import RetryDetails

#: Exponential backoff with jitter between attempts (seconds).
WAIT_INITIAL_S = 0.2
WAIT_MAX_S = 5.0
WAIT_JITTER_S = 0.5


class RetryableReply(Exception):
    """A response worth another attempt (409, 429, 5xx), carried through stamina's loop."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


@dataclass(slots=True)
class RetryState:
    """One pair's attempts so far: how many, the last failure, and if the deadline stopped them."""

    deadline: float | None
    max_attempts: int = 1
    #: Attempts actually started (one that the deadline stopped before sending is not counted).
    tries: int = 0
    error: Exception | None = None
    stopped_for_deadline: bool = False


def _backoff_hook(state: RetryState) -> Callable[[Exception], bool | float]:
    def decide(exc: Exception) -> bool | float:
        if state.tries >= state.max_attempts:
            return False  # that was the last attempt: its own failure stands, whatever it asks
        if isinstance(exc, RetryableReply):
            wait = exc.reply.retry_after
            if wait is None:
                return True
            now = asyncio.get_running_loop().time()
            if state.deadline is not None and now + wait >= state.deadline:
                state.stopped_for_deadline = True
                return False
            return wait
        return isinstance(exc, httpx.TransportError)

    return decide


def attempts(max_attempts: int, state: RetryState) -> AsyncIterator[stamina.Attempt]:
    """Return stamina's attempts for one pair: transport errors and retryable replies retried."""
    # stamina (and tenacity) load on the first retry: a pair that succeeds first time, which
    # is nearly every pair, never needs them.
    import stamina

    install_retry_logging()
    return stamina.retry_context(
        on=_backoff_hook(state),
        attempts=max_attempts,
        timeout=None,
        wait_initial=WAIT_INITIAL_S,
        wait_max=WAIT_MAX_S,
        wait_jitter=WAIT_JITTER_S,
    ).__aiter__()


def _log_retry(details: RetryDetails) -> None:
    cause = details.caused_by
    reason = (
        f"HTTP {cause.reply.status}" if isinstance(cause, RetryableReply) else type(cause).__name__
    )
    structlog.get_logger("handler.ecs.retry").debug(
        "retry scheduled",
        retry_num=details.retry_num,
        wait_s=round(details.wait_for, 3),
        cause=reason,
    )


_installed = False


def install_retry_logging() -> None:
    """Replace stamina's default hooks, which log call arguments, with one that logs none."""
    global _installed
    if not _installed:
        from stamina.instrumentation import set_on_retry_hooks

        set_on_retry_hooks([_log_retry])
        _installed = True
