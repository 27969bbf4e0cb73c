"""Issue 7 §3: the deadline is held — a silent sink, a huge payload, 10,000 unanswered pairs.

Each test times handler.app.handler from the moment the platform's context is created (the
platform's clock starts before the handler runs) and requires the answer before the limit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import handler
from handler import app
from handler.local import FakeContext as LambdaContext
from handler.runtime import DeadLetterWriteError
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self._sock.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("remaining_ms", [3000, 1000, 500])
def test_a_sink_that_never_answers_does_not_hold_the_handler_past_the_limit(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch, remaining_ms: int
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")  # never called: nothing is valid
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "deadline-test-token")
    monkeypatch.setenv("DEAD_LETTER_URL", f"{silent.url}/dead-letters")

    context = LambdaContext(remaining_ms)
    started = time.perf_counter()
    with pytest.raises(DeadLetterWriteError):
        app.handler({"server_id": "not-a-uuid", "key": "k"}, context)
    elapsed = time.perf_counter() - started

    assert elapsed < remaining_ms / 1000, f"answered {elapsed * 1000:.0f} ms after the start"


def test_a_256_kb_array_body_is_one_dead_letter_and_the_good_message_is_settled(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    poison = "[" + ",".join(["0"] * 128_000) + "]"
    assert len(poison) > 250_000
    event = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "poison", "body": poison},
            {
                "eventSource": "aws:sqs",
                "messageId": "good",
                "body": json.dumps({"server_id": DB1, "key": "lease-owner"}),
            },
        ]
    }
    with Sandbox() as sb:
        configure_for(monkeypatch, sb, dead_letters)
        context = LambdaContext(3000)
        started = time.perf_counter()
        response = app.handler(event, context)
        elapsed = time.perf_counter() - started
        left = metadata_of(sb, DB1)
    out = capsys.readouterr().out

    assert response == {"batchItemFailures": []}
    assert elapsed < 3.0, f"answered {elapsed * 1000:.0f} ms after the start"
    assert "lease-owner" not in left
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert len(letters) == 1
    (letter,) = letters
    assert letter["source"]["id"] == "poison" and letter["reason"] == "invalid"
    assert letter["raw"].startswith("[0,0,0")
    assert len(letter["raw"]) <= 8300
    assert len(out.splitlines()) < 100


def test_a_256_kb_object_of_unknown_fields_is_one_dead_letter_of_bounded_size(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    poison: dict[str, object] = {"server_id": WEB1, "key": "lease-owner"}
    poison.update({f"unknown_field_{n:05d}": 0 for n in range(12_000)})
    body = json.dumps(poison)
    assert len(body) > 250_000
    event = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "poison", "body": body},
            {
                "eventSource": "aws:sqs",
                "messageId": "good",
                "body": json.dumps({"server_id": DB1, "key": "lease-owner"}),
            },
        ]
    }
    with Sandbox() as sb:
        configure_for(monkeypatch, sb, dead_letters)
        response = app.handler(event, LambdaContext(3000))
        left = metadata_of(sb, DB1)
    out = capsys.readouterr().out

    assert response == {"batchItemFailures": []}
    assert "lease-owner" not in left
    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["source"]["id"] == "poison" and letter["reason"] == "invalid"
    assert len(letter["raw"]) <= 8300
    assert len(json.dumps(letter)) < 20_000, f"one dead letter of {len(json.dumps(letter))} chars"
    assert len(out) < 100_000, f"{len(out)} characters of log lines"


def _unanswered_pairs(
    silent: SilentServer, token: str, *, key_length: int, servers: int, remaining_ms: int
) -> dict[str, Any]:
    """Run `servers` x 10 unanswered pairs in a process of its own, whose stdout is a pipe as on
    the platform (a log agent reads it); return its summary and timing."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(handler.__file__).resolve().parent.parent),
        "ECS_ENDPOINT": silent.url,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
        "ECS_AUTH_TOKEN": token,
        "DEAD_LETTER_URL": "log",
    }
    done = subprocess.run(
        [sys.executable, "-c", _UNANSWERED, str(key_length), str(servers), str(remaining_ms)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith('{"elapsed"')]
    measured: dict[str, Any] = json.loads(line)
    pairs = servers * 10
    assert measured["pairs"] == measured["deadline"] == measured["dead_lettered"] == pairs
    assert done.stdout.count('"message":"dead letter"') == pairs
    return measured


def test_ten_thousand_unanswered_pairs_with_the_log_sink_answer_before_the_limit(
    silent: SilentServer,
) -> None:
    # A token under 16 characters: lines are only searched for it whole (see the xfail below).
    measured = _unanswered_pairs(
        silent, "short-token", key_length=0, servers=1000, remaining_ms=2000
    )
    elapsed = measured["elapsed"]
    assert elapsed < 2.0, f"answered {elapsed * 1000:.0f} ms after the start"


@pytest.mark.slow
def test_unanswered_pairs_with_long_keys_and_a_long_secret_answer_before_the_limit(
    silent: SilentServer,
) -> None:
    measured = _unanswered_pairs(
        silent,
        "deadline-test-token-0123456789",
        key_length=240,
        servers=2000,
        remaining_ms=4000,
    )
    elapsed = measured["elapsed"]
    assert elapsed < 4.0, f"answered {elapsed * 1000:.0f} ms after the start"


_UNANSWERED = """
import json, sys, time, uuid
from handler import app

class Context:
    aws_request_id = "unanswered"
    def __init__(self, remaining_ms):
        self._end = time.monotonic() + remaining_ms / 1000
    def get_remaining_time_in_millis(self):
        return max(int((self._end - time.monotonic()) * 1000), 0)

tail = "x" * int(sys.argv[1])
items = [
    {
        "server_id": str(uuid.UUID(int=n + 1, version=4)),
        "keys": [f"k{i}-{tail}"[:255] for i in range(10)],
    }
    for n in range(int(sys.argv[2]))
]
context = Context(int(sys.argv[3]))
started = time.perf_counter()
response = app.handler({"items": items}, context)
elapsed = time.perf_counter() - started
summary = response["summary"]
print(json.dumps({"elapsed": elapsed, **summary}), file=sys.stderr)
"""
