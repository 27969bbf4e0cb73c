"""Issue 7 §6: configuration and process hygiene — one clear CLI line, bodies kept as they came,
log lines no reader can split, skipped FIFO pairs logged, any-case log levels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import handler
from handler import app
from handler.config import ConfigError
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for, metadata_of
from tests.sandbox._demo import DB1, WEB1, WEB2

LINE_BREAKS = ("\u2028", "\u2029", "\u0085")
INVALID_ITEM = {"server_id": "not-a-uuid", "key": "k"}


def log_lines(out: str) -> list[dict[str, Any]]:
    """Each log line as JSON; lines are split on "\\n" only, as a line-oriented reader would."""
    return [json.loads(line) for line in out.split("\n") if line.strip()]


def test_cli_without_credentials_prints_one_error_line_and_no_traceback(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"server_id": WEB1, "key": "lease-owner"}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(handler.__file__).resolve().parent.parent),
        "ECS_ENDPOINT": "http://127.0.0.1:9",
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
    }
    done = subprocess.run(
        [sys.executable, "-m", "handler", "invoke", str(event), "--no-sandbox"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    plain = []
    for line in done.stderr.splitlines():
        try:
            json.loads(line)  # the function's own log lines go to stderr too
        except ValueError:
            plain.append(line)
    assert len(plain) == 1, plain
    assert plain[0].startswith("error: ") and "credentials" in plain[0]


def test_a_non_string_sqs_body_is_dead_lettered_with_what_came(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    event = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "object-body",
                "body": {"server_id": DB1, "key": "lease-owner"},
            }
        ]
    }

    assert app.handler(event, None) == {"batchItemFailures": []}

    (letter,) = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "invalid"
    assert letter["source"]["id"] == "object-body"
    assert letter["raw"] != ""
    assert DB1 in letter["raw"] and "lease-owner" in letter["raw"]
    assert letter["detail"] != "the body is empty"
    assert "lease-owner" in metadata_of(sandbox, DB1)  # not a payload: nothing deleted


def test_log_lines_escape_unicode_line_separators(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, DEAD_LETTER_URL="log")
    odd = "a\u2028b\u2029c\u0085d"
    event = {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "messageId": "odd",
                "body": json.dumps({"server_id": odd, "key": "k"}, ensure_ascii=False),
            }
        ]
    }

    assert app.handler(event, None) == {"batchItemFailures": []}
    out = capsys.readouterr().out

    for char in LINE_BREAKS:
        assert char not in out, f"raw U+{ord(char):04X} in a log line"
    lines = log_lines(out)
    (letter,) = [line["dead_letter"] for line in lines if line.get("message") == "dead letter"]
    assert odd in letter["raw"]  # escaped on the line, the same text once read back


def test_pairs_of_skipped_fifo_messages_each_get_a_log_line(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    arn = "arn:aws:sqs:eu-west-1:000000000000:janitor.fifo"

    def record(mid: str, body: Any) -> dict[str, Any]:
        return {
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "messageId": mid,
            "body": json.dumps(body),
            "attributes": {"MessageGroupId": "g", "SequenceNumber": mid[-1]},
        }

    event = {
        "Records": [
            record("fifo-1", {"server_id": WEB2, "key": "lease-owner"}),  # locked: goes back
            record("fifo-2", {"server_id": DB1, "keys": ["lease-owner", "lease-expires"]}),
        ]
    }

    response = app.handler(event, None)
    out = capsys.readouterr().out

    assert response == {
        "batchItemFailures": [{"itemIdentifier": "fifo-1"}, {"itemIdentifier": "fifo-2"}]
    }
    assert {"lease-owner", "lease-expires"} <= set(metadata_of(sandbox, DB1))
    skipped = [
        line
        for line in log_lines(out)
        if line.get("source_id") == "fifo-2" and line.get("message") == "pair returned to the queue"
    ]
    assert sorted((line["server_id"], line["key"]) for line in skipped) == [
        (DB1, "lease-expires"),
        (DB1, "lease-owner"),
    ]
    assert all(line["level"] == "WARNING" for line in skipped)


@pytest.mark.parametrize("level", ["warn", "WARN", "Fatal"])
def test_warn_and_fatal_log_levels_work_end_to_end(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    level: str,
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, POWERTOOLS_LOG_LEVEL=level)

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    out = capsys.readouterr().out

    assert [r["outcome"] for r in response["results"]] == ["deleted"]
    lines = log_lines(out)
    assert not any(line["level"] in ("DEBUG", "INFO") for line in lines)


@pytest.mark.parametrize("level", ["info", "warn"])
def test_a_bad_variable_beside_a_lowercase_level_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], level: str
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "hygiene-test-token")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", level)
    monkeypatch.setenv("MAX_CONCURRENCY", "0")

    with pytest.raises(ConfigError) as raised:
        app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    out = capsys.readouterr().out

    message = str(raised.value)
    assert "\n" not in message
    assert "MAX_CONCURRENCY" in message and "POWERTOOLS_LOG_LEVEL" not in message
    assert any(line.get("message") == "cold start failed" for line in log_lines(out))


def test_blank_variables_count_as_unset_end_to_end(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    for name in (
        "DEAD_LETTER_URL",
        "MAX_CONCURRENCY",
        "MAX_ATTEMPTS",
        "REQUEST_TIMEOUT_S",
        "DRY_RUN",
        "POWERTOOLS_LOG_LEVEL",
        "POWERTOOLS_SERVICE_NAME",
    ):
        monkeypatch.setenv(name, "")

    response = app.handler([{"server_id": WEB1, "key": "lease-owner"}, INVALID_ITEM], None)
    lines = log_lines(capsys.readouterr().out)

    assert sorted(r["outcome"] for r in response["results"]) == ["deleted", "invalid"]
    assert "lease-owner" not in metadata_of(sandbox, WEB1)  # DRY_RUN= is not a dry run
    assert {line["service"] for line in lines} == {"ecs-metadata-janitor"}
    # DEAD_LETTER_URL= is the default sink, the log, whatever the log level.
    assert [line["dead_letter"]["reason"] for line in lines if "dead_letter" in line] == ["invalid"]
    assert not dead_letters.exists()


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:99999", "http://ho st", "http://127.0.0.1:0"]
)
def test_an_endpoint_with_a_bad_port_or_host_fails_the_cold_start(
    monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", endpoint)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", "hygiene-test-token")

    with pytest.raises(ConfigError) as raised:
        app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    assert "ECS_ENDPOINT" in str(raised.value)
    assert "\n" not in str(raised.value)


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("NETRC", raising=False)


@pytest.mark.usefixtures("no_proxy_settings")
def test_all_proxy_carries_the_requests(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward proxy on 127.0.0.1 that answers every DELETE itself (204)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        # The endpoint itself does not exist: only the proxy can answer.
        monkeypatch.setenv("ECS_ENDPOINT", "http://ecs.invalid:8774")
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
        monkeypatch.setenv("ECS_AUTH_TOKEN", "hygiene-test-token")
        monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
        monkeypatch.setenv("MAX_ATTEMPTS", "1")
        monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)

    assert [r["outcome"] for r in response["results"]] == ["deleted"]
    assert seen == [
        f"http://ecs.invalid:8774/v2.1/{DEMO_PROJECT}/servers/{WEB1}/metadata/lease-owner"
    ]


@pytest.mark.usefixtures("no_proxy_settings")
def test_netrc_is_never_read_even_with_a_proxy_set(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # set, but not for http:// URLs
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="1")

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)

    assert [r["outcome"] for r in response["results"]] == ["deleted"]
    authorizations = [r["auth"] for r in sandbox.requests() if r["method"] == "DELETE"]
    assert len(authorizations) == 1 and authorizations[0] is not None
