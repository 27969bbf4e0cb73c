"""The engine: one invocation's units settled as a coroutine, with everything it needs passed in.

It owns no event loop and no globals: the Lambda/FunctionGraph entry (handler.runtime), the
CLI and tests call `settle` with a Job and the Deps to use, so invocations running at once in
one process cannot step on each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from handler import redaction
from handler.cleanup import CleanupPlan, CleanupStats, ServerLister, expand
from handler.deadletter import DeadLetterError, DeadLetterSink, make_record
from handler.execute import Deleter, Executor
from handler.fanout import TargetFactory, send_work
from handler.model import ParsedPayload, truncate_raw
from handler.outcomes import Outcome, Pair, Result
from handler.plan import Plan, Policy, make_plan
from handler.redaction import Redactor
from handler.sources.base import (
    CLEANUP_ONLY_SCHEDULED,
    OnTransient,
    Source,
    Unit,
    UnitReport,
    answer_status,
    handed_back,
    must_redeliver,
)

__all__ = [
    "PROGRESS",
    "Deps",
    "Job",
    "Progress",
    "answer_status",
    "must_redeliver",
    "settle",
    "summarise",
]

_log = structlog.get_logger("handler.engine")

#: Time kept back from the platform's limit whatever the work: to answer.
ANSWER_S = 0.1
#: Time one pair costs once the work stops: ending it at the deadline and its log line
#: (measured ~45 µs with 240-character keys and a secret searched for in every line).
LOG_LINE_S = 60e-6
#: A sink that does not say what one record costs is assumed to take this long.
DEFAULT_PER_LETTER_S = 100e-6
#: The share of the time left that listing the servers of cleanup selectors may use (the rest
#: is for their deletes).
LIST_SHARE = 0.5
#: Why a unit of a queue or a webhook carrying a cleanup selector is invalid.
CLEANUP_REFUSED = CLEANUP_ONLY_SCHEDULED


class FinishMeter:
    """What closing an invocation costs per pair (dead letter and log line), learnt as it runs.

    It starts from what the sink and the log line are known to cost; each invocation with
    enough pairs measures its own closing time, and the next one keeps back 1.5 times the
    worst recent figure if that is more. Owned by whoever runs the engine (the runtime).
    """

    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s
        self._learnt_s = 0.0

    @property
    def per_pair_s(self) -> float:
        """Seconds to keep back for each pair of the next invocation."""
        return max(self.floor_s, 1.5 * self._learnt_s)

    def record(self, pairs: int, seconds: float) -> None:
        """Learn from one invocation's closing time (ignored below 100 pairs: too noisy)."""
        if pairs >= 100:
            self._learnt_s = max(seconds / pairs, 0.8 * self._learnt_s)


def meter_for(sink: DeadLetterSink) -> FinishMeter:
    """A FinishMeter starting from what the sink says one record costs."""
    return FinishMeter(getattr(sink, "seconds_per_record", DEFAULT_PER_LETTER_S) + LOG_LINE_S)


def base_margin_s(remaining_s: float) -> float:
    """Time kept back from the platform's limit before any dead letter is counted."""
    return min(max(remaining_s * 0.1, 0.25), 2.0)


@dataclass(frozen=True, slots=True)
class Progress:
    """Hooks told how an invocation goes (an operator's progress bar); None hooks are skipped.

    They are called on the event loop's thread and must return quickly and never raise.
    """

    #: A page of a cleanup selector's server listing was read: its server count.
    page_read: Callable[[int], None] | None = None
    #: The pairs about to be deleted (told once, before the first DELETE; 0 when none).
    pairs_planned: Callable[[int], None] | None = None
    #: One pair's delete finished (whatever its outcome): its result.
    pair_settled: Callable[[Result], None] | None = None


#: The progress hooks of invocations started from this context, for tools that run the
#: function through `Runtime.run` (the invocation's task inherits the caller's context).
#: Unset (None) on the deployed function: nothing is told and nothing is spent.
PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "engine_progress", default=None
)


