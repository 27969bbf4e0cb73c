"""Per-invocation metrics: CloudWatch Embedded Metric Format, as Powertools Metrics writes it."""

from __future__ import annotations

import contextvars
import json
import time
from dataclasses import dataclass, field
from typing import Any

from handler.outcomes import Result

#: EMF takes at most 100 values of one metric in one document.
MAX_VALUES = 100


@dataclass(slots=True)
class InvocationMetrics:
    """What one invocation measured: the latency of each API request (the first 100)."""

    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0

    def request_took(self, seconds: float) -> None:
        """Count one API request and keep its latency."""
        self.requests += 1
        if len(self.latencies_ms) < MAX_VALUES:
            self.latencies_ms.append(round(seconds * 1000, 3))


_CURRENT: contextvars.ContextVar[InvocationMetrics | None] = contextvars.ContextVar(
    "invocation_metrics", default=None
)


def start() -> InvocationMetrics:
    """Measure the invocation running in this context (its task and the tasks it starts)."""
    metrics = InvocationMetrics()
    _CURRENT.set(metrics)
    return metrics


def request_took(seconds: float) -> None:
    """Record one API request's latency, if this invocation is measured."""
    metrics = _CURRENT.get()
    if metrics is not None:
        metrics.request_took(seconds)


def values(
    summary: dict[str, Any], results: list[Result], metrics: InvocationMetrics
) -> dict[str, Any]:
    """The invocation's metrics by name: pairs per fate, retries, API latencies."""
    return {
        "PairsDeleted": summary.get("deleted", 0),
        "PairsAbsent": summary.get("absent", 0),
        "PairsDeadLettered": summary.get("dead_lettered", 0),
        "PairsRedelivered": summary.get("returned_to_queue", 0),
        "Retries": sum(max(r.attempts - 1, 0) for r in results),
        "ApiLatency": list(metrics.latencies_ms),
    }


_UNITS = {"ApiLatency": "Milliseconds"}


def emf_document(namespace: str, service: str, named: dict[str, Any]) -> str:
    """One EMF JSON document (dimension `service`), as Powertools Metrics emits it."""
    present = {name: value for name, value in named.items() if value != []}
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["service"]],
                    "Metrics": [
                        {"Name": name, "Unit": _UNITS.get(name, "Count")} for name in present
                    ],
                }
            ],
        },
        "service": service,
        **present,
    }
    return json.dumps(document, separators=(",", ":"))
