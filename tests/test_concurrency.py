"""Issue 7 §5: many invocations in one process — threads at once, cold and warm, own credentials.

FunctionGraph may run several requests per instance at once: each thread calls
handler.app.handler, as the platform would, and every invocation must complete on its own terms
(its results, its credentials, its redaction), with every log line whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import handler
from handler import app
from handler.config import load_config
from handler.local import FakeContext as LambdaContext
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for, demo_seed, metadata_of

THREADS = 4
KEYS = [f"k{i}" for i in range(5)]


class FunctionGraphContext:
    """A FunctionGraph context: camelCase accessors, temporary credentials of its own."""

    def __init__(self, request_id: str, ak: str, sk: str, token: str) -> None:
        self._request_id, self._ak, self._sk, self._token = request_id, ak, sk, token

    def getRequestID(self) -> str:
        return self._request_id

    def getRemainingTimeInMilliSeconds(self) -> int:
        return 30_000

    def getSecurityAccessKey(self) -> str:
        return self._ak

    def getSecuritySecretKey(self) -> str:
        return self._sk

    def getSecurityToken(self) -> str:
        return self._token


def server_id(n: int) -> str:
    return str(uuid.UUID(int=n + 1, version=4))


def threads_seed() -> dict[str, Any]:
    seed = demo_seed()
    seed["servers"] = [
        {
            "id": server_id(n),
            "project_id": DEMO_PROJECT,
            "name": f"s-{n}",
            "vm_state": "active",
            "locked": False,
            "metadata": {key: "v" for key in KEYS} | {"keep": "me"},
        }
        for n in range(THREADS * 3)
    ]
    return seed


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on threads released at once; return their results (or raised errors)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "an invocation never finished"
    return results


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every line of the output, each of which must be one whole JSON object."""
    lines = []
    for line in out.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"a log line is not whole JSON: {line[:200]!r}")
        assert isinstance(value, dict)
        lines.append(value)
    return lines


def _invoke_threads(sb: Sandbox, first: int) -> list[Any]:
    def call(n: int) -> Callable[[], Any]:
        event = {"items": [{"server_id": server_id(n), "keys": KEYS}]}
        return lambda: app.handler(event, LambdaContext(30_000, request_id=f"req-{n}"))

    return run_together([call(n) for n in range(first, first + THREADS)])


def _check_results(sb: Sandbox, results: list[Any], first: int) -> None:
    for offset, response in enumerate(results):
        assert not isinstance(response, BaseException), repr(response)
        n = first + offset
        assert response["summary"]["deleted"] == len(KEYS), response["summary"]
        assert {r["item"]["server_id"] for r in response["results"]} == {server_id(n)}
        assert metadata_of(sb, server_id(n)) == {"keep": "me"}


