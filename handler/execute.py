"""Run one invocation's deletions: one bounded pool, per-server order, identical pairs once."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Protocol

from handler.outcomes import Pair, Result

Server = tuple[str, str]
_Pending = collections.deque[tuple[Pair, "asyncio.Future[Result]"]]


class Deleter(Protocol):
    """Anything that deletes one pair and answers with its outcome (the ECS client)."""

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        """Delete one pair and return its outcome."""
        ...


class Executor:
    """Settle every pair of one invocation through one pool of at most `workers` tasks.

    All units submit into the same pool, so memory and tasks are bounded by `workers`, not by
    the batch size. Each pair is deleted once per invocation: the first unit to ask owns it,
    later ones get the same result. Pairs are queued per server; a server is handed to one
    worker at a time and goes to the back of the line after each pair, so one server's keys go
    one after another, in the order submitted, and every server keeps moving.
    """

    def __init__(self, deleter: Deleter, *, deadline: float | None, workers: int = 64) -> None:
        self._deleter = deleter
        self._limit = max(workers, 1)
        self.deadline = deadline
        self._settled: dict[Pair, asyncio.Future[Result]] = {}
        self._pending: dict[Server, _Pending] = {}
        self._ready: collections.deque[Server] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()

    def submit(self, pairs: Iterable[Pair]) -> list[asyncio.Future[Result]]:
        """Queue pairs; return one future per pair, in the order given."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = []
        for pair in pairs:
            future = self._settled.get(pair)
            if future is None:
                future = self._settled[pair] = loop.create_future()
                server = (pair.project_id, pair.server_id)
                pending = self._pending.get(server)
                if pending is None:
                    pending = self._pending[server] = collections.deque()
                    self._ready.append(server)
                pending.append((pair, future))
            futures.append(future)
        while self._ready and len(self._workers) < self._limit:
            task = loop.create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        return futures

    async def settle_all(self, pairs: Iterable[Pair]) -> list[Result]:
        """Settle pairs, returning their results in the order given."""
        futures = self.submit(pairs)
        if futures:
            # One wait for all (not one await each): a waiter cancelled here must not cancel a
            # result another unit shares.
            await asyncio.wait(futures)
        return [future.result() for future in futures]

    async def settle(self, pair: Pair) -> Result:
        """Settle one pair."""
        (result,) = await self.settle_all([pair])
        return result

    async def _work(self) -> None:
        while self._ready:
            server = self._ready.popleft()
            pending = self._pending[server]
            pair, future = pending.popleft()
            try:
                result = await self._deleter.delete_metadata(pair, deadline=self.deadline)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    future.cancel()
                    raise  # this worker is being stopped
                # A deleter raising CancelledError of its own must not strand the pair.
                future.set_exception(RuntimeError("the deleter raised CancelledError"))
            except Exception as exc:  # noqa: BLE001 - raised again where the result is read
                future.set_exception(exc)
            else:
                future.set_result(result)
            if pending:
                self._ready.append(server)
            else:
                del self._pending[server]

    def cancel(self) -> None:
        """Stop every worker (a failed invocation leaves nothing running)."""
        for task in list(self._workers):
            task.cancel()
