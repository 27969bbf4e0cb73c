"""Run one invocation's deletions: bounded, per-server order, identical pairs deleted once."""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

from handler.outcomes import Pair, Result

Server = tuple[str, str]
_Entry = tuple[Server, "collections.deque[tuple[Pair, asyncio.Future[Result]]]"]


class Deleter(Protocol):
    """Anything that deletes one pair and answers with its outcome (the ECS client)."""

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        """Delete one pair and return its outcome."""
        ...


class Executor:
    """Settle pairs for one invocation; the client bounds the requests in flight.

    Each pair is deleted once per invocation: the first unit to ask owns it, later ones wait for
    its result. A unit's own pairs are grouped by server; up to `workers` tasks take the servers
    round-robin, one pair at a time, so one server's keys go one after another (a per-server
    lock keeps units that share a server in order too) and different servers run in parallel.
    A fixed set of workers, rather than a task per server queueing on the client's limit, saved
    about 10 % of the CPU per pair at 64 in flight.
    """

    def __init__(self, deleter: Deleter, *, deadline: float | None, workers: int = 64) -> None:
        self._deleter = deleter
        self._workers = max(workers, 1)
        self.deadline = deadline
        self._settled: dict[Pair, asyncio.Future[Result]] = {}
        self._servers: dict[Server, asyncio.Lock] = {}

    async def settle(self, pair: Pair) -> Result:
        """Settle one pair."""
        (result,) = await self.settle_all([pair])
        return result

    async def settle_all(self, pairs: list[Pair]) -> list[Result]:
        """Settle pairs, returning their results in the order given."""
        loop = asyncio.get_running_loop()
        mine: dict[Server, list[tuple[Pair, asyncio.Future[Result]]]] = {}
        waits: list[asyncio.Future[Result]] = []
        for pair in pairs:
            future = self._settled.get(pair)
            if future is None:
                # Claimed here, before any await: no other unit can claim the same pair.
                future = self._settled[pair] = loop.create_future()
                mine.setdefault((pair.project_id, pair.server_id), []).append((pair, future))
            waits.append(future)
        if mine:
            await self._run(mine)
        # Pairs claimed by another unit finish in that unit's task; no lock is held here.
        return [await asyncio.shield(future) for future in waits]

    async def _run(self, mine: dict[Server, list[tuple[Pair, asyncio.Future[Result]]]]) -> None:
        """Up to `workers` tasks take servers round-robin, one pair each time.

        A server is queued again only once its pair is done, so its keys go one after another;
        round-robin keeps every server moving, so none is left with a tail of keys at the end.
        """
        queue: asyncio.Queue[_Entry | None] = asyncio.Queue()
        for server, group in mine.items():
            queue.put_nowait((server, collections.deque(group)))
        workers = min(len(mine), self._workers)
        left = len(mine)

        async def worker() -> None:
            nonlocal left
            while (entry := await _next(queue)) is not None:
                server, pending = entry
                pair, future = pending.popleft()
                try:
                    future.set_result(await self._settle_one(server, pair))
                except Exception as exc:  # noqa: BLE001 - raised again where the result is awaited
                    for failed in (future, *(f for _, f in pending)):
                        failed.set_exception(exc)
                        failed.exception()  # retrieved here; settle_all's await raises it
                    pending.clear()
                if pending:
                    queue.put_nowait(entry)
                    continue
                left -= 1
                if left == 0:
                    for _ in range(workers):
                        queue.put_nowait(None)

        if workers == 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(workers)))

    async def _settle_one(self, server: Server, pair: Pair) -> Result:
        """Delete one pair while holding its server's lock (uncontended within one unit)."""
        lock = self._servers.get(server)
        if lock is None:
            lock = self._servers[server] = asyncio.Lock()
        async with lock:
            return await self._deleter.delete_metadata(pair, deadline=self.deadline)


async def _next(queue: asyncio.Queue[_Entry | None]) -> _Entry | None:
    """The next queued entry, without a suspension when one is already there."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        return await queue.get()
