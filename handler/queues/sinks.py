"""Dead-letter sinks on queues and topics: an SQS queue (`sqs://…`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from handler.deadletter import DeadLetterError
from handler.queues.sigv4 import AwsCredentials, SigV4Auth
from handler.queues.sqs import SqsClient, SqsQueue

__all__ = ["SqsSink"]


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
        result = await self._client.send(bodies, deadline=deadline)
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
