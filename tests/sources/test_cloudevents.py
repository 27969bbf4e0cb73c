"""CloudEvents: matching, units per data form, HTTP modes; end to end against the sandbox."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import handler.sources
from handler import app
from handler.outcomes import Outcome, Result
from handler.sandbox import Sandbox
from handler.sources import detect
from handler.sources.base import HttpRequest, RejectedEvent, Unit, UnitReport
from handler.sources.cloudevents import CloudEventsSource, http_units, parse_event
from handler.sources.direct import DirectSource
from tests.conftest import EVENTS, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

#: CloudEvents whose data names no pairs, in the forms the JSON format spec shows (written here:
#: tests use the project's own files, not ../shared).
NO_PAIRS = [
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "B234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "datacontenttype": "application/xml",
        "data": '<much wow="xml"/>',
    },
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "C234-1234-1234",
        "subject": None,
        "data_base64": "Zm9vYg==",
    },
    {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "A234-1234-1234",
        "datacontenttype": "application/json",
        "data": {"appinfoA": "abc", "appinfoB": 123},
    },
]
PAIR = {"server_id": WEB1, "key": "lease-owner"}


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def ce(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t"}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def pairs(unit: Unit) -> list[tuple[str, str]]:
    return [(item.server_id, item.key) for item in unit.payload.items]


def only_invalid(unit: Unit) -> Result:
    assert unit.payload.items == []
    (invalid,) = unit.payload.invalid
    assert invalid.outcome is Outcome.INVALID
    return invalid


def one_unit(event: Any) -> Unit:
    assert CloudEventsSource.matches(event)
    (unit,) = CloudEventsSource(event).units(event)
    return unit


def request(headers: dict[str, str], body: bytes | str, *, lower: bool = True) -> HttpRequest:
    raw = body.encode() if isinstance(body, str) else body
    if lower:
        return HttpRequest.of("POST", headers, raw)
    return HttpRequest("POST", headers, raw)


# --- matching -------------------------------------------------------------------------------


def test_matches_a_structured_event_and_a_batch_of_them() -> None:
    assert CloudEventsSource.matches(ce(data=PAIR))
    assert CloudEventsSource.matches([ce(data=PAIR), ce(id="e-2", data=PAIR)])
    assert CloudEventsSource.matches(load("cloudevent.json"))
    assert CloudEventsSource.matches(load("cloudevents-batch.json"))


def test_does_not_match_work_items_or_mixed_batches() -> None:
    assert not CloudEventsSource.matches(PAIR)
    assert not CloudEventsSource.matches({"items": [PAIR]})
    assert not CloudEventsSource.matches([PAIR, PAIR])
    assert not CloudEventsSource.matches([ce(data=PAIR), PAIR])  # one element is not a CE
    assert not CloudEventsSource.matches([ce(data=PAIR), "text"])
    assert not CloudEventsSource.matches([])
    assert not CloudEventsSource.matches({"id": "x", "source": "/s", "type": "t"})
    assert not CloudEventsSource.matches({"Records": [ce()]})
    assert not CloudEventsSource.matches(None)
    assert not CloudEventsSource.matches("specversion")


def test_checked_before_direct_a_batch_is_cloudevents() -> None:
    batch = load("cloudevents-batch.json")
    assert DirectSource.matches(batch)  # Direct claims any array: CloudEvents must come first
    order = (CloudEventsSource, DirectSource)
    assert next(s.kind for s in order if s.matches(batch)) == "cloudevents"
    assert [s.kind for s in order if s.matches(load("direct-invocation.json"))] == ["direct"]


@pytest.mark.parametrize("event", [*NO_PAIRS, NO_PAIRS], ids=["xml", "base64", "json", "batch"])
def test_events_without_pairs_are_claimed_and_invalid_never_a_crash(event: Any) -> None:
    assert CloudEventsSource.matches(event)
    for unit in CloudEventsSource(event).units(event):
        assert unit.id is not None
        assert unit.payload.items == []  # their data names no pairs
        assert unit.payload.invalid


# --- units and data forms -------------------------------------------------------------------


def test_the_sample_event_is_one_unit_named_by_its_id() -> None:
    unit = one_unit(load("cloudevent.json"))
    assert unit.id == unit.ref == "5d2c7a10-0001-4b6e-9f3a-7c8d9e0f1a2b"
    assert pairs(unit) == [
        (WEB1, "lease-owner"),
        (WEB1, "lease-expires"),
        (DB1, "backup-policy"),
    ]


def test_the_sample_batch_is_one_unit_per_event_with_data_base64() -> None:
    event = load("cloudevents-batch.json")
    units = CloudEventsSource(event).units(event)
    assert [u.id for u in units] == [
        "5d2c7a10-0002-4b6e-9f3a-7c8d9e0f1a2b",
        "5d2c7a10-0003-4b6e-9f3a-7c8d9e0f1a2b",
    ]
    assert pairs(units[0]) == [(DB1, "lease-owner"), (DB1, "lease-expires")]
    assert pairs(units[1]) == [(WEB1, "env:stage"), (WEB2, "lease-owner")]


@pytest.mark.parametrize(
    "fields",
    [
        {"data": PAIR},
        {"data": [PAIR]},
        {"data": PAIR, "datacontenttype": "application/json; charset=utf-8"},
        {"data": PAIR, "datacontenttype": "application/vnd.janitor+json"},
        {"data": json.dumps(PAIR), "datacontenttype": "application/json"},
        {"data_base64": base64.b64encode(json.dumps(PAIR).encode()).decode()},
        {
            "data_base64": base64.b64encode(json.dumps([PAIR]).encode()).decode(),
            "datacontenttype": "text/json",
        },
        {"data": PAIR, "subject": None, "unsetextension": None},  # null is unset
    ],
)
def test_pairs_are_read_from_each_data_form(fields: dict[str, Any]) -> None:
    assert pairs(one_unit(ce(**fields))) == [(WEB1, "lease-owner")]


def test_xml_data_is_invalid_and_keeps_its_text() -> None:
    event = ce(datacontenttype="application/xml", data='<much wow="xml"/>')
    invalid = only_invalid(one_unit(event))
    assert invalid.raw == '<much wow="xml"/>'
    assert "application/xml" in (invalid.detail or "")


def test_an_event_without_data_is_invalid_never_success() -> None:
    for event in (ce(), ce(data=None), ce(data=None, data_base64=None)):
        invalid = only_invalid(one_unit(event))
        assert invalid.detail == "the CloudEvent carries no data"
        assert json.loads(invalid.raw or "")["id"] == "e-1"  # the event is kept


@pytest.mark.parametrize(
    ("fields", "raw", "detail"),
    [
        ({"data_base64": "not base64!"}, "not base64!", "data_base64 is not base64"),
        ({"data_base64": base64.b64encode(b"hello").decode()}, "hello", "not JSON"),
        ({"data_base64": base64.b64encode(b"\xff\xfe").decode()}, None, "not UTF-8"),
        ({"data": "not json", "datacontenttype": "application/json"}, "not json", "not JSON"),
        ({"data": PAIR, "data_base64": "e30="}, None, "both data and data_base64"),
        ({"data_base64": 5}, None, "data_base64 is not a string"),
        ({"data": 5}, None, "expected an object or an array"),
        ({"data": {"appinfoA": "abc"}}, None, "server_id"),
    ],
)
def test_unreadable_data_is_invalid(fields: dict[str, Any], raw: str | None, detail: str) -> None:
    invalid = only_invalid(one_unit(ce(**fields)))
    assert detail in (invalid.detail or "")
    if raw is not None:
        assert invalid.raw == raw


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        ({"specversion": "1.0", "data": PAIR}, "lacks required attributes: id, source, type"),
        (ce(type=..., data=PAIR), "lacks required attributes: type"),
        (ce(id=None, data=PAIR), "lacks required attributes: id"),
        (ce(specversion="0.3", data=PAIR), "specversion"),
        (ce(specversion="2.0", data=PAIR), "specversion"),
        (ce(id=7, data=PAIR), "id"),
        (ce(source="", data=PAIR), "source"),
        (ce(time="yesterday", data=PAIR), "time"),
        (ce(time="2026-11-27T10:00:00", data=PAIR), "time"),  # no offset
        (ce(time=5, data=PAIR), "time"),
        (ce(datacontenttype="", data=PAIR), "datacontenttype"),
        (ce(BadName="x", data=PAIR), "BadName"),
    ],
)
def test_malformed_attributes_are_an_invalid_result_not_a_crash(
    event: dict[str, Any], detail: str
) -> None:
    invalid = only_invalid(one_unit(event))
    assert detail in (invalid.detail or "")
    assert "lease-owner" in (invalid.raw or "")  # the whole event is kept for the dead letter


def test_a_unit_without_a_usable_id_has_none() -> None:
    assert one_unit(ce(id=7, data=PAIR)).id is None
    assert one_unit({"specversion": "1.0"}).id is None


def test_a_bad_event_in_a_batch_does_not_spoil_the_others() -> None:
    batch = [ce(data=PAIR), ce(id="e-2", type=..., data=PAIR)]
    good, bad = CloudEventsSource(batch).units(batch)
    assert pairs(good) == [(WEB1, "lease-owner")]
    assert "type" in (only_invalid(bad).detail or "")


def test_parse_event_never_raises_on_odd_bodies() -> None:
    bodies: list[Any] = [None, "text", 5, [], {"specversion": 1}]
    for body in bodies:
        assert parse_event(body).invalid


def test_respond_is_the_summary_and_transient_pairs_are_dead_lettered() -> None:
    report = UnitReport(Unit("e-1", {}), [Result(Outcome.CONFLICT)])
    assert CloudEventsSource().respond([report], {"deleted": 0}) == {"summary": {"deleted": 0}}
    assert not CloudEventsSource().redelivers


# --- HTTP: structured, batched and binary modes ---------------------------------------------


def test_http_structured_mode_is_one_event() -> None:
    body = json.dumps(ce(id="s-1", data=PAIR))
    (unit,) = http_units(request({"Content-Type": "application/cloudevents+json"}, body)) or []
    assert unit.id == "s-1"
    assert pairs(unit) == [(WEB1, "lease-owner")]


def test_http_structured_mode_with_charset_and_title_case_names() -> None:
    body = json.dumps(load("cloudevent.json"))
    headers = {"CONTENT-TYPE": "Application/CloudEvents+JSON; charset=utf-8"}
    (unit,) = http_units(request(headers, body)) or []
    assert len(pairs(unit)) == 3


def test_http_batched_mode_is_one_unit_per_event() -> None:
    body = json.dumps(load("cloudevents-batch.json")).encode()
    units = http_units(request({"content-type": "application/cloudevents-batch+json"}, body))
    assert units is not None
    assert [len(pairs(u)) for u in units] == [2, 2]


def test_http_binary_mode_reads_the_body_as_data() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "com.example.someevent",
        "ce-time": "2018-04-05T03:56:24Z",
        "ce-id": "1234-1234-1234",
        "ce-source": "/mycontext/subcontext",
        "Content-Type": "application/json; charset=utf-8",
    }
    (unit,) = http_units(request(headers, json.dumps([PAIR]))) or []
    assert unit.id == unit.ref == "1234-1234-1234"
    assert pairs(unit) == [(WEB1, "lease-owner")]


def test_http_binary_mode_header_names_in_any_case() -> None:
    headers = {
        "Ce-Specversion": "1.0",
        "CE-TYPE": "t",
        "Ce-Id": "b%2F1",  # percent-encoded, as the HTTP binding requires for some characters
        "ce-Source": "/s",
    }
    for lower in (True, False):
        (unit,) = http_units(request(headers, json.dumps(PAIR), lower=lower)) or []
        assert unit.id == "b/1"
        assert pairs(unit) == [(WEB1, "lease-owner")]  # no Content-Type: JSON by default


def test_http_binary_mode_data_that_names_no_pairs_is_invalid() -> None:
    headers = {"ce-specversion": "1.0", "ce-type": "t", "ce-id": "1", "ce-source": "/s"}
    (xml,) = http_units(request({**headers, "content-type": "application/xml"}, "<a/>")) or []
    assert only_invalid(xml).raw == "<a/>"
    (empty,) = http_units(request(headers, b"")) or []
    assert "no data" in (only_invalid(empty).detail or "")
    (text,) = http_units(request(headers, "not json")) or []
    assert only_invalid(text).raw == "not json"


def test_http_without_cloudevents_is_none() -> None:
    assert http_units(request({"content-type": "application/json"}, json.dumps(PAIR))) is None
    assert http_units(request({}, json.dumps(ce(data=PAIR)))) is None  # needs its media type
    assert http_units(request({"webhook-id": "msg_1", "cedar": "x"}, b"{}")) is None


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"},
            "{}",
            "lacks the headers: ce-type",
        ),
        ({"ce-id": "1"}, "{}", "ce-source, ce-specversion, ce-type"),
        (
            {"ce-specversion": "0.3", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
            "{}",
            "specversion",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-time": "soon",
            },
            "{}",
            "time",
        ),
        ({"content-type": "application/cloudevents+json"}, "not json", "not JSON"),
        ({"content-type": "application/cloudevents+json"}, json.dumps(PAIR), "not a CloudEvent"),
        ({"content-type": "application/cloudevents+json"}, "[]", "not a CloudEvent"),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps(ce(type=..., data=PAIR)),
            "lacks required attributes: type",
        ),
        ({"content-type": "application/cloudevents-batch+json"}, "{}", "JSON array"),
        ({"content-type": "application/cloudevents-batch+json"}, "[]", "empty"),
        (
            {"content-type": "application/cloudevents-batch+json"},
            json.dumps([ce(data=PAIR), PAIR]),
            "event 1 of the batch is not a CloudEvent",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            json.dumps([ce(data=PAIR), ce(specversion="0.3")]),
            "event 1 of the batch",
        ),
        ({"content-type": "application/cloudevents+avro"}, "\x00", "unsupported"),
    ],
)
def test_http_malformed_cloudevents_are_rejected_with_400(
    headers: dict[str, str], body: str, message: str
) -> None:
    with pytest.raises(RejectedEvent) as caught:
        http_units(request(headers, body))
    assert caught.value.status == 400
    assert message in caught.value.message


# --- end to end -----------------------------------------------------------------------------


def _cloudevents_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("handler.sources.SOURCES", (CloudEventsSource, *handler.sources.SOURCES))


def test_cloudevent_end_to_end(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cloudevents_first(monkeypatch)
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    assert isinstance(detect(load("cloudevent.json")), CloudEventsSource)

    response = app.handler(load("cloudevent.json"), None)

    assert list(response) == ["summary"]
    summary = response["summary"]
    assert (summary["deleted"], summary["dead_lettered"], summary["units"]) == (3, 0, 1)
    assert not {"lease-owner", "lease-expires"} & set(metadata_of(sandbox, WEB1))
    assert "backup-policy" not in metadata_of(sandbox, DB1)
    assert read_lines(dead_letters) == []


def test_cloudevents_batch_end_to_end_dead_letters_the_transient_pair(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cloudevents_first(monkeypatch)
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    assert isinstance(detect(load("cloudevents-batch.json")), CloudEventsSource)

    response = app.handler(load("cloudevents-batch.json"), None)

    assert list(response) == ["summary"]
    summary = response["summary"]
    assert (summary["deleted"], summary["conflict"], summary["dead_lettered"]) == (3, 1, 1)
    assert (summary["units"], summary["returned_to_queue"]) == (2, 0)
    assert not {"lease-owner", "lease-expires"} & set(metadata_of(sandbox, DB1))
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert "lease-owner" in metadata_of(sandbox, WEB2)  # locked: dead-lettered, not raised
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "conflict"
    assert letter["source"] == {"kind": "cloudevents", "id": "5d2c7a10-0003-4b6e-9f3a-7c8d9e0f1a2b"}


def test_an_event_without_data_is_dead_lettered_end_to_end(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cloudevents_first(monkeypatch)
    configure_for(monkeypatch, sandbox, dead_letters)
    xml = NO_PAIRS[0]

    response = app.handler(xml, None)

    summary = response["summary"]
    assert (summary["invalid"], summary["dead_lettered"], summary["deleted"]) == (1, 1, 0)
    (letter,) = read_lines(dead_letters)
    assert letter["reason"] == "invalid"
    assert letter["raw"] == '<much wow="xml"/>'
    assert letter["source"] == {"kind": "cloudevents", "id": "B234-1234-1234"}
