"""The sandbox's SQS: the JSON protocol's actions, limits, visibility, faults and SigV4."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from handler.queues.sigv4 import AwsCredentials, SigV4Auth
from handler.sandbox import DEMO_SEED, Sandbox, SandboxConfigError
from tests.conftest import SandboxFactory

AWS = DEMO_SEED["aws"]
ACCOUNT = AWS["account_id"]
WORK = "janitor-work"
DLQ = "janitor-dlq"


class Sqs:
    """A test client: JSON protocol requests, signed by the client-side signer unless told."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        key: str = AWS["access_key_id"],
        secret: str = AWS["secret_access_key"],
        token: str | None = None,
        region: str = "us-east-1",
        service: str = "sqs",
    ) -> None:
        self.sandbox = sandbox
        self.credentials = AwsCredentials(key, secret, token)
        self.region = region
        self.service = service
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        self.http.close()

    def url(self, name: str = WORK) -> str:
        return self.sandbox.queue_url(name)

    def request(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        sign: bool = True,
        when: dt.datetime | None = None,
        content_type: str = "application/x-amz-json-1.0",
        tamper: bytes | None = None,
        path: str = "/",
    ) -> httpx.Response:
        request = self.http.build_request(
            "POST",
            self.sandbox.url + path,
            content=json.dumps(payload).encode(),
            headers={"Content-Type": content_type, "X-Amz-Target": f"AmazonSQS.{action}"},
        )
        if sign:
            moment = when or dt.datetime.now(dt.UTC)
            SigV4Auth(
                service=self.service,
                region=self.region,
                credentials=lambda: self.credentials,
                clock=lambda: moment,
            ).sign(request)
        if tamper is not None:  # the same signed headers, another body
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = self.http.build_request("POST", request.url, content=tamper, headers=headers)
        return self.http.send(request)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.request(action, payload)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-amz-json-1.0"
        assert response.headers["x-amzn-requestid"]
        data: dict[str, Any] = response.json()
        return data

    def error(self, action: str, payload: dict[str, Any], **kwargs: Any) -> tuple[int, str, str]:
        response = self.request(action, payload, **kwargs)
        assert response.status_code != 200, response.text
        assert response.headers["x-amzn-requestid"]
        body = response.json()
        assert set(body) == {"__type", "message"}
        return response.status_code, body["__type"], body["message"]

    def send(self, body: str, name: str = WORK, **extra: Any) -> dict[str, Any]:
        return self.call("SendMessage", {"QueueUrl": self.url(name), "MessageBody": body, **extra})

    def receive(self, name: str = WORK, **extra: Any) -> list[dict[str, Any]]:
        payload = {"QueueUrl": self.url(name), "AttributeNames": ["All"], **extra}
        answer = self.call("ReceiveMessage", payload)
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def counts(self, name: str = WORK) -> tuple[int, int]:
        attributes = self.call(
            "GetQueueAttributes",
            {
                "QueueUrl": self.url(name),
                "AttributeNames": [
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            },
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
def sqs(sandbox: Sandbox) -> Iterator[Sqs]:
    client = Sqs(sandbox)
    yield client
    client.close()


def seed_with(**changes: Any) -> dict[str, Any]:
    seed = copy.deepcopy(DEMO_SEED)
    seed.update(changes)
    return seed


# --- actions -------------------------------------------------------------------------------------


def test_the_demo_queues_exist_at_start(sandbox: Sandbox, sqs: Sqs) -> None:
    assert sqs.call("GetQueueUrl", {"QueueName": WORK}) == {
        "QueueUrl": f"{sandbox.url}/{ACCOUNT}/{WORK}"
    }
    urls = sqs.call("ListQueues", {})["QueueUrls"]
    assert urls == [sqs.url(WORK), sqs.url(DLQ)]
    assert sqs.call("ListQueues", {"QueueNamePrefix": "janitor-d"}) == {"QueueUrls": [sqs.url(DLQ)]}


def test_create_queue_is_idempotent_for_the_same_attributes(sqs: Sqs) -> None:
    created = sqs.call("CreateQueue", {"QueueName": "orders", "Attributes": {"DelaySeconds": "0"}})
    assert created == {"QueueUrl": sqs.url("orders")}
    assert sqs.call("CreateQueue", {"QueueName": "orders"}) == created
    status, kind, message = sqs.error(
        "CreateQueue", {"QueueName": "orders", "Attributes": {"VisibilityTimeout": "5"}}
    )
    assert (status, kind) == (400, "com.amazonaws.sqs#QueueNameExists")
    assert "VisibilityTimeout" in message


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"QueueName": "bad name"}, "InvalidParameterValueException"),
        ({"QueueName": "x" * 81}, "InvalidParameterValueException"),
        (
            {"QueueName": "plain.fifo", "Attributes": {"FifoQueue": "false"}},
            "InvalidParameterValueException",
        ),
        ({"QueueName": "q", "Attributes": {"FifoQueue": "true"}}, "InvalidParameterValueException"),
        ({"QueueName": "q", "Attributes": {"Colour": "blue"}}, "InvalidAttributeName"),
        ({"QueueName": "q", "Attributes": {"VisibilityTimeout": "43201"}}, "InvalidAttributeValue"),
        (
            {"QueueName": "q", "Attributes": {"RedrivePolicy": "{}"}},
            "InvalidParameterValueException",
        ),
        ({}, "MissingRequiredParameterException"),
    ],
)
def test_create_queue_refusals(sqs: Sqs, payload: dict[str, Any], kind: str) -> None:
    status, found, _ = sqs.error("CreateQueue", payload)
    assert (status, found) == (400, f"com.amazonaws.sqs#{kind}")


