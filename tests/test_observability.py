"""Powertools-compatible observability: X-Ray trace id, logging the event, debug sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.sandbox import Sandbox
from tests.conftest import configure_for
from tests.sandbox._demo import WEB1


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_log_lines_carry_the_xray_trace_id_in_powertools_order(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    trace = "1-5759e988-bd862e3fe1be46a994272793"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={trace};Parent=53995c3f42cd8ad8;Sampled=1")
    app.handler({"server_id": WEB1, "key": "owner"}, None)
    # The invocation's lines (a cold start's own lines precede any invocation).
    lines = [line for line in _lines(capsys) if "function_request_id" in line]
    assert lines and all(line["xray_trace_id"] == trace for line in lines)
    keys = list(lines[-1])
    assert keys.index("function_request_id") < keys.index("xray_trace_id")
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    app.handler({"server_id": WEB1, "key": "owner"}, None)
    assert all("xray_trace_id" not in line for line in _lines(capsys))


def test_the_incoming_event_is_logged_redacted_when_asked(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, POWERTOOLS_LOGGER_LOG_EVENT="true")
    secret = sandbox.credentials["sk"]
    app.handler({"server_id": WEB1, "key": "owner", "note": secret}, None)
    logged = [line for line in _lines(capsys) if isinstance(line["message"], dict)]
    assert len(logged) == 1  # as Powertools' Logger: the event itself is the message
    assert logged[0]["message"]["server_id"] == WEB1
    assert secret not in json.dumps(logged[0])


@pytest.mark.parametrize(("rate", "debug_expected"), [("1", True), ("0", False)])
def test_a_sampled_invocation_logs_at_debug(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rate: str,
    debug_expected: bool,
) -> None:
    configure_for(
        monkeypatch,
        sandbox,
        dead_letters,
        POWERTOOLS_LOG_LEVEL="INFO",
        POWERTOOLS_LOGGER_SAMPLE_RATE=rate,
        MAX_ATTEMPTS="2",
    )
    # The locked server answers 409: a retry is scheduled, which is logged at DEBUG.
    locked = "3f1c2b9e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
    app.handler({"server_id": locked, "key": "lease-owner"}, None)
    levels = {line["level"] for line in _lines(capsys)}
    assert ("DEBUG" in levels) is debug_expected
    assert "INFO" in levels


class _FunctionGraphContext:
    def getRequestID(self) -> str:
        return "fg-1"

    def getRemainingTimeInMilliSeconds(self) -> int:
        return 30_000


def test_metrics_in_embedded_metric_format_on_lambda(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from handler.local import FakeContext

    configure_for(
        monkeypatch,
        sandbox,
        dead_letters,
        METRICS="emf",
        POWERTOOLS_METRICS_NAMESPACE="Janitor",
        MAX_ATTEMPTS="2",
    )
    locked = "3f1c2b9e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
    event = {
        "items": [
            {"server_id": WEB1, "keys": ["owner", "never-set"]},
            {"server_id": locked, "key": "lease-owner"},
        ]
    }
    app.handler(event, FakeContext(30_000))
    documents = [line for line in _lines(capsys) if "_aws" in line]
    assert len(documents) == 1
    emf = documents[0]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Janitor"
    assert directive["Dimensions"] == [["service"]]
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert names["ApiLatency"] == "Milliseconds" and names["PairsDeleted"] == "Count"
    assert emf["service"] == "ecs-metadata-janitor"
    assert (emf["PairsDeleted"], emf["PairsAbsent"], emf["PairsDeadLettered"]) == (1, 1, 1)
    assert emf["Retries"] == 1  # the locked server's second DELETE
    deletes = [r for r in sandbox.requests() if r["method"] == "DELETE"]
    assert len(emf["ApiLatency"]) >= len(deletes) == 4
    assert all(value > 0 for value in emf["ApiLatency"])


def test_metrics_are_one_log_line_on_functiongraph_and_off_by_default(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    app.handler({"server_id": WEB1, "key": "owner"}, _FunctionGraphContext())
    assert not [line for line in _lines(capsys) if "metrics" in line or "_aws" in line]
    app.reset_runtime()
    monkeypatch.setenv("METRICS", "emf")
    app.handler({"server_id": WEB1, "key": "lease-owner"}, _FunctionGraphContext())
    lines = _lines(capsys)
    assert not [line for line in lines if "_aws" in line]
    (line,) = [line for line in lines if line["message"] == "invocation metrics"]
    assert line["metrics"]["PairsDeleted"] == 1
