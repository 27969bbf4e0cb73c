"""EventBridge rule and scheduled events: `detail` is the payload; end to end too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import handler.sources
from handler import app
from handler.outcomes import Outcome, Result
from handler.sandbox import Sandbox
from handler.sources import UnknownEventError, detect
from handler.sources.base import Unit, UnitReport
from handler.sources.eventbridge import EventBridgeSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def event_of(detail: Any, **extra: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": "Cleanup",
        "source": "com.example",
        "detail": detail,
        **extra,
    }


@pytest.mark.parametrize("name", ["eventbridge-rule.json", "eventbridge-scheduled.json"])
def test_samples_are_one_unit_holding_the_detail(name: str) -> None:
    event = load(name)
    assert EventBridgeSource.matches(event)
    (unit,) = EventBridgeSource(event).units(event)
    assert unit.id == event["id"]
    assert unit.payload.items and not unit.payload.invalid


def test_matches_needs_detail_type_source_and_detail() -> None:
    assert EventBridgeSource.matches(event_of({"server_id": WEB1, "key": "owner"}))
    assert not EventBridgeSource.matches({"detail-type": "x", "source": "y"})
    assert not EventBridgeSource.matches({"source": "y", "detail": {}})
    assert not EventBridgeSource.matches({"detail-type": 1, "source": "y", "detail": {}})
    assert not EventBridgeSource.matches({"server_id": WEB1, "key": "owner"})
    assert not EventBridgeSource.matches([event_of({})])


@pytest.mark.parametrize(
    ("event", "seen"),
    [
        (
            event_of(
                {"bucket": {"name": "b"}, "object": {"key": "k"}, "reason": "DeleteObject"},
                source="aws.s3",
                **{"detail-type": "Object Deleted"},
            ),
            "source 'aws.s3', detail-type 'Object Deleted') whose detail is an object with "
            "keys ['bucket', 'object', 'reason']",
        ),
        (
            event_of({}, source="aws.events", **{"detail-type": "Scheduled Event"}),
            "whose detail is an empty object",
        ),
        (event_of("text"), "whose detail is a str"),
        (event_of(None), "whose detail is null"),
    ],
)
def test_a_detail_without_a_payload_raises_naming_what_was_seen(
    event: dict[str, Any], seen: str
) -> None:
    with pytest.raises(UnknownEventError) as info:
        EventBridgeSource(event).units(event)
    assert seen in str(info.value)
    assert "server_id" in str(info.value)


def test_a_schedule_without_payload_says_how_to_give_it_one() -> None:
    event = event_of({}, source="aws.events", **{"detail-type": "Scheduled Event"})
    with pytest.raises(UnknownEventError, match="set the rule's input to the payload"):
        EventBridgeSource(event).units(event)


def test_an_invalid_payload_in_detail_is_invalid_not_an_error() -> None:
    (unit,) = EventBridgeSource().units(event_of({"server_id": "web-1", "key": "owner"}))
    assert unit.payload.invalid[0].outcome is Outcome.INVALID
    (unit,) = EventBridgeSource().units(event_of([], id=None))
    assert unit.id is None
    assert unit.payload.invalid[0].outcome is Outcome.INVALID


def test_respond_is_the_summary_only() -> None:
    report = UnitReport(Unit("e-1", {}), [Result(Outcome.DELETED)])
    assert EventBridgeSource().respond([report], {"deleted": 1}) == {"summary": {"deleted": 1}}
    assert not EventBridgeSource().redelivers


@pytest.fixture
def eventbridge_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (EventBridgeSource, *handler.sources.SOURCES))


@pytest.mark.usefixtures("eventbridge_first")
def test_rule_event_end_to_end(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    event = load("eventbridge-rule.json")
    assert isinstance(detect(event), EventBridgeSource)

    response = app.handler(event, None)

    assert list(response) == ["summary"]
    assert (response["summary"]["deleted"], response["summary"]["dead_lettered"]) == (3, 0)
    assert "lease-owner" not in metadata_of(sandbox, DB1)
    assert "lease-expires" not in metadata_of(sandbox, DB1)
    assert "team name" not in metadata_of(sandbox, WEB1)
    assert read_lines(dead_letters) == []


@pytest.mark.usefixtures("eventbridge_first")
def test_scheduled_event_end_to_end(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    response = app.handler(load("eventbridge-scheduled.json"), None)

    assert list(response) == ["summary"]
    assert response["summary"]["deleted"] == 2
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert "lease-expires" not in metadata_of(sandbox, WEB1)


@pytest.mark.usefixtures("eventbridge_first")
def test_a_transient_pair_is_dead_lettered_not_raised(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    event = event_of({"items": [{"server_id": WEB2, "key": "lease-owner"}]}, id="e-locked")

    response = app.handler(event, None)

    summary = response["summary"]
    assert (summary["conflict"], summary["dead_lettered"], summary["returned_to_queue"]) == (
        1,
        1,
        0,
    )
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "conflict"
    assert letter["source"] == {"kind": "eventbridge", "id": "e-locked"}
    assert "lease-owner" in metadata_of(sandbox, WEB2)


@pytest.mark.usefixtures("eventbridge_first")
def test_an_s3_notification_via_eventbridge_is_never_answered_as_success(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    event = event_of(
        {"bucket": {"name": "example-bucket"}, "object": {"key": "IMG.jpg"}},
        source="aws.s3",
        **{"detail-type": "Object Deleted"},
    )
    with pytest.raises(UnknownEventError, match=r"source 'aws\.s3'"):
        app.handler(event, None)
    assert sandbox.requests() == []
    assert read_lines(dead_letters) == []
