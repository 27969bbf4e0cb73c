"""Every sample in events/ runs end to end through handler.app.handler against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.local import FakeContext
from handler.sandbox import Sandbox
from tests.conftest import EVENTS, configure_for

SAMPLES = sorted(EVENTS.glob("*.json"))


class FunctionGraphContext:
    """The camelCase context FunctionGraph passes (its events are run with it)."""

    def getRequestID(self) -> str:
        return "fg-request"

    def getRemainingTimeInMilliSeconds(self) -> int:
        return 30_000


def _context(sample: Path) -> Any:
    return FunctionGraphContext() if sample.name.startswith("fg-") else FakeContext(30_000)


def _deletes(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r["method"] == "DELETE")


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_sample_event_deletes_and_answers_in_its_platforms_shape(
    sample: Path, sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The webhook samples carry no signature: run as behind a gateway that authenticates.
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2", WEBHOOK_AUTH="none")
    event = json.loads(sample.read_text(encoding="utf-8"))
    response = app.handler(event, _context(sample))
    if not isinstance(response, dict):  # an HttpAnswer-shaped object is not a platform's shape
        raise AssertionError(f"{sample.name}: {response!r}")
    if "statusCode" in response:  # a webhook: the platform's HTTP response, JSON body
        assert response["statusCode"] in (200, 207), response
        response = json.loads(response["body"])
    if "batchItemFailures" in response:  # SQS, Kinesis: the failures go back to the queue
        assert isinstance(response["batchItemFailures"], list)
    else:
        assert "summary" in response, f"{sample.name}: {sorted(response)}"
        summary = response["summary"]
        assert summary["pairs"] >= 1
        assert summary["deleted"] + summary["absent"] >= 1
    assert _deletes(sandbox) >= 1, f"{sample.name} sent no DELETE"
