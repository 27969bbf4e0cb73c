"""Issue 7 §4: batches at scale — few POSTs of dead letters, failures mapped back, bounded tasks.

The HTTP calls go through `httpx.MockTransport`s handed to a Runtime built by hand (the
documented `Runtime(config, transport=…, sink=…)`), so the tests count exactly what was sent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from handler.config import load_config
from handler.deadletter import HttpSink
from handler.runtime import Runtime
from tests.conftest import DEMO_PROJECT

SINK_URL = "http://127.0.0.1:9/dead-letters"


def _environment(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "batches-test-token")
    monkeypatch.setenv("DEAD_LETTER_URL", SINK_URL)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def sqs(bodies: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": mid, "body": body, "attributes": {}}
            for mid, body in bodies
        ]
    }


def invalid_messages(count: int, *, doubles_every: int = 0) -> list[tuple[str, str]]:
    """Messages whose payloads are invalid: one dead letter each (two for every n-th)."""
    messages = []
    for n in range(count):
        body: Any = {"server_id": f"bad-{n}", "key": "k"}
        if doubles_every and n % doubles_every == 0:
            body = [body, {"server_id": f"worse-{n}", "key": "k"}]
        messages.append((f"m-{n:04d}", json.dumps(body)))
    return messages


class PostRecorder:
    """A sink endpoint: records every POST's records; answers with `status_for(n)`."""

    def __init__(self, status_for: Any = lambda n: 204) -> None:
        self.posts: list[list[dict[str, Any]]] = []
        self.answers: list[int] = []
        self._status_for = status_for

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(500, text="this mock only takes POSTs")
        self.posts.append(json.loads(request.content))
        status = self._status_for(len(self.posts))
        self.answers.append(status)
        return httpx.Response(status)

    def stored(self) -> list[str]:
        """The source ids of every record in a POST that succeeded."""
        return [
            record["source"]["id"]
            for records, status in zip(self.posts, self.answers, strict=True)
            if 200 <= status < 300
            for record in records
        ]


def test_a_thousand_dead_letters_go_through_the_runtime_transport_in_at_most_two_posts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _environment(monkeypatch)
    recorder = PostRecorder()
    runtime = Runtime(load_config(), transport=httpx.MockTransport(recorder))
    messages = invalid_messages(1000)
    try:
        response = runtime.invoke(sqs(messages), None)
    finally:
        runtime.close()

    assert response == {"batchItemFailures": []}
    assert 1 <= len(recorder.posts) <= 2
    assert sorted(recorder.stored()) == [mid for mid, _ in messages]  # each stored once


def test_a_thousand_dead_letters_through_an_http_sink_take_at_most_two_posts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _environment(monkeypatch)
    recorder = PostRecorder()
    sink = HttpSink(SINK_URL, transport=httpx.MockTransport(recorder))
    runtime = Runtime(load_config(), transport=httpx.MockTransport(recorder), sink=sink)
    messages = invalid_messages(1000)
    try:
        response = runtime.invoke(sqs(messages), None)
    finally:
        runtime.close()

    assert response == {"batchItemFailures": []}
    assert 1 <= len(recorder.posts) <= 2
    assert sorted(recorder.stored()) == [mid for mid, _ in messages]


def test_a_failed_second_chunk_sends_back_exactly_the_messages_not_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _environment(monkeypatch)
    # The first POST is stored; every later one is refused (400: not retried).
    recorder = PostRecorder(lambda n: 204 if n == 1 else 400)
    sink = HttpSink(SINK_URL, transport=httpx.MockTransport(recorder))
    runtime = Runtime(load_config(), transport=httpx.MockTransport(recorder), sink=sink)
    # 1,000 messages, every 7th with two dead letters: a chunk may end inside a message.
    messages = invalid_messages(1000, doubles_every=7)
    try:
        response = runtime.invoke(sqs(messages), None)
    finally:
        runtime.close()

    assert len(recorder.posts) == 2  # one stored chunk, one refused, and nothing after it
    assert recorder.answers == [204, 400]
    expected_records = {mid: 2 if int(mid[2:]) % 7 == 0 else 1 for mid, _ in messages}
    stored: dict[str, int] = {}
    for mid in recorder.stored():
        stored[mid] = stored.get(mid, 0) + 1
    not_stored = [mid for mid, _ in messages if stored.get(mid, 0) < expected_records[mid]]
    assert 0 < len(not_stored) < len(messages)
    failures = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert sorted(failures) == sorted(not_stored)


def test_tasks_alive_during_a_2000_message_batch_are_bounded_by_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    max_concurrency = 4
    _environment(monkeypatch, MAX_CONCURRENCY=str(max_concurrency), DEAD_LETTER_URL="log")
    alive: list[int] = []

    async def delete(request: httpx.Request) -> httpx.Response:
        alive.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0.0005)
        return httpx.Response(204)

    messages = [
        (
            f"m-{n:04d}",
            json.dumps({"server_id": str(uuid.UUID(int=n + 1, version=4)), "key": "lease-owner"}),
        )
        for n in range(2000)
    ]
    runtime = Runtime(load_config(), transport=httpx.MockTransport(delete))
    try:
        response = runtime.invoke(sqs(messages), None)
    finally:
        runtime.close()

    assert response == {"batchItemFailures": []}
    assert len(alive) == 2000
    workers = 2 * max_concurrency
    assert max(alive) <= workers + 8, f"up to {max(alive)} tasks alive at once"
