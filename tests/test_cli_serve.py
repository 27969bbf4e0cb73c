"""`ecs-metadata-janitor serve`: a real uvicorn on 127.0.0.1, its doors, its errors, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import cli
from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import DB1, SK, WEB1
from tests.sources.test_webhook import SECRET, sign
from tests.test_asgi import CLOUDEVENT, WEBHOOK_BODY, binary_mode

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


class Served:
    """A `serve` process: its URL, and its stderr and stdout once it has stopped."""

    def __init__(self, process: subprocess.Popen[str], url: str, stdout: Path) -> None:
        self.process = process
        self.url = url
        self._stdout = stdout
        self.stderr = ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            raise
        self.stderr += err
        return self.process.returncode

    def logs(self) -> list[dict[str, Any]]:
        text = self._stdout.read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def start(tmp_path: Path, *args: str) -> Served:
    """Start `serve --port 0` with the test's environment; wait until it says where it listens."""
    stdout = tmp_path / "serve.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "handler", "serve", "--port", "0", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=stdout.open("w"),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        found = SERVING.search(line)
        if found:
            return Served(process, found.group(1), stdout)
    process.kill()
    raise AssertionError(f"serve did not start: {''.join(seen)}{process.stderr.read()}")


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, tmp_path: Path
) -> Iterator[Served]:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path)
    yield running
    if running.process.poll() is None:
        running.stop()


def test_a_signed_webhook_over_real_http(served: Served, sandbox: Sandbox) -> None:
    response = httpx.post(served.url + "/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["deleted"] == 2
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert "backup-policy" not in metadata_of(sandbox, DB1)
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    assert served.stop() == 0
    assert "stopped" in served.stderr
    assert "Traceback" not in served.stderr
    summary = [line for line in served.logs() if line["message"] == "invocation summary"]
    assert summary and summary[0]["source"] == "http"
    assert all(SK not in json.dumps(line) for line in served.logs())


def test_a_binary_mode_cloudevent_over_real_http(served: Served, sandbox: Sandbox) -> None:
    headers, body = binary_mode(CLOUDEVENT)
    response = httpx.post(served.url + "/", content=body, headers={**headers, **sign(body)})
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["deleted"] == 3
    assert "backup-policy" not in metadata_of(sandbox, DB1)


def test_an_unsigned_request_is_refused(served: Served, sandbox: Sandbox) -> None:
    response = httpx.post(served.url + "/", content=WEBHOOK_BODY)
    assert response.status_code == 401
    assert not [r for r in sandbox.requests() if r["method"] == "DELETE"]


def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    tmp_path: Path,
) -> None:
    slow = make_sandbox(latency_ms=700)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path)
    answers: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                running.url + "/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY), timeout=30
            )
        )
    )
    client.start()
    deadline = time.monotonic() + 10
    while not slow.requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.requests(), "the request never reached the sandbox"
    running.process.send_signal(signal.SIGTERM)
    client.join(30)
    assert running.stop() == 0, running.stderr
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["summary"]["deleted"] == 2
    assert "backup-policy" not in metadata_of(slow, DB1)
    # The port is closed: nothing new is taken after SIGTERM.
    with pytest.raises(httpx.ConnectError):
        httpx.get(running.url + "/healthz")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handler", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_configuration_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "ftp://nowhere")
    done = run_cli("serve", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "ECS_ENDPOINT" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_credentials_is_refused_before_listening(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "0123456789abcdef0123456789abcdef")
    done = run_cli("serve", "--port", "0")
    assert done.returncode == 2
    assert "no credentials" in done.stderr and "serving" not in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_uvicorn_it_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli.main(["serve", "--port", "0"]) == 2
    assert "ecs-metadata-janitor[serve]" in capsys.readouterr().err


def test_the_port_comes_from_port_as_knative_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from handler.commands import serve

    monkeypatch.delenv("PORT", raising=False)
    assert serve.default_port() == serve.DEFAULT_PORT
    monkeypatch.setenv("PORT", "9191")
    assert serve.default_port() == 9191


@pytest.mark.parametrize("port", ["not-a-port", "0", "70000", "٣"])
def test_an_unusable_port_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    monkeypatch.setenv("PORT", port)
    assert cli.main(["serve"]) == 2
    assert "PORT must be a port number" in capsys.readouterr().err


def test_without_a_webhook_secret_it_will_not_start(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    done = run_cli("serve", "--port", "0")
    assert done.returncode == 2
    assert "WEBHOOK_SECRET" in done.stderr and "serving" not in done.stderr
