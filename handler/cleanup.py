"""Cleanup selectors (issue 9): from a selector to the pairs to delete, by listing the servers.

Expanding lists the project's servers page after page, keeps those the selector names, and
matches their metadata keys against its globs. Protected keys are never returned. A listing
that does not finish (the deadline, an API error) or a match above `max_deletions` yields no
pair at all: deletes are idempotent, so the next run simply starts over.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from handler.ecs.client import ComputeApiError
from handler.ecs.nova import ServerInfo
from handler.fanout import FanOutResult
from handler.model import KEY_PATTERN, UUID_TEXT, CleanupSelector, WorkItem
from handler.outcomes import Outcome, Result
from handler.plan import Policy

__all__ = ["LIST_PAGE_SIZE", "CleanupPlan", "CleanupStats", "ServerLister", "expand"]

_log = structlog.get_logger("handler.cleanup")

#: The page size asked of the listing (the API may clamp it: the links are followed anyway).
LIST_PAGE_SIZE = 1000
#: Keys matched between two yields to the loop (a key against many globs costs ~100 µs).
_KEYS_PER_YIELD = 32


class ServerLister(Protocol):
    """What lists a project's servers (handler.ecs.client.EcsClient)."""

    def list_servers(
        self,
        project_id: str,
        *,
        page_size: int = ...,
        deadline: float | None = ...,
        on_page: Callable[[int], None] | None = ...,
    ) -> AsyncIterator[ServerInfo]:
        """Yield every server of the project, telling `on_page` of each page read."""
        ...


@dataclass(slots=True)
class CleanupStats:
    """How far a selector's expansion got: what was listed, matched, skipped and why it stopped."""

    servers_scanned: int = 0
    list_pages: int = 0
    pairs_matched: int = 0
    protected_skipped: int = 0
    #: Matched keys no payload could name (empty, too long, control characters) or on a server
    #: whose id is not a UUID: never sent.
    invalid_skipped: int = 0
    capped: bool = False
    stopped: str | None = None
    #: What a `fan_out` sent instead of deleting (None: no fan-out).
    fan_out: FanOutResult | None = None

    def as_dict(self) -> dict[str, Any]:
        """The summary's `cleanup` object."""
        return {
            "servers_scanned": self.servers_scanned,
            "list_pages": self.list_pages,
            "pairs_matched": self.pairs_matched,
            "protected_skipped": self.protected_skipped,
            "invalid_skipped": self.invalid_skipped,
            "capped": self.capped,
            "stopped": self.stopped,
            **({"fan_out": _fan_out_dict(self.fan_out)} if self.fan_out is not None else {}),
        }

    def add(self, other: CleanupStats) -> None:
        """Add another unit's figures to these (the first reason to stop is kept)."""
        self.servers_scanned += other.servers_scanned
        self.list_pages += other.list_pages
        self.pairs_matched += other.pairs_matched
        self.protected_skipped += other.protected_skipped
        self.invalid_skipped += other.invalid_skipped
        self.capped = self.capped or other.capped
        self.stopped = self.stopped or other.stopped
        mine, theirs = self.fan_out, other.fan_out
        if mine is None:
            self.fan_out = theirs
        elif theirs is not None:
            mine.messages += theirs.messages
            mine.sent += theirs.sent
            mine.unsent.update(theirs.unsent)


def _fan_out_dict(result: FanOutResult) -> dict[str, Any]:
    return {
        "to": result.to,
        "dry_run": result.dry_run,
        "messages": result.messages,
        "sent": result.sent,
        "unsent_servers": sorted(result.unsent),
    }


@dataclass(slots=True)
class CleanupPlan:
    """What a selector expanded to: work items for the usual plan, results decided already."""

    items: list[WorkItem] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    stats: CleanupStats = field(default_factory=CleanupStats)


def _wanted(selector: CleanupSelector) -> Callable[[ServerInfo], bool]:
    """The selector's server filter: its ids, name prefix and vm states."""
    ids = None if selector.servers == "all" else {str(u) for u in selector.servers}
    states = None if selector.vm_states is None else {s.lower() for s in selector.vm_states}
    prefix = selector.name_prefix

    def wanted(server: ServerInfo) -> bool:
        if ids is not None and server.id.lower() not in ids:
            return False
        if prefix is not None and not server.name.startswith(prefix):
            return False
        return states is None or (server.vm_state or "").lower() in states

    return wanted


async def expand(
    selector: CleanupSelector,
    lister: ServerLister,
    policy: Policy,
    deadline: float | None,
    *,
    on_page: Callable[[int], None] | None = None,
) -> CleanupPlan:
    """List the selector's servers and return the matching pairs as work items; never raises
    for the API or the deadline (the plan then says where it stopped, and holds no item).

    `on_page`, if given, is told each listing page's server count as it is read (progress).
    """
    plan = CleanupPlan()
    stats = plan.stats
    project = selector.project_id or policy.default_project
    if not policy.project_allowed(project):
        detail = f"project {project} is not in ALLOWED_PROJECT_IDS"
        plan.results.append(Result(Outcome.PROJECT_NOT_ALLOWED, detail=detail))
        return plan
    matches = re.compile("|".join(fnmatch.translate(glob) for glob in selector.key_patterns))
    wanted = _wanted(selector)
    dry_run = selector.dry_run or policy.dry_run
    items: list[WorkItem] = []
    # A server a listing shows twice (a page boundary moving under it) counts once, in every
    # figure; past the cap nothing more is kept, only counted: "capped" must not need every
    # match in memory (the ids seen grow with the servers, not with their keys).
    seen: set[str] = set()
    valid_key = re.compile(KEY_PATTERN).match
    keys_since_yield = 0

    def page_read(servers: int) -> None:
        stats.list_pages += 1
        if on_page is not None:
            on_page(servers)

    try:
        async with asyncio.timeout_at(deadline):
            async for server in lister.list_servers(
                project, page_size=LIST_PAGE_SIZE, deadline=deadline, on_page=page_read
            ):
                server_id = server.id.lower()
                if server_id in seen:
                    continue
                seen.add(server_id)
                stats.servers_scanned += 1
                if not wanted(server):
                    continue
                usable_id = UUID_TEXT.fullmatch(server_id) is not None
                for key in server.metadata:
                    keys_since_yield += 1
                    if keys_since_yield >= _KEYS_PER_YIELD:
                        # Matching is CPU work: let the deadline (and other invocations) in.
                        keys_since_yield = 0
                        await asyncio.sleep(0)
                    if not matches.match(key):
                        continue
                    if policy.is_protected(key):
                        stats.protected_skipped += 1
                        continue
                    if not usable_id or not valid_key(key):
                        stats.invalid_skipped += 1
                        continue
                    stats.pairs_matched += 1
                    if stats.pairs_matched <= selector.max_deletions:
                        items.append(WorkItem(project, server.id, key, dry_run))
                    elif items:
                        items = []  # capped: from now on only count
    except (ComputeApiError, TimeoutError) as exc:
        why = str(exc) if isinstance(exc, ComputeApiError) else "the invocation's time ran out"
        stats.stopped = f"the server listing stopped: {why}; nothing was deleted"
        _log.warning("cleanup stopped", project_id=project, **stats.as_dict())
        return plan
    if stats.pairs_matched > selector.max_deletions:
        stats.capped = True
        _log.warning(
            "cleanup capped",
            project_id=project,
            max_deletions=selector.max_deletions,
            detail="more pairs matched than max_deletions: nothing was deleted",
            **stats.as_dict(),
        )
        return plan
    plan.items = items
    return plan
