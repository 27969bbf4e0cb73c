"""Fan-out targets: work items into the sandbox's SQS queue, and signed POSTs."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from handler.queues.targets import HttpTarget, SqsTarget
from handler.sandbox import Sandbox

SECRET = "whsec_" + base64.b64encode(b"fan-out-test-secret-0123456789").decode()


def _deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def test_work_items_land_in_the_queue_as_messages(sandbox: Sandbox) -> None:
    pytest.importorskip("aws_sdk_signers", reason="SigV4 needs Python 3.12 or later")
    from handler.queues.sigv4 import AwsCredentials

    aws = sandbox.aws
    assert aws is not None
    url = "sqs://" + sandbox.queue_url("janitor-work").split("://", 1)[1]

    async def main() -> dict[int, str]:
        async with httpx.AsyncClient() as http:
            target = SqsTarget(
                url,
                aws={"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SQS": sandbox.url},
                credentials=AwsCredentials(aws["access_key_id"], aws["secret_access_key"]),
                http=http,
            )
            bodies = [json.dumps({"server_id": f"s{i}", "keys": ["k"]}) for i in range(13)]
            return await target.send(bodies, deadline=_deadline())

    assert asyncio.run(main()) == {}
    queue = next(q for q in sandbox.state()["queues"] if q["name"] == "janitor-work")
    bodies = sorted(json.loads(m["body"])["server_id"] for m in queue["messages"])
    assert bodies == sorted(f"s{i}" for i in range(13))


class Receiver:
    """An endpoint verifying Standard Webhooks; answers from a script per message."""

    def __init__(self, *script: int) -> None:
        self.script = list(script)
        self.accepted: list[dict[str, Any]] = []
        self.ids: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        payload = Webhook(SECRET).verify(request.content, dict(request.headers))
        self.ids.append(request.headers["webhook-id"])
        status = self.script.pop(0) if self.script else 204
        if status < 300:
            self.accepted.append(payload)
        return httpx.Response(status)


def _post(receiver: Receiver, bodies: list[str], secret: str | None = SECRET) -> dict[int, str]:
    async def main() -> dict[int, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
            target = HttpTarget("https://janitor.example/webhook", secret=secret, http=http)
            return await target.send(bodies, deadline=_deadline())

    return asyncio.run(main())


def test_each_work_item_is_a_verifiable_signed_post() -> None:
    receiver = Receiver()
    bodies = [json.dumps({"server_id": f"s{i}", "keys": ["k"]}) for i in range(5)]
    assert _post(receiver, bodies) == {}
    assert sorted(p["server_id"] for p in receiver.accepted) == [f"s{i}" for i in range(5)]


def test_a_retry_is_the_same_message_id_and_a_4xx_is_final() -> None:
    receiver = Receiver(503, 204)
    assert _post(receiver, ['{"server_id": "a", "keys": ["k"]}']) == {}
    assert len(receiver.ids) == 2 and receiver.ids[0] == receiver.ids[1]
    refused = Receiver(400)
    assert _post(refused, ['{"server_id": "b", "keys": ["k"]}']) == {0: "HTTP 400"}
    assert len(refused.ids) == 1


def test_the_secret_is_in_no_header() -> None:
    seen: list[httpx.Headers] = []

    def keep(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(204)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(keep)) as http:
            target = HttpTarget("https://x.example/", secret=SECRET, http=http)
            await target.send(["{}"], deadline=_deadline())

    asyncio.run(main())
    raw = SECRET.removeprefix("whsec_")
    assert all(raw not in value for headers in seen for value in headers.values())
