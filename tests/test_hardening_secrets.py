"""Issue 7 §1: no secret anywhere — response, CLI output, dead letters, logs, sink messages.

Every test goes through a public entry point (handler.app.handler, handler.cli.main, a Runtime
built by hand, HttpSink) against servers on 127.0.0.1, so it runs on the old code too.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from handler import app, cli
from handler.config import load_config
from handler.deadletter import DeadLetterError, HttpSink
from handler.runtime import DeadLetterWriteError, Runtime
from tests.conftest import DEMO_PROJECT
from tests.sandbox._demo import WEB1

#: The shortest run of a secret that must not survive anywhere (a truncated echo of it).
RUN = 16

Respond = Callable[[str, str, list[tuple[str, str]], bytes], tuple[int, bytes]]


def _secret(length: int, seed: int) -> str:
    alphabet = string.ascii_letters + string.digits
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def leaked_runs(text: str, secret: str, run: int = RUN) -> list[str]:
    """Every `run`-character piece of `secret` found in `text` (empty: nothing leaked)."""
    return [
        secret[i : i + run] for i in range(len(secret) - run + 1) if secret[i : i + run] in text
    ]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.respond(
            self.command, self.path, list(self.headers.items()), body
        )
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond: Respond) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve(respond: Respond) -> Iterator[_Server]:
    server = _Server(respond)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def echo_headers_401(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, bytes]:
    """A gateway that answers 401 and echoes the request's headers, credentials first."""
    first = ("x-auth-token", "x-security-token", "authorization")
    ordered = sorted(headers, key=lambda kv: (kv[0].lower() not in first, kv[0].lower()))
    text = "unauthorized; request headers were: " + "; ".join(f"{k}: {v}" for k, v in ordered)
    return 401, text.encode()


@pytest.fixture
def echo_server() -> Iterator[_Server]:
    yield from serve(echo_headers_401)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- (a) a 401 body that echoes X-Auth-Token ------------------------------------------------


