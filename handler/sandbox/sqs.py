"""The sandbox's SQS: queues in memory, served over the AWS JSON 1.0 protocol with SigV4.

A request is `POST /` (or to a queue URL's path) with `Content-Type: application/x-amz-json-1.0`
and `X-Amz-Target: AmazonSQS.<Action>`; answers and errors have the shapes the SQS API
reference gives for the JSON protocol: a JSON body, `x-amzn-RequestId`, and for errors
`{"__type": "com.amazonaws.sqs#<Error>", "message": ...}` with `x-amzn-query-error:
<legacy code>;Sender`. Authentication errors come from the service framework:
`com.amazon.coral.service#<Error>`.

Actions: CreateQueue, GetQueueUrl, ListQueues, SendMessage, SendMessageBatch, ReceiveMessage,
DeleteMessage, DeleteMessageBatch, GetQueueAttributes, PurgeQueue. Queue URLs are
`{sandbox url}/{account id}/{queue name}`. Limits as the service's: 10 entries per batch,
262,144 bytes per message (the queue's MaximumMessageSize) and per batch, entry ids
`[A-Za-z0-9_-]{1,80}` and distinct; visibility timeouts, delays, receive counts, FIFO groups
and deduplication, and a RedrivePolicy's maxReceiveCount.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import random
import re
import secrets
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from handler.sandbox import sigv4

if TYPE_CHECKING:
    from handler.sandbox.seed import AwsSeed, QueueFaultsSeed, QueueSeed, Seed

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
SERVICE = "sqs"
DEFAULT_REGION = "us-east-1"
"""The region in queue ARNs when the seed's `aws.region` is not set."""

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 262_144
"""The most all the messages of one SendMessageBatch may hold together (256 KiB)."""
DEFAULT_MAX_MESSAGE_BYTES = 262_144
MAX_MESSAGE_BYTES = 1_048_576
"""The largest MaximumMessageSize a queue may be given (1 MiB since 2025)."""
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43_200
MAX_DELAY_S = 900
MAX_ATTRIBUTES = 10
DEDUP_WINDOW_S = 300.0
LONG_POLL_STEP_S = 0.05
"""How often a long poll (WaitTimeSeconds) looks at the queue again."""

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_FIFO_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_ATTRIBUTE_NAME = re.compile(r"^(?!\.)(?!.*\.\.)(?!.*\.$)[A-Za-z0-9_.-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[A-Za-z0-9_.-]{1,250})?$")
_INVALID_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_QUEUE_PATH = re.compile(r"^/([0-9]{12})/([A-Za-z0-9_.-]{1,80})$")

#: Attributes CreateQueue takes as whole numbers: (lowest, highest, default).
_NUMERIC: dict[str, tuple[int, int, int]] = {
    "VisibilityTimeout": (0, MAX_VISIBILITY_S, 30),
    "MaximumMessageSize": (1024, MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES),
    "MessageRetentionPeriod": (60, 1_209_600, 345_600),
    "DelaySeconds": (0, MAX_DELAY_S, 0),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_S, 0),
}
_BOOLEAN = frozenset({"FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled"})
_KEPT = frozenset(
    {
        "Policy",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "DeduplicationScope",
        "FifoThroughputLimit",
    }
)
_COUNTED = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
#: The SQS API's actions (2012-11-05); those the sandbox lacks are UnsupportedOperation.
API_ACTIONS = frozenset(
    {
        "AddPermission",
        "CancelMessageMoveTask",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "CreateQueue",
        "DeleteMessage",
        "DeleteMessageBatch",
        "DeleteQueue",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListDeadLetterSourceQueues",
        "ListMessageMoveTasks",
        "ListQueueTags",
        "ListQueues",
        "PurgeQueue",
        "ReceiveMessage",
        "RemovePermission",
        "SendMessage",
        "SendMessageBatch",
        "SetQueueAttributes",
        "StartMessageMoveTask",
        "TagQueue",
        "UntagQueue",
    }
)


class SqsError(Exception):
    """An SQS error answer: the error's shape name, its message, its status and legacy code."""

    def __init__(
        self,
        shape: str,
        message: str,
        *,
        query_code: str | None = None,
        status: int = 400,
        namespace: str = "com.amazonaws.sqs",
        sender_fault: bool = True,
    ) -> None:
        super().__init__(message)
        self.shape = shape
        self.message = message
        self.query_code = query_code
        self.status = status
        self.namespace = namespace
        self.sender_fault = sender_fault

    @property
    def batch_code(self) -> str:
        """The code a batch result's `Failed` entry carries."""
        return self.query_code or self.shape

    def response(self, request_id: str) -> web.Response:
        """The JSON protocol's error answer."""
        headers = {}
        if self.query_code is not None:
            fault = "Sender" if self.sender_fault else "Receiver"
            headers["x-amzn-query-error"] = f"{self.query_code};{fault}"
        body = {"__type": f"{self.namespace}#{self.shape}", "message": self.message}
        return json_response(self.status, body, request_id, headers)


