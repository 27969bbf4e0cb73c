"""From work items to pairs: the default project, the project allow-list and protected keys."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from handler.model import WorkItem
from handler.outcomes import Outcome, Pair, Result


@dataclass(frozen=True, slots=True)
class Policy:
    """What may be deleted: the default and allowed projects and the protected key globs."""

    default_project: str
    allowed_projects: frozenset[str] = frozenset()
    protected_keys: tuple[str, ...] = ()
    dry_run: bool = False
    _protected: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = "|".join(fnmatch.translate(glob) for glob in self.protected_keys)
        object.__setattr__(self, "_protected", re.compile(pattern) if pattern else None)

    def is_protected(self, key: str) -> bool:
        """True when the key matches one of the protected globs (case-sensitive)."""
        return self._protected is not None and self._protected.match(key) is not None

    def project_allowed(self, project_id: str) -> bool:
        """True for the default project and for those listed in ALLOWED_PROJECT_IDS."""
        return project_id == self.default_project or project_id in self.allowed_projects


@dataclass(frozen=True, slots=True)
class Plan:
    """The pairs to delete (and those to only report as dry runs), and results decided already."""

    to_delete: list[Pair]
    decided: list[Result]


def make_plan(items: Iterable[WorkItem], policy: Policy) -> Plan:
    """Apply the policy to work items; identical pairs are kept once.

    A pair named both as a dry run and for real is deleted: a dry run never swallows a real
    request that happens to come later in the same payload.
    """
    wanted: dict[Pair, bool] = {}  # pair -> dry run, in first-seen order
    for item in items:
        pair = Pair(item.project_id or policy.default_project, item.server_id, item.key)
        wanted[pair] = wanted.get(pair, True) and item.dry_run
    to_delete: list[Pair] = []
    decided: list[Result] = []
    for pair, dry_run in wanted.items():
        if not policy.project_allowed(pair.project_id):
            detail = f"project {pair.project_id} is not in ALLOWED_PROJECT_IDS"
            decided.append(Result(Outcome.PROJECT_NOT_ALLOWED, pair=pair, detail=detail))
        elif policy.is_protected(pair.key):
            detail = f"key {pair.key!r} matches PROTECTED_KEYS"
            decided.append(Result(Outcome.PROTECTED, pair=pair, detail=detail))
        elif policy.dry_run or dry_run:
            decided.append(Result(Outcome.DRY_RUN, pair=pair, detail="dry run: no call made"))
        else:
            to_delete.append(pair)
    return Plan(to_delete, decided)
