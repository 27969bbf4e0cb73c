"""Measure how many DELETE requests per second the ECS sandbox answers on one core.

The sandbox runs in a subprocess (`python -m handler sandbox --port 0`), pinned to CPU 0 with
`taskset` when there are at least two CPUs; this client runs on CPU 1 and keeps CONCURRENCY
requests in flight over keep-alive connections (aiohttp). Every DELETE removes a key that exists
(the seed holds SERVERS x KEYS keys and each is deleted exactly once), so every answer must be 204.

Two modes: `token` (X-Auth-Token) and `aksk` (each request signed SDK-HMAC-SHA256 here, and
verified by the sandbox). Besides wall-clock requests/second, the sandbox's own CPU time is read
from /proc, giving requests per second of sandbox CPU: its capacity on one core, even when this
client is the bottleneck.

    .venv/bin/python bench/sandbox_throughput.py [--requests 40000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import aiohttp
import yarl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import AK, PROJECT, ROOT, SK, TOKEN, make_seed, server_id

#: Keys with ':' and a space, so every request also exercises percent-decoding.
KEY_NAME = "bench:key {}"


def sign(method: str, host: str, path: str, body: bytes, ak: str, sk: str) -> dict[str, str]:
    """Headers for an SDK-HMAC-SHA256 signed request without query (a minimal bench signer)."""
    sdk_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    uri = "/".join(quote(unquote(part), safe="") for part in path.split("/"))
    if not uri.endswith("/"):
        uri += "/"
    canonical = "\n".join(
        [
            method,
            uri,
            "",
            f"host:{host}",
            f"x-sdk-date:{sdk_date}",
            "",
            "host;x-sdk-date",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = f"SDK-HMAC-SHA256\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "X-Sdk-Date": sdk_date,
        "Authorization": (
            f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders=host;x-sdk-date, Signature={signature}"
        ),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One measured run."""

    mode: str
    requests: int
    seconds: float
    server_cpu_s: float
    statuses: Counter[int]

    def line(self) -> str:
        """A one-line human-readable summary."""
        rate = self.requests / self.seconds
        cpu_share = self.server_cpu_s / self.seconds
        capacity = self.requests / self.server_cpu_s if self.server_cpu_s else float("nan")
        return (
            f"{self.mode:>5}: {self.requests} DELETEs in {self.seconds:.2f} s = {rate:,.0f} req/s; "
            f"sandbox CPU {cpu_share:.0%} of one core = {capacity:,.0f} req per CPU-second; "
            f"statuses {dict(self.statuses)}"
        )


async def run(
    mode: str, url: str, pairs: Iterator[tuple[str, str]], count: int, concurrency: int, pid: int
) -> Result:
    """DELETE `count` keys from `pairs` with `concurrency` requests in flight."""
    host = yarl.URL(url).raw_authority
    statuses: Counter[int] = Counter()
    work = itertools.islice(pairs, count)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for server_id, key in work:
                path = f"/v2.1/{PROJECT}/servers/{server_id}/metadata/{quote(key, safe='')}"
                if mode == "token":
                    headers = {"X-Auth-Token": TOKEN}
                else:
                    headers = sign("DELETE", host, path, b"", AK, SK)
                target = yarl.URL(url + path, encoded=True)
                async with session.delete(target, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu_used = cpu_seconds(pid) - cpu_before
    return Result(mode, sum(statuses.values()), seconds, cpu_used, statuses)


def start_sandbox(seed_file: Path, pin: bool) -> tuple[subprocess.Popen[str], str]:
    """Start the sandbox subprocess and return it with its base URL."""
    command = [sys.executable, "-m", "handler", "sandbox", "--port", "0", "--seed", str(seed_file)]
    taskset = shutil.which("taskset")
    if pin and taskset:
        command = [taskset, "-c", "0", *command]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"(http://\S+)", line)
    if not found:
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, found.group(1)


async def main_async(args: argparse.Namespace) -> int:
    """Run the benchmark and print the results."""
    two_cpus = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False
    if two_cpus:
        os.sched_setaffinity(0, {1})
    needed = args.warmup + 2 * args.requests
    keys = -(-needed // args.servers)
    with tempfile.TemporaryDirectory() as tmp:
        seed_file = Path(tmp) / "seed.json"
        seed_file.write_text(json.dumps(make_seed(args.servers, keys, KEY_NAME)))
        process, url = start_sandbox(seed_file, pin=two_cpus)
        try:
            server_ids = [server_id(index) for index in range(args.servers)]
            pairs = ((sid, KEY_NAME.format(k)) for k in range(keys) for sid in server_ids)
            print(
                f"sandbox pid {process.pid} at {url}, "
                f"{'pinned to CPU 0, client on CPU 1' if two_cpus else 'not pinned'}; "
                f"{args.servers} servers x {keys} keys; {args.concurrency} in flight, keep-alive"
            )
            await run("token", url, pairs, args.warmup, args.concurrency, process.pid)
            results = [
                await run(mode, url, pairs, args.requests, args.concurrency, process.pid)
                for mode in ("token", "aksk")
            ]
        finally:
            process.terminate()
            process.wait(timeout=10)
    failed = False
    for result in results:
        print(result.line())
        failed = failed or set(result.statuses) != {204}
    return 1 if failed else 0


def main() -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=40_000, help="DELETEs per mode")
    parser.add_argument("--warmup", type=int, default=2_000, help="DELETEs before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--servers", type=int, default=500, help="servers in the seed")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
