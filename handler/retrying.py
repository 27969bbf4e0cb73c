"""Retries for every remote call (ECS, dead-letter sinks): stamina, clamped to the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    import stamina
    from stamina.instrumentation import RetryDetails


def time_left(deadline: float | None, cap: float) -> float:
    """Seconds until the loop time `deadline`, at most `cap` (and never below zero)."""
    if deadline is None:
        return cap
    return max(min(cap, deadline - asyncio.get_running_loop().time()), 0.0)


def attempts(
    on: Callable[[Exception], bool | float],
    *,
    max_attempts: int,
    deadline: float | None,
    wait_initial: float,
    wait_max: float,
    wait_jitter: float,
) -> AsyncIterator[stamina.Attempt]:
    """Return stamina's attempts, whose total time ends at the loop time `deadline` if given.

    stamina stops starting attempts once the time is up; the caller also wraps the loop in
    `asyncio.timeout_at(deadline)`, so neither a request nor a wait between two runs past it.
    """
    # stamina (and tenacity) load on the first retry: a call that succeeds first time, which
    # is nearly every call, never needs them.
    import stamina

    install_retry_logging()
    # stamina warns (on stderr) about a zero timeout; a moment is the same: one attempt.
    timeout = None if deadline is None else max(time_left(deadline, float("inf")), 0.001)
    return stamina.retry_context(
        on=on,
        attempts=max_attempts,
        timeout=timeout,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_jitter,
    ).__aiter__()


def _log_retry(details: RetryDetails) -> None:
    cause = details.caused_by
    structlog.get_logger("handler.retrying").debug(
        "retry scheduled",
        retry_num=details.retry_num,
        wait_s=round(details.wait_for, 3),
        cause=getattr(cause, "reason", None) or type(cause).__name__,
    )


_installed = False


def install_retry_logging() -> None:
    """Replace stamina's default hooks, which log call arguments, with one that logs none."""
    global _installed
    if not _installed:
        from stamina.instrumentation import set_on_retry_hooks

        set_on_retry_hooks([_log_retry])
        _installed = True
