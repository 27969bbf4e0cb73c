"""Chaos over loopback: 1,200 pairs through SQS and direct events while the sandbox misbehaves."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from handler import app
from tests.conftest import DEMO_PROJECT, SandboxFactory, demo_seed

SERVERS = 120
KEYS_PER_SERVER = 10
FAULTS = {
    "seed": 20261127,
    "rates": {"503": 0.08, "drop": 0.04, "lost_response": 0.05, "slow": 0.02},
    # Throttling as the gateway does it: 429 APIGW.0308 beyond a rate, not at random (a 429
    # slows the function's sending rate, and random ones would keep it down: README, Pacing).
    "rate_limit_rps": 300,
    "retry_after_s": 1,
    "retry_after_ratio": 0.5,
    "slow_ms": 400,
}


def chaos_seed() -> dict[str, Any]:
    seed = demo_seed()
    seed["servers"] = [
        {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "project_id": DEMO_PROJECT,
            "name": f"chaos-{n}",
            "vm_state": "active",
            "locked": False,
            "active_after_s": None,
            "metadata": {f"k{i}": "v" for i in range(KEYS_PER_SERVER)} | {"keep": "me"},
        }
        for n in range(SERVERS)
    ]
    return seed


def sqs_event(messages: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": mid, "eventSource": "aws:sqs", "body": json.dumps(body), "attributes": {}}
            for mid, body in messages
        ]
    }


@pytest.mark.slow
def test_nothing_is_lost_under_faults(
    make_sandbox: SandboxFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = chaos_seed()
    servers = [s["id"] for s in seed["servers"]]
    keys = [f"k{i}" for i in range(KEYS_PER_SERVER)]
    dead_letters = tmp_path / "dl.jsonl"
    sb = make_sandbox(seed, FAULTS)
    monkeypatch.setenv("ECS_ENDPOINT", sb.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", sb.credentials["ak"])
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", sb.credentials["sk"])
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    monkeypatch.setenv("REQUEST_TIMEOUT_S", "0.15")
    monkeypatch.setenv("MAX_CONCURRENCY", "32")

    # Half the servers through direct invocations, half through SQS batches of 10 messages.
    direct_servers, sqs_servers = servers[: SERVERS // 2], servers[SERVERS // 2 :]
    direct = {"items": [{"server_id": s, "keys": keys} for s in direct_servers]}
    direct_response = app.handler(direct, None)

    messages = [(f"m-{n}", {"server_id": s, "keys": keys}) for n, s in enumerate(sqs_servers)]
    by_id = dict(messages)
    pending = [messages[i : i + 10] for i in range(0, len(messages), 10)]
    returned: list[str] = []
    for batch in pending:
        response = app.handler(sqs_event(batch), None)
        returned += [f["itemIdentifier"] for f in response["batchItemFailures"]]

    state = {s["id"]: s["metadata"] for s in sb.state()["servers"]}
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    letters = (
        [json.loads(line) for line in dead_letters.read_text().splitlines()]
        if (dead_letters.exists())
        else []
    )
    dead = {(d["item"]["server_id"], d["item"]["key"]) for d in letters if d["item"]}

    # The faults really happened.
    faults_seen = {r["fault"] for r in sb.requests() if r["fault"]}
    assert {"503", "rate_limit", "drop", "lost_response", "slow"} <= faults_seen

    # No pair is reported settled while its key is still there.
    settled = [line for line in logs if line.get("message") == "pair settled"]
    assert len(settled) >= 900
    for line in settled:
        assert line["key"] not in state[line["server_id"]], line

    # Direct: every pair is settled or dead-lettered.
    results = direct_response["results"]
    assert len(results) == len(direct_servers) * KEYS_PER_SERVER
    for result in results:
        pair = (result["item"]["server_id"], result["item"]["key"])
        if result["outcome"] in ("deleted", "absent"):
            assert pair[1] not in state[pair[0]]
        else:
            assert pair in dead, result

    # SQS: a message not returned has every pair gone or dead-lettered.
    for mid, body in messages:
        if mid in returned:
            continue
        for key in body["keys"]:
            assert key not in state[body["server_id"]] or (body["server_id"], key) in dead

    # The queue redelivers what came back; with the faults gone, everything settles.
    sb.set_faults(None)
    for _ in range(3):
        if not returned:
            break
        response = app.handler(sqs_event([(mid, by_id[mid]) for mid in returned]), None)
        returned = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert returned == []
    final = {s["id"]: s["metadata"] for s in sb.state()["servers"]}
    dead_after = {
        (d["item"]["server_id"], d["item"]["key"])
        for d in map(
            json.loads, dead_letters.read_text().splitlines() if dead_letters.exists() else []
        )
        if d["item"]
    }
    for server in servers:
        for key in keys:
            assert key not in final[server] or (server, key) in dead_after
        assert final[server]["keep"] == "me"  # nothing else was touched
