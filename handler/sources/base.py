"""What every event source has in common: units of work in, a platform response out."""

from __future__ import annotations

import abc
import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handler.model import ParsedPayload, parse_payload
from handler.outcomes import Result

if TYPE_CHECKING:
    from handler.cleanup import CleanupStats


#: Why a cleanup selector from a queue or a webhook is refused.
CLEANUP_ONLY_SCHEDULED = "a cleanup selector is accepted from schedules and direct invocations only"


class UnknownEventError(ValueError):
    """The event has no shape this function knows; it is never answered with success."""


class RejectedEvent(Exception):
    """An event refused whole before any pair is touched: a bad signature, too many pairs."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def with_message(self, message: str) -> RejectedEvent:
        """The same refusal (its kind, headers and extras kept) saying `message` instead."""
        refused = type(self).__new__(type(self))  # not copy.copy: it calls __init__ with args
        refused.__dict__.update(self.__dict__)
        refused.args = (message,)
        refused.message = message
        return refused


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A webhook's request as a source reads it: method, path, headers (any case), raw body."""

    method: str
    headers: Mapping[str, str]
    body: bytes
    path: str = "/"

    @classmethod
    def of(
        cls, method: str, headers: Mapping[str, Any] | None, body: bytes, path: str = "/"
    ) -> HttpRequest:
        """Build one with header names lower-cased (platforms differ in the case they keep)."""
        lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items() if v is not None}
        return cls(method.upper(), lowered, body, path)

    def header(self, name: str) -> str | None:
        """The value of a header, whatever the case of its name."""
        return self.headers.get(name.lower())

    def as_event(self) -> dict[str, Any]:
        """The request as a JSON object, as POWERTOOLS_LOGGER_LOG_EVENT logs an event."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", errors="replace"),
        }


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A status and a JSON body: what a webhook source turns into its platform's response."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class OnTransient(enum.Enum):
    """What a transient outcome (conflict, retries exhausted, deadline) does to its unit."""

    #: The platform delivers the unit again (SQS batchItemFailures, Kinesis, a FIFO group).
    REDELIVER = "redeliver"
    #: The pair is dead-lettered: the platform would retry the whole event, or nothing.
    DEAD_LETTER = "dead_letter"
    #: The caller is told in the answer (an HTTP status) and sends it again itself.
    ANSWER = "answer"


@dataclass(slots=True)
class Unit:
    """The smallest part of an event the platform can redeliver: a message, a record, a body.

    `id` names it in logs and dead letters; `ref` is whatever the source needs to report it
    back (an SQS message id, a Kafka partition and offset); `group` orders units (a FIFO group,
    a partition). The payload is parsed from `body` when first read (the engine does, with an
    eye on the deadline).
    """

    id: str | None
    body: Any
    parse: Callable[[Any], ParsedPayload] = parse_payload
    group: str | None = None
    ref: Any = None
    _payload: ParsedPayload | None = field(default=None, repr=False)

    @property
    def payload(self) -> ParsedPayload:
        """The parsed payload (parsed once)."""
        if self._payload is None:
            self._payload = self.parse(self.body)
        return self._payload

    def raw_text(self) -> str:
        """The body as text, as a dead letter keeps it."""
        if isinstance(self.body, str):
            return self.body
        if isinstance(self.body, bytes):
            return self.body.decode("utf-8", errors="replace")
        try:
            return json.dumps(self.body, ensure_ascii=False, default=repr)
        except (TypeError, ValueError, RecursionError):
            return repr(self.body)


@dataclass(slots=True)
class UnitReport:
    """What became of one unit: its results, and whether the platform must deliver it again."""

    unit: Unit
    results: list[Result] = field(default_factory=list)
    redeliver: bool = False
    skipped: bool = False
    dead_letter_error: str | None = None
    #: How the unit's cleanup selector was expanded, when it carried one.
    cleanup: CleanupStats | None = None


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What sources are configured with (webhooks: authentication, size limit, replays)."""

    #: Standard Webhooks secret (`whsec_…`), or None.
    webhook_secret: str | None = None
    #: `signature` (a webhook must carry a valid signature) or `none` (a gateway checks).
    webhook_auth: str = "signature"
    #: A webhook naming more pairs is answered 413, nothing processed.
    max_pairs_per_request: int = 1000
    #: What the warm container remembers of webhook ids it answered (a replay cache), if any.
    replays: Any = None


class Source(abc.ABC):
    """One kind of event: how to recognise it, split it into units, and answer it."""

    #: Short name used in logs and dead letters (`sqs`, `direct`, …).
    kind: str
    #: What a transient outcome does to a unit of this source (decided in handler.engine).
    on_transient: OnTransient = OnTransient.DEAD_LETTER
    #: True when a unit going back must stop the later units of its group (SQS FIFO).
    ordered: bool = False
    #: True when a unit may carry a cleanup selector (schedules and direct invocations only).
    accepts_cleanup: bool = False

    def __init__(self, event: Any = None, settings: SourceSettings | None = None) -> None:
        """Keep the settings; a source may look at the whole event once (FIFO detection)."""
        self.settings = settings or SourceSettings()

    @property
    def redelivers(self) -> bool:
        """True when transient outcomes go back to the platform rather than to the sink."""
        return self.on_transient is not OnTransient.DEAD_LETTER

    @classmethod
    @abc.abstractmethod
    def matches(cls, event: Any) -> bool:
        """True when the event has this source's shape."""

    @abc.abstractmethod
    def units(self, event: Any) -> list[Unit]:
        """Split the event into units (their payloads are parsed later, by the engine)."""

    @abc.abstractmethod
    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> Any:
        """Build the platform's response from the unit reports."""

    def reject(self, error: RejectedEvent) -> Any:
        """Answer an event refused whole (a webhook answers its status); by default, raise."""
        raise error


class SummarySource(Source):
    """A source whose platform takes no per-message answer: it is answered with the summary.

    Its platform would retry the whole event, so a transient pair is dead-lettered rather than
    sent back (one bad pair must not re-run a batch or block a partition).
    """

    on_transient = OnTransient.DEAD_LETTER

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
        """Return `{"summary": …}` (SPEC §5)."""
        return {"summary": summary}


def must_redeliver(results: list[Result], on_transient: OnTransient) -> bool:
    """The one decision of what a transient outcome does: go back to the platform or not."""
    return on_transient is not OnTransient.DEAD_LETTER and any(r.outcome.transient for r in results)


def answer_status(reports: list[UnitReport]) -> int:
    """The HTTP status a webhook answers: 200 settled, 207 some dead-lettered or to send again,
    503 when a dead letter could not be stored (the caller must send it all again)."""
    if any(report.dead_letter_error for report in reports):
        return 503
    unsettled = any(not r.outcome.settled for report in reports for r in report.results)
    return 207 if unsettled else 200


def handed_back(report: UnitReport, result: Result, on_transient: OnTransient) -> bool:
    """True when an unsettled pair goes back to the platform or the caller, not to the sink.

    A redelivered unit goes back whole (its other dead letters are written on its final try).
    A webhook's caller is told of its transient pairs and sends again what it wants; its
    permanent failures would never come back, so they are dead-lettered now.
    """
    if not report.redeliver:
        return False
    if on_transient is OnTransient.ANSWER and report.dead_letter_error is None:
        return result.outcome.transient
    return True
