"""Fan-out end to end: a scheduled cleanup sends work to a queue, drain feeds it to the function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from handler import app
from handler.commands import drain
from handler.local import FakeContext
from handler.runtime import FanOutError
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for

pytest.importorskip("aws_sdk_signers", reason="SQS needs Python 3.12 or later")

WORK = "janitor-work"


def _configure(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, tmp_path: Path) -> str:
    aws = sb.aws
    assert aws is not None
    configure_for(
        monkeypatch,
        sb,
        tmp_path / "dead-letters.jsonl",
        AWS_ACCESS_KEY_ID=aws["access_key_id"],
        AWS_SECRET_ACCESS_KEY=aws["secret_access_key"],
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_SQS=sb.url,
    )
    queue = urlsplit(sb.queue_url(WORK))
    return f"sqs://{queue.netloc}{queue.path}"


def _scheduled(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "fan-out-test",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": "2026-12-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"cleanup": selector},
    }


def _leases(sb: Sandbox) -> int:
    servers = [s for s in sb.state()["servers"] if s["project_id"] == DEMO_PROJECT]
    return sum(1 for s in servers for key in s["metadata"] if key.startswith("lease-"))


def test_a_scheduled_cleanup_fans_out_and_the_queue_trigger_deletes_the_keys(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue_url = _configure(monkeypatch, sandbox, tmp_path)
    before = _leases(sandbox)
    response = app.handler(
        _scheduled({"key_patterns": ["lease-*"], "fan_out": queue_url}), FakeContext(30_000)
    )
    fan = response["summary"]["cleanup"]["fan_out"]
    assert fan["sent"] == fan["messages"] > 0 and fan["unsent_servers"] == []
    assert not [r for r in sandbox.requests() if r["method"] == "DELETE"]
    assert _leases(sandbox) == before  # nothing deleted by the sweep itself

    aws = sandbox.aws
    assert aws is not None
    credentials = drain.AwsCredentials(aws["access_key_id"], aws["secret_access_key"])
    lines: list[str] = []
    with httpx.Client() as http:
        client = drain.SqsClient(sandbox.url, "us-east-1", credentials, http=http)
        drain.drain(
            client,
            sandbox.queue_url(WORK),
            "arn:aws:sqs:us-east-1:000000000000:janitor-work",
            lambda event: app.handler(event, FakeContext(30_000)),
            batch_size=10,
            max_batches=5,
            out=lines.append,
        )
    # The demo fleet has locked and building servers: their work goes back to the queue; the
    # rest is deleted by the function's queue invocations.
    assert _leases(sandbox) < before
    messages = next(q for q in sandbox.state()["queues"] if q["name"] == WORK)["messages"]
    left = {json.loads(m["body"])["server_id"] for m in messages}
    for server in sandbox.state()["servers"]:
        if server["project_id"] == DEMO_PROJECT and server["id"] not in left:
            assert not [k for k in server["metadata"] if k.startswith("lease-")], server


def test_work_that_could_not_be_sent_makes_the_run_raise(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    queue_url = _configure(monkeypatch, sandbox, tmp_path)
    sandbox.set_queue_faults({"seed": 2, "sqs_failed_ratio": 1.0})
    with pytest.raises(FanOutError, match="was not sent"):
        app.handler(
            _scheduled({"key_patterns": ["lease-*"], "fan_out": queue_url}), FakeContext(10_000)
        )


def test_a_fan_out_target_that_cannot_be_used_is_an_invalid_selector(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    app.reset_runtime()
    selector = {"key_patterns": ["lease-*"], "fan_out": "sqs://sqs.eu-west-1.amazonaws.com/1/q"}
    response = app.handler(_scheduled(selector), FakeContext(10_000))
    assert response["summary"]["invalid"] == 1
    assert not [r for r in sandbox.requests() if r["method"] == "DELETE"]


def test_a_cleanup_fans_out_to_an_smn_topic_signed_as_the_ecs_calls_are(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    monkeypatch.setenv("SMN_ENDPOINT", sandbox.url)
    topic = sandbox.topic_urn("janitor-dlq-topic")
    response = app.handler(
        _scheduled({"key_patterns": ["lease-*"], "fan_out": f"smn://{topic}"}), FakeContext(30_000)
    )
    fan = response["summary"]["cleanup"]["fan_out"]
    assert fan["sent"] == fan["messages"] > 0
    published = next(t for t in sandbox.state()["topics"] if t["urn"] == topic)["messages"]
    items = [json.loads(m["message"]) for m in published]
    assert {item["server_id"] for item in items} and all(item["keys"] for item in items)
    assert not [r for r in sandbox.requests() if r["method"] == "DELETE"]
