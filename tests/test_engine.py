"""The engine's decisions on their own: a fake deleter, fake sinks, no HTTP, no event loop thread.

(handler.engine is new in issue 7: there is no public path to these decisions in the old code,
whose pipeline only end-to-end tests covered.)
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from handler.deadletter import DeadLetterError
from handler.engine import Deps, Job, must_redeliver, settle, summarise
from handler.outcomes import Outcome, Pair, Result
from handler.plan import Policy
from handler.redaction import Redactor
from handler.sources.base import OnTransient, Source, Unit, UnitReport

PROJECT = "0123456789abcdef0123456789abcdef"
OK_1 = "11111111-1111-4111-8111-111111111111"
OK_2 = "22222222-2222-4222-8222-222222222222"
OK_3 = "33333333-3333-4333-8333-333333333333"
FAILS = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"


class FakeSource(Source):
    kind = "fake"

    def __init__(
        self, *, ordered: bool = False, on_transient: OnTransient = OnTransient.REDELIVER
    ) -> None:
        self.ordered = ordered
        self.on_transient = on_transient

    @classmethod
    def matches(cls, event: Any) -> bool:
        return False

    def units(self, event: Any) -> list[Unit]:
        return []

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> Any:
        return None


class FakeDeleter:
    """Deletes everything but the FAILS server's keys, which stay transient; records calls."""

    def __init__(self, outcomes: dict[str, Outcome] | None = None) -> None:
        self.outcomes = {FAILS: Outcome.RETRIES_EXHAUSTED, **(outcomes or {})}
        self.calls: list[Pair] = []
        self._in_flight: Counter[str] = Counter()
        self.max_in_flight_per_server = 0

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        self.calls.append(pair)
        self._in_flight[pair.server_id] += 1
        self.max_in_flight_per_server = max(
            self.max_in_flight_per_server, self._in_flight[pair.server_id]
        )
        try:
            await asyncio.sleep(0.001)
        finally:
            self._in_flight[pair.server_id] -= 1
        outcome = self.outcomes.get(pair.server_id, Outcome.DELETED)
        return Result(outcome, pair=pair, attempts=1, status=204 if outcome.settled else 503)


