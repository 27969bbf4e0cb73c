"""SNS: matching, one unit per record, a summary answer; end to end against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import handler.sources
from handler import app
from handler.outcomes import Outcome, Result
from handler.sandbox import Sandbox
from handler.sources import detect
from handler.sources.base import Unit, UnitReport
from handler.sources.direct import DirectSource
from handler.sources.eventbridge import EventBridgeSource
from handler.sources.kinesis import KinesisSource
from handler.sources.sns import SnsSource
from handler.sources.sqs import SqsSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import WEB1, WEB2

MINE: tuple[type[handler.sources.Source], ...] = (SnsSource, KinesisSource, EventBridgeSource)


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def sns_record(message: Any, message_id: Any = "m-1") -> dict[str, Any]:
    sns: dict[str, Any] = {"Type": "Notification", "TopicArn": "arn:aws:sns:x:1:t"}
    if message is not None:
        sns["Message"] = message
    if message_id is not None:
        sns["MessageId"] = message_id
    return {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns}


def test_the_sample_is_one_unit_named_by_its_message_id() -> None:
    event = load("sns.json")
    assert SnsSource.matches(event)
    units = SnsSource(event).units(event)
    assert [u.id for u in units] == ["7b3f4a52-0001-4e5f-8a9b-0c1d2e3f4a5b"]
    assert [(i.server_id, i.key) for i in units[0].payload.items] == [
        (WEB1, "lease-owner"),
        (WEB1, "lease-expires"),
        (WEB2, "lease-owner"),
    ]


def test_matches_only_records_whose_event_source_is_sns() -> None:
    assert SnsSource.matches({"Records": [sns_record("[]")]})
    # SNS spells it EventSource; the lower-case spelling is another platform's.
    assert not SnsSource.matches({"Records": [{"eventSource": "aws:sns", "Sns": {}}]})
    assert not SnsSource.matches({"Records": [sns_record("[]"), {"eventSource": "aws:sqs"}]})
    assert not SnsSource.matches({"Records": []})
    assert not SnsSource.matches({"Records": "aws:sns"})
    assert not SnsSource.matches([sns_record("[]")])
    assert not SnsSource.matches(None)


def test_a_message_that_is_not_a_payload_is_invalid_and_keeps_its_text() -> None:
    event = {"Records": [sns_record("Hello from SNS!")]}
    (unit,) = SnsSource(event).units(event)
    (invalid,) = unit.payload.invalid
    assert invalid.outcome is Outcome.INVALID
    assert invalid.raw == "Hello from SNS!"


def test_a_record_without_id_or_message_does_not_crash() -> None:
    event = {"Records": [sns_record(None, message_id=None), {"EventSource": "aws:sns"}]}
    units = SnsSource(event).units(event)
    assert [u.id for u in units] == [None, None]
    for unit in units:
        assert unit.payload.invalid[0].outcome is Outcome.INVALID


def test_respond_is_the_summary_only() -> None:
    report = UnitReport(Unit("m-1", "[]"), [Result(Outcome.CONFLICT)])
    assert SnsSource().respond([report], {"deleted": 0}) == {"summary": {"deleted": 0}}
    assert not SnsSource().redelivers


def test_no_two_sources_claim_one_sample() -> None:
    """Each events/ file is claimed by at most one source (the order of SOURCES is moot)."""
    everyone: tuple[type[handler.sources.Source], ...] = (*MINE, SqsSource, DirectSource)
    for sample in sorted(EVENTS.glob("*.json")):
        event = json.loads(sample.read_text(encoding="utf-8"))
        claimed = [source.kind for source in everyone if source.matches(event)]
        assert len(claimed) <= 1, f"{sample.name} is claimed by {claimed}"
    expected = {
        "sns.json": "sns",
        "sns-sqs.json": "sqs",
        "kinesis.json": "kinesis",
        "eventbridge-rule.json": "eventbridge",
        "eventbridge-scheduled.json": "eventbridge",
    }
    for name, kind in expected.items():
        assert [s.kind for s in everyone if s.matches(load(name))] == [kind], name


def test_sns_event_end_to_end_dead_letters_the_transient_pair(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (SnsSource, *handler.sources.SOURCES))
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    assert isinstance(detect(load("sns.json")), SnsSource)

    response = app.handler(load("sns.json"), None)

    assert list(response) == ["summary"]
    summary = response["summary"]
    assert (summary["deleted"], summary["conflict"], summary["dead_lettered"]) == (2, 1, 1)
    assert summary["returned_to_queue"] == 0
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert "lease-expires" not in metadata_of(sandbox, WEB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: dead-lettered, not raised
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "conflict"
    assert letter["item"]["server_id"] == WEB2
    assert letter["source"] == {"kind": "sns", "id": "7b3f4a52-0001-4e5f-8a9b-0c1d2e3f4a5b"}


def test_sns_event_raises_when_its_dead_letter_cannot_be_written(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (SnsSource, *handler.sources.SOURCES))
    blocker = tmp_path / "not-a-dir"
    configure_for(monkeypatch, sandbox, blocker / "dl.jsonl", MAX_ATTEMPTS="1")
    app.warm_up()
    blocker.write_text("")  # the sink's folder became a file after the cold start
    with pytest.raises(app.DeadLetterWriteError):
        app.handler({"Records": [sns_record("not json")]}, None)
