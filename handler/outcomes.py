"""The outcome of one server/key pair and how each outcome is settled."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Outcome(enum.StrEnum):
    """What happened to one pair (SPEC §4)."""

    DELETED = "deleted"
    ABSENT = "absent"
    DRY_RUN = "dry_run"
    INVALID = "invalid"
    PROTECTED = "protected"
    PROJECT_NOT_ALLOWED = "project_not_allowed"
    SERVER_NOT_FOUND = "server_not_found"
    FORBIDDEN = "forbidden"
    REJECTED = "rejected"
    CONFLICT = "conflict"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DEADLINE = "deadline"

    @property
    def settled(self) -> bool:
        """True when the pair needs nothing more: deleted, absent or a dry run."""
        return self in _SETTLED

    @property
    def transient(self) -> bool:
        """True when a later attempt may succeed (the queue may redeliver it)."""
        return self in _TRANSIENT


_SETTLED = frozenset({Outcome.DELETED, Outcome.ABSENT, Outcome.DRY_RUN})
_TRANSIENT = frozenset({Outcome.CONFLICT, Outcome.RETRIES_EXHAUSTED, Outcome.DEADLINE})


@dataclass(frozen=True, slots=True)
class Pair:
    """One metadata key of one server in one project: the unit of work."""

    project_id: str
    server_id: str
    key: str

    def as_dict(self) -> dict[str, str]:
        """Return the pair as the `item` object of results and dead letters."""
        return {"project_id": self.project_id, "server_id": self.server_id, "key": self.key}


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one pair, or of a payload that could not be read into pairs."""

    outcome: Outcome
    pair: Pair | None = None
    raw: str | None = None
    detail: str | None = None
    status: int | None = None
    attempts: int = 0
    request_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the result as one entry of a response's `results` list."""
        out: dict[str, Any] = {
            "item": self.pair.as_dict() if self.pair else None,
            "outcome": self.outcome.value,
        }
        if self.raw is not None:
            out["raw"] = self.raw
        if self.status is not None:
            out["status"] = self.status
        if self.attempts:
            out["attempts"] = self.attempts
        if self.detail:
            out["detail"] = self.detail
        if self.request_id:
            out["request_id"] = self.request_id
        return out