@dataclass(frozen=True, slots=True)
class Deps:
    """What the engine works with, all passed in: deleter, sink, policy, redactor, clock."""

    deleter: Deleter
    sink: DeadLetterSink
    policy: Policy
    redactor: Redactor
    #: What lists a project's servers for cleanup selectors (None: a selector is invalid).
    lister: ServerLister | None = None
    #: Workers of the invocation's pool (the deleter's own limit caps the requests in flight).
    workers: int = 32
    #: The loop's clock by default; the deadlines below are in its time.
    clock: Callable[[], float] | None = None
    #: What closing costs per pair; built from the sink when not given.
    meter: FinishMeter | None = None
    #: Progress hooks (tools); PROGRESS of the calling context when not given.
    progress: Progress | None = None
    #: Builds the target of a selector's `fan_out` (None: a selector with one is invalid).
    fan_out: TargetFactory | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One invocation's work: the source's units and the time it has."""

    source: Source
    units: list[Unit]
    invocation_id: str
    #: Clock time of the platform's own limit (None: no limit, a local run).
    limit: float | None = None


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When parsing and deleting must stop, and when the dead letters must be stored."""

    work: float | None
    sink: float | None

    @classmethod
    def of(cls, limit: float | None, now: float, pairs: int, per_pair_s: float) -> Deadlines:
        """Deadlines for `pairs` pairs, each of which may need a dead letter and a log line."""
        if limit is None:
            return cls(None, None)
        remaining = max(limit - now, 0.0)
        finish = pairs * per_pair_s
        work = limit - base_margin_s(remaining) - finish
        # The sink must be done in time for the pairs' log lines that follow it.
        sink = limit - ANSWER_S - pairs * LOG_LINE_S
        return cls(max(work, now), max(sink, now))


async def settle(job: Job, deps: Deps) -> list[UnitReport]:
    """Settle every unit of the job; return one report per unit, in the units' order."""
    with redaction.use(deps.redactor):
        clock = deps.clock or asyncio.get_running_loop().time
        parse_by = Deadlines.of(job.limit, clock(), 0, 0.0).work
        payloads = [_payload(unit, clock, parse_by) for unit in job.units]
        progress = deps.progress or PROGRESS.get()
        cleanups = await _expand_cleanups(job, deps, payloads, clock, parse_by, progress)
        plans = [make_plan(payload.items, deps.policy) for payload in payloads]
        if progress is not None and progress.pairs_planned is not None:
            progress.pairs_planned(sum(len(plan.to_delete) for plan in plans))
        pairs = sum(len(p.to_delete) + len(p.decided) for p in plans)
        pairs += sum(len(p.invalid) for p in payloads)
        meter = deps.meter or meter_for(deps.sink)
        deadlines = Deadlines.of(job.limit, clock(), pairs, meter.per_pair_s)
        executor = Executor(deps.deleter, deadline=deadlines.work, workers=deps.workers)
        try:
            told = progress.pair_settled if progress is not None else None
            if job.source.ordered:
                reports = await _ordered(job, executor, payloads, plans, told)
            else:
                reports = await _unordered(job, executor, payloads, plans, told)
            for report, stats in zip(reports, cleanups, strict=True):
                report.cleanup = stats
            closing = time.perf_counter()
            await _write_dead_letters(job, deps.sink, reports, deadlines.sink, clock)
        finally:
            executor.cancel()
        answer_by = None if job.limit is None else job.limit - ANSWER_S
        _log_reports(job, reports, deps.policy, clock, answer_by)
        meter.record(pairs, time.perf_counter() - closing)
        return reports


def _payload(unit: Unit, clock: Callable[[], float], parse_by: float | None) -> ParsedPayload:
    """Parse a unit's payload, unless the time to do so has run out."""
    if parse_by is not None and clock() >= parse_by:
        why = "the invocation's time ran out before this payload was read"
        result = Result(Outcome.DEADLINE, raw=truncate_raw(unit.raw_text()), detail=why)
        return ParsedPayload(invalid=[result])
    return unit.payload


async def _expand_cleanups(
    job: Job,
    deps: Deps,
    payloads: list[ParsedPayload],
    clock: Callable[[], float],
    work_by: float | None,
    progress: Progress | None = None,
) -> list[CleanupStats | None]:
    """Replace each payload carrying a cleanup selector by the pairs it expands to (in place);
    return each unit's cleanup figures (None for a unit without a selector)."""
    stats: list[CleanupStats | None] = [None] * len(payloads)
    for index, payload in enumerate(payloads):
        selector = payload.cleanup
        if selector is None:
            continue
        raw = truncate_raw(job.units[index].raw_text())
        if not job.source.accepts_cleanup or deps.lister is None:
            why = CLEANUP_REFUSED if not job.source.accepts_cleanup else "no server lister"
            payloads[index] = ParsedPayload(
                invalid=[*payload.invalid, Result(Outcome.INVALID, raw=raw, detail=why)]
            )
            continue
        list_by = None
        if work_by is not None:
            now = clock()
            list_by = now + max(work_by - now, 0.0) * LIST_SHARE
        on_page = progress.page_read if progress is not None else None
        plan = await expand(selector, deps.lister, deps.policy, list_by, on_page=on_page)
        decided = [dataclasses.replace(r, raw=r.raw or raw) for r in plan.results]
        items = plan.items
        if selector.fan_out is not None:
            refused = await _fan_out(selector.fan_out, plan, deps, work_by, selector.dry_run)
            decided += [dataclasses.replace(r, raw=raw) for r in refused]
            items = []  # sent as work items, deleted by the invocations that receive them
        payloads[index] = ParsedPayload(
            items=[*payload.items, *items], invalid=[*payload.invalid, *decided]
        )
        stats[index] = plan.stats
    return stats


