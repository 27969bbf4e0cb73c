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
    make_seed,
    pairs_event,
    pin_self_to_client_core,
    server_id,
)
from handler.runtime import new_event_loop

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
    """The environment that points the function at a sandbox, AK/SK-signed."""
    return {
        "ECS_ENDPOINT": url,
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
    }


@contextmanager
def function_env(url: str, **extra: str) -> Iterator[None]:
    """Point the in-process function at a sandbox (AK/SK), logs dropped, dead letters to a file."""
    from handler import app, logs

    saved = dict(os.environ)
    folder = tempfile.TemporaryDirectory(prefix="janitor-bench-dl-")
    os.environ.update(function_variables(url))
    os.environ.update(DEAD_LETTER_URL=str(Path(folder.name) / "dl.jsonl"), **extra)
    with Path(os.devnull).open("w") as devnull:
        app.reset_runtime()
        logs.set_stream(devnull)
        try:
            yield
        finally:
            app.reset_runtime()
            logs.set_stream(None)
            os.environ.clear()
            os.environ.update(saved)
            folder.cleanup()


def run_function(event: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
    """Invoke the function once; return its response, wall seconds and CPU seconds."""
    from handler import app

    cpu, wall = time.process_time(), time.perf_counter()
    response: dict[str, Any] = app.handler(event, None)
    return response, time.perf_counter() - wall, time.process_time() - cpu


def warm(url: str) -> None:
    """One tiny invocation so the runtime, the pool and the imports are ready."""
    from handler import app

    app.handler({"server_id": server_id(0), "key": "warm-up-absent"}, None)


# --------------------------------------------------------------------------- 1. cold start


def _median_wall(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_cold(runs: int) -> dict[str, Any]:
    """Median wall time of fresh interpreters: the floor, our import and first call, the SDK."""
    event = json.dumps({"server_id": server_id(0), "key": "k0"})
    out: dict[str, Any] = {"runs": runs}
    out["floor_ms"] = _median_wall([_python(), "-c", "import httpx, pydantic, structlog"], runs)
    out["import_ms"] = _median_wall([_python(), "-c", "import handler.app"], runs)
    with SandboxProcess(make_seed(1, runs + 2)) as sandbox:
        env = {**os.environ, **function_variables(sandbox.url), "POWERTOOLS_LOG_LEVEL": "ERROR"}
        code = f"import json, handler.app as a; a.handler(json.loads({event!r}))"
        out["first_invocation_ms"] = _median_wall([_python(), "-c", code], runs, env)
    try:
        out["sdk_import_ms"] = _median_wall(
            [_python(), "-c", "from huaweicloudsdkecs.v2 import EcsClient"], runs
        )
    except subprocess.CalledProcessError:
        out["sdk_import_ms"] = None
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
        function_env(sandbox.url, MAX_CONCURRENCY=str(level)),
    ):
        warm(sandbox.url)
        box_cpu = sandbox.cpu_seconds()
        response, wall, cpu = run_function(pairs_event(servers, KEYS))
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
        function_env(sandbox.url, MAX_CONCURRENCY=str(level)),
    ):
        warm(sandbox.url)
        response, _, cpu = run_function(pairs_event(servers, KEYS))
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


def bench_memory(pairs: int) -> dict[str, Any]:
    """Peak RSS of a fresh process that runs one event of `pairs` pairs."""
    servers = pairs // KEYS
    code = (
        "import json, resource, sys\n"
        "from bench.common import pairs_event\n"
        "import handler.app as a\n"
        f"r = a.handler(pairs_event({servers}, {KEYS}))\n"
        "print(json.dumps({'deleted': r['summary']['deleted'],"
        " 'rss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
    )
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
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "pairs": servers * KEYS,
        "deleted": result["deleted"],
        "peak_rss_mib": result["rss_kib"] / 1024,
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
        with function_env(sandbox.url, MAX_CONCURRENCY=str(level)):
            warm(sandbox.url)
            response, wall, cpu = run_function(pairs_event(servers, KEYS))
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


def _cold_lines(cold: dict[str, Any]) -> list[str]:
    floor = cold["floor_ms"]
    entries = [
        ("floor: `import httpx, pydantic, structlog`", floor),
        ("`import handler.app`", cold["import_ms"]),
        ("import + first invocation (1 pair, signed, over loopback)", cold["first_invocation_ms"]),
    ]
    if cold.get("sdk_import_ms"):
        entries.append(
            ("official SDK: `from huaweicloudsdkecs.v2 import EcsClient`", cold["sdk_import_ms"])
        )
    rows = [[name, f"{ms:.0f}", f"{ms / floor:.2f}"] for name, ms in entries]
    title = f"**1. Cold start** (median wall time of {cold['runs']} fresh interpreters)"
    return [title, "", *_md(["command", "ms", "x floor"], rows)]


def _throughput_lines(rows: list[dict[str, Any]]) -> list[str]:
    headers = ["MAX_CONCURRENCY", "ideal pairs/s", "pairs/s", "% of ideal"]
    headers += ["raw aiohttp % of ideal", "function CPU %", "sandbox CPU %", "CPU µs/pair"]
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
    cells = [[name, f"{us:.0f}", f"{us / bare:.2f}"] for name, us in rows]
    title = (
        f"**3. CPU per pair** ({cpu['pairs']:,} pairs, {cpu['concurrency']} in flight, "
        "no added latency; medians of runs)"
    )
    return [title, "", *_md(["client", "CPU µs/pair", "x bare httpx"], cells)]


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
        [
            "the function / the SDK",
            f"{ours['pairs_per_s'] / peer['pairs_per_s']:.2f}x",
            f"{ours['cpu_us_per_pair'] / peer['cpu_us_per_pair']:.2f}x",
        ],
    ]
    title = (
        f"**5. The official SDK** ({peer['pairs']:,} pairs, {peer['concurrency']} in flight, "
        f"{LATENCY_MS:.0f} ms latency)"
    )
    return [title, "", *_md(["client", "pairs/s", "CPU µs/pair"], cells)]


def _faults_line(faults: dict[str, Any]) -> list[str]:
    return [
        f"**6. Under faults** ({faults['pairs']:,} pairs, MAX_CONCURRENCY={faults['concurrency']}, "
        f"{LATENCY_MS:.0f} ms latency, real backoff; per-DELETE fault rates "
        f"{json.dumps(faults['faults']['rates'])}, Retry-After 1 s on half the 429s): "
        f"**{faults['pairs_per_s']:,.0f} pairs/s**, {faults['settled']:,} settled, "
        f"{faults['dead_lettered']:,} dead-lettered, {faults['keys_left']:,} keys left.",
        "",
    ]


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
    memory = results.get("memory")
    if memory:
        lines += [
            f"**4. Memory**: peak RSS for one event of {memory['pairs']:,} pairs: "
            f"**{memory['peak_rss_mib']:.0f} MiB** ({memory['deleted']:,} deleted).",
            "",
        ]
    peer = results.get("peer")
    ours = next((r for r in rows if peer and r["concurrency"] == peer["concurrency"]), None)
    if peer and ours:
        lines += _peer_lines(peer, ours)
    if results.get("faults"):
        lines += _faults_line(results["faults"])
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


SECTIONS = ("cold", "throughput", "cpu", "memory", "peer", "faults")


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
    }
    for name in SECTIONS:
        if name in only:
            started = time.perf_counter()
            print(f"… {name}", file=sys.stderr, flush=True)
            results[name] = steps[name]()
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
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
