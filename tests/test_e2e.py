"""End to end: events/*.json through handler.app.handler against the sandbox over loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def outcomes(response: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (r["item"]["server_id"], r["item"]["key"]): r["outcome"]
        for r in response["results"]
        if r["item"]
    }


def test_direct_invocation_event(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    response = app.handler(load("direct-invocation.json"), None)

    got = outcomes(response)
    assert got[(WEB1, "lease-owner")] == "deleted"
    assert got[(WEB1, "env:stage")] == "deleted"
    assert got[(WEB1, "team name")] == "deleted"
    assert got[(WEB1, "never-set")] == "absent"
    assert got[(DB1, "charging_mode")] == "protected"
    assert got[("11111111-2222-4333-8444-555555555555", "lease-owner")] == "server_not_found"
    assert got[("0badc0de-0000-4000-8000-000000000001", "lease-owner")] == "project_not_allowed"
    summary = response["summary"]
    assert summary["invalid"] == 1
    assert summary["deleted"] == 5  # the duplicate db-1/lease-owner is deleted once
    assert summary["dead_lettered"] == 4
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert "team name" not in metadata_of(sandbox, WEB1)

    letters = read_lines(dead_letters)
    assert sorted(letter["reason"] for letter in letters) == sorted(
        ["invalid", "protected", "server_not_found", "project_not_allowed"]
    )
    invalid = next(letter for letter in letters if letter["reason"] == "invalid")
    assert invalid["item"] is None and "bad/key" in invalid["raw"]
    # The key went over the wire percent-encoded as one segment.
    paths = [r["path"] for r in sandbox.requests()]
    assert f"/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/env%3Astage" in paths
    assert f"/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/team%20name" in paths


def test_sqs_batch_event(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    response = app.handler(load("sqs-batch.json"), None)

    # Only the message for the locked server goes back; the poison message does not.
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "9c5d3c3e-0002-4a5b-8c6d-7e8f9a0b1c2d"}]
    }
    letters = read_lines(dead_letters)
    assert {(letter["reason"], letter["source"]["id"]) for letter in letters} == {
        ("invalid", "9c5d3c3e-0003-4a5b-8c6d-7e8f9a0b1c2d"),
        ("protected", "9c5d3c3e-0004-4a5b-8c6d-7e8f9a0b1c2d"),
    }
    assert letters[0]["schema"] == "ecs-metadata-janitor/dead-letter/1"
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: untouched, redelivered


def test_sqs_fifo_stops_a_group_at_its_first_failure(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    response = app.handler(load("sqs-fifo-batch.json"), None)

    assert response["batchItemFailures"] == [
        {"itemIdentifier": "5e1f0a2b-0001-4c3d-9e4f-5a6b7c8d9e0f"},
        {"itemIdentifier": "5e1f0a2b-0002-4c3d-9e4f-5a6b7c8d9e0f"},
    ]
    deletes = [r for r in sandbox.requests() if r["method"] == "DELETE"]
    # The second message of group web-2 was never processed.
    assert not any(r["path"].endswith(f"{WEB2}/metadata/lease-owner") for r in deletes)
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert "lease-expires" not in metadata_of(sandbox, WEB1)


def test_sqs_record_without_message_id_fails_the_batch_instead_of_crashing(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")
    event = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "body": json.dumps({"server_id": WEB2, "key": "lease-owner"}),
            },
            {"eventSource": "aws:sqs", "messageId": "ok-1", "body": "[]"},
        ]
    }
    response = app.handler(event, None)
    # An empty identifier makes Lambda retry the whole batch: nothing is lost.
    assert response == {"batchItemFailures": [{"itemIdentifier": ""}]}


def test_failing_dead_letter_sink_returns_sqs_message_and_raises_for_direct(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    configure_for(monkeypatch, sandbox, blocker / "dl.jsonl")
    app.warm_up()
    blocker.write_text("")  # the sink's folder became a file after the cold start
    poison = {"Records": [{"eventSource": "aws:sqs", "messageId": "p-1", "body": "garbage"}]}
    assert app.handler(poison, None) == {"batchItemFailures": [{"itemIdentifier": "p-1"}]}

    with pytest.raises(app.DeadLetterWriteError, match="could not be dead-lettered"):
        app.handler({"server_id": WEB1, "key": "__protected"}, None)


def test_lost_response_is_retried_and_settles_absent(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first DELETE is applied and its response lost; the retry answers 404 → absent."""
    configure_for(monkeypatch, sandbox, dead_letters)
    sandbox.set_faults({"seed": 1, "rates": {"lost_response": 1.0}})

    def heal_after_first_loss() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(r["fault"] == "lost_response" for r in sandbox.requests()):
                sandbox.set_faults(None)
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=heal_after_first_loss, daemon=True)
    watcher.start()
    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    watcher.join(timeout=5)

    assert response["results"][0]["outcome"] == "absent"
    deletes = [r for r in sandbox.requests() if r["method"] == "DELETE"]
    assert deletes[0]["fault"] == "lost_response"
    assert deletes[-1]["status"] == 404
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert read_lines(dead_letters) == []