async def _fan_out(
    url: str, plan: CleanupPlan, deps: Deps, deadline: float | None, dry_run: bool
) -> list[Result]:
    """Send a plan's matches to its fan-out target (into plan.stats); a result if it cannot."""
    if plan.stats.stopped or plan.stats.capped:
        return []  # nothing matched for sure: nothing to send, as nothing would be deleted
    if deps.fan_out is None:
        return [Result(Outcome.INVALID, detail="fan_out: not available in this function")]
    try:
        target = deps.fan_out(url)
    except ValueError as exc:
        return [Result(Outcome.INVALID, detail=f"fan_out: {exc}")]
    dry_run = dry_run or deps.policy.dry_run
    result = await send_work(
        target, plan.items, deps.policy.default_project, deadline=deadline, dry_run=dry_run
    )
    plan.stats.fan_out = result
    if result.unsent:
        _log.error(
            "fan-out incomplete",
            to=result.to,
            unsent=len(result.unsent),
            servers=sorted(result.unsent)[:20],
            detail=next(iter(result.unsent.values())),
        )
    return []


def _tell_settled(
    futures: list[asyncio.Future[Result]], told: Callable[[Result], None] | None
) -> None:
    """Tell the progress hook of each pair as it finishes (a pair shared by units once)."""
    if told is None:
        return

    def done(future: asyncio.Future[Result]) -> None:
        if not future.cancelled() and future.exception() is None:
            told(future.result())

    for future in {id(f): f for f in futures}.values():
        future.add_done_callback(done)


async def _unordered(
    job: Job,
    executor: Executor,
    payloads: list[ParsedPayload],
    plans: list[Plan],
    told: Callable[[Result], None] | None = None,
) -> list[UnitReport]:
    futures = [executor.submit(plan.to_delete) for plan in plans]
    everything = [f for unit_futures in futures for f in unit_futures]
    _tell_settled(everything, told)
    if everything:
        await asyncio.wait(everything)
    reports = []
    for unit, payload, plan, unit_futures in zip(job.units, payloads, plans, futures, strict=True):
        done = [f.result() for f in unit_futures]
        reports.append(_report(job, unit, [*payload.invalid, *plan.decided, *done]))
    return reports


async def _ordered(
    job: Job,
    executor: Executor,
    payloads: list[ParsedPayload],
    plans: list[Plan],
    told: Callable[[Result], None] | None = None,
) -> list[UnitReport]:
    """Each group's units one after another; after a unit goes back, the rest of its group too."""
    groups: dict[str | None, list[int]] = {}
    for index, unit in enumerate(job.units):
        groups.setdefault(unit.group, []).append(index)
    reports: list[UnitReport | None] = [None] * len(job.units)
    told_pairs: set[Pair] = set()

    async def run_group(indices: list[int]) -> None:
        failed = False
        for index in indices:
            unit = job.units[index]
            if failed:
                reports[index] = UnitReport(unit, redeliver=True, skipped=True)
                continue
            done = await executor.settle_all(plans[index].to_delete)
            if told is not None:
                for pair, result in zip(plans[index].to_delete, done, strict=True):
                    if pair not in told_pairs:  # a pair an earlier unit shared: told once
                        told_pairs.add(pair)
                        told(result)
            results = [*payloads[index].invalid, *plans[index].decided, *done]
            report = reports[index] = _report(job, unit, results)
            failed = report.redeliver

    await asyncio.gather(*(run_group(indices) for indices in groups.values()))
    return [report for report in reports if report is not None]


def _report(job: Job, unit: Unit, results: list[Result]) -> UnitReport:
    return UnitReport(unit, results, redeliver=must_redeliver(results, job.source.on_transient))


