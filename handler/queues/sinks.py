"""Dead-letter sinks on queues and topics: an SQS queue (`sqs://…`), an SMN topic (`smn://…`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from handler.deadletter import DeadLetterError
from handler.queues.sigv4 import AwsCredentials, SigV4Auth
from handler.queues.smn import MAX_MESSAGE_BYTES, MAX_TTL_S, SmnClient, SmnTopic
from handler.queues.sqs import FifoIds, SqsClient, SqsQueue

__all__ = ["SmnSink", "SqsSink", "pack"]


class SqsSink:
    """Dead letters as SQS messages, one record each, sent ten to a SendMessageBatch."""

    #: A batch of ten records is one signed POST: its share per record is small.
    seconds_per_record = 200e-6

    def __init__(
        self,
        queue: SqsQueue,
        credentials: AwsCredentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.description = queue.description
        self._http = httpx.AsyncClient(transport=transport, trust_env=False)
        self._owns_transport = transport is None
        auth = SigV4Auth(service="sqs", region=queue.region, credentials=lambda: credentials)
        self._client = SqsClient(queue, http=self._http, auth=auth)

    @staticmethod
    def check_signer() -> None:
        """Raise ImportError when the signer cannot be loaded (before Python 3.12)."""
        import aws_sdk_signers  # noqa: F401

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Send every record; raise DeadLetterError naming those SQS did not store."""
        bodies = [json.dumps(record) for record in records]  # ASCII: every character SQS allows
        fifo = None
        if self._client.queue.fifo:  # one group per write: its records keep their order
            write = f"dead-letters-{uuid.uuid4().hex}"
            fifo = FifoIds(groups=[write] * len(bodies), dedup_prefix=write)
        result = await self._client.send(bodies, deadline=deadline, fifo=fifo)
        if result.failed:
            first = min(result.failed)
            raise DeadLetterError(
                f"cannot send to {self.description}: {len(result.failed)} of {len(records)} "
                f"not stored ({result.failed[first]})",
                unstored=sorted(result.failed),
            )

    async def aclose(self) -> None:
        """Close the HTTP client (not a transport it shares with the ECS client)."""
        if self._owns_transport:
            await self._http.aclose()


class SmnSink:
    """Dead letters published to an SMN topic, each message a JSON array of records.

    Records are packed into as few messages as SMN's size limit allows (SMN has no batch
    publish, and a topic takes 3,000 messages a minute, an email or SMS subscription 100 in
    ten minutes), in order; each message is published with the longest time to live SMN
    allows, so a subscriber that is down for a while still gets it.
    """

    #: One publish carries hundreds of records: its share per record is small.
    seconds_per_record = 200e-6

    def __init__(
        self,
        topic: SmnTopic,
        auth: httpx.Auth,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.description = topic.description
        self._http = httpx.AsyncClient(transport=transport, trust_env=False)
        self._owns_transport = transport is None
        self._client = SmnClient(topic, http=self._http, auth=auth, time_to_live_s=MAX_TTL_S)
        self._max_bytes = max_message_bytes

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Publish every record; raise DeadLetterError naming those SMN did not take."""
        texts = [json.dumps(record) for record in records]  # ASCII: one byte a character
        groups = pack(texts, self._max_bytes)
        messages = ["[" + ",".join(texts[i] for i in group) + "]" for group in groups]
        subjects = [_subject(len(group)) for group in groups]
        failed = await self._client.publish(messages, deadline=deadline, subjects=subjects)
        if not failed:
            return
        unstored = sorted(i for message in failed for i in groups[message])
        first = min(failed)
        raise DeadLetterError(
            f"cannot publish to {self.description}: {len(unstored)} of {len(records)} "
            f"not stored ({failed[first]})",
            unstored=unstored,
        )

    async def aclose(self) -> None:
        """Close the HTTP client (not a transport it shares with the ECS client)."""
        if self._owns_transport:
            await self._http.aclose()


def pack(texts: list[str], max_bytes: int) -> list[list[int]]:
    """Indices of ASCII `texts`, in order, grouped so `[a,b,…]` of each is at most `max_bytes`.

    A text too large even alone is a group of its own (and is refused as too large).
    """
    groups: list[list[int]] = []
    current: list[int] = []
    size = 2  # the brackets
    for index, text in enumerate(texts):
        length = len(text) + (1 if current else 0)  # the comma before it
        if current and size + length > max_bytes:
            groups.append(current)
            current, size = [], 2
            length = len(text)
        current.append(index)
        size += length
    if current:
        groups.append(current)
    return groups


def _subject(count: int) -> str:
    return f"ecs-metadata-janitor: {count} dead letter{'s' if count != 1 else ''}"
