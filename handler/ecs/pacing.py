"""The client-side send rate: a fixed ceiling, and an adaptive rate that follows the throttles.

Every request the function sends (lists, probes, deletes) first takes a token here. Before the
gateway has ever said 429 there is no limit but `MAX_REQUESTS_PER_SECOND` (none by default).
From the first 429 on, the rate follows CUBIC, as in the AWS SDKs' "adaptive" retry mode: a
throttle sets the rate to `BETA` times what the gateway was letting through, and the rate then
grows back along a cubic curve, slowly near the rate that was throttled and faster away from
it, until the next 429 says where the limit is now.

Two departures from the AWS SDKs, both measured against the sandbox's gateway
(bench/pacing.py), where without them the rate fell to 5 % of the limit:

- A throttle cuts at most once per CUT_EVERY_S after the last cut and its hold: the 429s of
  requests sent before it say nothing about the new rate (the burst of 429s that ends an
  unpaced start would otherwise divide the rate by 1/BETA per request and leave it near
  zero), and the rate must have grown back past the throttled rate before it can be cut
  again (else 429s that come whatever the rate drag it down cut after cut: 42 pairs/s under
  the bench's 3 % of random 429s with one cut a second, 124 with one per two seconds).
- What the gateway let through in the second before a 429 has used its window up: after a
  cut nothing is sent until the oldest of it leaves the window, and the answers still
  arriving from before the cut refine the estimate the rate was cut from.

The tokens themselves come from aiolimiter's leaky bucket (asyncio-native, one small module,
waiters woken in order by one timer); `bench/limiter_choice.py` measures it against the
alternatives.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

__all__ = ["BETA", "MIN_RATE", "Pacer"]

#: The share of the measured rate kept after a throttle. The AWS SDKs keep 0.7 of a smoothed
#: send rate; what is measured here is what the gateway let through in its own window, a
#: closer estimate of its limit, and 0.9 measured better (bench/pacing.py: 97-98 % of the
#: limit against 93 % with 0.7, and fewer 429s).
BETA = 0.9
#: Seconds from a cut back to the rate that was throttled. The AWS SDKs' CUBIC takes a time
#: that grows with the rate (4.2 s from 100/s); here the curve is scaled to the rate so the
#: way back always takes this long. With a fixed scale, 429s that keep coming whatever the
#: rate (a gateway shared with other callers) cut faster than the rate grows back, and the
#: rate sank towards MIN_RATE; scaled, it stays near what the gateway lets through.
RECOVERY_S = 1.0
#: The cubic's coefficient that makes the curve start at BETA and reach 1 at RECOVERY_S.
_C = (1 - BETA) / RECOVERY_S**3
#: The rate never falls below this many requests per second (AWS SDKs: 0.5).
MIN_RATE = 0.5
#: Requests that may go back to back. 1 is exact but loses what each late timer (uvloop's
#: resolution is 1 ms) loses: 95.5 % of the rate, measured; 2 makes it up, at the price of a
#: rare 429 when the ceiling is exactly the gateway's limit (98 %, 0.3 % 429s).
BURST = 2.0
#: The window over which the rate the gateway lets through is measured.
WINDOW_S = 1.0
#: Seconds after a cut (and its hold) in which a 429 does not cut again: the rate has grown
#: back by then and probed above the throttled rate for a while, so a 429 that comes whatever
#: the rate does not drag the rate down cut after cut.
CUT_EVERY_S = 2.0
#: A 429 cuts the rate only when at least this many answers in the window (or half the rate in
#: force, if less) say what the gateway lets through; a stray 429 on an idle process is
#: retried and the rate left alone (cut from an empty window, it fell to MIN_RATE and starved
#: the invocation).
MIN_SAMPLE = 10


class Pacer:
    """Hands out send slots at the current rate; told of each answer, it adapts that rate.

    One pacer serves every request of the process (warm invocations keep what it learned);
    it is used from one event loop, and `record` may also be called from other threads.
    """

    def __init__(
        self,
        max_rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError("the maximum rate must be more than 0 requests per second")
        self.max_rate = max_rate
        self._clock = clock
        self._lock = threading.Lock()
        #: The rate in force (requests/s), or None while nothing limits the sending.
        self.rate: float | None = max_rate
        self._throttled = False  # True once a 429 has made the rate adaptive
        self._w_max = 0.0  # the rate at the last cut
        self.last_cut = -math.inf
        self._accepted: collections.deque[float] = collections.deque()
        self.throttles = 0
        self.cuts = 0
        # Leaks one unit per second; a request costs 1/rate units; capacity is BURST requests.
        self._bucket: AsyncLimiter | None = None
        self._waiting: collections.Counter[float] = collections.Counter()
        self._hold_until = -math.inf

    @property
    def limited(self) -> bool:
        """True when requests wait for a token (a ceiling is set or the gateway throttled)."""
        return self.rate is not None

    async def acquire(self) -> float:
        """Wait for a send slot; return the clock reading to pass back to `record`."""
        hold = self._hold_until - self._clock()
        if hold > 0:
            await asyncio.sleep(hold)
        rate = self.rate
        if rate is not None:
            bucket = self._bucket
            if bucket is None:
                # max_rate / time_period = 1 unit leaks per second, whatever the capacity
                # (max_rate, a public attribute) is set to below.
                bucket = self._bucket = AsyncLimiter(1.0, 1.0)
            cost = 1.0 / rate
            waiting = self._waiting
            waiting[cost] += 1
            # The capacity follows the rate (BURST requests) but never falls below the cost of
            # a request still waiting at an older, lower rate: it could never be let through.
            bucket.max_rate = max(BURST * cost, max(waiting))
            try:
                await bucket.acquire(cost)
            finally:
                waiting[cost] -= 1
                if not waiting[cost]:
                    del waiting[cost]
        return self._clock()

    def record(self, sent_at: float, *, throttled: bool) -> None:
        """Take one answer into account: a 429 (`throttled`) or any other answer."""
        now = self._clock()
        with self._lock:
            accepted = self._accepted
            horizon = now - WINDOW_S
            while accepted and accepted[0] <= horizon:
                accepted.popleft()
            if not throttled:
                accepted.append(now)
                if not self._throttled:
                    return
                if sent_at < self.last_cut:
                    # An answer to a request sent before the cut: the gateway let more through
                    # than was counted when the 429 came; the cut starts from that instead.
                    if len(accepted) > self._w_max:
                        self._cut_from(float(len(accepted)))
                else:
                    self._grow(now, len(accepted))
                return
            self.throttles += 1
            if sent_at < self.last_cut or now < max(self.last_cut, self._hold_until) + CUT_EVERY_S:
                # Sent before the last cut, or answered within a window of it: it says nothing
                # about the rate since (one cut per window, as TCP cuts once per round trip).
                return
            needed = MIN_SAMPLE if self.rate is None else min(MIN_SAMPLE, self.rate * WINDOW_S / 2)
            if len(accepted) < needed:
                return  # too few answers to say what the gateway lets through
            measured = float(len(accepted))
            current = self.rate if self.rate is not None else measured
            self.last_cut = now
            self.cuts += 1
            self._throttled = True
            self._cut_from(min(measured, current))
            # What the gateway let through in the last window has used that window up: send
            # nothing more until the oldest of it leaves the window.
            self._hold_until = accepted[0] + WINDOW_S if accepted else now

    def _cut_from(self, w_max: float) -> None:
        """Set the rate below `w_max`, the rate the gateway was last seen to allow."""
        self._w_max = max(w_max, MIN_RATE)
        self._set(self._w_max * BETA)

    def _grow(self, now: float, measured: int) -> None:
        """Follow the cubic curve up from the last cut, to at most twice what was allowed."""
        cubic = self._w_max * (1 + _C * (now - self.last_cut - RECOVERY_S) ** 3)
        self._set(min(cubic, 2.0 * max(measured, self._w_max)))

    def _set(self, rate: float) -> None:
        rate = max(rate, MIN_RATE)
        if self.max_rate is not None:
            rate = min(rate, self.max_rate)
        self.rate = rate
