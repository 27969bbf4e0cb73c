"""Client CPU per DELETE for each transport under httpx, against the sandbox over loopback.

How the function's default transport was chosen. The sandbox runs in a subprocess pinned to
CPU 0, the clients here on CPU 1; 16 requests in flight by default; every DELETE removes a key
that exists. Prints CPU microseconds and requests per second for each transport.

    .venv/bin/python bench/transport_cpu.py [--requests 3000] [--in-flight 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import TOKEN, SandboxProcess, make_seed, pin_self_to_client_core
from bench.run import KEYS, _paths, _raw_aiohttp, _workers
from handler.ecs.transport import AiohttpTransport


async def _through(
    url: str, paths: list[str], n: int, transport: httpx.AsyncBaseTransport | None
) -> None:
    limits = httpx.Limits(max_connections=n)
    headers = {"X-Auth-Token": TOKEN}
    async with httpx.AsyncClient(
        base_url=url, transport=transport, limits=limits, headers=headers
    ) as client:

        async def send(path: str) -> int:
            return (await client.delete(path)).status_code

        await _workers(send, paths, n)


def _variants(n: int) -> dict[str, Callable[[str, list[str]], Awaitable[None]]]:
    variants: dict[str, Callable[[str, list[str]], Awaitable[None]]] = {
        "httpx default (httpcore)": lambda u, p: _through(u, p, n, None),
        "httpx + handler AiohttpTransport": lambda u, p: _through(
            u, p, n, AiohttpTransport(max_connections=n)
        ),
        "raw aiohttp (floor)": lambda u, p: _raw_aiohttp(u, p, n),
    }
    try:
        from httpx_aiohttp import AiohttpTransport as ThirdParty
    except ImportError:
        return variants
    variants["httpx + httpx-aiohttp"] = lambda u, p: _through(u, p, n, ThirdParty())
    return variants


def main() -> int:
    """Measure each transport and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    pin_self_to_client_core()
    servers = max(args.requests // KEYS, 1)
    print(f"{servers * KEYS} DELETEs, {args.in_flight} in flight, loopback, token auth")
    print(f"{'transport':<36} {'CPU µs/req':>11} {'req/s':>9}")
    for name, run in _variants(args.in_flight).items():
        with SandboxProcess(make_seed(servers, KEYS)) as sandbox:
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(_run(run(sandbox.url, _paths(servers))))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        count = servers * KEYS
        print(f"{name:<36} {cpu / count * 1e6:>11.0f} {count / wall:>9.0f}")
    return 0


async def _run(work: Awaitable[None]) -> None:
    await work


if __name__ == "__main__":
    raise SystemExit(main())
