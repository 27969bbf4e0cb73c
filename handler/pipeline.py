"""One invocation: units, plan, deletions, dead letters, then unit reports and a summary."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog

from handler.deadletter import DeadLetterError, DeadLetterSink, make_record
from handler.execute import Executor
from handler.outcomes import Outcome, Result
from handler.plan import Policy, make_plan
from handler.sources.base import Source, Unit, UnitReport

_log = structlog.get_logger("handler.pipeline")


@dataclass(frozen=True, slots=True)
class Run:
    """Everything one invocation's units share."""

    source: Source
    policy: Policy
    executor: Executor
    sink: DeadLetterSink
    invocation_id: str
    #: Loop time by which dead letters must be stored: the platform's own limit, nearly.
    sink_deadline: float | None = None


def _log_result(run: Run, unit: Unit, result: Result, *, redelivered: bool) -> None:
    outcome = result.outcome
    if outcome.settled:
        message, level = "pair settled", "info"
    elif redelivered:
        message, level = "pair returned to the queue", "warning"
    else:
        message, level = "pair dead-lettered", "info"
    pair = result.pair
    getattr(_log, level)(
        message,
        outcome=outcome.value,
        project_id=pair.project_id if pair else None,
        server_id=pair.server_id if pair else None,
        key=pair.key if pair else None,
        status=result.status,
        attempts=result.attempts,
        detail=result.detail,
        request_id=result.request_id,
        source=run.source.kind,
        source_id=unit.id,
    )


async def process_unit(run: Run, unit: Unit) -> UnitReport:
    """Settle one unit's pairs and write the dead letters of those that cannot be settled."""
    # Always bound: a FIFO group runs its units in one task, and a unit without an id must not
    # inherit the previous unit's.
    structlog.contextvars.bind_contextvars(correlation_id=unit.id)
    plan = make_plan(unit.payload.items, run.policy)
    done = await run.executor.settle_all(plan.to_delete)
    results = [*unit.payload.invalid, *plan.decided, *done]
    report = UnitReport(unit, results)
    if run.source.redelivers and any(r.outcome.transient for r in results):
        # The whole unit goes back to the queue; its dead letters are written on the final try.
        report.redeliver = True
    else:
        letters = [
            make_record(
                r,
                source_kind=run.source.kind,
                source_id=unit.id,
                invocation_id=run.invocation_id,
            )
            for r in results
            if not r.outcome.settled
        ]
        try:
            await run.sink.write(letters, deadline=run.sink_deadline)
        except DeadLetterError as exc:
            _dead_letters_failed(run, report, str(exc), len(letters))
        except Exception as exc:  # noqa: BLE001 - a bug in a sink must not lose the unit
            error = f"{run.sink.description}: {type(exc).__name__}: {exc}"
            _dead_letters_failed(run, report, error, len(letters))
    for result in results:
        _log_result(run, unit, result, redelivered=report.redeliver)
    return report


def _dead_letters_failed(run: Run, report: UnitReport, error: str, count: int) -> None:
    report.dead_letter_error = error
    report.redeliver = run.source.redelivers
    _log.error("dead letters not written", error=error, count=count)


async def _process_group(run: Run, units: list[Unit]) -> list[UnitReport]:
    reports: list[UnitReport] = []
    failed = False
    for unit in units:
        if failed:
            reports.append(UnitReport(unit, redeliver=True, skipped=True))
            continue
        report = await process_unit(run, unit)
        reports.append(report)
        failed = report.redeliver
    return reports


async def process(run: Run, units: list[Unit]) -> list[UnitReport]:
    """Process units concurrently; an ordered source runs each group in order, stopping early."""
    if not run.source.ordered:
        tasks = [asyncio.create_task(process_unit(run, unit)) for unit in units]
        return list(await asyncio.gather(*tasks))
    groups: dict[str | None, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.group, []).append(unit)
    by_unit: dict[int, UnitReport] = {}
    group_reports = await asyncio.gather(*(_process_group(run, g) for g in groups.values()))
    for reports in group_reports:
        for report in reports:
            by_unit[id(report.unit)] = report
    return [by_unit[id(unit)] for unit in units]


def summarise(reports: list[UnitReport]) -> dict[str, Any]:
    """Count the outcomes of an invocation: per outcome, dead-lettered, returned, skipped."""
    counts: Counter[str] = Counter()
    dead_lettered = returned = 0
    for report in reports:
        for result in report.results:
            counts[result.outcome.value] += 1
            if not result.outcome.settled:
                if report.redeliver:
                    returned += 1
                elif report.dead_letter_error is None:
                    dead_lettered += 1
    summary: dict[str, Any] = {name.value: counts.get(name.value, 0) for name in Outcome}
    summary["pairs"] = sum(counts.values())
    summary["dead_lettered"] = dead_lettered
    summary["returned_to_queue"] = returned
    summary["units"] = len(reports)
    summary["units_skipped"] = sum(1 for r in reports if r.skipped)
    summary["dead_letter_failures"] = sum(1 for r in reports if r.dead_letter_error)
    return summary
