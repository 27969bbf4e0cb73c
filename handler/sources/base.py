"""What every event source has in common: units of work in, a platform response out."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from handler.model import ParsedPayload
from handler.outcomes import Result


class UnknownEventError(ValueError):
    """The event has no shape this function knows; it is never answered with success."""


@dataclass(slots=True)
class Unit:
    """The smallest part of an event the platform can redeliver: a message, a record, a body."""

    id: str | None
    payload: ParsedPayload
    group: str | None = None


@dataclass(slots=True)
class UnitReport:
    """What became of one unit: its results, and whether the platform must deliver it again."""

    unit: Unit
    results: list[Result] = field(default_factory=list)
    redeliver: bool = False
    skipped: bool = False
    dead_letter_error: str | None = None


class Source(abc.ABC):
    """One kind of event: how to recognise it, split it into units, and answer it."""

    #: Short name used in logs and dead letters (`sqs`, `direct`, …).
    kind: str
    #: True when transient outcomes go back to the platform (the queue redelivers the unit).
    redelivers: bool = False
    #: True when a failed unit must stop the later units of its group (SQS FIFO).
    ordered: bool = False

    def __init__(self, event: Any = None) -> None:  # noqa: B027 - optional hook
        """Look at the whole event once (FIFO detection); most sources need nothing."""

    @classmethod
    @abc.abstractmethod
    def matches(cls, event: Any) -> bool:
        """True when the event has this source's shape."""

    @abc.abstractmethod
    def units(self, event: Any) -> list[Unit]:
        """Split the event into units, each with its parsed payload."""

    @abc.abstractmethod
    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> Any:
        """Build the platform's response from the unit reports."""