def test_concurrent_invocations_on_a_cold_process_share_one_runtime(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox(threads_seed()) as sb:
        configure_for(monkeypatch, sb, dead_letters)
        results = _invoke_threads(sb, 0)
        _check_results(sb, results, 0)
    lines = json_lines(capsys.readouterr().out)

    summaries = [line for line in lines if line.get("message") == "invocation summary"]
    assert len(summaries) == THREADS
    cold = [line for line in summaries if line.get("cold_start") is True]
    assert len(cold) == 1, "exactly one invocation is the cold start"
    cold_ids = {line["function_request_id"] for line in lines if line.get("cold_start") is True}
    assert cold_ids == {cold[0]["function_request_id"]}


def test_concurrent_invocations_on_a_warm_process_complete_correctly(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox(threads_seed()) as sb:
        configure_for(monkeypatch, sb, dead_letters)
        warm = app.handler(
            {"server_id": server_id(2 * THREADS), "key": "k0"},
            LambdaContext(30_000, request_id="warm"),
        )
        assert warm["summary"]["deleted"] == 1
        for first in (0, THREADS):  # two rounds: the warm runtime keeps serving threads
            _check_results(sb, _invoke_threads(sb, first), first)
    lines = json_lines(capsys.readouterr().out)

    summaries = [line for line in lines if line.get("message") == "invocation summary"]
    assert len(summaries) == 2 * THREADS + 1
    assert [line["function_request_id"] for line in summaries if line["cold_start"]] == ["warm"]


def test_each_concurrent_invocation_signs_and_redacts_with_its_own_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", "log")
    signed_by: dict[str, set[str]] = defaultdict(set)

    async def answer(request: httpx.Request) -> httpx.Response:
        match = re.search(r"Access=([^,\s]+)", request.headers.get("authorization", ""))
        access = match.group(1) if match else "(none)"
        server = request.url.path.split("/")[4]
        signed_by[server].add(access)
        await asyncio.sleep(0.02)  # long enough for the invocations to overlap
        token = request.headers.get("x-security-token", "")
        message = f"refused: access {access}, security token {token}"
        return httpx.Response(400, json={"badRequest": {"code": 400, "message": message}})

    runtime = Runtime(load_config(), transport=httpx.MockTransport(answer))
    app.set_runtime(runtime)
    credentials = [
        (
            f"TEMPAK{n:02d}{uuid.uuid4().hex[:12].upper()}",
            f"sk-{uuid.uuid4().hex}",
            f"tok-{n}-" + uuid.uuid4().hex * 8,
        )
        for n in range(THREADS)
    ]

    def call(n: int) -> Callable[[], Any]:
        ak, sk, token = credentials[n]
        event = {"items": [{"server_id": server_id(n), "keys": KEYS}]}
        return lambda: app.handler(event, FunctionGraphContext(f"fg-{n}", ak, sk, token))

    results = run_together([call(n) for n in range(THREADS)])
    out = capsys.readouterr().out
    lines = json_lines(out)

    for n, response in enumerate(results):
        assert not isinstance(response, BaseException), repr(response)
        ak, sk, token = credentials[n]
        assert signed_by[server_id(n)] == {ak}, (
            f"invocation {n} signed with {signed_by[server_id(n)]}"
        )
        outcomes = [r["outcome"] for r in response["results"]]
        assert outcomes == ["rejected"] * len(KEYS)
        text = json.dumps(response)
        assert "security token" in text
        for secret in (ak, sk, token):
            assert secret not in text
            assert secret[:16] not in text
    for ak, sk, token in credentials:
        for secret in (ak, sk, token):
            assert secret not in out
            assert secret[-16:] not in out
    assert sum(1 for line in lines if line.get("message") == "invocation summary") == THREADS


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = str(Path(handler.__file__).resolve().parent.parent)  # the code under test
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root, **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=full
    )


_ONE_INVOCATION = """
import json, sys
from handler import app
event = json.loads(sys.argv[1] if len(sys.argv) > 1 else '{EVENT}')
try:
    app.handler(event, None)
except Exception as exc:
    print(json.dumps({{"raised": type(exc).__name__}}))
"""


def test_a_process_exiting_after_one_invocation_prints_nothing_on_stderr(
    tmp_path: Path,
) -> None:
    event = json.dumps({"server_id": server_id(0), "keys": ["k0", "k1"]})
    with Sandbox(threads_seed()) as sb:
        env = {
            "ECS_ENDPOINT": sb.url,
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
            "HUAWEICLOUD_SDK_AK": sb.credentials["ak"],
            "HUAWEICLOUD_SDK_SK": sb.credentials["sk"],
            "DEAD_LETTER_URL": str(tmp_path / "letters.jsonl"),
        }
        done = _python(_ONE_INVOCATION.format(EVENT=event), env)
        left = metadata_of(sb, server_id(0))

    assert done.returncode == 0
    assert done.stderr == ""
    lines = json_lines(done.stdout)
    assert any(line.get("message") == "invocation summary" for line in lines)
    assert "k0" not in left and "k1" not in left


def test_a_process_exiting_after_a_failed_invocation_prints_nothing_on_stderr(
    tmp_path: Path,
) -> None:
    # One pair is deleted (the HTTP pool is opened), one is invalid and its dead letter cannot
    # be written (nothing listens where the HTTP sink points): the invocation raises
    # DeadLetterWriteError. (A directory as the sink's path now fails the cold start instead.)
    event = json.dumps([{"server_id": server_id(0), "key": "k0"}, {"server_id": "bad", "key": "x"}])
    with Sandbox(threads_seed()) as sb:
        env = {
            "ECS_ENDPOINT": sb.url,
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
            "HUAWEICLOUD_SDK_AK": sb.credentials["ak"],
            "HUAWEICLOUD_SDK_SK": sb.credentials["sk"],
            "DEAD_LETTER_URL": "http://127.0.0.1:9/dead-letters",
        }
        done = _python(_ONE_INVOCATION.format(EVENT=event), env)

    assert done.returncode == 0
    assert '{"raised": "DeadLetterWriteError"}' in done.stdout
    assert done.stderr == ""
    json_lines(done.stdout)


def test_a_slow_invocation_is_not_cancelled_by_one_that_ends_beside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second invocation's clean-up must not cancel the first one's DELETEs."""
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "concurrency-test-token")
    monkeypatch.setenv("DEAD_LETTER_URL", "log")

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.split("/")[4] == server_id(0):
            await asyncio.sleep(0.3)
        return httpx.Response(204)

    app.set_runtime(Runtime(load_config(), transport=httpx.MockTransport(answer)))
    slow = {"server_id": server_id(0), "key": "k0"}
    fast = {"server_id": server_id(1), "key": "k0"}

    def later() -> Any:
        time.sleep(0.05)
        return app.handler(fast, LambdaContext(30_000, request_id="fast"))

    results = run_together(
        [lambda: app.handler(slow, LambdaContext(30_000, request_id="slow")), later]
    )
    for response in results:
        assert not isinstance(response, BaseException), repr(response)
        assert response["summary"]["deleted"] == 1


def test_concurrent_invocations_keep_their_own_deadlines_and_log_context(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "concurrency-test-token")
    monkeypatch.setenv("DEAD_LETTER_URL", "log")
    hanging, slow = server_id(0), server_id(1)

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.split("/")[4] == hanging:
            await asyncio.Event().wait()
        await asyncio.sleep(0.8)  # slow, but well within the long invocation's time
        return httpx.Response(204)

    app.set_runtime(Runtime(load_config(), transport=httpx.MockTransport(answer)))

    def timed(event: Any, context: LambdaContext) -> Callable[[], Any]:
        def call() -> Any:
            started = time.perf_counter()
            response = app.handler(event, context)
            return response, time.perf_counter() - started

        return call

    results = run_together(
        [
            timed({"server_id": hanging, "key": "k0"}, LambdaContext(600, request_id="short")),
            timed({"server_id": slow, "key": "k0"}, LambdaContext(5000, request_id="long")),
        ]
    )
    lines = json_lines(capsys.readouterr().out)

    for result in results:
        assert not isinstance(result, BaseException), repr(result)
    (short, short_s), (long, long_s) = results
    assert [r["outcome"] for r in short["results"]] == ["deadline"]
    assert short_s < 0.6
    assert [r["outcome"] for r in long["results"]] == ["deleted"]
    assert long_s >= 0.8
    # Each pair's lines carry the request id of the invocation they belong to.
    for line in lines:
        if line.get("server_id") == hanging:
            assert line["function_request_id"] == "short"
        if line.get("server_id") == slow:
            assert line["function_request_id"] == "long"
    requests = {line["function_request_id"] for line in lines if line.get("server_id")}
    assert requests == {"short", "long"}


def test_cold_functiongraph_invocations_sign_with_their_own_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a cold process, through the default transport: each request signed with its own AK."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    signed_by: dict[str, set[str]] = defaultdict(set)
    lock = threading.Lock()

    class Ecs(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            match = re.search(r"Access=([^,\s]+)", self.headers.get("Authorization", ""))
            with lock:
                signed_by[self.path.split("/")[4]].add(match.group(1) if match else "(none)")
            time.sleep(0.02)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    ecs = ThreadingHTTPServer(("127.0.0.1", 0), Ecs)
    ecs.daemon_threads = True
    serving = threading.Thread(target=ecs.serve_forever, daemon=True)
    serving.start()
    monkeypatch.setenv("ECS_ENDPOINT", f"http://127.0.0.1:{ecs.server_address[1]}")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", "log")
    credentials = [
        (f"COLDAK{n:02d}{uuid.uuid4().hex[:12].upper()}", f"sk-{uuid.uuid4().hex}", f"t-{n}")
        for n in range(THREADS)
    ]

    def call(n: int) -> Callable[[], Any]:
        ak, sk, token = credentials[n]
        event = {"items": [{"server_id": server_id(n), "keys": KEYS}]}
        return lambda: app.handler(event, FunctionGraphContext(f"cold-fg-{n}", ak, sk, token))

    try:
        results = run_together([call(n) for n in range(THREADS)])
    finally:
        ecs.shutdown()
        ecs.server_close()
        serving.join(timeout=5)
    lines = json_lines(capsys.readouterr().out)

    for n, response in enumerate(results):
        assert not isinstance(response, BaseException), repr(response)
        assert response["summary"]["deleted"] == len(KEYS)
        assert signed_by[server_id(n)] == {credentials[n][0]}
    summaries = [line for line in lines if line.get("message") == "invocation summary"]
    assert [line["cold_start"] for line in summaries].count(True) == 1
