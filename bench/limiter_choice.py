"""Which limiter paces the requests: aiolimiter against pyrate-limiter, measured.

For each: the import cost on top of asyncio and importlib.metadata (both read their version
with it; the function has loaded it by then), paid at every cold start; the CPU of one
uncontended acquire, and, with 64 tasks sending at 100 requests/s for 3 s, the rate achieved
and the most requests in any sliding second (a sliding-window gateway refuses the 101st).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

RATE = 100
SECONDS = 3.0
TASKS = 64

Acquire = Callable[[], Awaitable[Any]]


def _import_ms(module: str) -> float:
    code = "import asyncio, importlib.metadata, time; t = time.perf_counter(); "
    code += f"import {module}; "
    code += "print((time.perf_counter() - t) * 1000)"
    runs = [
        float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(7)
    ]
    return statistics.median(runs)


def _aiolimiter() -> Acquire:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(2, 2 / RATE)  # a burst of 2, as handler.ecs.pacing uses it
    return limiter.acquire


def _pyrate() -> Acquire:
    from pyrate_limiter import Duration, Limiter, Rate

    limiter = Limiter(Rate(RATE, Duration.SECOND))

    async def acquire() -> None:
        await limiter.try_acquire_async("janitor")

    return acquire


async def _paced(acquire: Acquire) -> dict[str, float]:
    stamps: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + SECONDS

    async def task() -> None:
        while loop.time() < end:
            await acquire()
            stamps.append(loop.time())

    started = loop.time()
    await asyncio.gather(*(task() for _ in range(TASKS)))
    stamps.sort()
    most, j = 0, 0
    for i, stamp in enumerate(stamps):
        while stamp - stamps[j] >= 1.0:
            j += 1
        most = max(most, i - j + 1)
    return {"rate": len(stamps) / (stamps[-1] - started), "most_in_a_second": most}


async def _cpu_us(acquire: Acquire, n: int = 20_000) -> float:
    started = time.process_time()
    for _ in range(n):
        await acquire()
    return 1e6 * (time.process_time() - started) / n


def _fast(make: Callable[[], Acquire]) -> Acquire:
    """The same limiter at a rate no loop reaches, to measure the bookkeeping alone."""
    global RATE
    saved, RATE = RATE, 10**9
    try:
        return make()
    finally:
        RATE = saved


def measure() -> list[dict[str, Any]]:
    """One row per candidate."""
    rows = []
    for name, module, make in (
        ("aiolimiter", "aiolimiter", _aiolimiter),
        ("pyrate-limiter", "pyrate_limiter", _pyrate),
    ):
        try:
            __import__(module)
        except ImportError:
            rows.append({"name": name, "missing": True})
            continue
        paced = asyncio.run(_paced(make()))
        cpu = asyncio.run(_cpu_us(_fast(make)))
        rows.append({"name": name, "import_ms": _import_ms(module), "acquire_cpu_us": cpu, **paced})
    return rows


def lines(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of the comparison."""
    out = [
        f"**8. Limiter choice** ({TASKS} tasks at {RATE} requests/s for {SECONDS:.0f} s)",
        "",
        "| library | import ms | acquire CPU µs | rate achieved /s | most in any second |",
        "|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        if row.get("missing"):
            out.append(f"| {row['name']} | not installed (pip install -e '.[bench]') | | | |")
            continue
        out.append(
            f"| {row['name']} | {row['import_ms']:.1f} | {row['acquire_cpu_us']:.1f} | "
            f"{row['rate']:.1f} | {row['most_in_a_second']} |"
        )
    return [*out, ""]


if __name__ == "__main__":
    print("\n".join(lines(measure())))
