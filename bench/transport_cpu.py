"""Client CPU per DELETE for each transport under httpx, against the sandbox over loopback.

Starts the sandbox in a subprocess (pinned to core 0 when taskset exists), runs the client
here (pinned to core 1), 16 requests in flight, and prints CPU microseconds per request.
Usage: python bench/transport_cpu.py [--requests 3000] [--in-flight 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from handler.ecs.transport import AiohttpTransport

PROJECT = "0123456789abcdef0123456789abcdef"
TOKEN = "bench-token"
KEYS_PER_SERVER = 50


def _seed(requests: int) -> dict[str, object]:
    servers = (requests + KEYS_PER_SERVER - 1) // KEYS_PER_SERVER
    return {
        "credentials": {
            "ak": "BENCHAK0000000000001",
            "sk": "bench-sk",
            "security_token": None,
            "token": TOKEN,
        },
        "servers": [
            {
                "id": str(uuid.UUID(int=n + 1, version=4)),
                "project_id": PROJECT,
                "name": f"s{n}",
                "vm_state": "active",
                "locked": False,
                "active_after_s": None,
                "metadata": {f"k{i}": "v" for i in range(KEYS_PER_SERVER)},
            }
            for n in range(servers)
        ],
    }


def _paths(requests: int) -> list[str]:
    out = []
    for n in range(requests):
        server = uuid.UUID(int=n // KEYS_PER_SERVER + 1, version=4)
        out.append(f"/v2.1/{PROJECT}/servers/{server}/metadata/k{n % KEYS_PER_SERVER}")
    return out


class _Sandbox:
    def __init__(self, requests: int) -> None:
        self._dir = tempfile.TemporaryDirectory()
        seed = Path(self._dir.name) / "seed.json"
        seed.write_text(json.dumps(_seed(requests)))
        cmd = [sys.executable, "-m", "handler", "sandbox", "--port", "0", "--seed", str(seed)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", "0", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            raise SystemExit(f"sandbox did not start: {line!r}")
        self.url = match.group(0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._dir.cleanup()


async def _run(send: Callable[[str], Awaitable[int]], paths: list[str], in_flight: int) -> None:
    queue = iter(paths)

    async def worker() -> None:
        for path in queue:
            status = await send(path)
            if status != 204:
                raise SystemExit(f"unexpected HTTP {status} for {path}")

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def _httpx(url: str, paths: list[str], in_flight: int, transport: object) -> None:
    kwargs = (
        {"transport": transport}
        if transport is not None
        else {"limits": httpx.Limits(max_connections=in_flight)}
    )
    async with httpx.AsyncClient(base_url=url, headers={"X-Auth-Token": TOKEN}, **kwargs) as c:  # type: ignore[arg-type]

        async def send(path: str) -> int:
            return (await c.delete(path)).status_code

        await _run(send, paths, in_flight)


async def _aiohttp(url: str, paths: list[str], in_flight: int) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(
        url, connector=connector, headers={"X-Auth-Token": TOKEN}
    ) as s:

        async def send(path: str) -> int:
            async with s.delete(path) as response:
                await response.read()
                return response.status

        await _run(send, paths, in_flight)


def main() -> int:
    """Measure each transport and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    variants: dict[str, Callable[[str, list[str]], Awaitable[None]]] = {
        "httpx default (httpcore)": lambda u, p: _httpx(u, p, args.in_flight, None),
        "httpx + handler AiohttpTransport": lambda u, p: _httpx(
            u, p, args.in_flight, AiohttpTransport(max_connections=args.in_flight)
        ),
        "raw aiohttp (floor)": lambda u, p: _aiohttp(u, p, args.in_flight),
    }
    try:
        from httpx_aiohttp import AiohttpTransport as ThirdParty

        variants["httpx + httpx-aiohttp"] = lambda u, p: _httpx(u, p, args.in_flight, ThirdParty())
    except ImportError:
        pass
    print(f"{args.requests} DELETEs, {args.in_flight} in flight, loopback, token auth")
    print(f"{'transport':<36} {'CPU µs/req':>11} {'req/s':>9}")
    for name, run in variants.items():
        sandbox = _Sandbox(args.requests)
        try:
            paths = _paths(args.requests)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            asyncio.run(run(sandbox.url, paths))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            sandbox.close()
        print(f"{name:<36} {cpu / args.requests * 1e6:>11.0f} {args.requests / wall:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
