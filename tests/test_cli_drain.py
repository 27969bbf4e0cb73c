"""`ecs-metadata-janitor drain` (issue 10 §3): a queue fed to the function as SQS events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import cli
from handler.commands import drain
from handler.sandbox import DEMO_SEED, Sandbox
from tests.conftest import EVENTS, SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

WORK = "janitor-work"
AWS = DEMO_SEED["aws"]


def body(server_id: str, key: str | None = None, keys: list[str] | None = None) -> str:
    item: dict[str, Any] = {"server_id": server_id}
    if keys is not None:
        item["keys"] = keys
    else:
        item["key"] = key
    return json.dumps(item)


def client_for(sandbox: Sandbox, http: httpx.Client) -> drain.SqsClient:
    credentials = drain.AwsCredentials(AWS["access_key_id"], AWS["secret_access_key"])
    return drain.SqsClient(sandbox.url, "us-east-1", credentials, http=http)


def send(sandbox: Sandbox, *bodies: str, queue: str = WORK) -> None:
    with httpx.Client() as http:
        client = client_for(sandbox, http)
        for text in bodies:
            client.call("SendMessage", {"QueueUrl": sandbox.queue_url(queue), "MessageBody": text})


def queue_state(sandbox: Sandbox, name: str = WORK) -> dict[str, Any]:
    [queue] = [q for q in sandbox.state()["queues"] if q["name"] == name]
    return queue


@pytest.fixture
def external(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The function and the AWS variables pointed at a running sandbox (`--no-sandbox`)."""
    configure_for(monkeypatch, sandbox, tmp_path / "dead-letters.jsonl", MAX_ATTEMPTS="2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS["secret_access_key"])
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return sandbox


def test_a_queue_of_existing_pairs_is_drained(
    external: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    send(
        external,
        body(WEB1, "lease-owner"),
        body(DB1, keys=["lease-owner", "lease-expires"]),
        body(WEB1, "env:stage"),
    )
    url = external.queue_url(WORK)
    assert cli.main(["drain", url, "--no-sandbox", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "batch 1: received 2, deleted 2, returned 0",
        "batch 2: received 1, deleted 1, returned 0",
        "queue janitor-work: 2 batch(es), 3 received, 3 deleted, 0 returned; now 0 visible, "
        "0 in flight",
    ]
    assert "lease-owner" not in metadata_of(external, WEB1)
    assert "env:stage" not in metadata_of(external, WEB1)
    assert metadata_of(external, DB1) == {"backup-policy": "daily"}
    queue = queue_state(external)
    assert (queue["visible"], queue["in_flight"], queue["messages"]) == (0, 0, [])
    actions = [e.get("action") for e in external.requests() if e.get("service") == "sqs"]
    assert actions.count("DeleteMessageBatch") == 2
    assert actions[-1] == "GetQueueAttributes"


def test_a_message_naming_a_locked_server_stays_in_the_queue(
    external: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    send(external, body(WEB2, "lease-owner"), body(WEB1, "lease-owner"))
    assert cli.main(["drain", external.queue_url(WORK), "--no-sandbox"]) == 1
    out = capsys.readouterr().out
    assert "batch 1: received 2, deleted 1, returned 1" in out
    assert "now 0 visible, 1 in flight" in out
    assert "1 message(s) handed back stay in the queue: visible again after its visibility " in out
    assert metadata_of(external, WEB2)["lease-owner"] == "batch-9"  # locked: untouched
    assert "lease-owner" not in metadata_of(external, WEB1)
    [held] = queue_state(external)["messages"]
    assert held["body"] == body(WEB2, "lease-owner")
    assert held["receive_count"] == 1
    assert held["visible_after_s"] is not None  # in flight until its visibility timeout ends


def test_in_process_sandbox_with_a_seeded_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["queues"][0]["messages"] = [
        {"body": body(WEB1, "lease-owner")},
        {"body": "not a work item"},  # invalid: dead-lettered, so settled and deleted
    ]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed), encoding="utf-8")
    assert cli.main(["drain", WORK, "--sandbox", "--seed", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "batch 1: received 2, deleted 2, returned 0",
        "queue janitor-work: 1 batch(es), 2 received, 2 deleted, 0 returned; now 0 visible, "
        "0 in flight",
    ]
    assert "sandbox at http://127.0.0.1:" in captured.err


def test_max_batches(external: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    send(external, body(WEB1, "lease-owner"), body(WEB1, "lease-expires"))
    url = external.queue_url(WORK)
    assert cli.main(["drain", url, "--no-sandbox", "--batch-size", "1", "--max-batches", "1"]) == 1
    out = capsys.readouterr().out
    assert "stopped after --max-batches 1: the queue may hold more" in out
    assert queue_state(external)["visible"] == 1


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--batch-size", "11"], "--batch-size must be 1 to 10"),
        (["--batch-size", "0"], "--batch-size must be 1 to 10"),
        (["--max-batches", "0"], "--max-batches must be at least 1"),
    ],
)
def test_bad_arguments(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["drain", WORK, "--sandbox", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"error: {problem}"


def test_an_unknown_queue(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["drain", "no-such-queue", "--sandbox"]) == 2
    err = capsys.readouterr().err
    assert (
        "error: queue no-such-queue: QueueDoesNotExist: The specified queue does not exist." in err
    )


def test_without_aws_credentials(
    external: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert cli.main(["drain", external.queue_url(WORK), "--no-sandbox"]) == 2
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set" in capsys.readouterr().err


def test_a_wrong_secret_is_reported(
    external: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert cli.main(["drain", external.queue_url(WORK), "--no-sandbox"]) == 2
    assert "InvalidSignatureException" in capsys.readouterr().err


# --- the pieces ----------------------------------------------------------------------------------


def test_the_event_has_the_shape_lambda_gives() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "AQEBx",
        "MD5OfBody": "00",
        "Body": "{}",
        "Attributes": {
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1",
            "SenderId": "000000000000",
            "ApproximateFirstReceiveTimestamp": "2",
        },
        "MessageAttributes": {"trace": {"DataType": "String", "StringValue": "t"}},
        "MD5OfMessageAttributes": "11",
    }
    event = drain.sqs_event([message], "arn:aws:sqs:eu-west-1:000000000000:janitor-work")
    [record] = event["Records"]
    sample = json.loads((EVENTS / "sqs-batch.json").read_text())["Records"][0]
    assert set(sample) <= set(record)
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:000000000000:janitor-work"
    assert record["awsRegion"] == "eu-west-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"] == {
        "trace": {
            "stringValue": "t",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }


def test_which_messages_go_back() -> None:
    messages = [{"MessageId": "a"}, {"MessageId": "b"}]
    assert drain.returned_ids({"batchItemFailures": []}, messages) == set()
    assert drain.returned_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, messages) == {"b"}
    # An empty identifier retries the whole batch; an answer of another shape too.
    assert drain.returned_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, messages) == {
        "a",
        "b",
    }
    assert drain.returned_ids({"summary": {}}, messages) == {"a", "b"}


def test_a_failed_invocation_leaves_the_whole_batch(sandbox: Sandbox) -> None:
    send(sandbox, "one", "two")
    lines: list[str] = []

    def fail(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    with httpx.Client() as http:
        client = client_for(sandbox, http)
        arn = "arn:aws:sqs:us-east-1:000000000000:janitor-work"
        result = drain.drain(
            client,
            sandbox.queue_url(WORK),
            arn,
            fail,
            batch_size=10,
            max_batches=None,
            out=lines.append,
        )
    assert (result.received, result.deleted, result.returned, result.stopped) == (
        2,
        0,
        2,
        "invocation failed",
    )
    assert lines == [
        "batch 1: received 2, deleted 0, returned 2 (the invocation failed: RuntimeError: boom)"
    ]
    assert queue_state(sandbox)["in_flight"] == 2


def test_messages_that_come_back_end_the_drain(make_sandbox: SandboxFactory) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["queues"][0]["attributes"] = {"VisibilityTimeout": "0"}
    sandbox = make_sandbox(seed)
    send(sandbox, "again and again")
    lines: list[str] = []
    with httpx.Client() as http:
        client = client_for(sandbox, http)
        result = drain.drain(
            client,
            sandbox.queue_url(WORK),
            "arn:aws:sqs:us-east-1:000000000000:janitor-work",
            lambda event: {
                "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
            },
            batch_size=10,
            max_batches=None,
            out=lines.append,
        )
    assert (result.batches, result.returned, result.stopped) == (1, 1, "came back")
    assert lines[-1] == "batch 2: 1 message(s) handed back earlier came back"


def test_the_functions_signer_signs_what_the_sandbox_verifies(sandbox: Sandbox) -> None:
    credentials = drain.AwsCredentials(AWS["access_key_id"], AWS["secret_access_key"], None)
    with httpx.Client() as http:
        client = drain.SqsClient(sandbox.url, "us-east-1", credentials, http=http)
        assert client.queue_url(WORK) == sandbox.queue_url(WORK)
        bad = drain.AwsCredentials(AWS["access_key_id"], "not-the-secret-key-000", None)
        with pytest.raises(drain.SqsClientError, match="Signature"):
            drain.SqsClient(sandbox.url, "us-east-1", bad, http=http).queue_url(WORK)