class FakeSink:
    """Keeps every record written; `stored` set: keeps that many, then raises DeadLetterError."""

    description = "a fake sink"
    seconds_per_record = 0.0

    def __init__(self, stored: int | None = None, error: Exception | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.writes = 0
        self._stored = stored
        self._error = error

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        self.writes += 1
        if self._error is not None:
            raise self._error
        if self._stored is not None:
            self.records.extend(records[: self._stored])
            raise DeadLetterError("the fake sink gave up", stored=self._stored)
        self.records.extend(records)

    async def aclose(self) -> None:
        pass


def unit(uid: str, body: Any, group: str | None = None) -> Unit:
    return Unit(id=uid, body=body, group=group, ref=uid)


def pair_body(server: str, *keys: str) -> dict[str, Any]:
    return (
        {"server_id": server, "key": keys[0]}
        if len(keys) == 1
        else {"server_id": server, "keys": list(keys)}
    )


INVALID = {"server_id": "not-a-uuid", "key": "k"}


def run(
    source: Source,
    units: Iterable[Unit],
    deleter: FakeDeleter | None = None,
    sink: FakeSink | None = None,
) -> tuple[dict[str, UnitReport], FakeDeleter, FakeSink]:
    deleter = deleter or FakeDeleter()
    sink = sink or FakeSink()
    units = list(units)
    deps = Deps(
        deleter=deleter,
        sink=sink,
        policy=Policy(default_project=PROJECT),
        redactor=Redactor(),
        workers=4,
    )
    reports = asyncio.run(settle(Job(source=source, units=units, invocation_id="inv-1"), deps))
    assert [r.unit for r in reports] == units  # one report per unit, in the units' order
    return {str(r.unit.id): r for r in reports}, deleter, sink


def deleted_servers(deleter: FakeDeleter) -> set[str]:
    return {pair.server_id for pair in deleter.calls}


# --- ordered groups -------------------------------------------------------------------------


def test_an_ordered_group_stops_at_the_first_unit_that_goes_back_and_other_groups_go_on() -> None:
    units = [
        unit("a1", pair_body(OK_1, "k1"), group="A"),
        unit("a2", pair_body(FAILS, "k"), group="A"),
        unit("a3", pair_body(OK_2, "k3"), group="A"),
        unit("a4", pair_body(OK_2, "k4"), group="A"),
        unit("b1", pair_body(OK_3, "k1"), group="B"),
        unit("b2", pair_body(OK_3, "k2"), group="B"),
    ]
    reports, deleter, sink = run(FakeSource(ordered=True), units)

    assert not reports["a1"].redeliver
    assert reports["a2"].redeliver and not reports["a2"].skipped
    for later in ("a3", "a4"):
        assert reports[later].redeliver and reports[later].skipped
        assert reports[later].results == []
    assert OK_2 not in deleted_servers(deleter)  # the skipped units were never worked on
    assert not reports["b1"].redeliver and not reports["b2"].redeliver
    assert [p.key for p in deleter.calls if p.server_id == OK_3] == ["k1", "k2"]
    assert sink.records == []  # a2 goes back whole; nothing else needs a dead letter


def test_an_unordered_source_does_not_stop_after_a_unit_goes_back() -> None:
    units = [
        unit("a1", pair_body(FAILS, "k"), group="A"),
        unit("a2", pair_body(OK_1, "k"), group="A"),
    ]
    reports, deleter, _ = run(FakeSource(ordered=False), units)

    assert reports["a1"].redeliver
    assert not reports["a2"].redeliver and not reports["a2"].skipped
    assert OK_1 in deleted_servers(deleter)


# --- what a transient outcome does ----------------------------------------------------------


@pytest.mark.parametrize(
    ("on_transient", "goes_back"),
    [(OnTransient.REDELIVER, True), (OnTransient.ANSWER, True), (OnTransient.DEAD_LETTER, False)],
)
def test_must_redeliver_decides_per_on_transient(
    on_transient: OnTransient, goes_back: bool
) -> None:
    pair = Pair(PROJECT, OK_1, "k")
    settled = [Result(Outcome.DELETED, pair=pair), Result(Outcome.INVALID, raw="{}")]
    for transient in (Outcome.CONFLICT, Outcome.RETRIES_EXHAUSTED, Outcome.DEADLINE):
        assert must_redeliver([*settled, Result(transient, pair=pair)], on_transient) is goes_back
    assert must_redeliver(settled, on_transient) is False
    assert must_redeliver([], on_transient) is False


@pytest.mark.parametrize(
    ("on_transient", "goes_back"),
    [(OnTransient.REDELIVER, True), (OnTransient.ANSWER, True), (OnTransient.DEAD_LETTER, False)],
)
def test_a_transient_pair_is_redelivered_or_dead_lettered_per_source(
    on_transient: OnTransient, goes_back: bool
) -> None:
    units = [
        unit("mixed", [pair_body(OK_1, "k"), pair_body(FAILS, "k"), INVALID]),
        unit("clean", [pair_body(OK_2, "k"), INVALID]),
    ]
    reports, _, sink = run(FakeSource(on_transient=on_transient), units)

    assert reports["mixed"].redeliver is goes_back
    assert not reports["clean"].redeliver
    reasons = sorted((r["source"]["id"], r["reason"]) for r in sink.records)
    if on_transient is OnTransient.ANSWER:
        # The caller is told of the transient pair; the permanent failure beside it would never
        # come back, so it is dead-lettered now.
        assert reasons == [("clean", "invalid"), ("mixed", "invalid")]
    elif goes_back:
        # The whole unit goes back: its dead letters wait for the delivery that settles it.
        assert reasons == [("clean", "invalid")]
    else:
        assert reasons == [
            ("clean", "invalid"),
            ("mixed", "invalid"),
            ("mixed", "retries_exhausted"),
        ]
    assert all(
        r["source"]["kind"] == "fake" and r["invocation_id"] == "inv-1" for r in sink.records
    )


# --- dead letters that could not be stored --------------------------------------------------


@pytest.mark.parametrize("on_transient", [OnTransient.REDELIVER, OnTransient.DEAD_LETTER])
def test_a_dead_letter_failure_maps_back_to_the_units_whose_records_were_not_stored(
    on_transient: OnTransient,
) -> None:
    units = [
        unit("u1", INVALID),
        unit("u2", [INVALID, {"server_id": "also-bad", "key": "k"}]),  # records 2 and 3
        unit("u3", INVALID),
        unit("u4", pair_body(OK_1, "k")),  # needs no dead letter
    ]
    # All of the invocation's records go to the sink in one write; it keeps the first two.
    sink = FakeSink(stored=2)
    reports, _, _ = run(FakeSource(on_transient=on_transient), units, sink=sink)

    assert sink.writes == 1
    assert [r["source"]["id"] for r in sink.records] == ["u1", "u2"]
    assert reports["u1"].dead_letter_error is None and not reports["u1"].redeliver
    for failed in ("u2", "u3"):  # u2's second record was not stored: all of u2 fails
        assert reports[failed].dead_letter_error
        assert "the fake sink gave up" in str(reports[failed].dead_letter_error)
        assert reports[failed].redeliver is (on_transient is OnTransient.REDELIVER)
    assert reports["u4"].dead_letter_error is None and not reports["u4"].redeliver
    summary = summarise(list(reports.values()))
    assert summary["dead_letter_failures"] == 2
    assert summary["dead_lettered"] == 1


def test_records_refused_in_the_middle_of_a_write_fail_exactly_their_units() -> None:
    class Partial(FakeSink):
        async def write(
            self, records: list[dict[str, Any]], *, deadline: float | None = None
        ) -> None:
            self.records.extend(r for i, r in enumerate(records) if i != 1)
            raise DeadLetterError("entry 1 Failed", unstored=[1])  # as an SQS batch may

    units = [unit("u1", INVALID), unit("u2", INVALID), unit("u3", INVALID)]
    reports, _, sink = run(FakeSource(), units, sink=Partial())
    assert [r["source"]["id"] for r in sink.records] == ["u1", "u3"]
    assert reports["u2"].redeliver and "entry 1 Failed" in str(reports["u2"].dead_letter_error)
    assert not reports["u1"].redeliver and not reports["u3"].redeliver


def test_a_sink_that_raises_anything_fails_every_unit_with_records() -> None:
    sink = FakeSink(error=RuntimeError("a bug in the sink"))
    units = [unit("u1", INVALID), unit("u2", pair_body(OK_1, "k")), unit("u3", INVALID)]
    reports, _, _ = run(FakeSource(), units, sink=sink)

    assert reports["u1"].redeliver and reports["u3"].redeliver
    assert "a bug in the sink" in str(reports["u1"].dead_letter_error)
    assert not reports["u2"].redeliver and reports["u2"].dead_letter_error is None


def test_a_failed_dead_letter_in_an_ordered_group_sends_the_later_units_back() -> None:
    units = [
        unit("b1", pair_body(OK_3, "k"), group="B"),
        unit("b2", INVALID, group="B"),  # the first record: stored
        unit("a1", INVALID, group="A"),  # the second record: not stored
        unit("a2", pair_body(OK_1, "k"), group="A"),
        unit("a3", pair_body(OK_2, "k"), group="A"),
    ]
    reports, _, sink = run(FakeSource(ordered=True), units, sink=FakeSink(stored=1))

    assert [r["source"]["id"] for r in sink.records] == ["b2"]
    assert reports["a1"].redeliver and reports["a1"].dead_letter_error
    # They ran, but the queue must keep the group's order: they go back with a1.
    assert reports["a2"].redeliver and reports["a3"].redeliver
    assert not reports["b1"].redeliver and not reports["b2"].redeliver


# --- the executor's promises across units ---------------------------------------------------


def test_identical_pairs_across_units_are_deleted_once() -> None:
    units = [
        unit("u1", pair_body(OK_1, "k")),
        unit("u2", pair_body(OK_1, "k")),
        unit("u3", [pair_body(OK_1, "k"), pair_body(OK_1, "other")]),
    ]
    reports, deleter, _ = run(FakeSource(), units)

    assert Counter((p.server_id, p.key) for p in deleter.calls) == {
        (OK_1, "k"): 1,
        (OK_1, "other"): 1,
    }
    for uid in ("u1", "u2", "u3"):
        assert all(r.outcome is Outcome.DELETED for r in reports[uid].results)
    assert len(reports["u3"].results) == 2


@pytest.mark.parametrize("ordered", [False, True])
def test_per_server_order_is_kept_across_units(ordered: bool) -> None:
    units = [
        unit("u1", pair_body(OK_1, "a", "b", "c"), group="g1"),
        unit("u2", pair_body(OK_2, "x", "y"), group="g2"),
        unit("u3", pair_body(OK_1, "d", "e"), group="g3"),
    ]
    _, deleter, _ = run(FakeSource(ordered=ordered), units)

    per_server: dict[str, list[str]] = defaultdict(list)
    for pair in deleter.calls:
        per_server[pair.server_id].append(pair.key)
    assert per_server[OK_1] == ["a", "b", "c", "d", "e"]
    assert per_server[OK_2] == ["x", "y"]
    assert deleter.max_in_flight_per_server == 1  # one server's keys, one after another


# --- the summary ----------------------------------------------------------------------------


def test_summarise_counts_outcomes_dead_letters_returns_and_skips() -> None:
    pair = Pair(PROJECT, OK_1, "k")
    reports = [
        UnitReport(
            unit("u1", None),
            [Result(Outcome.DELETED, pair=pair), Result(Outcome.INVALID, raw="x")],
        ),
        UnitReport(
            unit("u2", None),
            [Result(Outcome.ABSENT, pair=pair), Result(Outcome.DEADLINE, pair=pair)],
            redeliver=True,
        ),
        UnitReport(unit("u3", None), redeliver=True, skipped=True),
        UnitReport(
            unit("u4", None),
            [Result(Outcome.PROTECTED, pair=pair), Result(Outcome.CONFLICT, pair=pair)],
            dead_letter_error="the sink is down",
        ),
        UnitReport(unit("u5", None), [Result(Outcome.RETRIES_EXHAUSTED, pair=pair)]),
    ]
    summary = summarise(reports)

    assert summary["pairs"] == 7
    assert summary["deleted"] == 1 and summary["absent"] == 1 and summary["invalid"] == 1
    assert summary["deadline"] == 1 and summary["protected"] == 1 and summary["conflict"] == 1
    assert summary["retries_exhausted"] == 1 and summary["dry_run"] == 0
    assert summary["dead_lettered"] == 2  # u1's invalid and u5's; u4's letters were not stored
    assert summary["returned_to_queue"] == 1  # u2's deadline pair
    assert summary["units"] == 5
    assert summary["units_skipped"] == 1
    assert summary["dead_letter_failures"] == 1
    assert set(summary) >= {o.value for o in Outcome}


def test_the_closing_margin_grows_with_the_pairs_and_learns_from_slow_closings() -> None:
    from handler.engine import Deadlines, FinishMeter

    meter = FinishMeter(100e-6)
    small = Deadlines.of(10.0, 0.0, 100, meter.per_pair_s)
    large = Deadlines.of(10.0, 0.0, 20_000, meter.per_pair_s)
    assert small.work is not None and large.work is not None
    assert small.work - large.work == pytest.approx(19_900 * 100e-6)
    meter.record(50, 5.0)  # too few pairs to learn from
    assert meter.per_pair_s == 100e-6
    meter.record(10_000, 2.0)  # 200 µs a pair measured: keep 1.5 times that back
    assert meter.per_pair_s == pytest.approx(300e-6)
    meter.record(10_000, 0.1)  # a fast closing decays the estimate, never below the floor
    assert meter.per_pair_s == pytest.approx(1.5 * 0.8 * 200e-6)
    # Never past the platform's limit, and never before "now".
    assert Deadlines.of(1.0, 0.0, 1_000_000, 1e-3).work == 0.0


def test_closing_stops_at_the_limit_instead_of_running_past_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from handler import logs
    from handler.deadletter import LogSink

    logs.configure("engine-test", "INFO")
    now = [0.0]

    def clock() -> float:  # every reading of the clock costs 10 ms of the 1 s limit
        now[0] += 0.01
        return now[0]

    # 5,000 protected keys, dead-lettered to the log: more closing than 1 s allows here.
    items = [{"server_id": OK_1, "key": f"__k{i}"} for i in range(5_000)]
    deps = Deps(
        deleter=FakeDeleter(),
        sink=LogSink(),
        policy=Policy(default_project=PROJECT, protected_keys=("__*",)),
        redactor=Redactor(),
        clock=clock,
    )
    job = Job(source=FakeSource(), units=[unit("u", items)], invocation_id="inv", limit=1.0)
    (report,) = asyncio.run(settle(job, deps))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert report.dead_letter_error is not None  # not stored: the unit goes back, nothing lost
    assert report.redeliver
    left_out = [line for line in lines if line["message"] == "pair lines left out"]
    assert len(left_out) == 1 and left_out[0]["count"] > 0
    pair_lines = [
        line
        for line in lines
        if line["message"].startswith(("pair settled", "pair returned", "pair dead"))
    ]
    assert len(pair_lines) + left_out[0]["count"] == 5_000
    assert len(pair_lines) < 5_000


def test_the_log_sink_stops_at_its_deadline_and_says_how_many_it_wrote() -> None:
    from handler.deadletter import LogSink

    async def main() -> DeadLetterError:
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadLetterError) as caught:
            await LogSink().write([{"n": n} for n in range(250)], deadline=loop.time() - 1)
        return caught.value

    assert asyncio.run(main()).stored == 0