def test_token_auth_mode(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", sandbox.credentials["token"])
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    response = app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert response["results"][0]["outcome"] == "deleted"


def test_wrong_credentials_end_forbidden(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, HUAWEICLOUD_SDK_SK="not-the-right-secret")
    response = app.handler({"server_id": WEB1, "key": "owner"}, None)
    result = response["results"][0]
    assert result["outcome"] == "forbidden" and result["status"] == 401
    statuses = [r["status"] for r in sandbox.requests()]
    assert statuses == [401, 401]  # one refresh, then it stops
    assert "not-the-right-secret" not in dead_letters.read_text()


def test_functiongraph_context_credentials(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    creds = sandbox.credentials

    class FgContext:
        def getRequestID(self) -> str:
            return "fg-req-1"

        def getRemainingTimeInMilliSeconds(self) -> int:
            return 30_000

        def getSecurityAccessKey(self) -> str:
            return str(creds["ak"])

        def getSecuritySecretKey(self) -> str:
            return str(creds["sk"])

        def getSecurityToken(self) -> str:
            return ""

    response = app.handler({"server_id": WEB1, "key": "owner"}, FgContext())
    assert response["results"][0]["outcome"] == "deleted"
    out = capsys.readouterr().out
    assert '"function_request_id":"fg-req-1"' in out
    assert str(creds["sk"]) not in out


def test_logs_are_powertools_json_without_secrets(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    app.handler(load("sqs-batch.json"), None)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines, "the function logged nothing"
    for line in lines:
        assert list(line)[:4] == ["level", "location", "message", "timestamp"]
        assert line["service"] == "ecs-metadata-janitor"
    pair_lines = [line for line in lines if line["message"].startswith("pair ")]
    assert {line["correlation_id"] for line in pair_lines} >= {
        "9c5d3c3e-0001-4a5b-8c6d-7e8f9a0b1c2d"
    }
    assert sum(1 for line in lines if line["message"] == "invocation summary") == 1
    for secret in (sandbox.credentials["sk"], sandbox.credentials["ak"]):
        assert secret not in out
        assert secret not in dead_letters.read_text()


def test_unknown_event_raises_naming_what_was_seen(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    with pytest.raises(
        ValueError, match=r"unrecognised event: got an object with keys \['detail-type'"
    ):
        app.handler({"detail-type": "x", "source": "y"}, None)


def test_bad_configuration_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGION", "cn-north-4")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("MAX_ATTEMPTS", "zero")
    with pytest.raises(ValueError, match=r"^invalid configuration: MAX_ATTEMPTS: ") as info:
        app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert "\n" not in str(info.value)


def test_deadline_ends_pairs_as_deadline(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    sandbox.set_faults({"seed": 3, "rates": {"slow": 1.0}, "slow_ms": 3000})

    class LambdaContext:
        aws_request_id = "req-deadline"
        function_name = "janitor"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:janitor"

        def get_remaining_time_in_millis(self) -> int:
            return 600

    response = app.handler({"server_id": WEB1, "key": "owner"}, LambdaContext())
    assert response["results"][0]["outcome"] == "deadline"
    assert [letter["reason"] for letter in read_lines(dead_letters)] == ["deadline"]


def test_dry_run_calls_nothing(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, DRY_RUN="true")
    response = app.handler({"server_id": WEB1, "keys": ["owner", "lease-owner"]}, None)
    assert {r["outcome"] for r in response["results"]} == {"dry_run"}
    assert sandbox.requests() == []
    assert "owner" in metadata_of(sandbox, WEB1)


def test_dot_keys_stay_one_segment_on_the_wire(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    response = app.handler({"server_id": WEB1, "keys": ["..", "."]}, None)
    assert [r["outcome"] for r in response["results"]] == ["absent", "absent"]
    paths = {r["path"] for r in sandbox.requests()}
    assert paths == {
        f"/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/%2E%2E",
        f"/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/%2E",
    }
    assert metadata_of(sandbox, WEB1)  # the server and its keys are all still there


def test_no_credentials_anywhere_fails_loudly_before_any_work(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    with pytest.raises(app.CredentialsUnavailableError, match="HUAWEICLOUD_SDK_AK"):
        app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert sandbox.requests() == []
    assert not dead_letters.exists()


def test_a_failed_invocation_leaves_nothing_running_in_the_warm_loop(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug mid-invocation must not leave tasks that run during the next invocation."""
    import asyncio

    from handler.ecs.client import EcsClient

    configure_for(monkeypatch, sandbox, dead_letters)
    app.warm_up()
    original = EcsClient.delete_metadata
    calls: list[str] = []

    async def broken(self: EcsClient, pair: Any, *, deadline: float | None = None) -> Any:
        calls.append(pair.server_id)
        if pair.server_id == WEB1:
            raise RuntimeError("a bug")
        await asyncio.sleep(0.2)
        return await original(self, pair, deadline=deadline)

    monkeypatch.setattr(EcsClient, "delete_metadata", broken)
    event = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "a", "body": json.dumps(body)}
            for body in (
                {"server_id": WEB1, "key": "owner"},
                {"server_id": DB1, "key": "lease-owner"},
            )
        ]
    }
    with pytest.raises(RuntimeError, match="a bug"):
        app.handler(event, None)
    runtime = app._RUNTIME
    assert runtime is not None
    assert not asyncio.all_tasks(runtime.loop)
    monkeypatch.setattr(EcsClient, "delete_metadata", original)
    seen = len(sandbox.requests())
    time.sleep(0.3)
    assert len(sandbox.requests()) == seen  # nothing of the failed invocation runs later
    app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert len(sandbox.requests()) == seen + 1
