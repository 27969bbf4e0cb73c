"""Issue 7 §2: `attempts` is the number of DELETEs that left the function, and MAX_ATTEMPTS caps it.

The sandbox logs every request it receives (a dropped one included), so each pair's reported
attempts can be compared with what arrived. The function runs with its default transport,
built from the environment, through handler.app.handler.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import app
from handler.config import load_config
from handler.local import FakeContext as LambdaContext
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for, demo_seed
from tests.sandbox._demo import DB1, WEB1


def deletes_per_pair(sb: Sandbox) -> Counter[tuple[str, str]]:
    """The DELETE requests the sandbox received, per (server id, key)."""
    counts: Counter[tuple[str, str]] = Counter()
    for request in sb.requests():
        if request["method"] != "DELETE":
            continue
        parts = request["path"].split("/")  # /v2.1/{project}/servers/{id}/metadata/{key}
        counts[(parts[4], parts[6])] += 1
    return counts


def reported(response: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {
        (r["item"]["server_id"], r["item"]["key"]): r.get("attempts", 0)
        for r in response["results"]
        if r["item"]
    }


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_dropped_connections_count_every_delete_sent(
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    max_attempts: int,
) -> None:
    with Sandbox(demo_seed(), faults={"seed": 1, "rates": {"drop": 1.0}}) as sb:
        configure_for(monkeypatch, sb, dead_letters, MAX_ATTEMPTS=str(max_attempts))
        response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
        sent = deletes_per_pair(sb)

    (result,) = response["results"]
    assert result["outcome"] == "retries_exhausted"
    # MAX_ATTEMPTS is what is sent, at most; aiohttp's own silent re-send must not add one.
    assert sent[(WEB1, "lease-owner")] == max_attempts
    assert result["attempts"] == max_attempts
    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["attempts"] == max_attempts
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [line for line in logged if line.get("message") == "pair dead-lettered"]
    assert line["attempts"] == max_attempts


def _fault_seed(servers: int, keys: int) -> dict[str, Any]:
    seed = demo_seed()
    seed["servers"] = [
        {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "project_id": DEMO_PROJECT,
            "name": f"s-{n}",
            "vm_state": "active",
            "locked": False,
            "metadata": {f"k{i}": "v" for i in range(keys)},
        }
        for n in range(servers)
    ]
    return seed


def test_under_mixed_faults_attempts_equal_the_deletes_the_server_saw(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = _fault_seed(servers=20, keys=5)
    faults = {
        "seed": 20261127,
        "rates": {"drop": 0.15, "lost_response": 0.15, "503": 0.1, "slow": 0.05},
        "rate_limit_rps": 100,  # 429s as the gateway gives them: beyond a rate
        "retry_after_ratio": 0.0,
        "slow_ms": 400,  # past REQUEST_TIMEOUT_S: a timed-out DELETE still left the function
    }
    items = [{"server_id": s["id"], "keys": list(s["metadata"])} for s in seed["servers"]]
    with Sandbox(seed, faults=faults) as sb:
        configure_for(
            monkeypatch,
            sb,
            dead_letters,
            MAX_ATTEMPTS="4",
            MAX_CONCURRENCY="8",
            REQUEST_TIMEOUT_S="0.1",
        )
        response = app.handler({"items": items}, None)
        sent = deletes_per_pair(sb)
        faults_seen = {r["fault"] for r in sb.requests()}

    got = reported(response)
    assert len(got) == 100
    assert {"slow", "rate_limit"} <= faults_seen
    mismatched = {pair: (n, sent[pair]) for pair, n in got.items() if n != sent[pair]}
    assert not mismatched, f"(reported, sent) per pair: {mismatched}"
    assert max(sent.values()) <= 4


@pytest.mark.parametrize(("max_attempts", "expected"), [(1, 1), (2, 2), (6, 2)])
def test_a_401_re_sign_counts_as_an_attempt_within_max_attempts(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    max_attempts: int,
    expected: int,
) -> None:
    configure_for(
        monkeypatch,
        sandbox,
        dead_letters,
        HUAWEICLOUD_SDK_SK="not-the-sandbox-secret-key",
        MAX_ATTEMPTS=str(max_attempts),
    )
    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)

    (result,) = response["results"]
    assert result["outcome"] == "forbidden"
    sent = deletes_per_pair(sandbox)[(WEB1, "lease-owner")]
    assert sent == expected  # one DELETE, and one re-signed after the 401, if the budget allows
    assert sent <= max_attempts
    assert result["attempts"] == sent


def test_a_pair_that_never_got_a_slot_before_the_deadline_reports_zero_attempts(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "attempts-test-token")
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    monkeypatch.setenv("MAX_CONCURRENCY", "1")
    runtime = Runtime(load_config(), transport=httpx.MockTransport(hang))
    event = {"items": [{"server_id": WEB1, "key": "a"}, {"server_id": DB1, "key": "b"}]}
    try:
        started = time.perf_counter()
        response = runtime.invoke(event, LambdaContext(1000))
        elapsed = time.perf_counter() - started
    finally:
        runtime.close()

    assert elapsed < 1.0
    assert [r["outcome"] for r in response["results"]] == ["deadline", "deadline"]
    # One DELETE left (and hung); the other waited for the only slot and was never sent.
    assert sorted(reported(response).values()) == [0, 1]
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert sorted(letter["attempts"] for letter in letters) == [0, 1]