async def _write_dead_letters(
    job: Job,
    sink: DeadLetterSink,
    reports: list[UnitReport],
    deadline: float | None,
    clock: Callable[[], float],
) -> None:
    """Write every dead letter of the invocation in one call; map a failure back to its units."""
    on_transient = job.source.on_transient
    letters: list[tuple[UnitReport, Result]] = [
        (report, result)
        for report in reports
        for result in report.results
        if not result.outcome.settled and not handed_back(report, result, on_transient)
    ]
    if not letters:
        return
    owners = [report for report, _ in letters]
    try:
        if deadline is not None and clock() >= deadline:
            raise DeadLetterError("no time left before the invocation's limit")
        records = [
            make_record(
                result,
                source_kind=job.source.kind,
                source_id=report.unit.id,
                invocation_id=job.invocation_id,
            )
            for report, result in letters
        ]
        await sink.write(records, deadline=deadline)
        return
    except DeadLetterError as exc:
        unstored, error = exc.unstored_of(len(owners)), str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in a sink must not lose the units
        unstored, error = (
            list(range(len(owners))),
            f"{sink.description}: {type(exc).__name__}: {exc}",
        )
    error = redaction.current().text(error)
    failed = {id(owners[index]): owners[index] for index in unstored}
    _log.error("dead letters not written", error=error, count=len(unstored))
    redeliver = job.source.on_transient is not OnTransient.DEAD_LETTER
    for report in failed.values():
        report.dead_letter_error = error
        report.redeliver = redeliver
    if redeliver and job.source.ordered:
        # The later units of a failed unit's group ran already; deletes are idempotent, so they
        # simply go back with it, and the queue keeps the group's order.
        stopped = {report.unit.group for report in failed.values()}
        after: set[str | None] = set()
        for report in reports:
            group = report.unit.group
            if group in after:
                report.redeliver = True
            if id(report) in failed and group in stopped:
                after.add(group)


def _log_reports(
    job: Job,
    reports: list[UnitReport],
    policy: Policy,
    clock: Callable[[], float],
    answer_by: float | None,
) -> None:
    """One line per pair, as long as there is time; then one line saying how many were left."""
    total = sum(len(r.unit.payload.items) if r.skipped else len(r.results) for r in reports)
    written = 0
    for report in reports:
        for line in _lines_of(report, policy, job.source.on_transient):
            if answer_by is not None and written % 50 == 0 and clock() >= answer_by:
                _log.warning(
                    "pair lines left out",
                    count=total - written,
                    detail="no time left before the invocation's limit; the summary counts them",
                )
                return
            _log_pair(job, report.unit, *line)
            written += 1


_Line = tuple[Pair | None, Result | None, str, str, str | None]


def _lines_of(report: UnitReport, policy: Policy, on_transient: OnTransient) -> Iterator[_Line]:
    """The log line of each pair of a unit: its outcome, or why it was skipped."""
    if report.skipped:
        why = "an earlier message of its group went back to the queue"
        for item in report.unit.payload.items:
            pair = Pair(item.project_id or policy.default_project, item.server_id, item.key)
            yield pair, None, "pair returned to the queue", "warning", why
        return
    for result in report.results:
        if result.outcome.settled:
            message, level = "pair settled", "info"
        elif handed_back(report, result, on_transient):
            message, level = "pair returned to the queue", "warning"
        else:
            message, level = "pair dead-lettered", "info"
        yield result.pair, result, message, level, None


def _log_pair(
    job: Job,
    unit: Unit,
    pair: Pair | None,
    result: Result | None,
    message: str,
    level: str,
    detail: str | None = None,
) -> None:
    getattr(_log, level)(
        message,
        correlation_id=unit.id,
        outcome=result.outcome.value if result else None,
        project_id=pair.project_id if pair else None,
        server_id=pair.server_id if pair else None,
        key=pair.key if pair else None,
        status=result.status if result else None,
        attempts=result.attempts if result else None,
        detail=result.detail if result else detail,
        request_id=result.request_id if result else None,
        source=job.source.kind,
        source_id=unit.id,
    )


def summarise(
    reports: list[UnitReport], on_transient: OnTransient = OnTransient.REDELIVER
) -> dict[str, Any]:
    """Count the outcomes of an invocation: per outcome, dead-lettered, returned, skipped."""
    counts: Counter[str] = Counter()
    dead_lettered = returned = 0
    for report in reports:
        for result in report.results:
            counts[result.outcome.value] += 1
            if not result.outcome.settled:
                if handed_back(report, result, on_transient):
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
    cleanup: CleanupStats | None = None
    for report in reports:
        if report.cleanup is not None:
            cleanup = cleanup or CleanupStats()
            cleanup.add(report.cleanup)
    if cleanup is not None:
        summary["cleanup"] = cleanup.as_dict()
    return summary
