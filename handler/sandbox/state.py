"""The emulated cloud's in-memory state and the Nova metadata and listing operations on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from handler.sandbox.seed import CredentialsSeed, Seed

WRITABLE_VM_STATES = frozenset({"active", "stopped", "paused", "suspended"})
"""vm_states in which Nova lets metadata change."""

STATUS_BY_VM_STATE = {
    "active": "ACTIVE",
    "building": "BUILD",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
    "stopped": "SHUTOFF",
    "rescued": "RESCUE",
    "resized": "VERIFY_RESIZE",
    "soft_deleted": "SOFT_DELETED",
    "deleted": "DELETED",
    "error": "ERROR",
    "shelved": "SHELVED",
    "shelved_offloaded": "SHELVED_OFFLOADED",
}
"""Nova's API status for each vm_state."""

MAX_LIMIT = 1000
"""Nova's default `[api] max_limit`: the largest page a listing returns."""


class Problem(NamedTuple):
    """A refused operation: HTTP status, a machine-readable kind and Nova's message."""

    status: int
    kind: str
    message: str


def server_not_found(server_id: str) -> Problem:
    """Nova's 404 for a server that does not exist (or lives in another project)."""
    return Problem(404, "server_not_found", f"Instance {server_id} could not be found.")


KEY_NOT_FOUND = Problem(404, "key_not_found", "Metadata item was not found")


@dataclass(slots=True)
class Server:
    """One emulated server; `active_at`/`unlock_at` are monotonic deadlines of transient states."""

    id: str
    project_id: str
    name: str
    vm_state: str
    locked: bool
    metadata: dict[str, str]
    active_at: float | None
    unlock_at: float | None

    def settle(self, now: float) -> None:
        """Apply the transient state changes whose time has come."""
        if self.active_at is not None and now >= self.active_at:
            self.vm_state = "active"
            self.active_at = None
        if self.unlock_at is not None and now >= self.unlock_at:
            self.locked = False
            self.unlock_at = None

    def write_refusal(self, action: str) -> Problem | None:
        """Nova's 409 when the server is locked or in a vm_state that forbids `action`."""
        if self.locked:
            return Problem(409, "locked", f"Instance {self.id} is locked")
        if self.vm_state not in WRITABLE_VM_STATES:
            return Problem(
                409,
                "vm_state",
                f"Cannot '{action}' instance {self.id} while it is in vm_state {self.vm_state}",
            )
        return None


class Page(NamedTuple):
    """One page of a server listing."""

    servers: list[Server]
    total: int
    limit: int
    more: bool


class State:
    """All servers and credentials; only ever touched from the sandbox's event loop."""

    def __init__(self, seed: Seed, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.credentials: CredentialsSeed = seed.credentials
        self.project_id = seed.project_id
        self._transient = False
        self._servers: dict[str, Server] = {}
        now = clock()
        for entry in seed.servers:
            assert entry.project_id is not None  # filled in by Seed validation
            server = Server(
                id=entry.id,
                project_id=entry.project_id,
                name=entry.name,
                vm_state=entry.vm_state,
                locked=entry.locked,
                metadata=dict(entry.metadata),
                active_at=None if entry.active_after_s is None else now + entry.active_after_s,
                unlock_at=None if entry.unlock_after_s is None else now + entry.unlock_after_s,
            )
            self._transient = self._transient or entry.active_after_s is not None
            self._transient = self._transient or entry.unlock_after_s is not None
            self._servers[server.id] = server

    def find(self, project_id: str, server_id: str) -> Server | None:
        """The server with this id in this project (ids compare case-insensitively), or None."""
        server = self._servers.get(server_id) or self._servers.get(server_id.lower())
        if server is None or server.project_id != project_id:
            return None
        if self._transient:
            server.settle(self._clock())
        return server

    def delete_item(self, project_id: str, server_id: str, key: str) -> Problem | None:
        """Delete one metadata key, checking exactly in Nova's order; None on success."""
        server = self.find(project_id, server_id)
        if server is None:
            return server_not_found(server_id)
        if key not in server.metadata:
            return KEY_NOT_FOUND
        refusal = server.write_refusal("delete metadata")
        if refusal is not None:
            return refusal
        del server.metadata[key]
        return None

    def metadata(self, project_id: str, server_id: str) -> Problem | dict[str, str]:
        """A copy of a server's metadata."""
        server = self.find(project_id, server_id)
        if server is None:
            return server_not_found(server_id)
        return dict(server.metadata)

    def item(self, project_id: str, server_id: str, key: str) -> Problem | dict[str, str]:
        """One metadata item as `{key: value}`."""
        server = self.find(project_id, server_id)
        if server is None:
            return server_not_found(server_id)
        if key not in server.metadata:
            return KEY_NOT_FOUND
        return {key: server.metadata[key]}

    def update(
        self, project_id: str, server_id: str, items: dict[str, str], *, replace: bool = False
    ) -> Problem | dict[str, str]:
        """Merge (or, with `replace`, set) metadata items; return the server's whole metadata."""
        server = self.find(project_id, server_id)
        if server is None:
            return server_not_found(server_id)
        refusal = server.write_refusal("update metadata")
        if refusal is not None:
            return refusal
        if replace:
            server.metadata.clear()
        server.metadata.update(items)
        return dict(server.metadata)

    def server(self, project_id: str, server_id: str) -> Problem | Server:
        """One server, for the show-server route."""
        server = self.find(project_id, server_id)
        return server_not_found(server_id) if server is None else server

    def page(self, project_id: str, limit: int | None, marker: str | None) -> Problem | Page:
        """A page of the project's servers in seed order, after `marker` (Nova's paging)."""
        now = self._clock()
        servers = [s for s in self._servers.values() if s.project_id == project_id]
        if self._transient:
            for server in servers:
                server.settle(now)
        start = 0
        if marker is not None:
            ids = [s.id for s in servers]
            wanted = marker.lower()
            if wanted not in ids:
                return Problem(400, "marker", f"marker [{marker}] not found")
            start = ids.index(wanted) + 1
        size = MAX_LIMIT if limit is None else min(limit, MAX_LIMIT)
        chunk = servers[start : start + size]
        return Page(chunk, len(servers), size, start + size < len(servers))

    def snapshot(self) -> dict[str, Any]:
        """The current state in the seed file's format (a fresh copy)."""
        now = self._clock()
        servers: list[dict[str, Any]] = []
        for server in self._servers.values():
            server.settle(now)
            servers.append(
                {
                    "id": server.id,
                    "project_id": server.project_id,
                    "name": server.name,
                    "vm_state": server.vm_state,
                    "locked": server.locked,
                    "active_after_s": _remaining(server.active_at, now),
                    "unlock_after_s": _remaining(server.unlock_at, now),
                    "metadata": dict(server.metadata),
                }
            )
        return {
            "project_id": self.project_id,
            "credentials": self.credentials.model_dump(),
            "servers": servers,
        }


def _remaining(deadline: float | None, now: float) -> float | None:
    return None if deadline is None else round(max(deadline - now, 0.0), 3)
