"""End to end with Keystone password authentication: only OS_* variables set (no ECS_ENDPOINT,
no AK/SK), through handler.app.handler and `check`, against the sandbox over loopback."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.commands import common
from handler.commands.check import Verdict, run_check
from handler.config import load_config
from handler.ecs.keystone import KeystoneError
from handler.sandbox import DEMO_SEED, Sandbox
from tests.conftest import DEMO_PROJECT, EVENTS, SandboxFactory, demo_seed, metadata_of
from tests.sandbox._demo import DB1, OTHER_PROJECT, WEB1, WEB2

PASSWORD = DEMO_SEED["keystone"]["users"][0]["password"]
WRONG = "Wrong-Keystone-Password-Recognisable-42"
TOKENS = "/v3/auth/tokens"


def configure(
    monkeypatch: pytest.MonkeyPatch, sb: Sandbox, dead_letters: Path, **extra: str
) -> None:
    """Point the function at the sandbox's Keystone, and at nothing else."""
    monkeypatch.setenv("OS_AUTH_URL", f"{sb.url}/v3")
    monkeypatch.setenv("OS_USERNAME", "demo")
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    monkeypatch.setenv("OS_PROJECT_NAME", "demo")
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


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


def sqs(*bodies: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": "h",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:janitor",
                "awsRegion": "eu-west-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_only_openstack_variables_delete_pairs(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sandbox, dead_letters)
    event = json.loads((EVENTS / "direct-invocation.json").read_text())
    response = app.handler(event, None)

    got = outcomes(response)
    assert got[(WEB1, "lease-owner")] == "deleted"
    assert got[(WEB1, "team name")] == "deleted"
    assert got[(WEB1, "never-set")] == "absent"
    assert got[(DB1, "charging_mode")] == "protected"
    assert got[("0badc0de-0000-4000-8000-000000000001", "lease-owner")] == "project_not_allowed"
    assert response["summary"]["deleted"] == 5
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    requests = sandbox.requests()
    assert requests[0]["path"] == TOKENS
    assert {r["auth"] for r in requests[1:]} == {"keystone"}
    # The project came from the token: the paths carry it.
    assert f"/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/lease-owner" in [
        r["path"] for r in requests
    ]

    # A warm invocation keeps the token.
    second = app.handler({"server_id": WEB2, "key": "lease-owner", "dry_run": True}, None)
    assert second["results"][0]["outcome"] == "dry_run"
    app.handler({"server_id": DB1, "key": "backup-policy"}, None)
    assert [r["path"] for r in sandbox.requests()].count(TOKENS) == 1


def test_a_token_revoked_between_invocations_is_renewed_once(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sandbox, dead_letters, OS_PROJECT_ID=DEMO_PROJECT)
    assert app.handler({"server_id": WEB1, "key": "owner"}, None)["summary"]["deleted"] == 1
    sandbox.revoke_tokens()
    sandbox.clear_requests()
    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    assert response["results"][0]["outcome"] == "deleted"
    assert [(r["method"], r["status"]) for r in sandbox.requests()] == [
        ("DELETE", 401),
        ("POST", 201),
        ("DELETE", 204),
    ]


def test_native_api_takes_the_ecs_entry_of_the_catalog(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sandbox, dead_letters, ECS_API="native", OS_PROJECT_NAME="other")
    response = app.handler(
        {"server_id": "0badc0de-0000-4000-8000-000000000001", "key": "lease-owner"}, None
    )
    assert response["results"][0]["outcome"] == "deleted"
    paths = [r["path"] for r in sandbox.requests() if r["path"] != TOKENS]
    assert paths == [
        f"/v1/{OTHER_PROJECT}/cloudservers/0badc0de-0000-4000-8000-000000000001/metadata/lease-owner"
    ]


def test_a_wrong_password_is_forbidden_dead_lettered_and_never_written(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(monkeypatch, sandbox, dead_letters, OS_PASSWORD=WRONG, OS_PROJECT_ID=DEMO_PROJECT)
    response = app.handler({"server_id": WEB1, "keys": ["owner", "lease-owner"]}, None)

    assert [r["outcome"] for r in response["results"]] == ["forbidden", "forbidden"]
    detail = response["results"][0]["detail"]
    assert detail.startswith("OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401)")
    letters = read_lines(dead_letters)
    assert [letter["reason"] for letter in letters] == ["forbidden", "forbidden"]
    assert letters[0]["detail"] == detail
    out = capsys.readouterr().out
    assert "keystone authentication failed" in out
    for text in (json.dumps(response), dead_letters.read_text(), out):
        assert WRONG not in text
        assert WRONG[:16] not in text
    assert [r["path"] for r in sandbox.requests()] == [TOKENS]  # asked once, remembered
    assert "owner" in metadata_of(sandbox, WEB1)


def test_a_wrong_password_without_a_project_id_fails_the_invocation(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(monkeypatch, sandbox, dead_letters, OS_PASSWORD=WRONG)
    with pytest.raises(app.CredentialsUnavailableError, match="rejected by Keystone") as info:
        app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert isinstance(info.value, KeystoneError)
    assert WRONG not in str(info.value)
    assert WRONG not in capsys.readouterr().out
    assert not dead_letters.exists()  # nothing was taken: the platform retries the event


def test_a_catalog_without_compute_dead_letters_sqs_pairs(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sandbox, dead_letters, OS_REGION_NAME="eu-west-9")
    response = app.handler(sqs({"server_id": WEB1, "key": "owner"}), None)
    assert response == {"batchItemFailures": []}  # permanent: dead-lettered, not redriven
    letters = read_lines(dead_letters)
    assert [letter["reason"] for letter in letters] == ["rejected"]
    assert letters[0]["item"]["key"] == "owner"
    assert "the Keystone catalog has no public http(s) endpoint" in letters[0]["detail"]
    assert "in region 'eu-west-9'" in letters[0]["detail"]
    assert "owner" in metadata_of(sandbox, WEB1)


def test_an_unreachable_keystone_returns_sqs_messages_to_the_queue(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox()
    configure(monkeypatch, sandbox, dead_letters, OS_PROJECT_ID=DEMO_PROJECT, MAX_ATTEMPTS="2")
    monkeypatch.setenv("OS_AUTH_URL", f"http://127.0.0.1:{closed_port()}/v3")
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    event = sqs({"server_id": WEB1, "key": "owner"}, {"server_id": DB1, "key": "lease-owner"})
    response = app.handler(event, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]}
    assert read_lines(dead_letters) == []
    assert sandbox.requests() == []


def test_a_direct_invocation_dead_letters_transient_keystone_failures(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, sandbox, dead_letters, OS_PROJECT_ID=DEMO_PROJECT, MAX_ATTEMPTS="2")
    monkeypatch.setenv("OS_AUTH_URL", f"http://127.0.0.1:{closed_port()}")
    response = app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert response["results"][0]["outcome"] == "retries_exhausted"
    letters = read_lines(dead_letters)
    assert [letter["reason"] for letter in letters] == ["retries_exhausted"]
    assert "Keystone unreachable at 127.0.0.1:" in letters[0]["detail"]


# --- check ----------------------------------------------------------------------------------


def check_env(sb: Sandbox, **changes: str) -> dict[str, str]:
    return {
        "OS_AUTH_URL": f"{sb.url}/v3",
        "OS_USERNAME": "demo",
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": "demo",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        **changes,
    }


def test_check_ok_with_the_catalogs_endpoint(sandbox: Sandbox) -> None:
    diagnosis = run_check(load_config(check_env(sandbox)))
    assert diagnosis.verdict is Verdict.OK
    assert diagnosis.line.startswith(
        f"ok: {sandbox.url} project {DEMO_PROJECT}, nova API, Keystone password accepted, "
    )


@pytest.mark.parametrize(
    ("changes", "verdict", "start"),
    [
        (
            {"OS_PASSWORD": WRONG},
            Verdict.CREDENTIALS,
            "password rejected: OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401) at ",
        ),
        (
            {"OS_INTERFACE": "admin"},
            Verdict.CONFIG,
            "catalog without compute: the Keystone catalog has no admin http(s) endpoint",
        ),
        (
            {"OS_AUTH_URL": "closed"},
            Verdict.UNREACHABLE,
            "keystone unreachable: connection refused",
        ),
    ],
)
def test_check_names_keystone_problems(
    sandbox: Sandbox, changes: dict[str, str], verdict: Verdict, start: str
) -> None:
    if changes.get("OS_AUTH_URL") == "closed":
        changes = {"OS_AUTH_URL": f"http://127.0.0.1:{closed_port()}/v3"}
    diagnosis = run_check(load_config(check_env(sandbox, **changes)))
    assert diagnosis.verdict is verdict
    assert diagnosis.line.startswith(start)
    assert "\n" not in diagnosis.line
    assert WRONG not in diagnosis.line


def test_check_says_when_the_api_refuses_a_fresh_token(make_sandbox: SandboxFactory) -> None:
    seed = demo_seed()
    sb = make_sandbox(seed)
    other = make_sandbox(seed)  # a second cloud: its tokens are not this one's
    env = check_env(sb, ECS_ENDPOINT=other.url)
    diagnosis = run_check(load_config(env))
    assert diagnosis.verdict is Verdict.CREDENTIALS
    assert diagnosis.line.startswith("token rejected: HTTP 401")
    assert "is the endpoint (ECS_ENDPOINT, or the catalog's) in the cloud" in diagnosis.line
    assert [r["method"] for r in sb.requests()] == ["POST", "POST"]  # taken, renewed once


def test_the_cli_does_not_fall_back_to_a_sandbox_with_an_auth_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not common.endpoint_configured()
    monkeypatch.setenv("OS_AUTH_URL", "https://iam.cn-north-4.myhuaweicloud.com/v3")
    assert common.endpoint_configured()


def test_sandbox_runs_ignore_the_environments_keystone(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handler.local import sandbox_config

    monkeypatch.setenv("OS_AUTH_URL", "https://iam.cn-north-4.myhuaweicloud.com/v3")
    monkeypatch.setenv("OS_USERNAME", "janitor")
    monkeypatch.setenv("OS_PASSWORD", WRONG)
    monkeypatch.setenv("OS_PROJECT_NAME", "cn-north-4")
    config = sandbox_config(sandbox, demo_seed())
    assert not config.password_auth
    assert config.endpoint == sandbox.url
