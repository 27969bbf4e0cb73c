"""Direct invocation: the event is the SPEC §3 payload itself; the answer is a summary."""

from __future__ import annotations

from typing import Any

from handler import redaction
from handler.outcomes import Result
from handler.sources.base import Source, Unit, UnitReport

#: At most this many per-pair results are returned in a response (the summary counts all).
MAX_RESULTS = 1000


def summary_response(reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
    """Return `{"summary": …, "results": […]}` with at most MAX_RESULTS results."""
    results: list[Result] = [r for report in reports for r in report.results]
    body: dict[str, Any] = {
        "summary": summary,
        "results": [redaction.current().value(r.as_dict()) for r in results[:MAX_RESULTS]],
    }
    if len(results) > MAX_RESULTS:
        body["results_truncated"] = len(results) - MAX_RESULTS
    return body


class DirectSource(Source):
    """A payload passed straight to the function (console, SDK, Step Functions, a test)."""

    kind = "direct"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """An array, or an object with `server_id` or `items`."""
        if isinstance(event, list):
            return True
        return isinstance(event, dict) and ("server_id" in event or "items" in event)

    def units(self, event: Any) -> list[Unit]:
        """The whole event is one unit."""
        return [Unit(id=None, body=event)]

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> dict[str, Any]:
        """Return the summary and the per-pair results."""
        return summary_response(reports, summary)