def test_echoed_auth_token_is_redacted_in_response_dead_letter_and_log(
    echo_server: _Server,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "tok-" + _secret(44, 1)
    monkeypatch.setenv("ECS_ENDPOINT", echo_server.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", token)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    out = capsys.readouterr().out

    (result,) = response["results"]
    assert result["outcome"] == "forbidden"
    assert "x-auth-token" in result["detail"].lower()  # the echo is there, the token is not
    assert token not in json.dumps(response)
    assert not leaked_runs(json.dumps(response), token)
    letters = dead_letters.read_text()
    assert '"forbidden"' in letters
    assert not leaked_runs(letters, token)
    assert not leaked_runs(out, token)


def test_echoed_auth_token_is_redacted_in_cli_invoke_output(
    echo_server: _Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "tok-" + _secret(44, 2)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"server_id": WEB1, "key": "lease-owner"}))
    monkeypatch.setenv("ECS_ENDPOINT", echo_server.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", token)

    status = cli.main(["invoke", str(event), "--no-sandbox"])
    captured = capsys.readouterr()

    assert status == 0
    assert '"forbidden"' in captured.out
    assert not leaked_runs(captured.out, token)
    assert not leaked_runs(captured.err, token)


# --- (b) a 2,000-character security token echoed back --------------------------------------


def test_long_security_token_leaves_no_16_character_run_anywhere(
    echo_server: _Server,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = _secret(2000, 3)
    monkeypatch.setenv("ECS_ENDPOINT", echo_server.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "TEMPORARYACCESSKEY01")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "temporary-secret-key-" + _secret(20, 4))
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", token)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    out = capsys.readouterr().out

    (result,) = response["results"]
    assert result["outcome"] == "forbidden"
    assert "x-security-token" in result["detail"].lower()
    assert not leaked_runs(json.dumps(response), token)
    letters = dead_letters.read_text()
    assert '"forbidden"' in letters
    assert not leaked_runs(letters, token)
    assert '"forbidden"' in out
    assert not leaked_runs(out, token)


# --- (c) the 8 KiB `raw` cut of an invalid payload -----------------------------------------


def _long_secret_env(monkeypatch: pytest.MonkeyPatch, dead_letters: Path, secret: str) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")  # never called: nothing is valid
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", secret)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))


def test_raw_cut_of_an_invalid_payload_keeps_no_run_of_a_long_secret(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _secret(2000, 5)
    _long_secret_env(monkeypatch, dead_letters, secret)
    # The secret straddles the 8 KiB cut: cut first, its head would no longer match it whole.
    payload = {"server_id": "not-a-uuid", "key": "k", "pad": "x" * 7000, "note": secret}

    response = app.handler(payload, None)
    out = capsys.readouterr().out

    (result,) = response["results"]
    assert result["outcome"] == "invalid"
    assert "raw" in result and len(result["raw"]) <= 8192 + 64
    assert not leaked_runs(json.dumps(response), secret)
    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "invalid" and letter["raw"].startswith('{"server_id"')
    assert len(letter["raw"]) <= 8192 + 64
    assert not leaked_runs(letter["raw"], secret)
    assert not leaked_runs(out, secret)


def test_raw_cut_of_an_unreadable_sqs_body_keeps_no_run_of_a_long_secret(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _secret(2000, 6)
    _long_secret_env(monkeypatch, dead_letters, secret)
    body = "not json: " + "y" * 7500 + secret + " end"
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": body}]}

    assert app.handler(event, None) == {"batchItemFailures": []}
    out = capsys.readouterr().out

    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "invalid" and letter["raw"].startswith("not json: ")
    assert not leaked_runs(letter["raw"], secret)
    assert not leaked_runs(out, secret)


# --- (d) a Runtime built by hand logs JSON, redacted ----------------------------------------


def test_hand_built_runtime_logs_redacted_json_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "hand-built-" + _secret(40, 7)

    def echo(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("x-auth-token", "")
        return httpx.Response(401, text=f"token {header} is not valid")

    structlog.reset_defaults()
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", token)
    monkeypatch.setenv("DEAD_LETTER_URL", "log")
    runtime = Runtime(load_config(), transport=httpx.MockTransport(echo))
    try:
        response = runtime.invoke({"server_id": WEB1, "key": "lease-owner"}, None)
    finally:
        runtime.close()
    out = capsys.readouterr().out

    assert response["results"][0]["outcome"] == "forbidden"
    assert out.strip(), "the hand-built runtime logged nothing"
    lines = _lines(out)  # raises on any line that is not one JSON object
    assert all(isinstance(line, dict) and "level" in line and "message" in line for line in lines)
    messages = [line["message"] for line in lines]
    assert "dead letter" in messages and "invocation summary" in messages
    assert token not in out
    assert not leaked_runs(out, token)


# --- (e) the HTTP sink names scheme and host only -------------------------------------------

_SINK_PATH_SECRET = "hook-path-" + _secret(24, 8)
_SINK_QUERY_SECRET = "query-token-" + _secret(24, 9)


def _sink_url(base: str) -> str:
    return f"{base}/hooks/{_SINK_PATH_SECRET}/dead-letters?token={_SINK_QUERY_SECRET}"


@pytest.mark.parametrize("status", [400, 503])
def test_http_sink_error_names_scheme_and_host_only(status: int) -> None:
    url = _sink_url("http://127.0.0.1:8999")
    sink = HttpSink(url, transport=httpx.MockTransport(lambda _: httpx.Response(status)))
    record = {"schema": "x", "reason": "invalid", "raw": "{}"}

    async def write() -> str:
        try:
            await sink.write([record])
        except DeadLetterError as exc:
            return str(exc)
        finally:
            await sink.aclose()
        raise AssertionError("the write did not fail")

    message = asyncio.run(write())
    assert "http://127.0.0.1:8999" in message
    assert _SINK_PATH_SECRET not in message and "/hooks" not in message
    assert _SINK_QUERY_SECRET not in message and "?" not in message
    assert str(status) in message


def test_http_sink_failure_in_the_handler_names_scheme_and_host_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(
        method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        return 503, b"try later"

    for server in serve(unavailable):
        monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
        monkeypatch.setenv("ECS_AUTH_TOKEN", "sink-test-token")
        monkeypatch.setenv("DEAD_LETTER_URL", _sink_url(server.url))
        with pytest.raises(DeadLetterWriteError) as raised:
            app.handler({"server_id": "not-a-uuid", "key": "k"}, None)
    out = capsys.readouterr().out

    message = str(raised.value)
    assert server.url in message
    for text in (message, out):
        assert _SINK_PATH_SECRET not in text and "/hooks/" not in text
        assert _SINK_QUERY_SECRET not in text
    assert any(line.get("message") == "dead letters not written" for line in _lines(out))


# --- exception messages ---------------------------------------------------------------------


def test_an_unknown_event_error_does_not_carry_a_secret_it_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from handler.sources import UnknownEventError

    token = "tok-" + _secret(44, 10)
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", token)

    with pytest.raises(UnknownEventError) as raised:
        app.handler({"headers": {"x-auth-token": "x"}, token: "pasted by mistake"}, None)
    out = capsys.readouterr().out

    assert "unrecognised event" in str(raised.value)
    assert not leaked_runs(str(raised.value), token)
    assert not leaked_runs(out, token)
