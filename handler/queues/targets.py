"""Fan-out targets: an SQS queue, or an HTTP endpoint (the function's own webhook door)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import httpx

from handler import retrying
from handler.queues.sigv4 import AwsCredentials, SigV4Auth
from handler.queues.sqs import FifoIds, SqsClient, parse_queue

__all__ = ["HttpTarget", "SqsTarget"]

#: Attempts per work item POSTed (network errors, 429, 5xx), within the invocation's time.
HTTP_ATTEMPTS = 3
#: The longest one POST may take.
HTTP_TIMEOUT_S = 10.0
#: Work items POSTed at once.
HTTP_IN_FLIGHT = 8


class SqsTarget:
    """Work items as SQS messages, ten to a SendMessageBatch."""

    def __init__(
        self,
        url: str,
        *,
        aws: Mapping[str, str],
        credentials: AwsCredentials,
        http: httpx.AsyncClient,
    ) -> None:
        queue = parse_queue(url, aws)
        self.description = queue.description
        auth = SigV4Auth(service="sqs", region=queue.region, credentials=lambda: credentials)
        self._client = SqsClient(queue, http=http, auth=auth)
        # A FIFO queue keeps one group's order and holds the rest of a group back while one
        # of its messages is in flight: the work items of a run have no order to keep, so each
        # is its own group, and one locked server holds back nothing but itself.
        self._fifo = queue.fifo

    async def send(self, bodies: Sequence[str], *, deadline: float | None) -> dict[int, str]:
        """Send every work item; return those not sent, with why."""
        fifo = None
        if self._fifo:
            run = f"fan-out-{uuid.uuid4().hex}"
            fifo = FifoIds(groups=[f"{run}-{i}" for i in range(len(bodies))], dedup_prefix=run)
        return (await self._client.send(bodies, deadline=deadline, fifo=fifo)).failed


class HttpTarget:
    """Each work item POSTed as JSON; signed as a Standard Webhook when a secret is given."""

    def __init__(self, url: str, *, secret: str | None, http: httpx.AsyncClient) -> None:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        self.description = f"POST {parts.scheme}://{parts.hostname}{port}"
        self._url = url
        self._http = http
        self._webhook = None
        if secret is not None:
            from standardwebhooks import Webhook

            self._webhook = Webhook(secret)

    async def send(self, bodies: Sequence[str], *, deadline: float | None) -> dict[int, str]:
        """POST every work item, a few at once; return those not accepted, with why."""
        failed: dict[int, str] = {}
        slots = asyncio.Semaphore(HTTP_IN_FLIGHT)

        async def one(index: int, body: str) -> None:
            async with slots:
                why = await self._post(body, deadline)
            if why is not None:
                failed[index] = why

        await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))
        return failed

    async def _post(self, body: str, deadline: float | None) -> str | None:
        """One work item, retried on network errors, 429 and 5xx; None once accepted."""
        message_id = f"msg_{uuid.uuid4().hex}"
        last = "no time left before the invocation's deadline"

        class Retry(Exception):
            pass

        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in retrying.attempts(
                    lambda exc: isinstance(exc, Retry),
                    max_attempts=HTTP_ATTEMPTS,
                    deadline=deadline,
                    wait_initial=0.1,
                    wait_max=1.0,
                    wait_jitter=0.1,
                ):
                    with attempt:
                        last = await self._post_once(message_id, body, deadline)
                        if last == "":
                            return None
                        if last.startswith("HTTP 4") and not last.startswith("HTTP 429"):
                            return last  # refused for good
                        raise Retry
        except (TimeoutError, Retry):
            pass
        return last

    async def _post_once(self, message_id: str, body: str, deadline: float | None) -> str:
        """POST once; "" when accepted, else why not."""
        timeout = retrying.time_left(deadline, HTTP_TIMEOUT_S)
        if timeout <= 0.0:
            return "no time left before the invocation's deadline"
        headers = {"Content-Type": "application/json"}
        if self._webhook is not None:
            import datetime as dt

            # A retry is the same message (one id) at a new time, signed afresh.
            now = dt.datetime.now(dt.UTC)
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._webhook.sign(message_id, now, body)
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.post(
                    self._url, content=body.encode(), headers=headers, timeout=timeout
                )
        except (httpx.TimeoutException, TimeoutError):
            return f"no answer within {timeout:.1f} s"
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return "" if response.is_success else f"HTTP {response.status_code}"
