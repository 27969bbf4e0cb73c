"""`make bench`: cold start, throughput, CPU and memory per pair, the official SDK, faults.

Everything runs in one go against the sandbox over loopback (the sandbox pinned to CPU 0, the
function and the clients to CPU 1), so the figures of one table come from the same run on the
same machine. Prints a table; writes bench/results/latest.json, and with the `bench` extra
(matplotlib) bench/results/latest.png.

    .venv/bin/python bench/run.py [--quick] [--only cold,throughput,cpu,memory,peer,faults]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    AK,
    PROJECT,
    ROOT,
    SK,
    TOKEN,
    SandboxProcess,
    keys_left,
    make_seed,
    pairs_event,
    pin_self_to_client_core,
    server_id,
)
from bench.limiter_choice import lines as limiter_lines
from bench.limiter_choice import measure as measure_limiters
from bench.pacing import bench_pacing, pacing_lines
from bench.sigv4_choice import CANDIDATES as SIGNERS
from bench.sigv4_choice import measure as measure_signers
from bench.sigv4_choice import table as signer_table
from handler import logs
from handler.config import Config
from handler.runtime import Runtime, new_event_loop

RESULTS = ROOT / "bench" / "results"
LATENCY_MS = 20.0
KEYS = 10
FAULTS = {
    "seed": 4,
    "rates": {
        "503": 0.05,
        "429": 0.03,
        "502": 0.01,
        "drop": 0.01,
        "lost_response": 0.01,
        "slow": 0.01,
    },
    "retry_after_s": 1,
    "retry_after_ratio": 0.5,
    "slow_ms": 1500,
}


def _python() -> str:
    return sys.executable


# --------------------------------------------------------------------------- the function


def function_variables(url: str) -> dict[str, str]:
    """The environment that points a function subprocess at a sandbox, AK/SK-signed."""
    return {
        "ECS_ENDPOINT": url,
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
    }


@contextmanager
def function_runtime(url: str, *, max_concurrency: int = 16) -> Iterator[Runtime]:
    """An in-process function pointed at a sandbox (AK/SK), logs dropped, dead letters to a file.

    The configuration is built directly, not read from os.environ, which is left untouched.
    """
    with (
        tempfile.TemporaryDirectory(prefix="janitor-bench-dl-") as folder,
        Path(os.devnull).open("w") as devnull,
    ):
        config = Config(
            ecs_endpoint=url,
            huaweicloud_sdk_project_id=PROJECT,
            huaweicloud_sdk_ak=AK,
            huaweicloud_sdk_sk=SK,
            dead_letter_url=str(Path(folder) / "dl.jsonl"),
            max_concurrency=max_concurrency,
        )
        # What Runtime.from_environment does: the logs are rendered as deployed, then dropped.
        logs.configure(config.powertools_service_name, config.powertools_log_level)
        logs.set_stream(devnull)
        runtime = Runtime(config)
        try:
            yield runtime
        finally:
            runtime.close()
            logs.set_stream(None)


def run_function(runtime: Runtime, event: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
    """Invoke the function once; return its response, wall seconds and CPU seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    response: dict[str, Any] = runtime.invoke(event, None)
    return response, time.perf_counter() - wall, time.process_time() - cpu


def warm(runtime: Runtime) -> None:
    """One tiny invocation so the runtime, the pool and the imports are ready."""
    runtime.invoke({"server_id": server_id(0), "key": "warm-up-absent"}, None)


# --------------------------------------------------------------------------- 1. cold start


#: Goal of issue 7: the function's first answer in at most this fraction of the SDK's.
FIRST_ANSWER_GOAL = 0.8
#: The other goals the README's table holds the figures against.
THROUGHPUT_GOAL_PCT = 90.0
CPU_GOAL_RATIO = 1.3
PEER_THROUGHPUT_GOAL = 2.0
PEER_CPU_GOAL = 1 / 3
_MARK = "BENCH-MARK"

