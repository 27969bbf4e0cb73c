"""Amazon SQS over HTTP (the AWS JSON 1.0 protocol): SendMessageBatch, split to the limits."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from handler import retrying

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_ENTRIES",
    "FifoIds",
    "SqsClient",
    "SqsQueue",
    "SqsSendResult",
    "is_sqs_url",
    "parse_queue",
]

#: Entries per SendMessageBatch (the service's limit).
MAX_ENTRIES = 10
#: Bytes of one message, and of all the messages of one batch together (256 KiB).
MAX_BATCH_BYTES = 262_144
#: Attempts per batch (network errors, throttling, 5xx, entries Failed without the sender's
#: fault), within the invocation's time.
ATTEMPTS = 4
#: The longest one request may take (less when the invocation's time is short).
REQUEST_TIMEOUT_S = 10.0

#: AWS's SQS hosts: regional, FIPS and dual-stack (`sqs.<region>.api.aws`).
_AWS_HOST = re.compile(r"^sqs(?:-fips)?\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)$")
_LEGACY_HOST = re.compile(r"^([a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?$")
#: Errors worth another try: the service's throttling and its own failures.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KmsThrottled",
    }
)


@dataclass(frozen=True, slots=True)
class SqsQueue:
    """A queue: its URL (as the API names it), where requests go, and the signing region."""

    url: str
    endpoint: str
    region: str

    @property
    def fifo(self) -> bool:
        """True for a FIFO queue (its name ends in `.fifo`)."""
        return self.url.endswith(".fifo")

    @property
    def description(self) -> str:
        """The queue without its account: `sqs <host>/<name>`."""
        parts = urlsplit(self.url)
        return f"sqs {parts.hostname}/{parts.path.rsplit('/', 1)[-1]}"


def is_sqs_url(url: str) -> bool:
    """True for `sqs://…` and for an https URL of an SQS queue (`sqs.<region>.amazonaws.com`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme.lower() == "sqs":
        return True
    host = (parts.hostname or "").lower()
    return parts.scheme.lower() == "https" and bool(
        _AWS_HOST.match(host) or _LEGACY_HOST.match(host)
    )


def parse_queue(url: str, environ: Mapping[str, str]) -> SqsQueue:
    """The queue a DEAD_LETTER_URL names; the endpoint as the AWS SDKs choose it.

    The endpoint is AWS_ENDPOINT_URL_SQS, else AWS_ENDPOINT_URL, else the queue URL's own
    host. The signing region is the one the queue's AWS host names when the request goes there
    (a queue in another region than the function's), else AWS_REGION (else
    AWS_DEFAULT_REGION). Raises ValueError saying what is missing.
    """
    parts = urlsplit(url)
    if not parts.hostname or parts.path.count("/") != 2 or parts.path.endswith("/"):
        raise ValueError(
            "DEAD_LETTER_URL: an SQS queue URL is sqs://<host>/<account id>/<queue name>, "
            "e.g. sqs://sqs.eu-west-1.amazonaws.com/123456789012/janitor-dlq"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("DEAD_LETTER_URL: no user info, query or fragment in an SQS queue URL")
    scheme = "https" if parts.scheme.lower() == "sqs" else parts.scheme.lower()
    queue_url = f"{scheme}://{parts.netloc}{parts.path}"
    host = parts.hostname.lower()
    configured = _variable(environ, "AWS_ENDPOINT_URL_SQS") or _variable(
        environ, "AWS_ENDPOINT_URL"
    )
    endpoint = (configured or f"{scheme}://{parts.netloc}").rstrip("/")
    match = _AWS_HOST.match(host) or _LEGACY_HOST.match(host)
    hosts_region = match.group(1) if match else None
    region = (
        (hosts_region if configured is None else None)
        or _variable(environ, "AWS_REGION")
        or _variable(environ, "AWS_DEFAULT_REGION")
        or hosts_region
    )
    if region is None:
        raise ValueError(
            "AWS_REGION: set it to sign for the SQS queue (the queue's host names no region)"
        )
    return SqsQueue(url=queue_url, endpoint=endpoint, region=region)


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class FifoIds:
    """What a FIFO queue needs of each message: its group, and a deduplication id prefix."""

    groups: Sequence[str]
    dedup_prefix: str


def _is_index(value: object) -> bool:
    """True for an entry id this client sent: ASCII digits ("²" is a digit, not an index)."""
    return isinstance(value, str | int) and str(value).isascii() and str(value).isdigit()


@dataclass(slots=True)
class SqsSendResult:
    """Which of the messages given were not stored, each with the last reason."""

    failed: dict[int, str] = field(default_factory=dict)


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SqsClient:
    """Sends messages to one queue, SigV4-signed, over the function's connection pool."""

    def __init__(self, queue: SqsQueue, *, http: httpx.AsyncClient, auth: httpx.Auth) -> None:
        self.queue = queue
        self._http = http
        self._auth = auth

    async def send(
        self,
        bodies: Sequence[str],
        *,
        deadline: float | None = None,
        fifo: FifoIds | None = None,
    ) -> SqsSendResult:
        """Send every body; return those not stored after the retries (by index, with why).

        A FIFO queue needs `fifo`: each message's group, and a prefix that makes its
        deduplication id (the same on a retry, so a retried entry is never stored twice).
        """
        result = SqsSendResult()
        for batch in batches(bodies):
            too_big = [i for i in batch if len(bodies[i].encode()) > MAX_BATCH_BYTES]
            for index in too_big:
                result.failed[index] = f"larger than SQS's {MAX_BATCH_BYTES:,} bytes"
            batch = [i for i in batch if i not in too_big]
            if batch:
                result.failed.update(await self._send_batch(bodies, batch, deadline, fifo))
        return result

    async def _send_batch(
        self,
        bodies: Sequence[str],
        batch: list[int],
        deadline: float | None,
        fifo: FifoIds | None,
    ) -> dict[int, str]:
        """One batch, its Failed entries (and the whole, on errors) retried within the time."""
        pending = list(batch)
        final: dict[int, str] = {}  # failed for good (the sender's fault)
        last: dict[int, str] = {}  # why each entry still pending failed last
        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in retrying.attempts(
                    lambda exc: isinstance(exc, _Retry),
                    max_attempts=ATTEMPTS,
                    deadline=deadline,
                    wait_initial=0.1,
                    wait_max=2.0,
                    wait_jitter=0.1,
                ):
                    with attempt:
                        failed, retry = await self._post(bodies, pending, deadline, fifo)
                        final.update((i, why) for i, why in failed.items() if i not in retry)
                        last = {i: failed[i] for i in retry}
                        pending = retry
                        if pending:
                            raise _Retry(last[pending[0]])
                        return final
        except TimeoutError:
            pass
        except _Retry:
            pass
        for index in pending:
            final[index] = last.get(index, "no answer before the invocation's deadline")
        return final

    async def _post(
        self,
        bodies: Sequence[str],
        pending: list[int],
        deadline: float | None,
        fifo: FifoIds | None,
    ) -> tuple[dict[int, str], list[int]]:
        """POST one SendMessageBatch; return the failed entries and those worth retrying."""
        entries: list[dict[str, Any]] = []
        for index in pending:
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": bodies[index]}
            if fifo is not None:
                entry["MessageGroupId"] = fifo.groups[index]
                entry["MessageDeduplicationId"] = f"{fifo.dedup_prefix}-{index}"
            entries.append(entry)
        body = json.dumps({"QueueUrl": self.queue.url, "Entries": entries}).encode()
        timeout = retrying.time_left(deadline, REQUEST_TIMEOUT_S)
        if timeout <= 0.0:
            raise TimeoutError
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.SendMessageBatch",
        }
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.post(
                    self.queue.endpoint + "/",
                    content=body,
                    headers=headers,
                    auth=self._auth,
                    timeout=timeout,
                )
        except (httpx.TimeoutException, TimeoutError):
            return self._all(pending, f"no answer within {timeout:.1f} s", retry=True)
        except httpx.TransportError as exc:
            return self._all(pending, f"{type(exc).__name__}", retry=True)
        answer = _json(response)
        if response.status_code != 200:
            code = _error_code(answer)
            why = f"HTTP {response.status_code}" + (f" {code}" if code else "")
            retry = response.status_code >= 500 or response.status_code == 429
            return self._all(pending, why, retry=retry or code in _RETRYABLE_CODES)
        failed: dict[int, str] = {}
        retry_ids: list[int] = []
        entries_failed = answer.get("Failed") if isinstance(answer, dict) else None
        for entry in entries_failed if isinstance(entries_failed, list) else []:
            if not isinstance(entry, dict) or not _is_index(entry.get("Id")):
                continue
            index = int(entry["Id"])
            if index not in pending:
                continue
            failed[index] = f"Failed {entry.get('Code') or 'entry'}"
            if not entry.get("SenderFault"):
                retry_ids.append(index)
        successful = answer.get("Successful") if isinstance(answer, dict) else None
        stored = {
            int(e["Id"])
            for e in (successful if isinstance(successful, list) else [])
            if isinstance(e, dict) and _is_index(e.get("Id"))
        }
        for index in pending:  # neither stored nor failed: the answer left it out
            if index not in stored and index not in failed:
                failed[index] = "missing from the answer"
                retry_ids.append(index)
        return failed, retry_ids

    @staticmethod
    def _all(pending: list[int], why: str, *, retry: bool) -> tuple[dict[int, str], list[int]]:
        return {i: why for i in pending}, list(pending) if retry else []


def batches(bodies: Sequence[str]) -> list[list[int]]:
    """Indices of `bodies` in groups of at most MAX_ENTRIES and MAX_BATCH_BYTES in total."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, text in enumerate(bodies):
        length = len(text.encode())
        if current and (len(current) == MAX_ENTRIES or size + length > MAX_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(index)
        size += length
    if current:
        out.append(current)
    return out


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _error_code(answer: Any) -> str | None:
    """The error's name from a JSON-protocol error (`com.amazonaws.sqs#Name` or `Name`)."""
    if not isinstance(answer, dict):
        return None
    kind = answer.get("__type") or answer.get("code")
    return str(kind).rsplit("#", 1)[-1][:100] if kind else None