def test_an_unknown_queue_has_the_json_protocols_error(sqs: Sqs) -> None:
    response = sqs.request("GetQueueUrl", {"QueueName": "nope"})
    assert response.status_code == 400
    assert response.json() == {
        "__type": "com.amazonaws.sqs#QueueDoesNotExist",
        "message": "The specified queue does not exist.",
    }
    assert (
        response.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    )
    assert sqs.error("SendMessage", {"QueueUrl": sqs.url("nope"), "MessageBody": "x"})[1] == (
        "com.amazonaws.sqs#QueueDoesNotExist"
    )
    other_account = f"{sqs.sandbox.url}/111111111111/{WORK}"
    assert sqs.error("ReceiveMessage", {"QueueUrl": other_account})[1].endswith("QueueDoesNotExist")
    assert sqs.error("ReceiveMessage", {"QueueUrl": "http://x/not-a-queue-url"})[1].endswith(
        "#InvalidAddress"
    )


def test_send_receive_delete(sandbox: Sandbox, sqs: Sqs) -> None:
    attributes = {"trace": {"DataType": "Number", "StringValue": "1493147359900"}}
    sent = sqs.send("hello", MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello").hexdigest()
    assert "MD5OfMessageAttributes" in sent
    assert sqs.counts() == (1, 0)
    [message] = sqs.receive(MessageAttributeNames=["All"])
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "hello"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert set(message["Attributes"]) == {
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
    }
    assert sqs.counts() == (0, 1)
    assert sqs.receive() == []  # in flight: invisible
    assert (
        sqs.call(
            "DeleteMessage", {"QueueUrl": sqs.url(), "ReceiptHandle": message["ReceiptHandle"]}
        )
        == {}
    )
    assert sqs.counts() == (0, 0)
    actions = [e.get("action") for e in sandbox.requests() if e.get("service") == "sqs"]
    assert actions[:2] == ["SendMessage", "GetQueueAttributes"]
    assert all(e["auth"] == "sigv4" for e in sandbox.requests() if e.get("service") == "sqs")


def test_md5_of_message_attributes_is_the_services() -> None:
    from handler.sandbox.sqs import md5_of_attributes

    # The digest boto3 checks (moto's tests record it from the service).
    attributes = {
        "SOME_Valid.attribute-Name": {"StringValue": "1493147359900", "DataType": "Number"}
    }
    assert md5_of_attributes(attributes) == "36655e7e9d7c0e8479fa3f3f42247ae7"


def test_receive_takes_up_to_max_number_of_messages(sqs: Sqs) -> None:
    for index in range(12):
        sqs.send(f"m{index}")
    first = sqs.receive(MaxNumberOfMessages=10)
    assert [m["Body"] for m in first] == [f"m{i}" for i in range(10)]
    assert [m["Body"] for m in sqs.receive(MaxNumberOfMessages=10)] == ["m10", "m11"]
    assert sqs.receive() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MaxNumberOfMessages", 0),
        ("MaxNumberOfMessages", 11),
        ("WaitTimeSeconds", 21),
        ("WaitTimeSeconds", -1),
        ("VisibilityTimeout", 43_201),
    ],
)
def test_receive_parameters_are_checked(sqs: Sqs, name: str, value: int) -> None:
    status, kind, message = sqs.error("ReceiveMessage", {"QueueUrl": sqs.url(), name: value})
    assert (status, kind) == (400, "com.amazonaws.sqs#InvalidParameterValueException")
    assert message.startswith(f"Value {value} for parameter {name} is invalid.")