# Each child prints the monotonic clock (system-wide on Linux, as the parent's) at its mark.
_IMPORTS = "{imports}\nimport time\nprint({mark!r}, time.monotonic_ns(), 0, flush=True)\n"
_FUNCTION_ANSWER = """import handler.app
response = handler.app.handler({event!r}, None)
import time
answered = time.monotonic_ns()
print({mark!r}, answered, response["summary"]["deleted"], flush=True)
"""
_SDK_ANSWER = """from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkecs.v2 import DeleteServerMetadataRequest, EcsClient
client = (
    EcsClient.new_builder()
    .with_credentials(BasicCredentials({ak!r}, {sk!r}, {project!r}))
    .with_endpoints([{url!r}])
    .build()
)
response = client.delete_server_metadata(
    DeleteServerMetadataRequest(server_id={server!r}, key={key!r})
)
import time
answered = time.monotonic_ns()
print({mark!r}, answered, int(response.status_code == 204), flush=True)
"""


def _to_mark(code: str, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Start a fresh interpreter on `code`; ms from its start to its mark, and the mark's value."""
    started = time.monotonic_ns()
    done = subprocess.run(
        [_python(), "-c", code], env=env, capture_output=True, text=True, check=False, cwd=ROOT
    )
    marks = [line.split() for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or len(marks) != 1:
        raise SystemExit(f"bench: the child failed ({done.returncode}): {done.stderr[-2000:]}")
    _, at, value = marks[0]
    return (int(at) - started) / 1e6, int(value)


def _median_to_mark(code: str, runs: int) -> float:
    return statistics.median(_to_mark(code)[0] for _ in range(runs))


def sdk_installed() -> bool:
    """Whether the official SDK (the `bench` extra) can be imported."""
    import importlib.util

    return importlib.util.find_spec("huaweicloudsdkecs") is not None


def bench_cold(runs: int) -> dict[str, Any]:
    """Median of fresh interpreters, start to mark: imports, and the first answer beside the SDK's.

    Each run deletes its own existing key (`k{run}`), the function on one server and the SDK on
    another of the same sandbox, so every first answer is a real 204 DELETE, AK/SK-signed over
    loopback; the two alternate, so both see the same machine. The function logs at INFO to
    its stdout (a pipe, read by this process); the SDK logs nothing by default.
    """
    sdk = sdk_installed()
    out: dict[str, Any] = {"runs": runs, "measure": "process start to answer, wall, median"}
    out["floor_ms"] = _median_to_mark(
        _IMPORTS.format(imports="import httpx, pydantic, structlog", mark=_MARK), runs
    )
    out["import_ms"] = _median_to_mark(
        _IMPORTS.format(imports="import handler.app", mark=_MARK), runs
    )
    out["sdk_import_ms"] = (
        _median_to_mark(
            _IMPORTS.format(imports="from huaweicloudsdkecs.v2 import EcsClient", mark=_MARK), runs
        )
        if sdk
        else None
    )
    ours: list[float] = []
    theirs: list[float] = []
    with SandboxProcess(make_seed(2 if sdk else 1, runs)) as sandbox:
        env = {**os.environ, **function_variables(sandbox.url), "POWERTOOLS_LOG_LEVEL": "INFO"}
        for run in range(runs):
            event = {"server_id": server_id(0), "key": f"k{run}"}
            ms, deleted = _to_mark(_FUNCTION_ANSWER.format(event=event, mark=_MARK), env)
            assert deleted == 1, f"the function's run {run} deleted {deleted} keys, not 1"
            ours.append(ms)
            if sdk:
                code = _SDK_ANSWER.format(
                    ak=AK,
                    sk=SK,
                    project=PROJECT,
                    url=sandbox.url,
                    server=server_id(1),
                    key=f"k{run}",
                    mark=_MARK,
                )
                ms, deleted = _to_mark(code)
                assert deleted == 1, f"the SDK's run {run} did not get a 204"
                theirs.append(ms)
        left = keys_left(sandbox.state())
    assert left == 0, f"{left} keys the cold-start runs should have deleted are still there"
    out["function_first_answer_ms"] = statistics.median(ours)
    out["sdk_first_answer_ms"] = statistics.median(theirs) if theirs else None
    if theirs:
        ratio = out["function_first_answer_ms"] / out["sdk_first_answer_ms"]
        out["first_answer_ratio"] = ratio
        out["first_answer_goal"] = FIRST_ANSWER_GOAL
        out["first_answer_met"] = ratio <= FIRST_ANSWER_GOAL
    return out


# --------------------------------------------------------------------------- 2. throughput


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose `key` is the median: a noisy neighbour spoils one run, not the figure."""
    return sorted(runs, key=lambda run: run[key])[len(runs) // 2]


def bench_throughput(pairs: int, levels: list[int], repeat: int) -> list[dict[str, Any]]:
    """Pairs per second at each MAX_CONCURRENCY, with 20 ms of latency per request.

    Beside each level, raw aiohttp doing the same DELETEs: the most any client reaches here.
    """
    rows = []
    for level in levels:
        row = _median_run([_throughput_once(pairs, level) for _ in range(repeat)], "pairs_per_s")
        row["raw_aiohttp_per_s"] = statistics.median(
            _raw_throughput_once(pairs, level) for _ in range(repeat)
        )
        rows.append(row)
    return rows


def _raw_throughput_once(pairs: int, level: int) -> float:
    servers = pairs // KEYS
    with (
        SandboxProcess(make_seed(servers, KEYS), latency_ms=LATENCY_MS) as sandbox,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        wall = time.perf_counter()
        runner.run(_raw_aiohttp(sandbox.url, _paths(servers), level))
        return servers * KEYS / (time.perf_counter() - wall)


def _throughput_once(pairs: int, level: int) -> dict[str, Any]:
    servers = pairs // KEYS
    seed = make_seed(servers, KEYS)
    with (
        SandboxProcess(seed, latency_ms=LATENCY_MS) as sandbox,
        function_runtime(sandbox.url, max_concurrency=level) as runtime,
    ):
        warm(runtime)
        box_cpu = sandbox.cpu_seconds()
        response, wall, cpu = run_function(runtime, pairs_event(servers, KEYS))
        box_cpu = sandbox.cpu_seconds() - box_cpu
    summary = response["summary"]
    return {
        "concurrency": level,
        "pairs": summary["pairs"],
        "deleted": summary["deleted"],
        "pairs_per_s": summary["pairs"] / wall,
        "ideal_per_s": level / (LATENCY_MS / 1000),
        "client_cpu_pct": 100 * cpu / wall,
        "sandbox_cpu_pct": 100 * box_cpu / wall,
        "cpu_us_per_pair": 1e6 * cpu / summary["pairs"],
    }


# --------------------------------------------------------------------------- 3. CPU per pair


async def _workers(send: Callable[[str], Awaitable[int]], paths: list[str], n: int) -> None:
    queue = iter(paths)

    async def worker() -> None:
        for path in queue:
            status = await send(path)
            if status != 204:
                raise SystemExit(f"bench: unexpected HTTP {status} for {path}")

    await asyncio.gather(*(worker() for _ in range(n)))


def _paths(servers: int) -> list[str]:
    return [
        f"/v2.1/{PROJECT}/servers/{server_id(n)}/metadata/k{i}"
        for n in range(servers)
        for i in range(KEYS)
    ]


async def _bare_httpx(url: str, paths: list[str], n: int) -> None:
    from handler.ecs.client import CookielessClient
    from handler.ecs.transport import AiohttpTransport

    transport = AiohttpTransport(max_connections=n)
    headers = {"X-Auth-Token": TOKEN}
    # The function's own client class and transport: what is left over is the function's work.
    async with CookielessClient(base_url=url, transport=transport, headers=headers) as client:

        async def send(path: str) -> int:
            return (await client.delete(path)).status_code

        await _workers(send, paths, n)


async def _raw_aiohttp(url: str, paths: list[str], n: int) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=n)
    headers = {"X-Auth-Token": TOKEN}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def send(path: str) -> int:
            async with session.delete(path) as response:
                await response.read()
                return response.status

        await _workers(send, paths, n)


def _function_cpu_us(servers: int, level: int) -> float:
    with (
        SandboxProcess(make_seed(servers, KEYS)) as sandbox,
        function_runtime(sandbox.url, max_concurrency=level) as runtime,
    ):
        warm(runtime)
        response, _, cpu = run_function(runtime, pairs_event(servers, KEYS))
    assert response["summary"]["deleted"] == servers * KEYS, response["summary"]
    return 1e6 * cpu / (servers * KEYS)


def _loop_cpu_us(
    run: Callable[[str, list[str], int], Awaitable[None]], servers: int, level: int
) -> float:
    with (
        SandboxProcess(make_seed(servers, KEYS)) as sandbox,
        asyncio.Runner(loop_factory=new_event_loop) as runner,  # the function's own loop
    ):
        cpu = time.process_time()
        runner.run(run(sandbox.url, _paths(servers), level))  # type: ignore[arg-type]
        return 1e6 * (time.process_time() - cpu) / (servers * KEYS)


def bench_cpu(pairs: int, level: int, repeat: int) -> dict[str, Any]:
    """Client CPU per pair (median of runs): the function, a bare httpx loop, raw aiohttp."""
    servers = pairs // KEYS
    out: dict[str, Any] = {"concurrency": level, "pairs": servers * KEYS}
    out["function_us"] = statistics.median(_function_cpu_us(servers, level) for _ in range(repeat))
    for name, run in (("bare_httpx_us", _bare_httpx), ("raw_aiohttp_us", _raw_aiohttp)):
        out[name] = statistics.median(_loop_cpu_us(run, servers, level) for _ in range(repeat))
    out["ratio_to_bare"] = out["function_us"] / out["bare_httpx_us"]
    return out


# --------------------------------------------------------------------------- 4. memory


#: Goal: peak RSS of one invocation of 10,000 pairs, however they arrive.
MEMORY_GOAL_MIB = 100.0
MEMORY_GOAL_PAIRS = 10_000
_MEMORY_RUN = """import json, resource
from bench.common import {build}
import handler.app
response = handler.app.handler({build}({servers}, {keys}), None)
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"response": {answer}, "rss_kib": rss_kib}}))
"""


def _memory_once(servers: int, build: str, answer: str) -> dict[str, Any]:
    """Peak RSS of a fresh process that runs one event built by `bench.common.<build>`."""
    code = _MEMORY_RUN.format(build=build, servers=servers, keys=KEYS, answer=answer)
    with SandboxProcess(make_seed(servers, KEYS)) as sandbox:
        env = {
            **os.environ,
            **function_variables(sandbox.url),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        done = subprocess.run(
            [_python(), "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
        )
        left = keys_left(sandbox.state())
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "pairs": servers * KEYS,
        "response": result["response"],
        "keys_left": left,
        "peak_rss_mib": result["rss_kib"] / 1024,
    }


def bench_memory(pairs: int) -> dict[str, Any]:
    """Peak RSS of a fresh process running `pairs` pairs: one direct event, one SQS batch."""
    servers = pairs // KEYS
    direct = _memory_once(servers, "pairs_event", 'response["summary"]')
    sqs = _memory_once(servers, "sqs_event", 'response["batchItemFailures"]')
    assert direct["response"]["deleted"] == direct["pairs"] and direct["keys_left"] == 0, direct
    failures, left = len(sqs["response"]), sqs["keys_left"]
    assert failures == 0 and left == 0, f"SQS: {failures} batchItemFailures, {left} keys left"
    peak = max(direct["peak_rss_mib"], sqs["peak_rss_mib"])
    return {
        "pairs": servers * KEYS,
        "deleted": direct["response"]["deleted"],
        "peak_rss_mib": direct["peak_rss_mib"],
        "sqs": {
            "messages": sqs["pairs"],
            "batch_item_failures": len(sqs["response"]),
            "keys_left": sqs["keys_left"],
            "peak_rss_mib": sqs["peak_rss_mib"],
        },
        "goal_mib": MEMORY_GOAL_MIB,
        "met": peak <= MEMORY_GOAL_MIB,
    }


# --------------------------------------------------------------------------- 5. the official SDK


def bench_peer(pairs: int, level: int) -> dict[str, Any] | None:
    """The official SDK (EcsClient.delete_server_metadata, AK/SK) from `level` threads."""
    try:
        from huaweicloudsdkcore.auth.credentials import BasicCredentials
        from huaweicloudsdkcore.http.http_config import HttpConfig
        from huaweicloudsdkecs.v2 import DeleteServerMetadataRequest, EcsClient
    except ImportError:
        return None
    from concurrent.futures import ThreadPoolExecutor

    servers = pairs // KEYS
    with SandboxProcess(make_seed(servers, KEYS), latency_ms=LATENCY_MS) as sandbox:
        config = HttpConfig.get_default_config()
        config.pool_connections = level
        config.pool_maxsize = level
        client = (
            EcsClient.new_builder()
            .with_http_config(config)
            .with_credentials(BasicCredentials(AK, SK, PROJECT))
            .with_endpoints([sandbox.url])
            .build()
        )

        def delete(pair: tuple[int, int]) -> int:
            request = DeleteServerMetadataRequest(key=f"k{pair[1]}", server_id=server_id(pair[0]))
            return int(client.delete_server_metadata(request).status_code)

        work = [(n, i) for n in range(servers) for i in range(KEYS)]
        cpu, wall = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=level) as pool:
            statuses = list(pool.map(delete, work))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "concurrency": level,
        "pairs": len(work),
        "deleted": sum(1 for s in statuses if s == 204),
        "pairs_per_s": len(work) / wall,
        "cpu_us_per_pair": 1e6 * cpu / len(work),
    }


# --------------------------------------------------------------------------- 6. under faults


def bench_faults(pairs: int, level: int) -> dict[str, Any]:
    """The function with the sandbox's fault mix at 20 ms latency, real backoff."""
    servers = pairs // KEYS
    with SandboxProcess(make_seed(servers, KEYS), latency_ms=LATENCY_MS, faults=FAULTS) as sandbox:
        with function_runtime(sandbox.url, max_concurrency=level) as runtime:
            warm(runtime)
            response, wall, cpu = run_function(runtime, pairs_event(servers, KEYS))
        state = sandbox.state()
    summary = response["summary"]
    left = sum(len([k for k in s["metadata"] if k.startswith("k")]) for s in state["servers"])
    return {
        "concurrency": level,
        "pairs": summary["pairs"],
        "settled": summary["deleted"] + summary["absent"],
        "dead_lettered": summary["dead_lettered"],
        "keys_left": left,
        "pairs_per_s": summary["pairs"] / wall,
        "cpu_us_per_pair": 1e6 * cpu / summary["pairs"],
        "faults": FAULTS,
    }