def json_response(
    status: int, payload: Any, request_id: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON protocol answer with its request id."""
    all_headers = {"x-amzn-RequestId": request_id, "Content-Type": JSON_CONTENT_TYPE}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=json.dumps(payload).encode(), headers=all_headers)


def queue_does_not_exist() -> SqsError:
    """QueueDoesNotExist, as for an unknown queue name or URL."""
    return SqsError(
        "QueueDoesNotExist",
        "The specified queue does not exist.",
        query_code="AWS.SimpleQueueService.NonExistentQueue",
    )


def invalid_parameter(message: str) -> SqsError:
    """InvalidParameterValue (InvalidParameterValueException in the JSON protocol)."""
    return SqsError("InvalidParameterValueException", message, query_code="InvalidParameterValue")


def missing_parameter(name: str) -> SqsError:
    """MissingParameter (MissingRequiredParameterException in the JSON protocol)."""
    return SqsError(
        "MissingRequiredParameterException",
        f"The request must contain the parameter {name}.",
        query_code="MissingParameter",
    )


def _invalid_attribute(name: str) -> SqsError:
    return SqsError(
        "InvalidAttributeValue",
        f"Invalid value for the parameter {name}.",
        query_code="InvalidAttributeValue",
    )


def _serialization(message: str) -> SqsError:
    return SqsError("SerializationException", message, namespace="com.amazon.coral.service")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --- queue attributes ---------------------------------------------------------------------------


def check_attributes(name: str, given: Mapping[str, Any]) -> dict[str, str]:
    """Validate CreateQueue's name and attributes; return the attributes to keep.

    Raises SqsError (InvalidAttributeName, InvalidAttributeValue, InvalidParameterValue).
    """
    fifo_name = name.endswith(".fifo")
    base = name[: -len(".fifo")] + "_fifo" if fifo_name else name
    if not _QUEUE_NAME.match(base):
        raise invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    kept: dict[str, str] = {}
    for key, value in given.items():
        if not isinstance(value, str):
            raise _invalid_attribute(str(key))
        if key in _NUMERIC:
            low, high, _ = _NUMERIC[key]
            if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
                raise _invalid_attribute(key)
            kept[key] = str(int(value))
        elif key in _BOOLEAN:
            if value.lower() not in ("true", "false"):
                raise _invalid_attribute(key)
            kept[key] = value.lower()
        elif key in _KEPT:
            kept[key] = value
        else:
            raise SqsError(
                "InvalidAttributeName",
                f"Unknown Attribute {key}.",
                query_code="InvalidAttributeName",
            )
    fifo = kept.get("FifoQueue") == "true"
    if fifo_name and "FifoQueue" not in kept:
        fifo = True
        kept["FifoQueue"] = "true"
    if fifo != fifo_name:
        raise invalid_parameter(
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
            "underscores, must end with .fifo suffix and be 1 to 80 in length."
        )
    if not fifo and "ContentBasedDeduplication" in kept:
        raise invalid_parameter(
            "Unknown Attribute ContentBasedDeduplication. Only FIFO queues support it."
        )
    if "RedrivePolicy" in kept:
        _redrive_policy(kept["RedrivePolicy"])
    return kept


def _redrive_policy(text: str) -> tuple[str, int]:
    """(deadLetterTargetArn, maxReceiveCount) of a RedrivePolicy attribute."""
    try:
        policy = json.loads(text)
    except ValueError:
        raise _invalid_attribute("RedrivePolicy") from None
    if not isinstance(policy, dict):
        raise _invalid_attribute("RedrivePolicy")
    target = policy.get("deadLetterTargetArn")
    count = policy.get("maxReceiveCount")
    if isinstance(count, str) and count.isascii() and count.isdigit():
        count = int(count)
    if not isinstance(target, str) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise invalid_parameter(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Redrive policy is "
            "not a valid JSON map with deadLetterTargetArn and maxReceiveCount (1 to 1000)."
        )
    return target, count


def check_queue_seed(seed: QueueSeed) -> dict[str, str]:
    """Validate a seeded queue and its messages (for the seed's validation); raise ValueError."""
    try:
        attributes = check_attributes(seed.name, seed.attributes)
        fifo = attributes.get("FifoQueue") == "true"
        limit = int(attributes.get("MaximumMessageSize", DEFAULT_MAX_MESSAGE_BYTES))
        for message in seed.messages:
            check_message(message.body, dict(message.message_attributes), limit)
            if fifo and message.message_group_id is None:
                raise missing_parameter("MessageGroupId")
    except SqsError as exc:
        raise ValueError(exc.message) from None
    return attributes


# --- messages -----------------------------------------------------------------------------------


def check_message(body: Any, attributes: Mapping[str, Any], limit: int) -> int:
    """Validate a message body and its attributes; return their size in bytes."""
    if not isinstance(body, str) or not body:
        raise missing_parameter("MessageBody")
    if _INVALID_CHARACTERS.search(body):
        raise SqsError(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to "
            "#xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            query_code="InvalidMessageContents",
        )
    size = len(body.encode("utf-8")) + _attributes_size(attributes)
    if size > limit:
        raise invalid_parameter(
            f"One or more parameters are invalid. Reason: Message must be shorter than {limit} "
            "bytes."
        )
    return size


def _attribute_value(name: str, value: Any) -> tuple[str, bytes]:
    """(DataType, the value's bytes) of one message attribute; raise InvalidParameterValue."""
    if not isinstance(value, Mapping):
        raise invalid_parameter(f"The message attribute '{name}' must contain a DataType.")
    data_type = value.get("DataType")
    if not isinstance(data_type, str) or not _DATA_TYPE.match(data_type):
        raise invalid_parameter(
            f"The message attribute '{name}' has an invalid message attribute type, the set "
            "of supported type prefixes is Binary, Number, and String."
        )
    if "StringListValues" in value or "BinaryListValues" in value:
        raise invalid_parameter(
            f"Message attribute list values in SendMessage operation are not supported ({name})."
        )
    if data_type.startswith("Binary"):
        raw = value.get("BinaryValue")
        try:
            data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
        except (binascii.Error, ValueError):
            data = b""
        if not data:
            raise invalid_parameter(
                f"The message attribute '{name}' must contain non-empty message attribute "
                "value for message attribute type 'Binary'."
            )
        return data_type, data
    text = value.get("StringValue")
    if not isinstance(text, str) or not text or _INVALID_CHARACTERS.search(text):
        kind = data_type.split(".", 1)[0]
        raise invalid_parameter(
            f"The message attribute '{name}' must contain non-empty message attribute value "
            f"for message attribute type '{kind}'."
        )
    return data_type, text.encode("utf-8")


def check_message_attributes(attributes: Any) -> dict[str, dict[str, str]]:
    """Validate MessageAttributes; return them as they will be stored and returned."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise _serialization("MessageAttributes must be a map")
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    kept: dict[str, dict[str, str]] = {}
    for name, value in attributes.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
            raise invalid_parameter(f"Message attribute name '{name}' is invalid.")
        data_type, _ = _attribute_value(name, value)
        key = "BinaryValue" if data_type.startswith("Binary") else "StringValue"
        kept[name] = {"DataType": data_type, key: value[key]}
    return kept


def _attributes_size(attributes: Mapping[str, Any]) -> int:
    size = 0
    for name, value in attributes.items():
        data_type, data = _attribute_value(name, value)
        size += len(name.encode("utf-8")) + len(data_type.encode("utf-8")) + len(data)
    return size


def md5_of_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str | None:
    """MD5OfMessageAttributes: SQS's digest of the attributes, sorted by name; None if none."""
    if not attributes:
        return None

    def field_bytes(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    digest = bytearray()
    for name in sorted(attributes):
        data_type, data = _attribute_value(name, attributes[name])
        digest += field_bytes(name.encode("utf-8")) + field_bytes(data_type.encode("utf-8"))
        digest += (b"\x02" if data_type.startswith("Binary") else b"\x01") + field_bytes(data)
    return _md5(bytes(digest))


@dataclass(slots=True)
class Message:
    """One message of a queue."""

    message_id: str
    body: str
    attributes: dict[str, dict[str, str]]
    sent_ms: int
    sender_id: str
    group_id: str | None = None
    dedup_id: str | None = None
    sequence_number: str | None = None
    receive_count: int = 0
    first_receive_ms: int | None = None
    #: Monotonic time from which it is visible; later than now: in flight or delayed.
    visible_at: float = 0.0
    #: The most recent receipt handle; None until received.
    receipt: str | None = None
    dead_letter_source: str | None = None

    @property
    def md5_of_body(self) -> str:
        """MD5OfBody / MD5OfMessageBody."""
        return _md5(self.body.encode("utf-8"))


@dataclass(slots=True)
class Queue:
    """One queue: its attributes and messages, in the order they were sent."""

    name: str
    account_id: str
    region: str
    attributes: dict[str, str]
    created_s: int
    messages: dict[str, Message] = field(default_factory=dict)
    dedup: dict[str, tuple[float, Message]] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        """Whether it is a FIFO queue."""
        return self.attributes.get("FifoQueue") == "true"

    @property
    def arn(self) -> str:
        """arn:aws:sqs:{region}:{account}:{name}."""
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.name}"

    def number(self, name: str) -> int:
        """A numeric attribute, or its default."""
        return int(self.attributes.get(name, _NUMERIC[name][2]))

    def counts(self, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) message counts."""
        visible = in_flight = delayed = 0
        for message in self.messages.values():
            if message.visible_at <= now:
                visible += 1
            elif message.receipt is None:
                delayed += 1
            else:
                in_flight += 1
        return visible, in_flight, delayed


# --- the queues ---------------------------------------------------------------------------------


class QueueStore:
    """Every queue of the sandbox; only ever touched from the sandbox's event loop."""

    def __init__(
        self,
        account_id: str,
        region: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.queues: dict[str, Queue] = {}
        self._clock = clock
        self._wall = wall
        self._sequence = 10_000_000_000_000_000_000

    def now(self) -> float:
        """The monotonic clock visibility is measured on."""
        return self._clock()

    def wall_ms(self) -> int:
        """Milliseconds since the epoch, for timestamps."""
        return int(self._wall() * 1000)

    def create(self, name: str, attributes: Mapping[str, Any]) -> Queue:
        """CreateQueue: a new queue, or the existing one when its attributes are the same."""
        kept = check_attributes(name, attributes)
        existing = self.queues.get(name)
        if existing is not None:
            for key, value in kept.items():
                if existing.attributes.get(key, _default(key)) != value:
                    raise SqsError(
                        "QueueNameExists",
                        "A queue already exists with the same name and a different value for "
                        f"attribute {key}",
                        query_code="QueueAlreadyExists",
                    )
            return existing
        queue = Queue(name, self.account_id, self.region, kept, int(self._wall()))
        self.queues[name] = queue
        return queue

    def seed(self, seeds: list[QueueSeed], sender_id: str) -> None:
        """Create the seed's queues with their messages."""
        now = self.now()
        for entry in seeds:
            queue = self.create(entry.name, entry.attributes)
            for message in entry.messages:
                visible_at = now + (message.visible_after_s or 0.0)
                stored = Message(
                    message_id=message.message_id or str(uuid.uuid4()),
                    body=message.body,
                    attributes=dict(message.message_attributes),
                    sent_ms=message.sent_timestamp_ms or self.wall_ms(),
                    sender_id=sender_id,
                    group_id=message.message_group_id,
                    dedup_id=message.message_deduplication_id,
                    sequence_number=self._next_sequence() if queue.fifo else None,
                    receive_count=message.receive_count,
                    visible_at=visible_at,
                )
                if message.receive_count and message.visible_after_s:
                    stored.receipt = _receipt(queue.name, stored.message_id)
                queue.messages[stored.message_id] = stored

    def by_url(self, url: Any) -> Queue:
        """The queue a QueueUrl names (its path `/{account}/{name}`; the host is not judged)."""
        if not isinstance(url, str) or not url:
            raise missing_parameter("QueueUrl")
        path = urlsplit(url).path if "://" in url else url
        match = _QUEUE_PATH.match(path)
        if match is None:
            raise SqsError(
                "InvalidAddress",
                f"The address {url} is not valid for this endpoint.",
                query_code="InvalidAddress",
            )
        queue = self.queues.get(match.group(2))
        if queue is None or match.group(1) != self.account_id:
            raise queue_does_not_exist()
        return queue

    def by_arn(self, arn: str) -> Queue | None:
        """The queue with this ARN, if any."""
        return next((q for q in self.queues.values() if q.arn == arn), None)

    def _next_sequence(self) -> str:
        self._sequence += 1
        return f"{self._sequence:020d}"

    def send(
        self,
        queue: Queue,
        entry: Mapping[str, Any],
        sender_id: str,
    ) -> tuple[Message, bool]:
        """SendMessage's checks and enqueueing; (the message, whether it is a duplicate)."""
        body = entry.get("MessageBody")
        attributes = check_message_attributes(entry.get("MessageAttributes"))
        check_message(body, attributes, queue.number("MaximumMessageSize"))
        assert isinstance(body, str)  # checked just above
        delay = entry.get("DelaySeconds")
        group = entry.get("MessageGroupId")
        dedup = entry.get("MessageDeduplicationId")
        for name, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
            if value is not None and (not isinstance(value, str) or not _FIFO_ID.match(value)):
                raise invalid_parameter(
                    f"Value {value} for parameter {name} is invalid. Reason: {name} can only "
                    "include alphanumeric and punctuation characters. 1 to 128 in length."
                )
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, int):
                raise _serialization("DelaySeconds must be an integer")
            if queue.fifo:
                raise invalid_parameter(
                    f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request "
                    "include parameter that is not valid for this queue type."
                )
            if not 0 <= delay <= MAX_DELAY_S:
                raise invalid_parameter(
                    f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds "
                    f"must be >= 0 and <= {MAX_DELAY_S}."
                )
        now = self.now()
        if queue.fifo:
            if group is None:
                raise missing_parameter("MessageGroupId")
            if dedup is None:
                if queue.attributes.get("ContentBasedDeduplication") != "true":
                    raise invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or "
                        "MessageDeduplicationId provided explicitly"
                    )
                dedup = hashlib.sha256(body.encode("utf-8")).hexdigest()
            for key, (expires, _) in list(queue.dedup.items()):
                if expires <= now:
                    del queue.dedup[key]
            seen = queue.dedup.get(dedup)
            if seen is not None:
                return seen[1], True
        elif dedup is not None:
            raise invalid_parameter(
                f"Value {dedup} for parameter MessageDeduplicationId is invalid. Reason: The "
                "request include parameter that is not valid for this queue type."
            )
        wait = queue.number("DelaySeconds") if delay is None else delay
        message = Message(
            message_id=str(uuid.uuid4()),
            body=body,
            attributes=attributes,
            sent_ms=self.wall_ms(),
            sender_id=sender_id,
            group_id=group,
            dedup_id=dedup if queue.fifo else None,
            sequence_number=self._next_sequence() if queue.fifo else None,
            visible_at=now + wait if wait else 0.0,
        )
        queue.messages[message.message_id] = message
        if queue.fifo and dedup is not None:
            queue.dedup[dedup] = (now + DEDUP_WINDOW_S, message)
        return message, False

    def _expire(self, queue: Queue) -> None:
        oldest = self.wall_ms() - queue.number("MessageRetentionPeriod") * 1000
        for message_id in [m.message_id for m in queue.messages.values() if m.sent_ms < oldest]:
            del queue.messages[message_id]

    def receive(self, queue: Queue, count: int, visibility: int) -> list[Message]:
        """Up to `count` visible messages, now in flight for `visibility` seconds.

        A FIFO queue gives no message of a group with a message in flight. A message received
        more often than its queue's RedrivePolicy allows moves to the dead-letter queue instead.
        """
        self._expire(queue)
        now = self.now()
        redrive = (
            _redrive_policy(queue.attributes["RedrivePolicy"])
            if ("RedrivePolicy" in queue.attributes)
            else None
        )
        blocked: set[str] = set()
        if queue.fifo:
            blocked = {
                m.group_id
                for m in queue.messages.values()
                if m.visible_at > now and m.group_id is not None
            }
        received: list[Message] = []
        for message in list(queue.messages.values()):
            if len(received) >= count:
                break
            if message.visible_at > now or (queue.fifo and message.group_id in blocked):
                continue
            if redrive is not None and message.receive_count >= redrive[1]:
                target = self.by_arn(redrive[0])
                if target is not None and target is not queue:
                    self._move(queue, message, target)
                    continue
            message.receive_count += 1
            if message.first_receive_ms is None:
                message.first_receive_ms = self.wall_ms()
            message.receipt = _receipt(queue.name, message.message_id)
            message.visible_at = now + visibility
            received.append(message)
        return received

    def _move(self, source: Queue, message: Message, target: Queue) -> None:
        del source.messages[message.message_id]
        message.receive_count = 0
        message.first_receive_ms = None
        message.receipt = None
        message.visible_at = 0.0
        message.dead_letter_source = source.arn
        message.sequence_number = self._next_sequence() if target.fifo else None
        target.messages[message.message_id] = message

    def delete(self, queue: Queue, handle: Any) -> None:
        """DeleteMessage: a stale handle is accepted and deletes nothing (as the service does)."""
        if not isinstance(handle, str) or not handle:
            raise missing_parameter("ReceiptHandle")
        parsed = _parse_receipt(handle)
        if parsed is None or parsed[0] != queue.name:
            raise SqsError(
                "ReceiptHandleIsInvalid",
                f'The input receipt handle "{handle}" is not a valid receipt handle.',
                query_code="ReceiptHandleIsInvalid",
            )
        message = queue.messages.get(parsed[1])
        if message is None or message.receipt != handle:
            return
        if queue.fifo and message.visible_at <= self.now():
            raise SqsError(
                "ReceiptHandleIsInvalid",
                "The receipt handle has expired.",
                query_code="ReceiptHandleIsInvalid",
            )
        del queue.messages[message.message_id]

    def attributes(self, queue: Queue, names: list[str]) -> dict[str, str]:
        """GetQueueAttributes: the named attributes (`All`: every one)."""
        visible, in_flight, delayed = queue.counts(self.now())
        every: dict[str, str] = {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(queue.created_s),
            "LastModifiedTimestamp": str(queue.created_s),
        }
        for key, (_, _, default) in _NUMERIC.items():
            every[key] = queue.attributes.get(key, str(default))
        every["SqsManagedSseEnabled"] = queue.attributes.get("SqsManagedSseEnabled", "false")
        if queue.fifo:
            every["ContentBasedDeduplication"] = queue.attributes.get(
                "ContentBasedDeduplication", "false"
            )
        for key, value in queue.attributes.items():
            every.setdefault(key, value)
        if "All" in names:
            return every
        known = set(_NUMERIC) | _BOOLEAN | _KEPT | set(_COUNTED)
        for name in names:
            if name not in known:
                raise SqsError(
                    "InvalidAttributeName",
                    f"Unknown Attribute {name}.",
                    query_code="InvalidAttributeName",
                )
        return {name: every[name] for name in names if name in every}

    def snapshot(self, base_url: str | None) -> list[dict[str, Any]]:
        """The queues for GET /_sandbox/state, in the seed's format (read-outs added)."""
        now = self.now()
        queues: list[dict[str, Any]] = []
        for queue in self.queues.values():
            self._expire(queue)
            visible, in_flight, delayed = queue.counts(now)
            messages = [
                {
                    "body": m.body,
                    "message_id": m.message_id,
                    "message_attributes": {k: dict(v) for k, v in m.attributes.items()},
                    "message_group_id": m.group_id,
                    "message_deduplication_id": m.dedup_id,
                    "receive_count": m.receive_count,
                    "sent_timestamp_ms": m.sent_ms,
                    "visible_after_s": (
                        round(m.visible_at - now, 3) if m.visible_at > now else None
                    ),
                }
                for m in queue.messages.values()
            ]
            queues.append(
                {
                    "name": queue.name,
                    "url": None if base_url is None else queue_url(base_url, queue),
                    "arn": queue.arn,
                    "attributes": dict(queue.attributes),
                    "visible": visible,
                    "in_flight": in_flight,
                    "delayed": delayed,
                    "messages": messages,
                }
            )
        return queues


def _default(key: str) -> str | None:
    if key in _NUMERIC:
        return str(_NUMERIC[key][2])
    return "false" if key in _BOOLEAN else None


def queue_url(base_url: str, queue: Queue) -> str:
    """`{base url}/{account id}/{queue name}`."""
    return f"{base_url.rstrip('/')}/{queue.account_id}/{queue.name}"


def _receipt(queue_name: str, message_id: str) -> str:
    raw = f"{queue_name}\n{message_id}\n{secrets.token_hex(16)}".encode()
    return "AQEB" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _parse_receipt(handle: str) -> tuple[str, str] | None:
    if not handle.startswith("AQEB"):
        return None
    text = handle[4:]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    parts = raw.split("\n")
    return (parts[0], parts[1]) if len(parts) == 3 else None


# --- the JSON protocol --------------------------------------------------------------------------


def _int(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _serialization(f"Value for {name} must be an integer")
    return value


def _names(payload: Mapping[str, Any], name: str) -> list[str]:
    value = payload.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _serialization(f"{name} must be a list of strings")
    return list(value)


def _entries(payload: Mapping[str, Any], request_entry: str) -> list[Mapping[str, Any]]:
    """A batch's entries, checked as the service does before it looks at any of them."""
    entries = payload.get("Entries")
    if entries is None or entries == []:
        raise SqsError(
            "EmptyBatchRequest",
            f"There should be at least one {request_entry} in the request.",
            query_code="AWS.SimpleQueueService.EmptyBatchRequest",
        )
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise _serialization("Entries must be a list of structures")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise SqsError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent "
            f"{len(entries)}.",
            query_code="AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
            raise SqsError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
                query_code="AWS.SimpleQueueService.InvalidBatchEntryId",
            )
        if entry_id in seen:
            raise SqsError(
                "BatchEntryIdsNotDistinct",
                f"Id {entry_id} repeated.",
                query_code="AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            )
        seen.add(entry_id)
    return entries


def _failed(entry_id: str, error: SqsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": error.sender_fault,
        "Code": error.batch_code,
        "Message": error.message,
    }


def _wants(names: list[str], name: str) -> bool:
    return "All" in names or name in names


def _message_view(message: Message, system: list[str], wanted: list[str]) -> dict[str, Any]:
    """A received message as ReceiveMessage returns it."""
    view: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt,
        "MD5OfBody": message.md5_of_body,
        "Body": message.body,
    }
    values = {
        "SenderId": message.sender_id,
        "SentTimestamp": str(message.sent_ms),
        "ApproximateReceiveCount": str(message.receive_count),
        "ApproximateFirstReceiveTimestamp": str(message.first_receive_ms or message.sent_ms),
        "SequenceNumber": message.sequence_number,
        "MessageDeduplicationId": message.dedup_id,
        "MessageGroupId": message.group_id,
        "DeadLetterQueueSourceArn": message.dead_letter_source,
    }
    attributes = {
        name: value for name, value in values.items() if value is not None and _wants(system, name)
    }
    if attributes:
        view["Attributes"] = attributes
    chosen = {
        name: dict(value)
        for name, value in message.attributes.items()
        if any(
            pattern in ("All", ".*")
            or pattern == name
            or (pattern.endswith(".*") and name.startswith(pattern[:-1]))
            for pattern in wanted
        )
    }
    if chosen:
        view["MessageAttributes"] = chosen
        view["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
    return view


class SqsService:
    """The SQS endpoint of the sandbox: authentication, faults and the actions."""

    def __init__(self, seed: Seed) -> None:
        aws: AwsSeed | None = seed.aws
        self.aws = aws
        account = aws.account_id if aws is not None else "000000000000"
        region = aws.region if aws is not None and aws.region else DEFAULT_REGION
        self.store = QueueStore(account, region)
        self.store.seed(seed.queues, account)
        self.base_url: str | None = None
        self.set_faults(seed.queue_faults)
        self._actions: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "CreateQueue": self._create_queue,
            "GetQueueUrl": self._get_queue_url,
            "ListQueues": self._list_queues,
            "SendMessage": self._send_message,
            "SendMessageBatch": self._send_message_batch,
            "DeleteMessage": self._delete_message,
            "DeleteMessageBatch": self._delete_message_batch,
            "GetQueueAttributes": self._get_queue_attributes,
            "PurgeQueue": self._purge_queue,
        }

    def set_faults(self, faults: QueueFaultsSeed) -> None:
        """Replace the SQS/SMN fault configuration (and restart its random sequence)."""
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - reproducible test faults

    @staticmethod
    def wants(method: str, path: str, headers: Mapping[str, str]) -> bool:
        """True for a request meant for SQS: a POST to `/` or a queue URL with X-Amz-Target."""
        if method != "POST" or (path != "/" and not _QUEUE_PATH.match(path)):
            return False
        content_type = headers.get("Content-Type", "")
        return "X-Amz-Target" in headers or content_type.startswith("application/x-amz-json")

    @staticmethod
    def request_id(sandbox_request_id: str) -> str:
        """The x-amzn-RequestId for a sandbox request id (`req-<uuid>`): the uuid."""
        return sandbox_request_id.removeprefix("req-")

    def too_large(self, request_id: str) -> web.Response:
        """The answer to a request body over the sandbox's limit."""
        error = SqsError(
            "RequestEntityTooLargeException",
            "Request is too large.",
            status=413,
            namespace="com.amazon.coral.service",
        )
        return error.response(self.request_id(request_id))

    async def answer(
        self,
        request: web.BaseRequest,
        raw_target: str,
        body: bytes,
        sandbox_request_id: str,
        entry: dict[str, Any],
    ) -> web.Response:
        """Authenticate, then run the action named by X-Amz-Target."""
        request_id = self.request_id(sandbox_request_id)
        target = request.headers.get("X-Amz-Target", "")
        action = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
        entry["service"] = "sqs"
        entry["action"] = action or target
        verdict = self._authenticate(request, raw_target, body)
        if isinstance(verdict, sigv4.Rejected):
            error = SqsError(
                verdict.code,
                verdict.message,
                status=verdict.status,
                namespace="com.amazon.coral.service",
            )
            return error.response(request_id)
        entry["auth"] = "sigv4"
        try:
            handler = self._actions.get(action)
            if handler is None and action != "ReceiveMessage":
                if action in API_ACTIONS:
                    raise SqsError(
                        "UnsupportedOperation",
                        f"The sandbox does not implement {action}.",
                        query_code="AWS.SimpleQueueService.UnsupportedOperation",
                    )
                raise SqsError(
                    "UnknownOperationException",
                    f"Unknown operation {target!r}.",
                    namespace="com.amazon.coral.service",
                )
            if not request.headers.get("Content-Type", "").startswith(JSON_CONTENT_TYPE):
                raise SqsError(
                    "UnsupportedOperation",
                    f"The sandbox speaks the JSON protocol only ({JSON_CONTENT_TYPE}).",
                    query_code="AWS.SimpleQueueService.UnsupportedOperation",
                )
            try:
                payload = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise _serialization("The request body is not valid JSON.") from None
            if not isinstance(payload, dict):
                raise _serialization("The request body must be a JSON object.")
            if self.faults.sqs_throttle and self._rng.random() < self.faults.sqs_throttle:
                entry["fault"] = "sqs_throttle"
                raise SqsError(
                    "RequestThrottled",
                    "Request is throttled.",
                    query_code="RequestThrottled",
                )
            if handler is None:
                result = await self._receive_message(payload)
            else:
                result = handler(payload, request_id)
                if isinstance(result, tuple):
                    result, faulted = result
                    if faulted:
                        entry["fault"] = "sqs_failed"
        except SqsError as error:
            return error.response(request_id)
        return json_response(200, result, request_id)

    def _authenticate(
        self, request: web.BaseRequest, raw_target: str, body: bytes
    ) -> sigv4.Accepted | sigv4.Rejected:
        aws = self.aws
        secrets_ = (
            []
            if aws is None
            else [sigv4.SigningSecret(aws.access_key_id, aws.secret_access_key, aws.session_token)]
        )
        return sigv4.verify(
            method=request.method,
            raw_target=raw_target,
            headers=list(request.headers.items()),
            body=body,
            secrets=secrets_,
            service=SERVICE,
            region=None if aws is None else aws.region,
            now=time.time(),
        )

    def _url(self, queue: Queue) -> str:
        return queue_url(self.base_url or "http://127.0.0.1", queue)

    # The actions: each takes the request's JSON object and returns the answer's.

    def _create_queue(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        name = payload.get("QueueName")
        if not isinstance(name, str) or not name:
            raise missing_parameter("QueueName")
        attributes = payload.get("Attributes") or {}
        if not isinstance(attributes, dict):
            raise _serialization("Attributes must be a map")
        return {"QueueUrl": self._url(self.store.create(name, attributes))}

    def _get_queue_url(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        name = payload.get("QueueName")
        if not isinstance(name, str) or not name:
            raise missing_parameter("QueueName")
        owner = payload.get("QueueOwnerAWSAccountId")
        queue = self.store.queues.get(name)
        if queue is None or (owner is not None and owner != self.store.account_id):
            raise queue_does_not_exist()
        return {"QueueUrl": self._url(queue)}

    def _list_queues(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        prefix = payload.get("QueueNamePrefix") or ""
        if not isinstance(prefix, str):
            raise _serialization("QueueNamePrefix must be a string")
        urls = [self._url(q) for q in self.store.queues.values() if q.name.startswith(prefix)]
        return {"QueueUrls": urls} if urls else {}

    def _sent(self, message: Message) -> dict[str, Any]:
        result: dict[str, Any] = {
            "MessageId": message.message_id,
            "MD5OfMessageBody": message.md5_of_body,
        }
        digest = md5_of_attributes(message.attributes)
        if digest is not None:
            result["MD5OfMessageAttributes"] = digest
        if message.sequence_number is not None:
            result["SequenceNumber"] = message.sequence_number
        return result

    def _send_message(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        message, _duplicate = self.store.send(queue, payload, self.store.account_id)
        return self._sent(message)

    def _send_message_batch(self, payload: dict[str, Any], _: str) -> tuple[dict[str, Any], bool]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        entries = _entries(payload, "SendMessageBatchRequestEntry")
        if queue.fifo:
            for entry in entries:
                if entry.get("MessageGroupId") is None:
                    raise invalid_parameter(
                        "The request must contain the parameter MessageGroupId."
                    )
        total = 0
        for entry in entries:
            body = entry.get("MessageBody")
            if isinstance(body, str):
                total += len(body.encode("utf-8", "surrogatepass"))
            attributes = entry.get("MessageAttributes")
            if isinstance(attributes, Mapping):
                with contextlib.suppress(SqsError):  # that entry fails on its own below
                    total += _attributes_size(attributes)
        if total > MAX_BATCH_BYTES:
            raise SqsError(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent "
                f"{total} bytes.",
                query_code="AWS.SimpleQueueService.BatchRequestTooLong",
            )
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        faulted = False
        ratio = self.faults.sqs_failed_ratio
        for entry in entries:
            entry_id = str(entry["Id"])
            if ratio and self._rng.random() < ratio:
                faulted = True
                error = SqsError(
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    query_code="InternalError",
                    sender_fault=False,
                )
                failed.append(_failed(entry_id, error))
                continue
            try:
                message, _duplicate = self.store.send(queue, entry, self.store.account_id)
            except SqsError as error:
                failed.append(_failed(entry_id, error))
                continue
            successful.append({"Id": entry_id, **self._sent(message)})
        return {"Successful": successful, "Failed": failed}, faulted

    async def _receive_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        count = _int(payload, "MaxNumberOfMessages")
        if count is not None and not 1 <= count <= MAX_BATCH_ENTRIES:
            raise invalid_parameter(
                f"Value {count} for parameter MaxNumberOfMessages is invalid. Reason: Must be "
                "between 1 and 10, if provided."
            )
        wait = _int(payload, "WaitTimeSeconds")
        if wait is not None and not 0 <= wait <= MAX_WAIT_S:
            raise invalid_parameter(
                f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 "
                "and <= 20, if provided."
            )
        visibility = _int(payload, "VisibilityTimeout")
        if visibility is not None and not 0 <= visibility <= MAX_VISIBILITY_S:
            raise invalid_parameter(
                f"Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must "
                f"be >= 0 and <= {MAX_VISIBILITY_S}, if provided."
            )
        system = _names(payload, "MessageSystemAttributeNames") + _names(payload, "AttributeNames")
        wanted = _names(payload, "MessageAttributeNames")
        if wait is None:
            wait = queue.number("ReceiveMessageWaitTimeSeconds")
        if visibility is None:
            visibility = queue.number("VisibilityTimeout")
        deadline = self.store.now() + wait
        while True:
            received = self.store.receive(queue, count or 1, visibility)
            remaining = deadline - self.store.now()
            if received or remaining <= 0 or self.store.queues.get(queue.name) is not queue:
                break
            await asyncio.sleep(min(LONG_POLL_STEP_S, remaining))
        if not received:
            return {}
        return {"Messages": [_message_view(m, system, wanted) for m in received]}

    def _delete_message(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        self.store.delete(queue, payload.get("ReceiptHandle"))
        return {}

    def _delete_message_batch(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        entries = _entries(payload, "DeleteMessageBatchRequestEntry")
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            entry_id = str(entry["Id"])
            try:
                self.store.delete(queue, entry.get("ReceiptHandle"))
            except SqsError as error:
                failed.append(_failed(entry_id, error))
                continue
            successful.append({"Id": entry_id})
        return {"Successful": successful, "Failed": failed}

    def _get_queue_attributes(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        names = _names(payload, "AttributeNames")
        attributes = self.store.attributes(queue, names)
        return {"Attributes": attributes} if attributes else {}

    def _purge_queue(self, payload: dict[str, Any], _: str) -> dict[str, Any]:
        queue = self.store.by_url(payload.get("QueueUrl"))
        queue.messages.clear()
        return {}

    def snapshot(self) -> list[dict[str, Any]]:
        """The queues, for GET /_sandbox/state."""
        return self.store.snapshot(self.base_url)
