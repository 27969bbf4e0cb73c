"""The work-item payload (SPEC §3): every form, every rule, and a parser that never raises."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.model import RAW_LIMIT, ParsedPayload, WorkItem, parse_payload, parse_text
from handler.outcomes import Outcome

SERVER = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
SERVER_2 = "11111111-2222-4333-8444-555555555555"
PROJECT = "0123456789abcdef0123456789abcdef"
KEY_RE = re.compile(r"[A-Za-z0-9_:. -]{1,255}")


def _items(text: str | bytes | None) -> list[WorkItem]:
    parsed = parse_text(text)
    assert parsed.invalid == []
    return parsed.items


def _single_invalid(parsed: ParsedPayload) -> str:
    assert parsed.items == []
    assert len(parsed.invalid) == 1
    result = parsed.invalid[0]
    assert result.outcome is Outcome.INVALID
    assert result.pair is None
    assert result.raw is not None
    assert result.detail
    return result.raw


# --- the forms of SPEC §3 ----------------------------------------------------------------------


def test_single_key() -> None:
    items = _items(json.dumps({"server_id": SERVER, "key": "lease-owner"}))
    assert items == [WorkItem(None, SERVER, "lease-owner", False)]


def test_keys_with_project_id() -> None:
    payload = {"server_id": SERVER, "keys": ["lease-owner", "lease-expires"], "project_id": PROJECT}
    items = _items(json.dumps(payload))
    assert items == [
        WorkItem(PROJECT, SERVER, "lease-owner", False),
        WorkItem(PROJECT, SERVER, "lease-expires", False),
    ]


def test_items_batch_with_dry_run() -> None:
    payload = {
        "items": [{"server_id": SERVER, "key": "a"}, {"server_id": SERVER_2, "keys": ["b", "c"]}],
        "dry_run": True,
    }
    items = _items(json.dumps(payload))
    assert [(i.server_id, i.key) for i in items] == [
        (SERVER, "a"),
        (SERVER_2, "b"),
        (SERVER_2, "c"),
    ]
    assert all(i.dry_run for i in items)


def test_items_batch_without_dry_run() -> None:
    items = _items(json.dumps({"items": [{"server_id": SERVER, "key": "a"}]}))
    assert items == [WorkItem(None, SERVER, "a", False)]


def test_item_level_dry_run() -> None:
    payload = [
        {"server_id": SERVER, "key": "a", "dry_run": True},
        {"server_id": SERVER, "key": "b"},
    ]
    items = _items(json.dumps(payload))
    assert [(i.key, i.dry_run) for i in items] == [("a", True), ("b", False)]


def test_top_level_array() -> None:
    payload = [{"server_id": SERVER, "key": "a"}, {"server_id": SERVER_2, "key": "b"}]
    items = _items(json.dumps(payload))
    assert [(i.server_id, i.key) for i in items] == [(SERVER, "a"), (SERVER_2, "b")]


def test_mixed_forms() -> None:
    payload = [
        {"server_id": SERVER, "key": "a"},
        {"server_id": SERVER, "keys": ["b", "c"], "project_id": PROJECT},
        {"items": [{"server_id": SERVER_2, "key": "d"}], "dry_run": True},
    ]
    items = _items(json.dumps(payload))
    assert items == [
        WorkItem(None, SERVER, "a", False),
        WorkItem(PROJECT, SERVER, "b", False),
        WorkItem(PROJECT, SERVER, "c", False),
        WorkItem(None, SERVER_2, "d", True),
    ]


def test_mixed_valid_and_invalid_parts() -> None:
    payload = [{"server_id": SERVER, "key": "ok"}, {"server_id": SERVER, "key": "bad/key"}, 7]
    parsed = parse_text(json.dumps(payload))
    assert parsed.items == [WorkItem(None, SERVER, "ok", False)]
    assert len(parsed.invalid) == 2
    assert all(r.outcome is Outcome.INVALID for r in parsed.invalid)
    assert json.loads(parsed.invalid[0].raw or "") == {"server_id": SERVER, "key": "bad/key"}
    assert parsed.invalid[1].raw == "7"


def test_parse_payload_takes_decoded_objects() -> None:
    parsed = parse_payload({"server_id": SERVER, "key": "a"})
    assert parsed.items == [WorkItem(None, SERVER, "a", False)]
    assert parsed.invalid == []


def test_bytes_body() -> None:
    body = json.dumps({"server_id": SERVER, "key": "a"}).encode()
    assert _items(body) == [WorkItem(None, SERVER, "a", False)]


def test_uuid_upper_case_is_normalised() -> None:
    items = _items(json.dumps({"server_id": SERVER.upper(), "key": "a"}))
    assert items[0].server_id == SERVER


@pytest.mark.parametrize("server_id", ["not-a-uuid", "", 42, None, ["x"], SERVER + "0"])
def test_bad_server_id_is_invalid(server_id: Any) -> None:
    _single_invalid(parse_payload({"server_id": server_id, "key": "a"}))


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a/b", "/", "", "k" * 256, "line\nbreak", "trailing\n", "tab\tkey", "clé", "ключ", "emoji🙂"],
)
def test_invalid_keys(key: str) -> None:
    _single_invalid(parse_text(json.dumps({"server_id": SERVER, "key": key})))


@pytest.mark.parametrize("key", ["team name", "env:stage", "a.b-c_d", "k" * 255, "x", " "])
def test_valid_keys(key: str) -> None:
    assert _items(json.dumps({"server_id": SERVER, "key": key}))[0].key == key


def test_one_bad_key_in_keys_invalidates_the_item() -> None:
    _single_invalid(parse_payload({"server_id": SERVER, "keys": ["ok", "no/pe"]}))


def test_empty_keys_list_is_invalid() -> None:
    _single_invalid(parse_payload({"server_id": SERVER, "keys": []}))


def test_key_must_be_a_string() -> None:
    _single_invalid(parse_payload({"server_id": SERVER, "key": 12}))


@pytest.mark.parametrize("project", ["../etc", "a/b", "", "p" * 65])
def test_bad_project_id_is_invalid(project: str) -> None:
    _single_invalid(parse_payload({"server_id": SERVER, "key": "a", "project_id": project}))


# --- shape errors ------------------------------------------------------------------------------


def test_unknown_field_is_rejected() -> None:
    raw = _single_invalid(parse_payload({"server_id": SERVER, "key": "a", "dryrun": True}))
    assert "dryrun" in raw
    detail = parse_payload({"server_id": SERVER, "key": "a", "dryrun": True}).invalid[0].detail
    assert detail is not None
    assert "dryrun" in detail


def test_unknown_field_in_batch_is_rejected() -> None:
    _single_invalid(parse_payload({"items": [{"server_id": SERVER, "key": "a"}], "dryrun": True}))


def test_both_key_and_keys_is_invalid() -> None:
    _single_invalid(parse_payload({"server_id": SERVER, "key": "a", "keys": ["b"]}))


def test_neither_key_nor_keys_is_invalid() -> None:
    _single_invalid(parse_payload({"server_id": SERVER}))


def test_non_json_body() -> None:
    raw = _single_invalid(parse_text("this is not json"))
    assert raw == "this is not json"
    assert "not JSON" in (parse_text("{").invalid[0].detail or "")


def test_non_utf8_bytes() -> None:
    parsed = parse_text(b"\xff\xfe{not utf-8")
    raw = _single_invalid(parsed)
    assert "not UTF-8" in (parsed.invalid[0].detail or "")
    assert "not utf-8" in raw


@pytest.mark.parametrize("body", ["", "   ", "\n", b"", None])
def test_empty_body(body: str | bytes | None) -> None:
    parsed = parse_text(body)
    _single_invalid(parsed)
    assert "empty" in (parsed.invalid[0].detail or "")


@pytest.mark.parametrize("body", ["[]", "null", "42", '"text"', "true"])
def test_json_that_is_not_a_payload(body: str) -> None:
    assert _single_invalid(parse_text(body)) == body


def test_raw_text_kept_when_short() -> None:
    text = '{"server_id": "nope", "key": "a"}'
    assert json.loads(_single_invalid(parse_text(text))) == json.loads(text)


def test_raw_text_truncated_over_limit() -> None:
    assert RAW_LIMIT == 8192
    text = "x" * 10_000
    raw = _single_invalid(parse_text(text))
    assert raw.startswith("x" * RAW_LIMIT)
    assert len(raw) < len(text)
    assert "truncated" in raw
    assert "x" * (RAW_LIMIT + 1) not in raw


def test_raw_of_invalid_object_truncated_over_limit() -> None:
    raw = _single_invalid(parse_payload({"server_id": "bad", "key": "k" * 20_000}))
    assert len(raw) < 20_000
    assert "truncated" in raw


def test_raw_text_exactly_at_limit_is_kept_whole() -> None:
    text = "y" * RAW_LIMIT
    assert _single_invalid(parse_text(text)) == text


def test_deep_nesting_is_invalid_not_an_error() -> None:
    value: Any = {"server_id": SERVER, "key": "a"}
    for _ in range(10):
        value = {"items": [value]}
    _single_invalid(parse_payload(value))


def test_deep_json_text_is_invalid_not_an_error() -> None:
    _single_invalid(parse_text("[" * 100_000 + "]" * 100_000))


def test_very_deep_python_value_never_raises() -> None:
    value: Any = []
    for _ in range(5_000):
        value = [value]
    parsed = parse_payload(value)
    assert parsed.items == []
    assert parsed.invalid
    assert all(r.outcome is Outcome.INVALID and r.raw is not None for r in parsed.invalid)


# --- property: nothing makes the parser raise ---------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_valid_keys = st.from_regex(r"\A[A-Za-z0-9_:. -]{1,20}\Z")
_server_ids = st.uuids().map(str) | st.text(max_size=40)
_keys = _valid_keys | st.text(max_size=30) | _json_values
_items_like = st.fixed_dictionaries(
    {"server_id": _server_ids | _json_values},
    optional={
        "key": _keys,
        "keys": st.lists(_keys, max_size=3) | _json_values,
        "project_id": st.just(PROJECT) | st.text(max_size=10) | _json_values,
        "dry_run": st.booleans() | _json_values,
        "dryrun": st.booleans(),
    },
)
_uuid_texts = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
_valid_items = st.fixed_dictionaries(
    {"server_id": _uuid_texts},
    optional={"project_id": st.just(PROJECT), "dry_run": st.booleans()},
).flatmap(
    lambda base: st.one_of(
        _valid_keys.map(lambda key: {**base, "key": key}),
        st.lists(_valid_keys, min_size=1, max_size=3).map(lambda keys: {**base, "keys": keys}),
    )
)
_payloads = st.recursive(
    _valid_items | _items_like | _json_values,
    lambda children: (
        st.lists(children, max_size=4)
        | st.fixed_dictionaries(
            {"items": st.lists(children, max_size=4)},
            optional={"dry_run": st.booleans() | _json_values},
        )
    ),
    max_leaves=12,
)


def _check(parsed: ParsedPayload) -> None:
    assert isinstance(parsed, ParsedPayload)
    for result in parsed.invalid:
        assert result.outcome is Outcome.INVALID
        assert result.raw is not None
        assert result.pair is None
    for item in parsed.items:
        assert isinstance(item, WorkItem)
        assert KEY_RE.fullmatch(item.key), item.key
        assert str(uuid.UUID(item.server_id)) == item.server_id
        assert item.project_id is None or re.fullmatch(r"[A-Za-z0-9_-]{1,64}", item.project_id)
        assert isinstance(item.dry_run, bool)


_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_payloads)
def test_parse_payload_never_raises(value: Any) -> None:
    _check(parse_payload(value))


@_settings
@given(_payloads)
def test_parse_text_of_json_never_raises(value: Any) -> None:
    _check(parse_text(json.dumps(value)))


@_settings
@given(st.text())
def test_parse_text_of_any_text_never_raises(text: str) -> None:
    _check(parse_text(text))


@_settings
@given(st.binary())
def test_parse_text_of_any_bytes_never_raises(data: bytes) -> None:
    _check(parse_text(data))


@pytest.mark.parametrize(
    "server_id",
    [
        "{6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f}",
        "urn:uuid:6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f",
        "6a4e1a2c1d4f4a479d0b1b2f3c4d5e6f",
    ],
)
def test_only_the_canonical_uuid_text_is_a_server_id(server_id: str) -> None:
    parsed = parse_payload({"server_id": server_id, "key": "a"})
    assert parsed.items == []
    assert "8-4-4-4-12" in (parsed.invalid[0].detail or "")


def test_an_empty_items_list_is_invalid_like_an_empty_array() -> None:
    for payload in ({"items": []}, []):
        parsed = parse_payload(payload)
        assert parsed.items == [] and len(parsed.invalid) == 1
