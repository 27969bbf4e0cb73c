"""The executor: identical pairs deleted once, one server's pairs in order, servers in parallel."""

from __future__ import annotations

import asyncio
import itertools

from handler.execute import Executor
from handler.outcomes import Outcome, Pair, Result

PROJECT = "0123456789abcdef0123456789abcdef"
SERVER_A = "aaaaaaaa-0000-4000-8000-000000000001"
SERVER_B = "bbbbbbbb-0000-4000-8000-000000000002"


class FakeDeleter:
    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[Pair] = []
        self.events: list[tuple[str, Pair, float]] = []
        self.deadlines: list[float | None] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        loop = asyncio.get_running_loop()
        self.calls.append(pair)
        self.deadlines.append(deadline)
        self.events.append(("start", pair, loop.time()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
            self.events.append(("end", pair, loop.time()))
        return Result(Outcome.DELETED, pair=pair, attempts=1)


def _intervals(deleter: FakeDeleter, server: str) -> list[tuple[int, int, Pair]]:
    """(start index, end index, pair) of each call on one server, in event order."""
    starts: dict[Pair, int] = {}
    out: list[tuple[int, int, Pair]] = []
    for index, (kind, pair, _) in enumerate(deleter.events):
        if pair.server_id != server:
            continue
        if kind == "start":
            starts[pair] = index
        else:
            out.append((starts[pair], index, pair))
    return out


def test_identical_pairs_deleted_once_when_concurrent() -> None:
    deleter = FakeDeleter()
    pair = Pair(PROJECT, SERVER_A, "k")

    async def main() -> list[Result]:
        executor = Executor(deleter, deadline=None)
        return list(
            await asyncio.gather(*(executor.settle(Pair(PROJECT, SERVER_A, "k")) for _ in range(5)))
        )

    results = asyncio.run(main())
    assert deleter.calls == [pair]
    assert len(results) == 5
    assert all(r.outcome is Outcome.DELETED and r.pair == pair for r in results)


def test_identical_pairs_in_settle_all_deleted_once() -> None:
    deleter = FakeDeleter()
    a = Pair(PROJECT, SERVER_A, "k")
    b = Pair(PROJECT, SERVER_B, "k")

    async def main() -> list[Result]:
        return await Executor(deleter, deadline=None).settle_all([a, b, a, b, a])

    results = asyncio.run(main())
    assert sorted(deleter.calls, key=str) == sorted([a, b], key=str)
    assert [r.pair for r in results] == [a, b, a, b, a]


def test_identical_pair_settled_later_reuses_result() -> None:
    deleter = FakeDeleter(delay=0)
    pair = Pair(PROJECT, SERVER_A, "k")

    async def main() -> tuple[Result, Result]:
        executor = Executor(deleter, deadline=None)
        return await executor.settle(pair), await executor.settle(pair)

    first, second = asyncio.run(main())
    assert first is second
    assert deleter.calls == [pair]


def test_pairs_of_one_server_never_overlap() -> None:
    deleter = FakeDeleter()
    pairs = [Pair(PROJECT, SERVER_A, f"k{i}") for i in range(4)]

    async def main() -> list[Result]:
        return await Executor(deleter, deadline=None).settle_all(pairs)

    results = asyncio.run(main())
    assert [r.pair for r in results] == pairs
    intervals = _intervals(deleter, SERVER_A)
    assert len(intervals) == 4
    # Each call ends before the next one starts, in the order given.
    for (_, end, _), (start, _, _) in itertools.pairwise(intervals):
        assert end < start
    assert [pair for _, _, pair in intervals] == pairs
    assert deleter.max_in_flight == 1


def test_same_server_id_in_two_projects_is_two_servers() -> None:
    deleter = FakeDeleter()
    pairs = [Pair(PROJECT, SERVER_A, "k"), Pair("otherproject", SERVER_A, "k")]
    asyncio.run(Executor(deleter, deadline=None).settle_all(pairs))
    assert deleter.max_in_flight == 2


def test_different_servers_overlap() -> None:
    deleter = FakeDeleter(delay=0.05)
    pairs = [
        Pair(PROJECT, SERVER_A, "k1"),
        Pair(PROJECT, SERVER_B, "k1"),
        Pair(PROJECT, SERVER_A, "k2"),
        Pair(PROJECT, SERVER_B, "k2"),
    ]

    async def main() -> tuple[list[Result], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await Executor(deleter, deadline=None).settle_all(pairs)
        return results, loop.time() - started

    results, elapsed = asyncio.run(main())
    assert [r.pair for r in results] == pairs
    assert deleter.max_in_flight == 2
    # Two servers of two pairs each: about two delays, not four.
    assert elapsed < 0.05 * 3.5
    for server in (SERVER_A, SERVER_B):
        intervals = _intervals(deleter, server)
        assert intervals[0][1] < intervals[1][0]
    a_first = _intervals(deleter, SERVER_A)[0]
    b_first = _intervals(deleter, SERVER_B)[0]
    assert b_first[0] < a_first[1]  # B's first call started while A's first was running


def test_deadline_passed_to_deleter() -> None:
    deleter = FakeDeleter(delay=0)
    asyncio.run(Executor(deleter, deadline=123.5).settle(Pair(PROJECT, SERVER_A, "k")))
    assert deleter.deadlines == [123.5]


def test_empty_and_single() -> None:
    deleter = FakeDeleter(delay=0)

    async def main() -> tuple[list[Result], list[Result]]:
        executor = Executor(deleter, deadline=None)
        return await executor.settle_all([]), await executor.settle_all(
            [Pair(PROJECT, SERVER_A, "k")]
        )

    empty, single = asyncio.run(main())
    assert empty == []
    assert [r.outcome for r in single] == [Outcome.DELETED]


def test_deleter_error_reaches_every_waiter() -> None:
    class Failing:
        calls = 0

        async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
            Failing.calls += 1
            await asyncio.sleep(0.01)
            raise RuntimeError("bug in deleter")

    async def main() -> list[object]:
        executor = Executor(Failing(), deadline=None)
        pair = Pair(PROJECT, SERVER_A, "k")
        return list(
            await asyncio.gather(
                executor.settle(pair), executor.settle(pair), return_exceptions=True
            )
        )

    outcomes = asyncio.run(main())
    assert Failing.calls == 1
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_many_servers_all_settled() -> None:
    count = 10
    deleter = FakeDeleter(delay=0.01)
    pairs = [Pair(PROJECT, f"{i:08d}-0000-4000-8000-000000000000", "k") for i in range(count)]
    results = asyncio.run(Executor(deleter, deadline=None).settle_all(pairs))
    assert len(results) == count
    assert deleter.max_in_flight == count


def test_workers_bound_the_servers_in_progress() -> None:
    deleter = FakeDeleter(delay=0.01)
    pairs = [Pair(PROJECT, f"{n:08x}-0000-4000-8000-000000000000", "k") for n in range(12)]

    async def main() -> list[Result]:
        return await Executor(deleter, deadline=None, workers=3).settle_all(pairs)

    results = asyncio.run(main())
    assert [r.pair for r in results] == pairs
    assert deleter.max_in_flight == 3


def test_servers_take_turns_so_none_is_left_with_a_tail_of_keys() -> None:
    deleter = FakeDeleter(delay=0.005)
    servers = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(3)]
    pairs = [Pair(PROJECT, server, f"k{i}") for server in servers for i in range(3)]

    asyncio.run(Executor(deleter, deadline=None, workers=2).settle_all(pairs))
    starts = [pair for kind, pair, _ in deleter.events if kind == "start"]
    first_keys = [starts.index(Pair(PROJECT, server, "k0")) for server in servers]
    last_keys = [starts.index(Pair(PROJECT, server, "k2")) for server in servers]
    assert max(first_keys) < min(last_keys)
