"""The pacer: a ceiling held, a 429 slowing every request, the rate finding its way back up."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from handler import app
from handler.config import ConfigError, load_config
from handler.ecs import pacing
from handler.ecs.pacing import BETA, Pacer
from handler.local import FakeContext
from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory, configure_for


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _accept(pacer: Pacer, clock: Clock, count: int, *, every: float = 0.005) -> None:
    for _ in range(count):
        pacer.record(clock.now - 0.01, throttled=False)
        clock.now += every


def test_no_ceiling_and_no_throttle_never_waits() -> None:
    pacer = Pacer()

    async def many() -> float:
        started = time.perf_counter()
        for _ in range(2000):
            await pacer.acquire()
        return time.perf_counter() - started

    assert not pacer.limited
    assert asyncio.run(many()) < 0.5  # 2,000 slots at no rate at all: no waiting


def test_a_ceiling_is_held_across_concurrent_senders() -> None:
    rate = 200.0
    pacer = Pacer(rate)
    stamps: list[float] = []

    async def sender() -> None:
        for _ in range(5):
            await pacer.acquire()
            stamps.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(sender() for _ in range(16)))

    asyncio.run(main())
    stamps.sort()
    # 80 slots at 200/s: no faster than the rate allows (a burst of 2 at most at the start).
    assert stamps[-1] - stamps[0] >= (len(stamps) - pacing.BURST) / rate
    gaps = [b - a for a, b in zip(stamps, stamps[2:], strict=False)]
    assert min(gaps) >= 1 / rate - 0.002  # never three within one interval


def test_a_429_cuts_the_rate_below_what_the_gateway_let_through() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    _accept(pacer, clock, 100)
    sent = clock.now
    clock.now += 0.01
    pacer.record(sent, throttled=True)
    assert pacer.limited
    assert pacer.rate == pytest.approx(100 * BETA)
    assert pacer.cuts == 1
    assert pacer.throttles == 1


def test_429s_of_requests_sent_before_the_cut_do_not_cut_again() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    _accept(pacer, clock, 100)
    before = clock.now - 0.005
    pacer.record(before, throttled=True)
    rate = pacer.rate
    for _ in range(30):  # the rest of the burst that was already in flight
        clock.now += 0.001
        pacer.record(before, throttled=True)
    assert pacer.rate == rate
    assert pacer.cuts == 1
    assert pacer.throttles == 31
    clock.now += 1.0
    _accept(pacer, clock, 80, every=0.0125)  # a second of answers at the new rate
    pacer.record(clock.now - 0.01, throttled=True)  # too soon after the cut (and its hold)
    assert pacer.cuts == 1
    clock.now += pacing.CUT_EVERY_S
    _accept(pacer, clock, 80, every=0.0125)
    pacer.record(clock.now - 0.01, throttled=True)  # sent after the cut: the rate is too high
    assert pacer.cuts == 2
    assert pacer.rate is not None and pacer.rate < rate  # type: ignore[operator]


def test_answers_from_before_the_cut_refine_the_rate_it_starts_from() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    _accept(pacer, clock, 60)
    before = clock.now - 0.005
    pacer.record(before, throttled=True)
    assert pacer.rate == pytest.approx(60 * BETA)
    for _ in range(40):  # successes of the same wave, answered after the first 429
        pacer.record(before, throttled=False)
    assert pacer.rate == pytest.approx(100 * BETA)


def test_the_rate_grows_back_after_the_throttling_stops_and_keeps_to_the_ceiling() -> None:
    clock = Clock()
    pacer = Pacer(150.0, clock=clock)
    _accept(pacer, clock, 100)
    pacer.record(clock.now, throttled=True)
    cut = pacer.rate
    assert cut is not None
    rates = []
    for _ in range(20):  # 20 s of answers without a 429, 100 a second
        _accept(pacer, clock, 100, every=0.01)
        rates.append(pacer.rate)
    assert rates[0] is not None and rates[0] > cut
    assert all(b >= a for a, b in itertools.pairwise(rates))  # type: ignore[operator]
    assert rates[-1] == 150.0  # past the rate that was throttled, up to the ceiling, no more


def test_after_a_cut_nothing_is_sent_until_the_gateways_window_has_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    first = clock.now
    _accept(pacer, clock, 100, every=0.0002)  # 100 let through within 20 ms
    pacer.record(clock.now, throttled=True)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(pacing.asyncio, "sleep", fake_sleep)
    asyncio.run(pacer.acquire())
    assert slept and clock.now == pytest.approx(first + pacing.WINDOW_S, abs=0.001)


def test_a_request_waiting_at_a_low_rate_is_not_stranded_when_the_rate_rises() -> None:
    pacer = Pacer(2.0)

    async def main() -> None:
        await pacer.acquire()  # the bucket now holds one request at 2/s
        await pacer.acquire()
        waiting = asyncio.ensure_future(pacer.acquire())  # costs 0.5 s of the bucket
        await asyncio.sleep(0.05)
        pacer.rate = 1000.0  # a faster rate: a request costs 1 ms, the capacity shrinks
        await pacer.acquire()
        await asyncio.wait_for(waiting, timeout=3)

    asyncio.run(main())


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1e9"])
def test_max_requests_per_second_must_be_a_positive_rate(value: str) -> None:
    env = {"HUAWEICLOUD_SDK_PROJECT_ID": "p1", "ECS_ENDPOINT": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match="MAX_REQUESTS_PER_SECOND"):
        load_config({**env, "MAX_REQUESTS_PER_SECOND": value})


def test_max_requests_per_second_blank_means_no_ceiling() -> None:
    env = {"HUAWEICLOUD_SDK_PROJECT_ID": "p1", "ECS_ENDPOINT": "http://127.0.0.1:1"}
    assert load_config({**env, "MAX_REQUESTS_PER_SECOND": " "}).max_requests_per_second is None
    assert load_config({**env, "MAX_REQUESTS_PER_SECOND": "2.5"}).max_requests_per_second == 2.5


# --- end to end, against the sandbox's gateway limit ---------------------------------------

_SERVERS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(12)]
_KEYS = [f"k{i}" for i in range(5)]


def _seed() -> dict[str, object]:
    from tests.conftest import DEMO_PROJECT, demo_seed

    seed = demo_seed()
    seed["servers"] = [
        {
            "id": ident,
            "project_id": DEMO_PROJECT,
            "name": f"paced-{n}",
            "vm_state": "active",
            "locked": False,
            "metadata": {key: "v" for key in _KEYS},
        }
        for n, ident in enumerate(_SERVERS)
    ]
    return seed


def _event() -> dict[str, object]:
    return {"items": [{"server_id": ident, "keys": _KEYS} for ident in _SERVERS]}


def _statuses(sb: Sandbox) -> list[int]:
    return [r["status"] for r in sb.requests() if r["method"] in ("GET", "DELETE")]


def test_with_a_ceiling_every_request_keeps_to_it_and_none_is_throttled(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch, dead_letters: Path
) -> None:
    sb = make_sandbox(_seed(), faults={"rate_limit_rps": 30})
    configure_for(monkeypatch, sb, dead_letters, MAX_REQUESTS_PER_SECOND="25")
    monkeypatch.setenv("MAX_CONCURRENCY", "32")
    started = time.monotonic()
    response = app.handler(_event(), FakeContext(60_000))
    took = time.monotonic() - started
    assert response["summary"]["deleted"] == 60
    assert 429 not in _statuses(sb)
    assert took >= (60 - pacing.BURST) / 25  # 60 DELETEs at 25/s: no faster


def test_without_a_ceiling_a_429_slows_every_pair_and_all_are_deleted(
    make_sandbox: SandboxFactory, monkeypatch: pytest.MonkeyPatch, dead_letters: Path
) -> None:
    sb = make_sandbox(_seed(), faults={"rate_limit_rps": 20})
    configure_for(monkeypatch, sb, dead_letters, MAX_CONCURRENCY="32")
    response = app.handler(_event(), FakeContext(60_000))
    statuses = _statuses(sb)
    pacer = app._runtime().client.pacer
    assert response["summary"]["deleted"] == 60
    assert pacer.cuts >= 1 and pacer.rate is not None and pacer.rate < 32 / 0.001
    throttled = statuses.count(429)
    assert pacer.throttles == throttled >= 1
    # Each 429 was an attempt of its pair (within MAX_ATTEMPTS), not a request on the side.
    attempts = sum(r["attempts"] for r in response["results"])
    assert attempts == statuses.count(204) + throttled
    assert throttled <= len(statuses) // 2  # blind retries answer about half 429 (bench)


def test_a_stray_429_with_too_few_answers_to_measure_leaves_the_rate_alone() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    _accept(pacer, clock, pacing.MIN_SAMPLE - 1)
    pacer.record(clock.now, throttled=True)
    assert pacer.rate is None and pacer.cuts == 0 and pacer.throttles == 1


def test_under_a_low_ceiling_half_its_rate_of_answers_is_enough_to_cut() -> None:
    clock = Clock()
    pacer = Pacer(4.0, clock=clock)
    _accept(pacer, clock, 2, every=0.25)
    pacer.record(clock.now, throttled=True)
    assert pacer.cuts == 1 and pacer.rate == pytest.approx(2 * BETA)
