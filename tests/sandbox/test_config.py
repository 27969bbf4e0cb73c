"""Seed and fault files, the demo seed, and the `sandbox` command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler.cli import main as cli_main
from handler.sandbox import (
    DEMO_SEED,
    Sandbox,
    SandboxConfigError,
    load_faults,
    load_seed,
    serve_forever,
)
from tests.sandbox._demo import PROJECT, TOKEN

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_demo_seed_is_the_documented_one() -> None:
    assert DEMO_SEED["project_id"] == "0123456789abcdef0123456789abcdef"
    assert DEMO_SEED["credentials"] == {
        "ak": "SANDBOXACCESSKEY0001",
        "sk": "sandbox-secret-key-do-not-use-in-prod",
        "security_token": None,
        "token": "sandbox-token",
    }
    servers = {s["name"]: s for s in DEMO_SEED["servers"]}
    assert list(servers) == ["web-1", "web-2", "build-1", "db-1", "other-1"]
    assert servers["web-1"]["metadata"]["team name"] == "core"
    assert servers["web-2"]["locked"] is True
    assert servers["build-1"]["vm_state"] == "building"
    assert servers["build-1"]["active_after_s"] == 2
    assert servers["other-1"]["project_id"] == "fedcba9876543210fedcba9876543210"


def test_sandbox_credentials_and_project(sandbox: Sandbox) -> None:
    assert sandbox.credentials == DEMO_SEED["credentials"]
    assert sandbox.project_id == PROJECT
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)


def test_url_is_only_known_while_running() -> None:
    sb = Sandbox()
    with pytest.raises(RuntimeError):
        _ = sb.url
    with sb:
        assert sb.url.startswith("http://")
    with pytest.raises(RuntimeError):
        _ = sb.url
    assert sb.state()["servers"][0]["name"] == "web-1"  # still readable after stopping


def test_load_seed_fills_in_defaults(tmp_path: Path) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"ak": "A", "sk": "S"},
        "servers": [{"id": "6A4E1A2C-1D4F-4A47-9D0B-1B2F3C4D5E6F", "metadata": {"k": "v"}}],
    }
    loaded = load_seed(write(tmp_path, "seed.json", seed))
    assert loaded["credentials"] == {"ak": "A", "sk": "S", "security_token": None, "token": None}
    server = loaded["servers"][0]
    assert server["id"] == "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
    assert server["project_id"] == PROJECT
    assert (server["vm_state"], server["locked"], server["active_after_s"]) == (
        "active",
        False,
        None,
    )
    with Sandbox(loaded) as sb:
        assert sb.state()["servers"][0]["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ([], "must be a JSON object"),
        ({"servers": []}, "credentials"),
        ({"credentials": {"ak": "A"}}, "ak and sk must be given together"),
        ({"credentials": {}}, "give an ak/sk pair, a token, or both"),
        ({"credentials": {"token": "t"}, "servers": [{"id": "web-1"}]}, "must be a UUID"),
        (
            {
                "credentials": {"token": "t"},
                "servers": [{"id": "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"}],
            },
            "no project_id",
        ),
        (
            {
                "project_id": "p",
                "credentials": {"token": "t"},
                "servers": [{"id": "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f", "vm_state": "running"}],
            },
            "servers.0.vm_state",
        ),
        (
            {
                "project_id": "p",
                "credentials": {"token": "t"},
                "servers": [{"id": "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f", "metadata": {"k": 1}}],
            },
            "servers.0.metadata.k",
        ),
        (
            {
                "project_id": "p",
                "credentials": {"token": "t"},
                "servers": [
                    {"id": "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"},
                    {"id": "6A4E1A2C-1D4F-4A47-9D0B-1B2F3C4D5E6F"},
                ],
            },
            "duplicate server id",
        ),
        ({"credentials": {"token": "t"}, "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_seed_files_name_the_file_and_the_problem(
    tmp_path: Path, content: Any, problem: str
) -> None:
    path = write(tmp_path, "seed.json", content)
    with pytest.raises(SandboxConfigError) as caught:
        load_seed(path)
    message = str(caught.value)
    assert message.startswith(f"seed file {path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SandboxConfigError, match="cannot read it"):
        load_seed(tmp_path / "absent.json")


def test_load_faults_fills_in_defaults(tmp_path: Path) -> None:
    loaded = load_faults(write(tmp_path, "faults.json", {"seed": 7, "rates": {"429": 0.05}}))
    assert loaded["seed"] == 7
    assert loaded["rates"]["429"] == 0.05
    assert loaded["rates"]["lost_response"] == 0.0
    assert (loaded["retry_after_s"], loaded["retry_after_ratio"]) == (1, 0.5)
    assert (loaded["slow_ms"], loaded["rate_limit_rps"], loaded["latency_ms"]) == (1500, None, 0)
    assert load_faults(write(tmp_path, "empty.json", {}))["rates"]["500"] == 0.0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"rates": {"418": 0.1}}, "rates.418"),
        ({"rates": {"429": 1.5}}, "rates.429"),
        ({"rates": {"429": 0.6, "500": 0.6}}, "add up to 1.2, more than 1"),
        ({"retry_after_s": 1.5}, "retry_after_s"),
        ({"rate_limit_rps": 0}, "rate_limit_rps"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"sede": 1}, "sede"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_fault_files_name_the_file_and_the_problem(
    tmp_path: Path, content: Any, problem: str
) -> None:
    path = write(tmp_path, "faults.json", content)
    with pytest.raises(SandboxConfigError) as caught:
        load_faults(path)
    assert str(caught.value).startswith(f"faults file {path}: ")
    assert problem in str(caught.value)


def test_sandbox_rejects_bad_mappings() -> None:
    with pytest.raises(SandboxConfigError):
        Sandbox({"credentials": {}})
    with pytest.raises(SandboxConfigError):
        Sandbox(faults={"rates": {"drop": 2}})
    with Sandbox() as sb, pytest.raises(SandboxConfigError):
        sb.set_faults({"rates": {"nope": 1}})


def test_serve_forever_refuses_a_bad_seed_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "seed.json", "{")
    assert serve_forever(seed_path=path, port=0) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err
    assert "invalid JSON" in err
    assert "Traceback" not in err


def test_cli_refuses_a_bad_fault_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "faults.json", {"rates": {"429": 7}})
    assert cli_main(["sandbox", "--port", "0", "--faults", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"faults file {path}: rates.429" in err


def test_cli_reports_a_port_in_use(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    port = int(sandbox.url.rsplit(":", 1)[1])
    assert serve_forever(port=port) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_cli_runs_until_sigterm_and_prints_the_url_and_demo_credentials() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "handler", "sandbox", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        found = re.fullmatch(
            r"ecs sandbox ready at (http://127\.0\.0\.1:\d+) \(project (\w+), seed: demo\)\n", ready
        )
        assert found, ready
        assert found.group(2) == PROJECT
        url = found.group(1)
        following = [process.stdout.readline() for _ in range(5)]
        text = "".join(following)
        assert "HUAWEICLOUD_SDK_AK=SANDBOXACCESSKEY0001" in text
        assert "HUAWEICLOUD_SDK_SK=sandbox-secret-key-do-not-use-in-prod" in text
        assert "ECS_AUTH_TOKEN=sandbox-token" in text
        assert url not in text
        response = httpx.get(f"{url}/v2.1/{PROJECT}/servers", headers={"X-Auth-Token": TOKEN})
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_cli_sigint_also_stops_it(tmp_path: Path) -> None:
    seed = write(tmp_path, "seed.json", DEMO_SEED)
    process = subprocess.Popen(
        [sys.executable, "-m", "handler", "sandbox", "--port", "0", "--seed", str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert f"seed: {seed})" in ready
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "HUAWEICLOUD_SDK_SK" not in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