def test_a_message_comes_back_after_its_visibility_timeout(sqs: Sqs) -> None:
    sqs.send("again")
    [first] = sqs.receive(VisibilityTimeout=1)
    assert sqs.receive() == []
    time.sleep(1.1)
    [second] = sqs.receive(VisibilityTimeout=30)
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # The stale handle is accepted and deletes nothing (as the service documents).
    stale = {"QueueUrl": sqs.url(), "ReceiptHandle": first["ReceiptHandle"]}
    assert sqs.call("DeleteMessage", stale) == {}
    assert sqs.counts() == (0, 1)
    fresh = {"QueueUrl": sqs.url(), "ReceiptHandle": second["ReceiptHandle"]}
    assert sqs.call("DeleteMessage", fresh) == {}
    assert sqs.counts() == (0, 0)


def test_receive_counts_and_queue_default_visibility(sandbox: Sandbox, sqs: Sqs) -> None:
    sqs.send("count me")
    for expected in ("1", "2", "3"):
        [message] = sqs.receive(VisibilityTimeout=0)
        assert message["Attributes"]["ApproximateReceiveCount"] == expected
    sqs.receive()  # the queue's 30 s
    [queue] = [q for q in sandbox.state()["queues"] if q["name"] == WORK]
    [held] = queue["messages"]
    assert held["receive_count"] == 4
    assert 29 < held["visible_after_s"] <= 30
    assert (queue["visible"], queue["in_flight"]) == (0, 1)


def test_long_poll_waits_then_answers_empty(sqs: Sqs) -> None:
    start = time.monotonic()
    assert sqs.call("ReceiveMessage", {"QueueUrl": sqs.url(), "WaitTimeSeconds": 1}) == {}
    assert time.monotonic() - start >= 0.9


def test_delay_seconds(sandbox: Sandbox, sqs: Sqs) -> None:
    sqs.send("later", DelaySeconds=1)
    assert sqs.receive() == []
    [queue] = [q for q in sandbox.state()["queues"] if q["name"] == WORK]
    assert (queue["visible"], queue["in_flight"], queue["delayed"]) == (0, 0, 1)
    time.sleep(1.05)
    assert [m["Body"] for m in sqs.receive()] == ["later"]


