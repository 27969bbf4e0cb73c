"""When to try a DELETE again and how long to wait: Retry-After, deadline, attempt budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from handler import retrying
from handler.ecs.reply import Reply

if TYPE_CHECKING:
    import stamina

#: Exponential backoff with jitter between attempts (seconds).
WAIT_INITIAL_S = 0.2
WAIT_MAX_S = 5.0
WAIT_JITTER_S = 0.5
#: The request extension that carries a pair's AttemptBudget down to the transport and the signer.
BUDGET_EXTENSION = "ecs_metadata_janitor.attempts"


class RetryableReply(Exception):
    """A response worth another attempt (409, 429, 5xx), carried through stamina's loop."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply
        self.reason = f"HTTP {reply.status}"


@dataclass(slots=True)
class AttemptBudget:
    """How many DELETEs of one pair have left the function, and how many may."""

    limit: int
    #: Requests handed to the transport (a 401 re-sign included); counted where they are sent.
    sent: int = 0

    @property
    def exhausted(self) -> bool:
        """True once `limit` DELETEs have been sent."""
        return self.sent >= self.limit


@dataclass(slots=True)
class RetryState:
    """One pair's attempts so far: what was sent, the last failure, and if the deadline stopped."""

    deadline: float | None
    max_attempts: int = 1
    budget: AttemptBudget = field(init=False)
    error: Exception | None = None
    stopped_for_deadline: bool = False

    def __post_init__(self) -> None:
        self.budget = AttemptBudget(self.max_attempts)

    @property
    def tries(self) -> int:
        """DELETEs sent so far for this pair."""
        return self.budget.sent


def _backoff_hook(state: RetryState) -> Callable[[Exception], bool | float]:
    def decide(exc: Exception) -> bool | float:
        if state.budget.exhausted:
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
    return retrying.attempts(
        _backoff_hook(state),
        max_attempts=max_attempts,
        deadline=state.deadline,
        wait_initial=WAIT_INITIAL_S,
        wait_max=WAIT_MAX_S,
        wait_jitter=WAIT_JITTER_S,
    )