# --------------------------------------------------------------------------- report


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu})"
    return f"{system}, Python {platform.python_version()}"


def _md(headers: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    """A Markdown table: the first `right_from` columns left-aligned, the rest right-aligned."""
    rules = ["---" if i < right_from else "---:" for i in range(len(headers))]
    return [f"| {' | '.join(cells)} |" for cells in [headers, rules, *rows]] + [""]


def _met(met: bool) -> str:
    return "met" if met else "**not met**"


def _cold_lines(cold: dict[str, Any]) -> list[str]:
    floor = cold["floor_ms"]
    entries = [
        ("floor: `import httpx, pydantic, structlog`", floor),
        ("`import handler.app`", cold["import_ms"]),
    ]
    if cold.get("sdk_import_ms"):
        entries.append(
            ("official SDK: `from huaweicloudsdkecs.v2 import EcsClient`", cold["sdk_import_ms"])
        )
    entries.append(
        ("the function: import + first answer (1 pair deleted)", cold["function_first_answer_ms"])
    )
    if cold.get("sdk_first_answer_ms"):
        entries.append(
            (
                "official SDK: import, `EcsClient`, first `delete_server_metadata` (204)",
                cold["sdk_first_answer_ms"],
            )
        )
    rows = [[name, f"{ms:.0f}", f"{ms / floor:.2f}"] for name, ms in entries]
    title = (
        f"**1. Cold start** (fresh interpreters, process start to the end of the imports or to "
        f"the answer, wall time, median of {cold['runs']}; each first answer deletes an existing "
        "key, AK/SK-signed over loopback, the function logging at INFO)"
    )
    lines = [title, "", *_md(["command", "ms", "x floor"], rows)]
    if cold.get("sdk_first_answer_ms"):
        headers = ["function first answer ms", "SDK first answer ms", "ratio", "goal", "result"]
        cells = [
            [
                f"{cold['function_first_answer_ms']:.0f}",
                f"{cold['sdk_first_answer_ms']:.0f}",
                f"{cold['first_answer_ratio']:.2f}x",
                f"≤ {cold['first_answer_goal']}× the SDK's",
                _met(cold["first_answer_met"]),
            ]
        ]
        lines += _md(headers, cells, right_from=0)
    return lines


def _memory_lines(memory: dict[str, Any]) -> list[str]:
    sqs = memory["sqs"]
    pairs = memory["pairs"]
    result = _met(memory["met"])
    if pairs != MEMORY_GOAL_PAIRS:
        result += f" at {pairs:,} pairs (the goal is for {MEMORY_GOAL_PAIRS:,})"
    headers = [
        f"SQS batch of {sqs['messages']:,} messages, peak RSS MiB",
        f"one direct event of the same {pairs:,} pairs, MiB",
        "SQS / direct",
        "goal",
        "result",
    ]
    cells = [
        [
            f"{sqs['peak_rss_mib']:.0f}",
            f"{memory['peak_rss_mib']:.0f}",
            f"{sqs['peak_rss_mib'] / memory['peak_rss_mib']:.2f}x",
            f"≤ {memory['goal_mib']:.0f} MiB",
            result,
        ]
    ]
    title = (
        "**4. Memory** (peak RSS, `ru_maxrss`, of a fresh process running one invocation; "
        f"{memory['deleted']:,} deleted by the direct event, {sqs['batch_item_failures']} "
        f"batchItemFailures and {sqs['keys_left']} keys left after the SQS batch)"
    )
    return [title, "", *_md(headers, cells, right_from=0)]


def _throughput_lines(rows: list[dict[str, Any]]) -> list[str]:
    headers = ["MAX_CONCURRENCY", "ideal pairs/s", "pairs/s", "% of ideal"]
    headers += ["raw aiohttp % of ideal", "function CPU %", "sandbox CPU %", "CPU µs/pair"]
    headers += ["goal", "result"]
    cells = [
        [
            str(r["concurrency"]),
            f"{r['ideal_per_s']:,.0f}",
            f"{r['pairs_per_s']:,.0f}",
            f"{100 * r['pairs_per_s'] / r['ideal_per_s']:.1f}",
            f"{100 * r.get('raw_aiohttp_per_s', 0) / r['ideal_per_s']:.1f}",
            f"{r['client_cpu_pct']:.0f}",
            f"{r['sandbox_cpu_pct']:.0f}",
            f"{r['cpu_us_per_pair']:.0f}",
            f"≥ {THROUGHPUT_GOAL_PCT:.0f} % of ideal",
            _met(100 * r["pairs_per_s"] / r["ideal_per_s"] >= THROUGHPUT_GOAL_PCT),
        ]
        for r in rows
    ]
    title = (
        f"**2. Throughput** ({rows[0]['pairs']:,} pairs, {LATENCY_MS:.0f} ms per request; "
        "each row the median of its runs)"
    )
    return [title, "", *_md(headers, cells, right_from=0)]


def _cpu_lines(cpu: dict[str, Any]) -> list[str]:
    bare = cpu["bare_httpx_us"]
    rows = [
        ["the function (validation, signing, retries, logs)", cpu["function_us"]],
        ["bare loop of DELETEs, same httpx client and transport", bare],
        ["raw aiohttp, no httpx", cpu["raw_aiohttp_us"]],
    ]
    cells = [[name, f"{us:.0f}", f"{us / bare:.2f}", "", ""] for name, us in rows]
    cells[0][3:] = [f"≤ {CPU_GOAL_RATIO}× bare httpx", _met(cpu["ratio_to_bare"] <= CPU_GOAL_RATIO)]
    title = (
        f"**3. CPU per pair** ({cpu['pairs']:,} pairs, {cpu['concurrency']} in flight, "
        "no added latency; medians of runs)"
    )
    return [title, "", *_md(["client", "CPU µs/pair", "x bare httpx", "goal", "result"], cells)]


def _peer_lines(peer: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    cells = [
        [
            f"the function, MAX_CONCURRENCY={ours['concurrency']}",
            f"{ours['pairs_per_s']:,.0f}",
            f"{ours['cpu_us_per_pair']:.0f}",
        ],
        [
            f"huaweicloudsdkecs `delete_server_metadata`, {peer['concurrency']} threads",
            f"{peer['pairs_per_s']:,.0f}",
            f"{peer['cpu_us_per_pair']:.0f}",
        ],
    ]
    speed = ours["pairs_per_s"] / peer["pairs_per_s"]
    cpu = ours["cpu_us_per_pair"] / peer["cpu_us_per_pair"]
    ratios = [
        [
            "pairs/s",
            f"{speed:.2f}x",
            f"≥ {PEER_THROUGHPUT_GOAL:.0f}×",
            _met(speed >= PEER_THROUGHPUT_GOAL),
        ],
        ["CPU µs/pair", f"{cpu:.2f}x", "≤ 1/3", _met(cpu <= PEER_CPU_GOAL)],
    ]
    title = (
        f"**5. The official SDK** ({peer['pairs']:,} pairs, {peer['concurrency']} in flight, "
        f"{LATENCY_MS:.0f} ms latency)"
    )
    return [
        title,
        "",
        *_md(["client", "pairs/s", "CPU µs/pair"], cells),
        *_md(["the function / the SDK", "ratio", "goal", "result"], ratios),
    ]


def _faults_line(faults: dict[str, Any]) -> list[str]:
    return [
        f"**6. Under faults** ({faults['pairs']:,} pairs, MAX_CONCURRENCY={faults['concurrency']}, "
        f"{LATENCY_MS:.0f} ms latency, real backoff; per-DELETE fault rates "
        f"{json.dumps(faults['faults']['rates'])}, Retry-After 1 s on half the 429s): "
        f"**{faults['pairs_per_s']:,.0f} pairs/s**, {faults['settled']:,} settled, "
        f"{faults['dead_lettered']:,} dead-lettered, {faults['keys_left']:,} keys left.",
        "",
    ]


def _signer_lines(rows: list[dict[str, str]]) -> list[str]:
    return [
        "**9. SigV4 signer choice** (the SQS sink's; AWS's published vectors, and a POST "
        "SendMessageBatch of 10 KiB with a session token; bench/sigv4_choice.py prints notes)",
        "",
        *signer_table(rows),
        "",
    ]


def _goal(measure: str, figure: float, goal: str, met: bool) -> dict[str, Any]:
    return {"measure": measure, "figure": round(figure, 3), "goal": goal, "met": met}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal the run measured: the figure, the goal and whether it is met (latest.json)."""
    out: list[dict[str, Any]] = []
    cold = results.get("cold") or {}
    if cold.get("first_answer_ratio") is not None:
        out.append(
            _goal(
                "first answer, the function / the SDK",
                cold["first_answer_ratio"],
                f"<= {FIRST_ANSWER_GOAL}",
                cold["first_answer_met"],
            )
        )
    rows = results.get("throughput") or []
    for r in rows:
        pct = 100 * r["pairs_per_s"] / r["ideal_per_s"]
        out.append(
            _goal(
                f"throughput % of ideal at {r['concurrency']} in flight",
                pct,
                f">= {THROUGHPUT_GOAL_PCT}",
                pct >= THROUGHPUT_GOAL_PCT,
            )
        )
    cpu = results.get("cpu")
    if cpu:
        ratio = cpu["ratio_to_bare"]
        out.append(
            _goal(
                "CPU per pair / bare httpx", ratio, f"<= {CPU_GOAL_RATIO}", ratio <= CPU_GOAL_RATIO
            )
        )
    memory = results.get("memory")
    if memory:
        for name, mib in (
            (f"peak RSS MiB, direct event of {memory['pairs']:,} pairs", memory["peak_rss_mib"]),
            (
                f"peak RSS MiB, SQS batch of {memory['pairs']:,} messages",
                memory["sqs"]["peak_rss_mib"],
            ),
        ):
            out.append(_goal(name, mib, f"<= {MEMORY_GOAL_MIB:.0f}", mib <= MEMORY_GOAL_MIB))
    peer = results.get("peer")
    ours = next((r for r in rows if peer and r["concurrency"] == peer["concurrency"]), None)
    if peer and ours:
        speed = ours["pairs_per_s"] / peer["pairs_per_s"]
        cpu_ratio = ours["cpu_us_per_pair"] / peer["cpu_us_per_pair"]
        out.append(
            _goal(
                "pairs/s, the function / the SDK",
                speed,
                f">= {PEER_THROUGHPUT_GOAL}",
                speed >= PEER_THROUGHPUT_GOAL,
            )
        )
        out.append(
            _goal(
                "CPU per pair, the function / the SDK",
                cpu_ratio,
                "<= 1/3",
                cpu_ratio <= PEER_CPU_GOAL,
            )
        )
    for run in (results.get("pacing") or {}).get("runs", []):
        if "goal" in run:
            out.append(
                _goal(
                    f"pacing, MAX_REQUESTS_PER_SECOND {run['mode']}: share of the limit",
                    run["share_of_limit"],
                    run["goal"],
                    run["met"],
                )
            )
    return out


def table(results: dict[str, Any]) -> str:
    """Render the results as the Markdown the README keeps."""
    lines = [f"Run {results['date']} on {results['machine']}.", ""]
    if results.get("cold"):
        lines += _cold_lines(results["cold"])
    rows = results.get("throughput") or []
    if rows:
        lines += _throughput_lines(rows)
    if results.get("cpu"):
        lines += _cpu_lines(results["cpu"])
    if results.get("memory"):
        lines += _memory_lines(results["memory"])
    peer = results.get("peer")
    ours = next((r for r in rows if peer and r["concurrency"] == peer["concurrency"]), None)
    if peer and ours:
        lines += _peer_lines(peer, ours)
    if results.get("faults"):
        lines += _faults_line(results["faults"])
    if results.get("pacing"):
        lines += pacing_lines(results["pacing"])
    if results.get("limiter"):
        lines += limiter_lines(results["limiter"])
    if results.get("sigv4"):
        lines += _signer_lines(results["sigv4"])
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    """Write the throughput and CPU charts as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = results.get("throughput") or []
    cpu = results.get("cpu")
    peer = results.get("peer")
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1.3, 1.2, 0.9]}
    )
    if rows:
        levels = [str(r["concurrency"]) for r in rows]
        left.bar(levels, [r["ideal_per_s"] for r in rows], color="#d9d9d9", label="ideal")
        left.bar(
            levels,
            [r["pairs_per_s"] for r in rows],
            color="#2b6cb0",
            width=0.5,
            label="the function",
        )
        if peer:
            left.scatter(
                [str(peer["concurrency"])],
                [peer["pairs_per_s"]],
                color="#c53030",
                zorder=3,
                label="official SDK (threads)",
            )
        if all("raw_aiohttp_per_s" in r for r in rows):
            left.plot(
                levels,
                [r["raw_aiohttp_per_s"] for r in rows],
                "k_",
                markersize=30,
                label="raw aiohttp (the floor)",
            )
        left.set_title(f"Pairs per second, {LATENCY_MS:.0f} ms latency")
        left.set_xlabel("requests in flight")
        left.legend()
    if cpu:
        names = ["raw aiohttp", "bare httpx loop", "the function"]
        values = [cpu["raw_aiohttp_us"], cpu["bare_httpx_us"], cpu["function_us"]]
        middle.barh(names, values, color=["#a0aec0", "#718096", "#2b6cb0"])
        middle.set_title(f"CPU µs per pair, {cpu['concurrency']} in flight, no latency")
        for y, value in enumerate(values):
            middle.text(value, y, f" {value:.0f}", va="center")
    ours = next((r for r in rows if peer and r["concurrency"] == peer["concurrency"]), None)
    if peer and ours:
        values = [ours["cpu_us_per_pair"], peer["cpu_us_per_pair"]]
        right.bar(["the function", "official SDK"], values, color=["#2b6cb0", "#c53030"])
        right.set_title(f"CPU µs/pair, {peer['concurrency']} in flight, {LATENCY_MS:.0f} ms")
        for x, value in enumerate(values):
            right.text(x, value, f"{value:.0f}", ha="center", va="bottom")
    fig.suptitle(f"ecs-metadata-janitor, {results['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


SECTIONS = (
    "cold",
    "throughput",
    "cpu",
    "memory",
    "peer",
    "faults",
    "pacing",
    "limiter",
    "sigv4",
)


def main() -> int:
    """Run the selected benchmarks and report them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and runs (a smoke test)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for latest.json/.png")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    pairs = 500 if args.quick else 5000
    repeat = 1 if args.quick else 3
    pin_self_to_client_core()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    steps: dict[str, Callable[[], Any]] = {
        "cold": lambda: bench_cold(3 if args.quick else 11),
        "throughput": lambda: bench_throughput(pairs, [8, 16, 32, 64], repeat),
        "cpu": lambda: bench_cpu(pairs, 32, repeat),
        "memory": lambda: bench_memory(1000 if args.quick else 10_000),
        "peer": lambda: bench_peer(pairs, 64),
        "faults": lambda: bench_faults(pairs, 64),
        "pacing": bench_pacing,
        "limiter": measure_limiters,
        "sigv4": lambda: measure_signers(SIGNERS, 3 if args.quick else 7)[0],
    }
    for name in SECTIONS:
        if name in only:
            started = time.perf_counter()
            print(f"… {name}", file=sys.stderr, flush=True)
            results[name] = steps[name]()
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    results["goals"] = goals(results)
    report = table(results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(report + "\n")
    if plot(results, args.out / "latest.png"):
        print(f"wrote {args.out / 'latest.png'}", file=sys.stderr)
    else:
        print("matplotlib not installed (pip install -e '.[bench]'): no PNG", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
