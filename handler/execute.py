"""Run one invocation's deletions: bounded, per-server order, identical pairs deleted once."""

from __future__ import annotations

import asyncio
from typing import Protocol

from handler.outcomes import Pair, Result


class Deleter(Protocol):
    """Anything that deletes one pair and answers with its outcome (the ECS client)."""

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        """Delete one pair and return its outcome."""
        ...


class Executor:
    """Settle pairs for one invocation; the client bounds the requests in flight."""

    def __init__(self, deleter: Deleter, *, deadline: float | None) -> None:
        self._deleter = deleter
        self.deadline = deadline
        self._settled: dict[Pair, asyncio.Future[Result]] = {}
        self._servers: dict[tuple[str, str], asyncio.Lock] = {}

    async def settle(self, pair: Pair) -> Result:
        """Delete a pair once per invocation, after the earlier pairs of the same server."""
        future = self._settled.get(pair)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._settled[pair] = future
            server = (pair.project_id, pair.server_id)
            lock = self._servers.get(server)
            if lock is None:
                lock = self._servers[server] = asyncio.Lock()
            try:
                async with lock:
                    result = await self._deleter.delete_metadata(pair, deadline=self.deadline)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved: the caller re-raises it
                raise
            future.set_result(result)
            return result
        return await asyncio.shield(future)

    async def settle_all(self, pairs: list[Pair]) -> list[Result]:
        """Settle several pairs concurrently, in the order given."""
        if not pairs:
            return []
        if len(pairs) == 1:
            return [await self.settle(pairs[0])]
        return list(await asyncio.gather(*(self.settle(p) for p in pairs)))
