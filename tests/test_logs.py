"""Powertools-compatible JSON log lines, and redaction of secrets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog import get_logger

from handler import logs, redaction
from handler.logs import POWERTOOLS_ORDER, configure
from handler.redaction import REDACTED

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0000$")
SECRET = "S3cr3t-Value-That-Must-Not-Leak"


@pytest.fixture(autouse=True)
def _configured() -> Iterator[None]:
    redaction.reset()
    logs.set_stream(None)
    configure("svc", "INFO")
    yield
    redaction.reset()
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert out.endswith("\n")
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


def test_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("t")
    log.info("first", n=1)
    log.warning("second", n=2)
    lines = _lines(capsys)
    assert [line["message"] for line in lines] == ["first", "second"]
    assert [line["level"] for line in lines] == ["INFO", "WARNING"]


def test_powertools_key_order(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.contextvars.bind_contextvars(
        correlation_id="msg-1",
        function_request_id="req-1",
        function_name="janitor",
        cold_start=True,
    )
    get_logger("t").info("pair settled", outcome="deleted", zeta=1, alpha=2)
    [line] = _lines(capsys)
    keys = list(line)
    assert keys[:5] == ["level", "location", "message", "timestamp", "service"]
    assert keys == [
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_request_id",
        "correlation_id",
        "outcome",
        "zeta",
        "alpha",
    ]
    # Every Powertools key present is in Powertools order.
    known = [k for k in keys if k in POWERTOOLS_ORDER]
    assert known == sorted(known, key=POWERTOOLS_ORDER.index)
    assert line["level"] == "INFO"
    assert line["message"] == "pair settled"
    assert line["service"] == "svc"
    assert line["cold_start"] is True
    assert TIMESTAMP.match(line["timestamp"]), line["timestamp"]
    assert "event" not in line


def test_location_is_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("t").info("here")
    [line] = _lines(capsys)
    function, _, lineno = line["location"].partition(":")
    assert function == "test_location_is_the_caller"
    assert lineno.isdigit()


def test_none_values_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("t").info("x", function_arn=None, extra=None, kept=0)
    [line] = _lines(capsys)
    assert "function_arn" not in line
    assert "extra" not in line
    assert line["kept"] == 0


def test_debug_filtered_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("t")
    log.debug("hidden")
    log.info("shown")
    log.error("also shown")
    lines = _lines(capsys)
    assert [line["message"] for line in lines] == ["shown", "also shown"]


def test_debug_shown_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure("svc", "DEBUG")
    get_logger("t").debug("visible")
    [line] = _lines(capsys)
    assert line["level"] == "DEBUG"
    assert line["message"] == "visible"


def test_registered_secret_redacted_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.set_process_secrets([SECRET])
    get_logger("t").info(
        f"message with {SECRET} inside",
        plain=SECRET,
        longer=f"prefix-{SECRET}-suffix",
        nested={"deeper": {"value": SECRET, "items": [SECRET, f"x{SECRET}x", 3]}},
        listed=[SECRET, {"inner": SECRET}],
        tupled=(SECRET,),
    )
    out = capsys.readouterr().out
    assert SECRET not in out
    [line] = [json.loads(x) for x in out.splitlines()]
    assert line["message"] == f"message with {REDACTED} inside"
    assert line["plain"] == REDACTED
    assert line["longer"] == f"prefix-{REDACTED}-suffix"
    assert line["nested"] == {"deeper": {"value": REDACTED, "items": [REDACTED, "x***x", 3]}}
    assert line["listed"] == [REDACTED, {"inner": REDACTED}]
    assert line["tupled"] == [REDACTED]


def test_secret_in_bound_context_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.set_process_secrets([SECRET])
    structlog.contextvars.bind_contextvars(correlation_id=f"id-{SECRET}")
    get_logger("t").info("x")
    out = capsys.readouterr().out
    assert SECRET not in out


def test_secret_in_exception_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.set_process_secrets([SECRET])
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        get_logger("t").exception("boom")
    out = capsys.readouterr().out
    assert SECRET not in out
    [line] = [json.loads(x) for x in out.splitlines()]
    assert "RuntimeError" in line["exception"]


def test_secret_object_values_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.set_process_secrets([SECRET])

    class Leaky:
        def __str__(self) -> str:
            return f"Leaky({SECRET})"

    get_logger("t").info("x", obj=Leaky())
    assert SECRET not in capsys.readouterr().out


@pytest.mark.parametrize(
    "field", ["sk", "token", "security_token", "authorization", "Authorization", "x-auth-token"]
)
def test_secret_named_fields_redacted(capsys: pytest.CaptureFixture[str], field: str) -> None:
    get_logger("t").info("x", **{field: "unregistered-value", "nested": {field: "v2-value"}})
    [line] = _lines(capsys)
    assert line[field] == REDACTED
    assert line["nested"] == {field: REDACTED}


def test_secret_named_fields_redacted_inside_lists(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("t").info("x", creds=[{"ak": "AKID", "sk": "SKVALUE", "region": "r"}])
    [line] = _lines(capsys)
    assert line["creds"] == [{"ak": REDACTED, "sk": REDACTED, "region": "r"}]


def test_ordinary_fields_not_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("t").info("x", key="lease-owner", token_count=3, server_id="s-1")
    [line] = _lines(capsys)
    assert line["key"] == "lease-owner"
    assert line["token_count"] == 3
    assert line["server_id"] == "s-1"


def test_short_secrets_ignored_and_clear_forgets() -> None:
    redaction.set_process_secrets(["abc", None, "", "abcd"])
    assert redaction.current().text("xabcx abcd") == f"xabcx {REDACTED}"
    redaction.reset()
    assert redaction.current().text("abcd") == "abcd"


def test_longer_secret_replaced_first() -> None:
    redaction.set_process_secrets(["secret", "secret-extended"])
    assert redaction.current().text("a secret-extended b") == f"a {REDACTED} b"


def test_set_stream(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    stream = io.StringIO()
    logs.set_stream(stream)
    try:
        get_logger("t").info("to the stream")
    finally:
        logs.set_stream(None)
    assert capsys.readouterr().out == ""
    assert json.loads(stream.getvalue())["message"] == "to the stream"


def test_an_invocations_secrets_add_to_the_process_ones_only_where_it_runs() -> None:
    redaction.reset()
    base = redaction.set_process_secrets(["static-secret-1"])
    text = "static-secret-1 rotating-old-1 rotating-new-2"
    with redaction.use(base.with_secrets(["rotating-new-2"])):
        assert redaction.current().text(text) == "*** rotating-old-1 ***"
    assert redaction.current().text(text) == "*** rotating-old-1 rotating-new-2"
    redaction.reset()


def test_a_huge_text_is_cut_without_a_whole_scan_and_nothing_kept_escapes() -> None:
    secret = "S3CR3T-" + "x" * 40
    redactor = redaction.Redactor([secret])
    text = "a" * 500 + secret + "b" * 10_000_000
    out = redactor.cut(text, 512)
    assert secret[:16] not in out and "x" * 16 not in out
    assert out.startswith("a" * 500 + "***")
    assert out.endswith(f"…[truncated {len(text) - 512 - len(secret) + 3} chars]")
    # A secret straddling the cut is found whole, then cut.
    straddling = "a" * 505 + secret + "b" * 100
    assert "S3CR3T" not in redactor.cut(straddling, 512)
    assert redactor.cut("short", 512) == "short"