def test_message_body_rules(sqs: Sqs) -> None:
    url = sqs.url()
    assert sqs.error("SendMessage", {"QueueUrl": url})[1].endswith(
        "#MissingRequiredParameterException"
    )
    assert sqs.error("SendMessage", {"QueueUrl": url, "MessageBody": "a\u0000b"})[1].endswith(
        "#InvalidMessageContents"
    )
    assert sqs.error("SendMessage", {"QueueUrl": url, "MessageBody": "\ud800"})[1].endswith(
        "#InvalidMessageContents"
    )
    assert "MessageId" in sqs.send("x" * 262_144)
    status, kind, message = sqs.error(
        "SendMessage", {"QueueUrl": url, "MessageBody": "x" * 262_145}
    )
    assert (status, kind) == (400, "com.amazonaws.sqs#InvalidParameterValueException")
    assert message == (
        "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes."
    )
    attributes = {"a": {"DataType": "String", "StringValue": "yy"}}  # 1 + 6 + 2 bytes
    over = {"QueueUrl": url, "MessageBody": "x" * 262_136, "MessageAttributes": attributes}
    assert sqs.error("SendMessage", over)[1].endswith("#InvalidParameterValueException")
    bad_type = {"a": {"DataType": "Colour", "StringValue": "red"}}
    assert sqs.error(
        "SendMessage", {"QueueUrl": url, "MessageBody": "x", "MessageAttributes": bad_type}
    )[1].endswith("#InvalidParameterValueException")


# --- batches -------------------------------------------------------------------------------------


def entries(count: int, size: int = 1) -> list[dict[str, Any]]:
    return [{"Id": f"e{index}", "MessageBody": "x" * size} for index in range(count)]


def test_send_message_batch(sqs: Sqs) -> None:
    batch = [*entries(2), {"Id": "bad", "MessageBody": "\u0001"}]
    answer = sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": batch})
    assert [s["Id"] for s in answer["Successful"]] == ["e0", "e1"]
    assert set(answer["Successful"][0]) == {"Id", "MessageId", "MD5OfMessageBody"}
    assert answer["Failed"] == [
        {
            "Id": "bad",
            "SenderFault": True,
            "Code": "InvalidMessageContents",
            "Message": answer["Failed"][0]["Message"],
        }
    ]
    assert sqs.counts() == (2, 0)


@pytest.mark.parametrize(
    ("batch", "kind"),
    [
        ([], "EmptyBatchRequest"),
        (entries(11), "TooManyEntriesInBatchRequest"),
        (
            [{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}],
            "BatchEntryIdsNotDistinct",
        ),
        ([{"Id": "a b", "MessageBody": "1"}], "InvalidBatchEntryId"),
        ([{"Id": "x" * 81, "MessageBody": "1"}], "InvalidBatchEntryId"),
        (entries(2, 131_073), "BatchRequestTooLong"),
    ],
)
def test_send_message_batch_limits(sqs: Sqs, batch: list[dict[str, Any]], kind: str) -> None:
    status, found, _ = sqs.error("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": batch})
    assert (status, found) == (400, f"com.amazonaws.sqs#{kind}")
    assert sqs.counts() == (0, 0)  # nothing of a refused batch is stored


def test_batch_limits_at_their_edges(sqs: Sqs) -> None:
    edge = [{"Id": "x" * 80, "MessageBody": "1"}, *entries(9)]
    assert (
        len(sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": edge})["Successful"])
        == 10
    )
    full = entries(2, 131_072)  # 262,144 bytes together: allowed
    assert (
        len(sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": full})["Successful"])
        == 2
    )
    response = sqs.request("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": entries(11)})
    assert (
        response.json()["message"]
        == "Maximum number of entries per request are 10. You have sent 11."
    )
    assert response.headers["x-amzn-query-error"] == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender"
    )


