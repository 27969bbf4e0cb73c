"""Fan-out (issue 10 §2): a cleanup's matches sent as work items, one message per server.

A selector with `"fan_out": "<url>"` lists and matches as usual; then, instead of deleting,
every matched server becomes one SPEC §3 payload (`{"project_id", "server_id", "keys"}`)
sent to that destination. The function's own queue trigger deletes them, in as many
invocations as the platform runs, with the queue's redelivery and redrive behind each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from handler.model import WorkItem

__all__ = ["FanOutResult", "FanOutTarget", "TargetFactory", "messages_of", "send_work"]


class FanOutTarget(Protocol):
    """Where work items go: a queue, a topic, an HTTP endpoint."""

    description: str

    async def send(self, bodies: Sequence[str], *, deadline: float | None) -> dict[int, str]:
        """Send every body; return those not sent after the retries (by index, with why)."""
        ...


#: Builds the target a selector's `fan_out` URL names; raises ValueError saying why it cannot.
TargetFactory = Callable[[str], FanOutTarget]


@dataclass(slots=True)
class FanOutResult:
    """What a fan-out sent: where, how many messages, and the servers whose work did not go."""

    to: str
    messages: int = 0
    sent: int = 0
    unsent: dict[str, str] = field(default_factory=dict)  # server id: why
    dry_run: bool = False


def messages_of(items: Sequence[WorkItem], default_project: str) -> list[tuple[str, str]]:
    """One (server id, JSON body) per server of `items`, all of its keys in one payload."""
    keys: dict[tuple[str, str], list[str]] = {}
    for item in items:
        keys.setdefault((item.project_id or default_project, item.server_id), []).append(item.key)
    return [
        (server, json.dumps({"project_id": project, "server_id": server, "keys": names}))
        for (project, server), names in keys.items()
    ]


async def send_work(
    target: FanOutTarget,
    items: Sequence[WorkItem],
    default_project: str,
    *,
    deadline: float | None,
    dry_run: bool,
) -> FanOutResult:
    """Send the items' work items to `target` (nothing in a dry run) and say what went."""
    messages = messages_of(items, default_project)
    result = FanOutResult(to=target.description, messages=len(messages), dry_run=dry_run)
    if dry_run or not messages:
        return result
    failed = await target.send([body for _, body in messages], deadline=deadline)
    result.unsent = {messages[index][0]: why for index, why in sorted(failed.items())}
    result.sent = len(messages) - len(result.unsent)
    return result
