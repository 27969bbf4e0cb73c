"""The SQS client (handler/queues/sqs.py): URLs, endpoints, batches, partial failures, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from handler.queues.sqs import (
    MAX_BATCH_BYTES,
    MAX_ENTRIES,
    SqsClient,
    SqsQueue,
    batches,
    is_sqs_url,
    parse_queue,
)

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/janitor-dlq"


def test_sqs_urls_are_recognised_in_both_forms() -> None:
    assert is_sqs_url("sqs://sqs.eu-west-1.amazonaws.com/123456789012/q")
    assert is_sqs_url(QUEUE)
    assert is_sqs_url("https://eu-west-1.queue.amazonaws.com/123456789012/q")
    assert not is_sqs_url("https://example.com/123456789012/q")
    assert not is_sqs_url("http://sqs.eu-west-1.amazonaws.com/1/q")  # AWS is https only


def test_the_endpoint_follows_the_sdks_convention() -> None:
    url = "sqs://sqs.eu-west-1.amazonaws.com/123456789012/janitor-dlq"
    assert parse_queue(url, {}) == SqsQueue(
        QUEUE, "https://sqs.eu-west-1.amazonaws.com", "eu-west-1"
    )
    general = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566/"}
    assert parse_queue(url, general).endpoint == "http://127.0.0.1:4566"
    specific = {**general, "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9324"}
    assert parse_queue(url, specific).endpoint == "http://127.0.0.1:9324"
    # A queue in another region than the function's is signed for its own region...
    assert parse_queue(url, {"AWS_REGION": "us-east-2"}).region == "eu-west-1"
    # ...unless the request goes elsewhere (an SQS-compatible server): then AWS_REGION.
    assert parse_queue(url, {**specific, "AWS_REGION": "us-east-2"}).region == "us-east-2"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqs://sqs.eu-west-1.amazonaws.com/janitor-dlq", "sqs://<host>/<account id>"),
        ("sqs://sqs.eu-west-1.amazonaws.com/1/q?x=1", "no user info, query"),
        ("sqs://localhost:9324/000000000000/q", "AWS_REGION"),
    ],
)
def test_a_queue_url_that_cannot_be_used_says_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_queue(url, {})


def test_batches_keep_to_ten_entries_and_256_kib() -> None:
    assert [len(b) for b in batches(["x"] * 23)] == [10, 10, 3]
    big = "y" * (MAX_BATCH_BYTES // 3)
    assert batches([big] * 4) == [[0, 1, 2], [3]]
    assert all(len(b) <= MAX_ENTRIES for b in batches(["z"] * 100))


class _Queue:
    """An SQS answering SendMessageBatch from a script of per-attempt behaviours."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.received: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["x-amz-target"] == "AmazonSQS.SendMessageBatch"
        body = json.loads(request.content)
        assert body["QueueUrl"] == QUEUE
        entries = body["Entries"]
        self.received.append(entries)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, httpx.Response):
            return step
        failed = []
        if isinstance(step, dict):  # {entry position: (code, sender fault)}
            failed = [
                {"Id": entries[pos]["Id"], "Code": code, "SenderFault": fault, "Message": "x"}
                for pos, (code, fault) in step.items()
            ]
        ids = {f["Id"] for f in failed}
        ok = [{"Id": e["Id"], "MessageId": "m", "MD5OfMessageBody": "0"} for e in entries]
        return httpx.Response(
            200, json={"Successful": [s for s in ok if s["Id"] not in ids], "Failed": failed}
        )


def _send(queue: _Queue, bodies: list[str], timeout: float = 5.0) -> dict[int, str]:
    async def main() -> dict[int, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(queue)) as http:
            client = SqsClient(
                SqsQueue(QUEUE, "https://sqs.eu-west-1.amazonaws.com", "eu-west-1"),
                http=http,
                auth=httpx.Auth(),
            )
            deadline = asyncio.get_running_loop().time() + timeout
            return (await client.send(bodies, deadline=deadline)).failed

    return asyncio.run(main())


def test_entries_failed_by_the_service_are_sent_again_and_then_stored() -> None:
    queue = _Queue({1: ("InternalError", False), 3: ("ServiceUnavailable", False)})
    assert _send(queue, [f"m{i}" for i in range(5)]) == {}
    assert [e["MessageBody"] for e in queue.received[1]] == ["m1", "m3"]


def test_entries_failed_by_the_sender_are_not_sent_again_and_are_reported() -> None:
    queue = _Queue({0: ("InvalidMessageContents", True)})
    assert _send(queue, ["bad", "good"]) == {0: "Failed InvalidMessageContents"}
    assert len(queue.received) == 1


def test_throttling_and_5xx_are_retried_a_missing_queue_is_not() -> None:
    throttled = httpx.Response(400, json={"__type": "com.amazonaws.sqs#ThrottlingException"})
    queue = _Queue(throttled, httpx.Response(503), "ok")
    assert _send(queue, ["a"]) == {}
    assert len(queue.received) == 3
    missing = httpx.Response(400, json={"__type": "com.amazonaws.sqs#QueueDoesNotExist"})
    queue = _Queue(missing)
    assert _send(queue, ["a", "b"]) == {
        0: "HTTP 400 QueueDoesNotExist",
        1: "HTTP 400 QueueDoesNotExist",
    }
    assert len(queue.received) == 1


def test_what_still_fails_after_the_attempts_is_reported_with_its_last_reason() -> None:
    queue = _Queue(*[{0: ("InternalError", False)}] * 10)
    assert _send(queue, ["a", "b"]) == {0: "Failed InternalError"}


def test_a_message_larger_than_sqs_allows_is_reported_not_sent() -> None:
    queue = _Queue()
    failed = _send(queue, ["x" * (MAX_BATCH_BYTES + 1), "small"])
    assert failed == {0: f"larger than SQS's {MAX_BATCH_BYTES:,} bytes"}
    assert [e["MessageBody"] for e in queue.received[0]] == ["small"]


def test_a_silent_queue_is_given_up_at_the_deadline() -> None:
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    async def main() -> dict[int, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(silent)) as http:
            client = SqsClient(
                SqsQueue(QUEUE, "https://x", "eu-west-1"), http=http, auth=httpx.Auth()
            )
            deadline = asyncio.get_running_loop().time() + 0.3
            return (await client.send(["a"], deadline=deadline)).failed

    loop_started = asyncio.run(main())
    assert list(loop_started) == [0]
