"""Pacing to the gateway (issue 9 §2): deletes per second and 429s against a rate-limited sandbox.

The sandbox refuses with 429 APIGW.0308 (no Retry-After) every request beyond `rate_limit_rps`
in any sliding second, as Huawei's API gateway does. The function deletes 1,200 pairs, 64 in
flight, 10 ms latency, three ways: with MAX_REQUESTS_PER_SECOND at the limit, without it (the
adaptive rate alone), and, as the peer, with no pacing at all (blind retries, what the function
did before this issue). Successful deletes per second are counted from the sandbox's own log,
from the first request to the last 204.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import AK, PROJECT, SK, SandboxProcess, keys_left, make_seed, pairs_event
from handler import logs
from handler.config import Config
from handler.ecs.pacing import Pacer
from handler.runtime import Runtime

PAIRS = 1200
KEYS = 10
IN_FLIGHT = 64
LIMIT_RPS = 100
LATENCY_MS = 10.0
#: Goals: with the ceiling at the limit, and without it: (share of the limit, most 429s).
GOALS = {"ceiling": (0.95, 0.01), "adaptive": (0.85, 0.10)}


class Unpaced(Pacer):
    """No ceiling, and deaf to 429s: every request goes as soon as a slot is free."""

    def record(self, sent_at: float, *, throttled: bool) -> None:
        """Learn nothing."""


def _requests(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=30) as response:
        data: list[dict[str, Any]] = json.load(response)
    return data


def _once(mode: str) -> dict[str, Any]:
    servers = PAIRS // KEYS
    faults = {"rate_limit_rps": LIMIT_RPS}
    seed = make_seed(servers, KEYS)
    with (
        SandboxProcess(seed, latency_ms=LATENCY_MS, faults=faults) as sandbox,
        tempfile.TemporaryDirectory(prefix="janitor-bench-dl-") as folder,
        Path(os.devnull).open("w") as devnull,
    ):
        config = Config(
            ecs_endpoint=sandbox.url,
            huaweicloud_sdk_project_id=PROJECT,
            huaweicloud_sdk_ak=AK,
            huaweicloud_sdk_sk=SK,
            dead_letter_url=str(Path(folder) / "dl.jsonl"),
            max_concurrency=IN_FLIGHT,
            max_requests_per_second=LIMIT_RPS if mode == "ceiling" else None,
        )
        logs.configure(config.powertools_service_name, config.powertools_log_level)
        logs.set_stream(devnull)
        runtime = Runtime(config)
        if mode == "unpaced":
            runtime.client.pacer = Unpaced()
        try:
            time.sleep(1.1)  # the sandbox's window starts empty, as a quiet gateway's would
            response = runtime.invoke(pairs_event(servers, KEYS), None)
            pacer = runtime.client.pacer
        finally:
            runtime.close()
            logs.set_stream(None)
        log = _requests(sandbox.url)
        left = keys_left(sandbox.state())
    sent = [e for e in log if e["method"] in ("DELETE", "GET")]
    deletes = [e for e in sent if e["method"] == "DELETE" and e["status"] == 204]
    throttled = sum(1 for e in sent if e["status"] == 429)
    span = max(e["at"] for e in deletes) - min(e["at"] for e in sent)
    rate = len(deletes) / span if span > 0 else 0.0
    summary = response["summary"]
    return {
        "mode": mode,
        "requests": len(sent),
        "throttled": throttled,
        "throttled_share": throttled / len(sent) if sent else 0.0,
        "deleted": summary["deleted"],
        "dead_lettered": summary["dead_lettered"],
        "keys_left": left,
        "seconds": span,
        "deletes_per_s": rate,
        "share_of_limit": rate / LIMIT_RPS,
        "cuts": pacer.cuts,
    }


def bench_pacing() -> dict[str, Any]:
    """The three runs, with each goal and whether it is met."""
    runs = [_once(mode) for mode in ("ceiling", "adaptive", "unpaced")]
    for run in runs:
        goal = GOALS.get(run["mode"])
        run["all_deleted"] = run["deleted"] == PAIRS and run["keys_left"] == 0
        if goal is not None:
            share, most = goal
            run["goal"] = f">= {share:.0%} of the limit, <= {most:.0%} 429s, all deleted"
            run["met"] = (
                run["share_of_limit"] >= share
                and run["throttled_share"] <= most
                and run["all_deleted"]
            )
    return {"pairs": PAIRS, "in_flight": IN_FLIGHT, "limit_rps": LIMIT_RPS, "runs": runs}


def pacing_lines(result: dict[str, Any]) -> list[str]:
    """The Markdown rows of the pacing benchmark."""
    names = {
        "ceiling": f"MAX_REQUESTS_PER_SECOND={LIMIT_RPS}",
        "adaptive": "unset (adaptive after a 429)",
        "unpaced": "peer: no pacing (blind retries)",
    }
    rows = []
    for run in result["runs"]:
        goal = run.get("goal", "-")
        met = "-" if "met" not in run else ("met" if run["met"] else "**not met**")
        rows.append(
            f"| {names[run['mode']]} | {run['deletes_per_s']:.1f} | "
            f"{run['share_of_limit']:.1%} | {run['throttled']:,} / {run['requests']:,} "
            f"({run['throttled_share']:.1%}) | {run['deleted']:,} | {run['cuts']} | {goal} | "
            f"{met} |"
        )
    title = (
        f"**7. Pacing to the gateway** ({result['pairs']:,} pairs, {result['in_flight']} in "
        f"flight, sandbox limit {result['limit_rps']} requests/s sliding, {LATENCY_MS:.0f} ms "
        "latency, 429 without Retry-After)"
    )
    head = (
        "| MAX_REQUESTS_PER_SECOND | deletes/s | of the limit | 429s / requests | deleted "
        "| rate cuts | goal | result |"
    )
    return [title, "", head, "|---|--:|--:|--:|--:|--:|---|---|", *rows, ""]


if __name__ == "__main__":
    outcome = bench_pacing()
    print("\n".join(pacing_lines(outcome)))
