"""`drain`: a queue's messages fed to the function as real SQS events, as Lambda's poller does.

Each batch: ReceiveMessage (up to --batch-size), one invocation of the handler through a
Runtime with an SQS event of those messages (the `Records` shape of events/sqs-batch.json),
then DeleteMessageBatch of every message not in the answer's `batchItemFailures`. The ones in
it are left in flight: they become visible again after the queue's visibility timeout, as on
Lambda. It stops when a receive comes back empty, when a batch holds only messages this run
already handed back, or after --max-batches.

The queue is spoken to over HTTP in the SQS JSON protocol, each request signed with AWS
Signature Version 4 by the function's own signer (handler/queues/sigv4.py: aws-sdk-signers,
Python 3.12).

Exit status: 0 the queue gave nothing more and every message received was deleted; 1 messages
were handed back (or a delete failed, the run stopped at --max-batches, or an invocation
failed); 2 bad arguments, configuration, credentials or queue; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from handler.commands import common
from handler.commands.progress import ProgressDisplay
from handler.queues.sigv4 import AwsCredentials, SigV4Auth
from handler.queues.sqs import parse_queue

INTERRUPTED = 130
MAX_BATCH = 10
TIMEOUT_S = 30.0
#: ReceiveMessage's long poll, seconds (0: answer at once; an empty answer ends the drain).
WAIT_S = 0
#: Attempts per SQS request on throttling, a 5xx or a network error.
ATTEMPTS = 3
_RETRYABLE_CODES = frozenset(
    {"RequestThrottled", "ThrottlingException", "ServiceUnavailable", "InternalError"}
)


# --- the SQS client -------------------------------------------------------------------------------


class SqsClientError(Exception):
    """An SQS error answer (or no answer): its status, code and message."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """Throttling, a server error or no answer."""
        return self.status is None or self.status >= 500 or self.code in _RETRYABLE_CODES


class SqsClient:
    """A small SQS client: the JSON protocol over httpx, each request SigV4-signed."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: AwsCredentials,
        *,
        http: httpx.Client,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.region = region
        self._http = http
        # The function's own signer (aws-sdk-signers), as the SQS dead-letter sink signs.
        self._auth = SigV4Auth(
            service="sqs", region=region, credentials=lambda: credentials, clock=clock
        )

    def call(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """One action; its answer's JSON object. Raises SqsClientError (after retries)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._call_once(action, payload)
            except SqsClientError as exc:
                if attempt == ATTEMPTS or not exc.retryable:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        request = self._http.build_request(
            "POST",
            self.endpoint,
            content=json.dumps(payload).encode(),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"AmazonSQS.{action}",
            },
        )
        self._auth.sign(request)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise SqsClientError(None, type(exc).__name__, "no answer from SQS") from None
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            error = data if isinstance(data, dict) else {}
            code = str(error.get("__type", f"HTTP {response.status_code}")).rpartition("#")[2]
            message = str(error.get("message") or error.get("Message") or "")
            raise SqsClientError(response.status_code, code, message)
        return data

    def queue_url(self, name: str) -> str:
        """GetQueueUrl."""
        return str(self.call("GetQueueUrl", {"QueueName": name})["QueueUrl"])

    def attributes(self, url: str, names: list[str]) -> dict[str, str]:
        """GetQueueAttributes."""
        answer = self.call("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": names})
        return {str(k): str(v) for k, v in (answer.get("Attributes") or {}).items()}

    def receive(self, url: str, count: int, wait_s: int) -> list[dict[str, Any]]:
        """ReceiveMessage with every system and message attribute."""
        answer = self.call(
            "ReceiveMessage",
            {
                "QueueUrl": url,
                "MaxNumberOfMessages": count,
                "WaitTimeSeconds": wait_s,
                "AttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            },
        )
        messages = answer.get("Messages") or []
        return [m for m in messages if isinstance(m, dict)]

    def delete(self, url: str, handles: dict[str, str]) -> list[dict[str, Any]]:
        """DeleteMessageBatch of {entry id: receipt handle}; the `Failed` entries."""
        entries = [{"Id": key, "ReceiptHandle": handle} for key, handle in handles.items()]
        answer = self.call("DeleteMessageBatch", {"QueueUrl": url, "Entries": entries})
        return [f for f in answer.get("Failed") or [] if isinstance(f, dict)]


# --- the SQS event --------------------------------------------------------------------------------


def _lambda_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """MessageAttributes as Lambda's SQS event carries them (camel-cased keys)."""
    converted: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(value, dict):
            continue
        item: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = value["BinaryValue"]
        converted[str(name)] = item
    return converted


def sqs_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller gives the function for these received messages."""
    region = arn.split(":")[3] if arn.count(":") >= 5 else ""
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message.get("MessageId"),
            "receiptHandle": message.get("ReceiptHandle"),
            "body": message.get("Body"),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": _lambda_attributes(message.get("MessageAttributes") or {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def returned_ids(response: Any, messages: list[dict[str, Any]]) -> set[str]:
    """The message ids the function hands back; all of them when its answer says to retry the
    whole batch (an empty itemIdentifier) or is not an SQS batch response."""
    every = {str(m.get("MessageId")) for m in messages}
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        return every
    ids: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or str(identifier) not in every:
            return every  # Lambda fails the whole batch on an id it did not send
        ids.add(str(identifier))
    return ids


# --- the drain ------------------------------------------------------------------------------------


@dataclass(slots=True)
class DrainResult:
    """What a drain did."""

    batches: int = 0
    received: int = 0
    deleted: int = 0
    returned: int = 0
    delete_failed: int = 0
    #: Why it stopped: `empty`, `came back`, `max batches` or `invocation failed`.
    stopped: str = "empty"
    returned_ids: set[str] = field(default_factory=set)
    #: Messages settled whose delete failed: received again, they are not run again.
    delete_failed_ids: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        """Every message received was deleted and the queue gave nothing more."""
        return self.stopped == "empty" and not self.returned and not self.delete_failed


def drain(
    client: SqsClient,
    url: str,
    arn: str,
    invoke: Callable[[dict[str, Any]], Any],
    *,
    batch_size: int,
    max_batches: int | None,
    out: Callable[[str], None],
    wait_s: int = WAIT_S,
) -> DrainResult:
    """Receive, invoke, delete what settled, until the queue gives nothing new.

    `invoke` runs the function on an event and returns its answer; an exception from it
    leaves the whole batch in the queue (as Lambda does) and ends the drain.
    """
    result = DrainResult()
    while max_batches is None or result.batches < max_batches:
        messages = client.receive(url, batch_size, wait_s)
        if not messages:
            result.stopped = "empty"
            return result
        ids = [str(m.get("MessageId")) for m in messages]
        if all(i in result.returned_ids or i in result.delete_failed_ids for i in ids):
            out(f"batch {result.batches + 1}: {len(ids)} message(s) handed back earlier came back")
            result.stopped = "came back"
            return result
        result.batches += 1
        result.received += len(messages)
        try:
            response = invoke(sqs_event(messages, arn))
        except Exception as exc:  # noqa: BLE001 - the batch stays, the drain says why
            result.returned += len(messages)
            result.returned_ids.update(ids)
            out(
                f"batch {result.batches}: received {len(messages)}, deleted 0, returned "
                f"{len(messages)} (the invocation failed: {type(exc).__name__}: {exc})"
            )
            result.stopped = "invocation failed"
            return result
        back = returned_ids(response, messages)
        settled = {
            f"m{index}": str(m.get("ReceiptHandle"))
            for index, m in enumerate(messages)
            if str(m.get("MessageId")) not in back
        }
        failed = client.delete(url, settled) if settled else []
        by_entry = {f"m{index}": str(m.get("MessageId")) for index, m in enumerate(messages)}
        result.delete_failed_ids.update(by_entry.get(str(f.get("Id")), "") for f in failed)
        result.deleted += len(settled) - len(failed)
        result.delete_failed += len(failed)
        result.returned += len(back)
        result.returned_ids.update(back)
        line = (
            f"batch {result.batches}: received {len(messages)}, deleted "
            f"{len(settled) - len(failed)}, returned {len(back)}"
        )
        if failed:
            codes = sorted({str(f.get("Code")) for f in failed})
            line += f", {len(failed)} delete(s) failed ({', '.join(codes)})"
        out(line)
    result.stopped = "max batches"
    return result


# --- the command ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where the queue is and how to sign for it."""

    endpoint: str
    region: str
    credentials: AwsCredentials
    queue: str  # a URL, or a name to look up


def _environment_target(queue: str) -> Target:
    """The queue from the environment, as the AWS SDKs read it; raise CommandError."""
    environ = os.environ
    if "://" in queue:  # sqs://… or https://…: read as the dead-letter sink reads it
        try:
            parsed = parse_queue(queue, environ)
        except ValueError as exc:
            raise common.CommandError(str(exc)) from None
        endpoint, region, queue = parsed.endpoint, parsed.region, parsed.url
    else:
        region = (
            environ.get("AWS_REGION", "").strip() or environ.get("AWS_DEFAULT_REGION", "").strip()
        )
        if not region:
            raise common.CommandError("no AWS_REGION set, and a queue name names no region")
        endpoint = (
            environ.get("AWS_ENDPOINT_URL_SQS", "").strip()
            or environ.get("AWS_ENDPOINT_URL", "").strip()
            or f"https://sqs.{region}.amazonaws.com"
        )
    key = environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not key or not secret:
        raise common.CommandError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
    token = environ.get("AWS_SESSION_TOKEN", "").strip() or None
    return Target(endpoint, region, AwsCredentials(key, secret, token), queue)


def _sandbox_target(sandbox: Any, queue: str) -> Target:
    aws = sandbox.aws
    if aws is None:
        raise common.CommandError("the sandbox's seed has no `aws` section: it has no SQS identity")
    credentials = AwsCredentials(
        aws["access_key_id"], aws["secret_access_key"], aws["session_token"]
    )
    return Target(sandbox.url, aws["region"] or "us-east-1", credentials, queue)


def run(args: argparse.Namespace) -> int:
    """Run `ecs-metadata-janitor drain`; return the exit status (130 on Ctrl-C)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        common.error(
            "interrupted: messages deleted stay deleted; those received but not deleted come "
            "back after the queue's visibility timeout"
        )
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from handler.local import FakeContext

    if not 1 <= args.batch_size <= MAX_BATCH:
        common.error(f"--batch-size must be 1 to {MAX_BATCH}")
        return 2
    if args.max_batches is not None and args.max_batches < 1:
        common.error("--max-batches must be at least 1")
        return 2
    use_sandbox = common.use_sandbox(args.sandbox)
    with contextlib.ExitStack() as stack:
        try:
            runtime, sandbox = _start(stack, use_sandbox, args)
            target = (
                _sandbox_target(sandbox, args.queue)
                if sandbox is not None
                else _environment_target(args.queue)
            )
        except common.CommandError as exc:
            common.error(str(exc))
            return 2
        http = stack.enter_context(httpx.Client(timeout=TIMEOUT_S, trust_env=False))
        client = SqsClient(target.endpoint, target.region, target.credentials, http=http)
        try:
            url = target.queue if "://" in target.queue else client.queue_url(target.queue)
            found = client.attributes(url, ["QueueArn", "VisibilityTimeout"])
        except SqsClientError as exc:
            common.error(f"queue {args.queue}: {exc}")
            return 2
        arn = found.get("QueueArn", "")
        name = arn.rsplit(":", 1)[-1] or args.queue
        visibility = int(found.get("VisibilityTimeout", "30") or 30)
        remaining = args.remaining_ms
        if remaining is None:
            remaining = min(visibility, 900) * 1000 if visibility > 0 else 900_000

        def invoke(event: dict[str, Any]) -> Any:
            return runtime.invoke(event, FakeContext(remaining))

        try:
            result = drain(
                client,
                url,
                arn,
                invoke,
                batch_size=args.batch_size,
                max_batches=args.max_batches,
                out=common.out,
            )
            left = client.attributes(
                url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )
        except SqsClientError as exc:
            common.error(f"queue {name}: {exc}")
            return 1
    common.out(
        f"queue {name}: {result.batches} batch(es), {result.received} received, "
        f"{result.deleted} deleted, {result.returned} returned; now "
        f"{left.get('ApproximateNumberOfMessages', '?')} visible, "
        f"{left.get('ApproximateNumberOfMessagesNotVisible', '?')} in flight"
    )
    if result.returned:
        common.out(
            f"{result.returned} message(s) handed back stay in the queue: visible again after "
            f"its visibility timeout ({visibility} s)"
        )
    if result.stopped == "max batches":
        common.out(f"stopped after --max-batches {args.max_batches}: the queue may hold more")
    return 0 if result.clean else 1


def _start(
    stack: contextlib.ExitStack, use_sandbox: bool, args: argparse.Namespace
) -> tuple[Any, Any]:
    """The runtime (closed with the stack) and the in-process sandbox, if any."""
    from handler.config import ConfigError
    from handler.runtime import Runtime

    try:
        config, sandbox = common.load(stack, sandbox=use_sandbox, seed=args.seed)
        runtime = Runtime(config)
    except ConfigError as exc:
        raise common.CommandError(str(exc)) from None
    stack.callback(runtime.close)
    common.send_logs(stack, args.log_file, ProgressDisplay("none"))
    return runtime, sandbox
