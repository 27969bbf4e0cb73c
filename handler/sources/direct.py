"""Direct invocation: the event is the SPEC §3 payload itself; the answer is a summary."""

from __future__ import annotations

from typing import Any

from handler import redaction
from handler.outcomes import Result
from handler.sources.base import Source, Unit, UnitReport

#: An object holding one of these keys is a payload (`cleanup`: a selector).
_PAYLOAD_KEYS = ("server_id", "items", "cleanup")
#: At most this many per-pair results are returned in a response (the summary counts all).
MAX_RESULTS = 1000


def summary_response(reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
    """Return `{"summary": …, "results": […]}`: every unsettled pair, and settled ones up to
    MAX_RESULTS in all (the caller must see each pair it may have to send again)."""
    results: list[Result] = [r for report in reports for r in report.results]
    room = max(MAX_RESULTS - sum(1 for r in results if not r.outcome.settled), 0)
    shown: list[Result] = []
    for result in results:
        if not result.outcome.settled:
            shown.append(result)
        elif room:
            shown.append(result)
            room -= 1
    body: dict[str, Any] = {
        "summary": summary,
        "results": [redaction.current().value(r.as_dict()) for r in shown],
    }
    if len(shown) < len(results):
        body["results_truncated"] = len(results) - len(shown)
    return body


class DirectSource(Source):
    """A payload passed straight to the function (console, SDK, Step Functions, a test)."""

    kind = "direct"
    accepts_cleanup = True

    @classmethod
    def matches(cls, event: Any) -> bool:
        """An array, or an object with `server_id`, `items` or `cleanup`."""
        if isinstance(event, list):
            return True
        return isinstance(event, dict) and any(k in event for k in _PAYLOAD_KEYS)

    def units(self, event: Any) -> list[Unit]:
        """The whole event is one unit."""
        return [Unit(id=None, body=event)]

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
        """Return the summary and the per-pair results."""
        return summary_response(reports, summary)
