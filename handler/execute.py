"""Run one invocation's deletions: bounded, per-server order, identical pairs deleted once."""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

from handler.outcomes import Pair, Result

Server = tuple[str, str]


class Deleter(Protocol):
    """Anything that deletes one pair and answers with its outcome (the ECS client)."""

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        """Delete one pair and return its outcome."""
        ...


class Executor:
    """Settle pairs for one invocation; the client bounds the requests in flight.

    Each pair is deleted once per invocation: the first unit to ask owns it, later ones wait for
    its result. A unit's own pairs are grouped by server and up to `workers` tasks take one
    server at a time, deleting its keys one after another (a per-server lock keeps units that
    share a server in order too); different servers run in parallel. A fixed set of workers,
    rather than a task per server queueing on the client's limit, saved about 10 % of the CPU
    per pair at 64 in flight.
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
        groups = collections.deque(mine.items())
        count = min(len(groups), self._workers)
        if count == 1:
            await self._drain(groups)
        elif count:
            await asyncio.gather(*(self._drain(groups) for _ in range(count)))
        # Pairs claimed by another unit finish in that unit's task; no lock is held here.
        return [await asyncio.shield(future) for future in waits]

    async def _drain(
        self, groups: collections.deque[tuple[Server, list[tuple[Pair, asyncio.Future[Result]]]]]
    ) -> None:
        """One worker: take a server's pairs, settle them in order, take the next server."""
        while groups:
            server, group = groups.popleft()
            await self._run_server(server, group)

    async def _run_server(
        self, server: Server, group: list[tuple[Pair, asyncio.Future[Result]]]
    ) -> None:
        lock = self._servers.get(server)
        if lock is None:
            lock = self._servers[server] = asyncio.Lock()
        async with lock:
            for index, (pair, future) in enumerate(group):
                try:
                    result = await self._deleter.delete_metadata(pair, deadline=self.deadline)
                except BaseException as exc:
                    for _, pending in group[index:]:
                        if not pending.done():
                            pending.set_exception(exc)
                            pending.exception()  # retrieved: the caller re-raises it
                    raise
                future.set_result(result)