def test_delete_message_batch(sqs: Sqs) -> None:
    for index in range(3):
        sqs.send(f"m{index}")
    received = sqs.receive(MaxNumberOfMessages=10)
    batch = [
        {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received[:2])
    ]
    batch.append({"Id": "bogus", "ReceiptHandle": "AQEBnot-a-handle"})
    answer = sqs.call("DeleteMessageBatch", {"QueueUrl": sqs.url(), "Entries": batch})
    assert answer["Successful"] == [{"Id": "d0"}, {"Id": "d1"}]
    [failed] = answer["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == (
        "bogus",
        "ReceiptHandleIsInvalid",
        True,
    )
    assert sqs.counts() == (0, 1)
    # A handle of another queue is no handle of this one.
    other = [{"Id": "o", "ReceiptHandle": received[2]["ReceiptHandle"]}]
    answer = sqs.call("DeleteMessageBatch", {"QueueUrl": sqs.url(DLQ), "Entries": other})
    assert answer["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    too_many = [{"Id": f"d{i}", "ReceiptHandle": "AQEBx"} for i in range(11)]
    assert sqs.error("DeleteMessageBatch", {"QueueUrl": sqs.url(), "Entries": too_many})[
        1
    ].endswith("#TooManyEntriesInBatchRequest")
    twice = [{"Id": "a", "ReceiptHandle": "AQEBx"}, {"Id": "a", "ReceiptHandle": "AQEBy"}]
    assert sqs.error("DeleteMessageBatch", {"QueueUrl": sqs.url(), "Entries": twice})[1].endswith(
        "#BatchEntryIdsNotDistinct"
    )


def test_get_queue_attributes(sqs: Sqs) -> None:
    sqs.send("one")
    sqs.send("two")
    sqs.receive()
    every = sqs.call("GetQueueAttributes", {"QueueUrl": sqs.url(), "AttributeNames": ["All"]})
    attributes = every["Attributes"]
    assert attributes["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{WORK}"
    assert attributes["ApproximateNumberOfMessages"] == "1"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert attributes["VisibilityTimeout"] == "30"
    assert attributes["MaximumMessageSize"] == "262144"
    assert sqs.call("GetQueueAttributes", {"QueueUrl": sqs.url()}) == {}
    assert sqs.error("GetQueueAttributes", {"QueueUrl": sqs.url(), "AttributeNames": ["Colour"]})[
        1
    ].endswith("#InvalidAttributeName")


def test_purge_queue(sqs: Sqs) -> None:
    sqs.send("gone")
    assert sqs.call("PurgeQueue", {"QueueUrl": sqs.url()}) == {}
    assert sqs.counts() == (0, 0)


# --- FIFO and redrive ----------------------------------------------------------------------------


def test_fifo_queue_groups_and_deduplication(sqs: Sqs) -> None:
    url = sqs.call("CreateQueue", {"QueueName": "jobs.fifo", "Attributes": {"FifoQueue": "true"}})[
        "QueueUrl"
    ]
    assert url == sqs.url("jobs.fifo")
    assert sqs.error("SendMessage", {"QueueUrl": url, "MessageBody": "x"})[1].endswith(
        "#MissingRequiredParameterException"
    )
    no_dedup = {"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "g1"}
    assert sqs.error("SendMessage", no_dedup)[1].endswith("#InvalidParameterValueException")
    first = sqs.send("a", "jobs.fifo", MessageGroupId="g1", MessageDeduplicationId="d-a")
    again = sqs.send("a", "jobs.fifo", MessageGroupId="g1", MessageDeduplicationId="d-a")
    assert again["MessageId"] == first["MessageId"]
    assert "SequenceNumber" in first
    sqs.send("b", "jobs.fifo", MessageGroupId="g1", MessageDeduplicationId="d-b")
    sqs.send("c", "jobs.fifo", MessageGroupId="g2", MessageDeduplicationId="d-c")
    assert sqs.counts("jobs.fifo") == (3, 0)
    [a] = sqs.receive("jobs.fifo")
    assert (a["Body"], a["Attributes"]["MessageGroupId"]) == ("a", "g1")
    [c] = sqs.receive("jobs.fifo")  # g1 waits while `a` is in flight
    assert c["Body"] == "c"
    assert sqs.receive("jobs.fifo") == []
    sqs.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": a["ReceiptHandle"]})
    assert [m["Body"] for m in sqs.receive("jobs.fifo")] == ["b"]
    batch = {"QueueUrl": url, "Entries": [{"Id": "n", "MessageBody": "n"}]}
    assert sqs.error("SendMessageBatch", batch)[1].endswith("#InvalidParameterValueException")
    standard_dedup = {"QueueUrl": sqs.url(), "MessageBody": "x", "MessageDeduplicationId": "d"}
    assert sqs.error("SendMessage", standard_dedup)[1].endswith("#InvalidParameterValueException")


def test_redrive_policy_moves_a_message_to_the_dead_letter_queue(sqs: Sqs) -> None:
    policy = json.dumps(
        {"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{DLQ}", "maxReceiveCount": 2}
    )
    sqs.call("CreateQueue", {"QueueName": "flaky", "Attributes": {"RedrivePolicy": policy}})
    sqs.send("poison", "flaky")
    assert len(sqs.receive("flaky", VisibilityTimeout=0)) == 1
    assert len(sqs.receive("flaky", VisibilityTimeout=0)) == 1
    assert sqs.receive("flaky", VisibilityTimeout=0) == []  # the third receive moves it
    [moved] = sqs.receive(DLQ)
    assert moved["Body"] == "poison"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"].endswith(":flaky")


# --- faults --------------------------------------------------------------------------------------


def test_failed_ratio_makes_batch_entries_fail(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(seed_with(queue_faults={"seed": 7, "sqs_failed_ratio": 0.5}))
    sqs = Sqs(sandbox)
    try:
        answer = sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": entries(10)})
        failed, successful = answer["Failed"], answer["Successful"]
        assert 0 < len(failed) < 10
        assert len(failed) + len(successful) == 10
        assert all(f["Code"] == "InternalError" and f["SenderFault"] is False for f in failed)
        assert sqs.counts() == (len(successful), 0)  # a failed entry is not stored
        assert [
            e["fault"] for e in sandbox.requests() if e.get("action") == "SendMessageBatch"
        ] == ["sqs_failed"]
        sandbox.set_queue_faults({"sqs_failed_ratio": 1.0})
        answer = sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": entries(3)})
        assert (len(answer["Successful"]), len(answer["Failed"])) == (0, 3)
        sandbox.set_queue_faults(None)
        answer = sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": entries(3)})
        assert (len(answer["Successful"]), len(answer["Failed"])) == (3, 0)
    finally:
        sqs.close()


def test_the_same_fault_seed_fails_the_same_entries(make_sandbox: SandboxFactory) -> None:
    outcomes = []
    for _ in range(2):
        sandbox = make_sandbox(seed_with(queue_faults={"seed": 3, "sqs_failed_ratio": 0.3}))
        sqs = Sqs(sandbox)
        answer = sqs.call("SendMessageBatch", {"QueueUrl": sqs.url(), "Entries": entries(10)})
        outcomes.append(sorted(f["Id"] for f in answer["Failed"]))
        sqs.close()
    assert outcomes[0] == outcomes[1]


def test_throttle(sandbox: Sandbox, sqs: Sqs) -> None:
    sandbox.set_queue_faults({"sqs_throttle": 1.0})
    response = sqs.request("SendMessage", {"QueueUrl": sqs.url(), "MessageBody": "x"})
    assert response.status_code == 400
    assert response.json()["__type"] == "com.amazonaws.sqs#RequestThrottled"
    assert response.headers["x-amzn-query-error"] == "RequestThrottled;Sender"
    assert sandbox.requests()[-1]["fault"] == "sqs_throttle"
    sandbox.set_queue_faults(None)
    assert sqs.counts() == (0, 0)  # the throttled message was not stored
    with pytest.raises(SandboxConfigError, match="sqs_throttle"):
        sandbox.set_queue_faults({"sqs_throttle": 2})


# --- signatures ----------------------------------------------------------------------------------

LIST = ("ListQueues", {})


def test_a_wrong_secret_is_refused(sandbox: Sandbox) -> None:
    sqs = Sqs(sandbox, secret="not-the-secret")
    status, kind, message = sqs.error(*LIST)
    sqs.close()
    assert (status, kind) == (403, "com.amazon.coral.service#InvalidSignatureException")
    assert "The Canonical String for this request should have been" in message
    assert sandbox.requests()[-1]["auth"] is None


def test_an_unknown_key_is_refused(sandbox: Sandbox) -> None:
    sqs = Sqs(sandbox, key="AKIASOMEONEELSE00001")
    assert sqs.error(*LIST) == (
        403,
        "com.amazon.coral.service#UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    sqs.close()


@pytest.mark.parametrize("minutes", [-16, 16])
def test_a_stale_or_future_date_is_refused(sqs: Sqs, minutes: int) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    status, kind, message = sqs.error(*LIST, when=when)
    assert (status, kind) == (403, "com.amazon.coral.service#InvalidSignatureException")
    assert message.startswith("Signature expired" if minutes < 0 else "Signature not yet current")
    assert (
        sqs.request(*LIST, when=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=14)).status_code
        == 200
    )


def test_a_tampered_body_is_refused(sqs: Sqs) -> None:
    payload = {"QueueUrl": sqs.url(), "MessageBody": "honest"}
    tampered = json.dumps({"QueueUrl": sqs.url(), "MessageBody": "forged"}).encode()
    status, kind, _ = sqs.error("SendMessage", payload, tamper=tampered)
    assert (status, kind) == (403, "com.amazon.coral.service#InvalidSignatureException")
    assert sqs.counts() == (0, 0)


def test_unsigned_and_ecs_authenticated_requests_are_refused(sandbox: Sandbox, sqs: Sqs) -> None:
    assert sqs.error(*LIST, sign=False) == (
        403,
        "com.amazon.coral.service#MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
    response = httpx.post(
        sandbox.url + "/",
        content=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ListQueues",
            "X-Auth-Token": DEMO_SEED["credentials"]["token"],
        },
    )
    assert response.status_code == 403


def test_the_signature_is_scoped_to_sqs(sandbox: Sandbox) -> None:
    sqs = Sqs(sandbox, service="sns")
    status, kind, message = sqs.error(*LIST)
    sqs.close()
    assert (status, kind) == (403, "com.amazon.coral.service#InvalidSignatureException")
    assert message == "Credential should be scoped to correct service: 'sqs'. "


def test_any_region_unless_the_seed_names_one(make_sandbox: SandboxFactory) -> None:
    anywhere = make_sandbox()
    for region in ("eu-west-1", "cn-north-4"):
        sqs = Sqs(anywhere, region=region)
        assert sqs.request(*LIST).status_code == 200
        sqs.close()
    pinned = make_sandbox(seed_with(aws={**AWS, "region": "eu-west-1"}))
    right, wrong = Sqs(pinned, region="eu-west-1"), Sqs(pinned, region="us-east-1")
    assert right.request(*LIST).status_code == 200
    assert (
        right.call("GetQueueAttributes", {"QueueUrl": right.url(), "AttributeNames": ["QueueArn"]})[
            "Attributes"
        ]["QueueArn"]
        == f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{WORK}"
    )
    status, kind, _ = wrong.error(*LIST)
    assert (status, kind) == (403, "com.amazon.coral.service#InvalidSignatureException")
    right.close()
    wrong.close()


def test_a_session_token_in_the_seed_is_required(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox(seed_with(aws={**AWS, "session_token": "FwoGZXIvYXdzEXAMPLE"}))
    without, wrong = Sqs(sandbox), Sqs(sandbox, token="FwoGZXIvYXdzOTHER")
    right = Sqs(sandbox, token="FwoGZXIvYXdzEXAMPLE")
    assert without.error(*LIST)[1] == "com.amazon.coral.service#UnrecognizedClientException"
    assert wrong.error(*LIST)[1] == "com.amazon.coral.service#UnrecognizedClientException"
    assert right.request(*LIST).status_code == 200
    for client in (without, wrong, right):
        client.close()


def test_a_seed_without_aws_refuses_every_sqs_request(make_sandbox: SandboxFactory) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    del seed["aws"]
    sandbox = make_sandbox(seed)
    sqs = Sqs(sandbox)
    assert sqs.error(*LIST)[:2] == (403, "com.amazon.coral.service#UnrecognizedClientException")
    sqs.close()


# --- protocol ------------------------------------------------------------------------------------


def test_protocol_errors(sqs: Sqs) -> None:
    unknown = sqs.error("Frobnicate", {})
    assert unknown[:2] == (400, "com.amazon.coral.service#UnknownOperationException")
    assert sqs.error("TagQueue", {})[1] == "com.amazonaws.sqs#UnsupportedOperation"
    assert sqs.error("ListQueues", {}, tamper=None, content_type="application/json")[1] == (
        "com.amazonaws.sqs#UnsupportedOperation"
    )
    response = sqs.request("ListQueues", {}, tamper=None)
    assert response.status_code == 200
    wrong_type = {"QueueUrl": sqs.url(), "MaxNumberOfMessages": "ten"}
    assert (
        sqs.error("ReceiveMessage", wrong_type)[1]
        == "com.amazon.coral.service#SerializationException"
    )


def test_a_queue_url_path_is_an_sqs_endpoint_too(sqs: Sqs) -> None:
    response = sqs.request("ListQueues", {}, path=f"/{ACCOUNT}/{WORK}")
    assert response.status_code == 200


# --- state and seed ------------------------------------------------------------------------------


def test_state_shows_queues_and_seeds_a_copy(sandbox: Sandbox, sqs: Sqs) -> None:
    sqs.send("received first")
    sqs.send("still visible")
    sqs.receive(MaxNumberOfMessages=1)
    over_http = httpx.get(f"{sandbox.url}/_sandbox/state").json()
    state = sandbox.state()
    for snapshot in (over_http, state):
        snapshot["servers"][2]["active_after_s"] = None
        for queue in snapshot["queues"]:
            for message in queue["messages"]:
                held = message["visible_after_s"]
                message["visible_after_s"] = None if held is None else round(held)
    assert over_http == state
    [work] = [q for q in state["queues"] if q["name"] == WORK]
    assert work["url"] == sqs.url()
    assert (work["visible"], work["in_flight"], work["delayed"]) == (1, 1, 0)
    assert [(m["body"], m["visible_after_s"]) for m in work["messages"]] == [
        ("received first", 30),
        ("still visible", None),
    ]
    assert [t["urn"] for t in state["topics"]] == [sandbox.topic_urn("janitor-dlq-topic")]
    assert state["aws"]["access_key_id"] == AWS["access_key_id"]
    with Sandbox(sandbox.state()) as copy_:
        copied = Sqs(copy_)
        assert copied.counts() == (1, 1)
        copied.close()


def test_seeded_messages(make_sandbox: SandboxFactory) -> None:
    seed = seed_with(
        queues=[
            {
                "name": "seeded",
                "messages": [
                    {"body": "first"},
                    {"body": "held", "receive_count": 1, "visible_after_s": 60},
                ],
            },
            {"name": "ordered.fifo", "messages": [{"body": "x", "message_group_id": "g"}]},
        ]
    )
    sandbox = make_sandbox(seed)
    sqs = Sqs(sandbox)
    assert sqs.counts("seeded") == (1, 1)
    [message] = sqs.receive("seeded")
    assert message["Body"] == "first"
    assert sqs.receive("ordered.fifo")[0]["Attributes"]["MessageGroupId"] == "g"
    sqs.close()


@pytest.mark.parametrize(
    ("queues", "problem"),
    [
        ([{"name": "a"}, {"name": "a"}], "duplicate queue name a"),
        ([{"name": "bad name"}], "Can only include alphanumeric"),
        ([{"name": "q", "attributes": {"VisibilityTimeout": "-1"}}], "VisibilityTimeout"),
        ([{"name": "q.fifo", "messages": [{"body": "x"}]}], "MessageGroupId"),
        ([{"name": "q", "messages": [{"body": ""}]}], "queues.0.messages.0.body"),
        ([{"name": "q", "colour": "blue"}], "colour"),
    ],
)
def test_bad_queue_seeds(queues: list[dict[str, Any]], problem: str) -> None:
    from handler.sandbox import seed as seed_module

    with pytest.raises(SandboxConfigError, match=problem):
        seed_module.parse_seed(seed_with(queues=queues))
