"""DEAD_LETTER_URL=sqs://…: dead letters sent to the sandbox's SQS queue, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from handler import app
from handler.config import ConfigError
from handler.local import FakeContext
from handler.runtime import DeadLetterWriteError
from handler.sandbox import Sandbox
from tests.conftest import configure_for
from tests.sandbox._demo import MISSING, WEB1

pytest.importorskip("aws_sdk_signers", reason="the SQS sink needs Python 3.12 or later")

DLQ = "janitor-dlq"


def _configure(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, tmp_path: Path, **extra: str) -> None:
    aws = sb.aws
    assert aws is not None
    queue = urlsplit(sb.queue_url(DLQ))
    settings = {
        "DEAD_LETTER_URL": f"sqs://{queue.netloc}{queue.path}",
        "AWS_ACCESS_KEY_ID": aws["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": aws["secret_access_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sb.url,
    }
    configure_for(monkeypatch, sb, tmp_path / "unused.jsonl", **{**settings, **extra})


def _letters(sb: Sandbox) -> list[dict[str, Any]]:
    queue = next(q for q in sb.state()["queues"] if q["name"] == DLQ)
    return [json.loads(m["body"]) for m in queue["messages"]]


def test_a_dead_letter_lands_in_the_queue_as_one_message(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    response = app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    assert response["summary"]["dead_lettered"] == 1
    (letter,) = _letters(sandbox)
    assert letter["item"]["server_id"] == MISSING and letter["reason"] == "server_not_found"
    signed = [r for r in sandbox.requests() if r.get("service") == "sqs"]
    assert signed and all(r["status"] == 200 for r in signed)


def test_entries_the_queue_fails_are_sent_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    sandbox.set_queue_faults({"seed": 3, "sqs_failed_ratio": 0.5})
    items = [{"server_id": MISSING, "key": f"k{i}"} for i in range(12)]
    response = app.handler({"items": items}, FakeContext(10_000))
    assert response["summary"]["dead_lettered"] == 12
    assert sorted(letter["item"]["key"] for letter in _letters(sandbox)) == sorted(
        f"k{i}" for i in range(12)
    )


def test_when_the_queue_stores_nothing_the_sqs_messages_go_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _configure(monkeypatch, sandbox, tmp_path)
    sandbox.set_queue_faults({"seed": 1, "sqs_failed_ratio": 1.0})
    event = {
        "Records": [
            {"messageId": "m-bad", "eventSource": "aws:sqs", "attributes": {},
             "body": json.dumps({"server_id": MISSING, "key": "k"})},
            {"messageId": "m-ok", "eventSource": "aws:sqs", "attributes": {},
             "body": json.dumps({"server_id": WEB1, "key": "absent-key"})},
        ]
    }  # fmt: skip
    response = app.handler(event, FakeContext(10_000))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-bad"}]
    assert _letters(sandbox) == []


def test_the_aws_secret_never_reaches_the_logs(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _configure(monkeypatch, sandbox, tmp_path, POWERTOOLS_LOG_LEVEL="DEBUG")
    sandbox.set_queue_faults({"seed": 1, "sqs_failed_ratio": 1.0})
    # Nothing stored: a direct invocation raises, so the platform retries it (SPEC §7).
    with pytest.raises(DeadLetterWriteError, match="not stored") as raised:
        app.handler({"server_id": MISSING, "key": "k"}, FakeContext(5_000))
    aws = sandbox.aws
    assert aws is not None
    out = capsys.readouterr()
    for secret in (aws["secret_access_key"], aws["access_key_id"]):
        assert secret not in out.out + out.err + str(raised.value)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"AWS_ACCESS_KEY_ID": ""}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"DEAD_LETTER_URL": "sqs://127.0.0.1:1/janitor-dlq"}, "sqs://<host>/<account id>"),
    ],
)
def test_an_sqs_sink_that_cannot_work_fails_the_cold_start_saying_why(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    extra: dict[str, str],
    problem: str,
) -> None:
    _configure(monkeypatch, sandbox, tmp_path, **extra)
    with pytest.raises(ConfigError, match=problem):
        app.handler({"server_id": MISSING, "key": "k"}, FakeContext(5_000))
