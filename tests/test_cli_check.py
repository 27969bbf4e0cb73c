"""`ecs-metadata-janitor check` (issue 9 §4): one read-only call, one line, one exit status."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from handler import cli
from handler.commands import check
from handler.commands.check import Target, Verdict, diagnose, run_check
from handler.config import load_config
from handler.ecs import signing
from handler.ecs.nova import NovaApi
from tests.conftest import DEMO_PROJECT, SandboxFactory, configure_for
from tests.sandbox._demo import AK, SK

ENDPOINT = "https://ecs.cn-north-4.example.test"
SECRET_SK = "s3cr3t-sk-" + "x" * 30
TOKEN = "MIIT-token-" + "y" * 40
NOW = dt.datetime(2026, 11, 27, 10, 0, 0, tzinfo=dt.UTC)
TARGET = Target(endpoint=ENDPOINT, project_id=DEMO_PROJECT, api=NovaApi(), auth="AK/SK")


def _date(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


def _gateway(code: str, message: str) -> bytes:
    return json.dumps({"error_msg": message, "error_code": code, "request_id": "abc"}).encode()


def _config(**env: str) -> Any:
    values = {"ECS_ENDPOINT": ENDPOINT, "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT, **env}
    if "ECS_AUTH_TOKEN" not in env:
        values.setdefault("HUAWEICLOUD_SDK_AK", "AKEXAMPLE0000000")
        values.setdefault("HUAWEICLOUD_SDK_SK", SECRET_SK)
    return load_config(values)


def _check_with(response: httpx.Response, **env: str) -> check.Diagnosis:
    """run_check with the listing answered by `response` (respx), no network."""
    router = respx.Router(assert_all_called=False)
    router.get(url__regex=r"/servers/detail").mock(return_value=response)
    return run_check(_config(**env), transport=httpx.MockTransport(router.handler))


# --- end to end against the sandbox -------------------------------------------------------


def test_check_ok_against_the_sandbox(
    sandbox: Any,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    assert cli.main(["check"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    [line] = out.splitlines()
    assert line.startswith(f"ok: {sandbox.url} project {DEMO_PROJECT}, nova API, AK/SK accepted")
    assert "1 server(s) visible on the first page" in line
    # One read-only call: the first page of the listing, limit 1, and nothing else.
    requests = sandbox.requests()
    assert [(r["method"], r["query"]) for r in requests] == [("GET", "limit=1")]
    assert requests[0]["path"] == f"/v2.1/{DEMO_PROJECT}/servers/detail"


def test_check_sandbox_flag_needs_no_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--sandbox"]) == 0
    assert capsys.readouterr().out.startswith("ok: http://127.0.0.1:")


def test_check_native_api_and_an_empty_project(
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = make_sandbox()
    configure_for(
        monkeypatch, sb, dead_letters, ECS_API="native", HUAWEICLOUD_SDK_PROJECT_ID="f" * 32
    )
    assert cli.main(["check"]) == 0
    line = capsys.readouterr().out
    assert ", native API, " in line and "no server in this project" in line
    assert [r["path"] for r in sb.requests()] == [f"/v1/{'f' * 32}/cloudservers/detail"]


def test_check_without_configuration_exits_2_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["config invalid: HUAWEICLOUD_SDK_PROJECT_ID: is required"]


def test_check_without_credentials_is_a_config_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    assert cli.main(["check"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("config invalid: no credentials: set HUAWEICLOUD_SDK_AK")


def test_check_of_a_closed_port_says_the_endpoint_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ECS_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SK)
    assert cli.main(["check"]) == Verdict.UNREACHABLE == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"endpoint unreachable: 127.0.0.1:{port}: connection refused")


def test_check_of_a_silent_endpoint_says_no_answer_within_the_timeout(
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = make_sandbox(latency_ms=3000)
    configure_for(monkeypatch, sb, dead_letters, REQUEST_TIMEOUT_S="0.3")
    assert cli.main(["check"]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"endpoint unreachable: {sb.url.removeprefix('http://')}: ")
    assert "no answer within 0.3 s" in line


def test_check_with_a_wrong_sk_says_signature_rejected_and_never_prints_it(
    sandbox: Any,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, HUAWEICLOUD_SDK_SK=SECRET_SK)
    assert cli.main(["check"]) == Verdict.CREDENTIALS == 4
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith("signature rejected: HTTP 401 (APIGW.0301: Incorrect IAM")
    assert "HUAWEICLOUD_SDK_SK" in line
    assert SECRET_SK not in out + err and SECRET_SK[:16] not in out + err


def test_check_with_a_wrong_token_says_token_rejected(
    sandbox: Any,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    monkeypatch.delenv("HUAWEICLOUD_SDK_AK")
    monkeypatch.delenv("HUAWEICLOUD_SDK_SK")
    monkeypatch.setenv("ECS_AUTH_TOKEN", TOKEN)
    assert cli.main(["check"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("token rejected: HTTP 401") and "ECS_AUTH_TOKEN" in err
    assert TOKEN not in err


def test_check_with_a_clock_20_minutes_fast_says_clock_skew(
    sandbox: Any,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # This machine's clock is 20 minutes fast: it signs with that time, and reads it.
    fast = dt.timedelta(minutes=20)
    real_sign = signing.sign_request
    monkeypatch.setattr(
        signing, "sign_request", lambda request, creds, now: real_sign(request, creds, now + fast)
    )
    monkeypatch.setattr(check, "_wall_clock", lambda: dt.datetime.now(dt.UTC) + fast)
    configure_for(monkeypatch, sandbox, dead_letters)
    assert cli.main(["check"]) == Verdict.CLOCK_SKEW == 7
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("clock skew: this machine's clock is 20 min")
    assert "ahead of the gateway's" in line and "15 min" in line


# --- each answer, through run_check with respx ----------------------------------------------


def test_an_expired_token_says_token_expired() -> None:
    body = _gateway(
        "APIGW.0301",
        "Incorrect IAM authentication information: token expires, expires_at: 2026-11-26",
    )
    found = _check_with(httpx.Response(401, content=body), ECS_AUTH_TOKEN=TOKEN)
    assert found.verdict is Verdict.TOKEN_EXPIRED and found.exit_code == 5
    assert found.line.startswith("token expired: HTTP 401 (APIGW.0301: Incorrect IAM")
    assert "take a new ECS_AUTH_TOKEN" in found.line and TOKEN not in found.line


def test_a_token_to_update_is_expired_too() -> None:
    body = _gateway("APIGW.0307", "The token must be updated.")
    found = _check_with(httpx.Response(401, content=body), ECS_AUTH_TOKEN=TOKEN)
    assert found.verdict is Verdict.TOKEN_EXPIRED


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            {
                "badRequest": {
                    "code": 400,
                    "message": "Malformed request URL: URL's project_id "
                    "'0123456789abcdef0123456789abcdef' doesn't match Context's project_id "
                    "'ffffffffffffffffffffffffffffffff'",
                }
            },
        ),
        (403, {"error": {"code": "Ecs.0001", "message": "The project ID does not match."}}),
        (404, {"itemNotFound": {"code": 404, "message": "The resource could not be found."}}),
    ],
)
def test_a_project_mismatch_is_named(status: int, body: dict[str, Any]) -> None:
    found = _check_with(httpx.Response(status, json=body))
    assert found.verdict is Verdict.PROJECT and found.exit_code == 6
    assert found.line.startswith("project mismatch: ") and DEMO_PROJECT in found.line


def test_a_signature_rejected_with_a_date_far_off_is_clock_skew() -> None:
    # The gateway's clock (its Date header) is 40 minutes behind this machine's.
    late = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=40)
    body = _gateway("APIGW.0301", "Incorrect IAM authentication information: verify aksk fail")
    response = httpx.Response(401, content=body, headers={"Date": _date(late)})
    found = _check_with(response)
    assert found.verdict is Verdict.CLOCK_SKEW and found.exit_code == 7
    assert "clock is 40 min" in found.line and "ahead of" in found.line


def test_a_signature_expired_body_is_clock_skew_without_a_date() -> None:
    body = _gateway(
        "APIGW.0303",
        "Incorrect app authentication information: signature expired, signature "
        "time:20230527T000431Z,server time:20230527T020608Z",
    )
    found = _check_with(httpx.Response(401, content=body))
    assert found.verdict is Verdict.CLOCK_SKEW


def test_a_token_is_not_blamed_on_the_clock() -> None:
    # Tokens do not depend on this machine's clock: a far Date does not make it "skew".
    late = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    body = _gateway("APIGW.0301", "Incorrect IAM authentication information: decrypt token fail")
    response = httpx.Response(401, content=body, headers={"Date": _date(late)})
    found = _check_with(response, ECS_AUTH_TOKEN=TOKEN)
    assert found.verdict is Verdict.CREDENTIALS
    assert found.line.startswith("token rejected: HTTP 401 (APIGW.0301:")


def test_a_skewed_clock_with_a_working_token_is_ok_with_a_warning() -> None:
    late = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    response = httpx.Response(200, json={"servers": []}, headers={"Date": _date(late)})
    found = _check_with(response, ECS_AUTH_TOKEN=TOKEN)
    assert found.verdict is Verdict.OK
    assert found.line.startswith(f"ok: {ENDPOINT} project {DEMO_PROJECT}, nova API, token")
    assert "warning: this machine's clock is 30 min" in found.line


def test_a_403_without_a_signature_problem_is_permission_denied() -> None:
    body = _gateway("APIGW.0302", "The IAM user is not authorized to access the API.")
    found = _check_with(httpx.Response(403, content=body))
    assert found.verdict is Verdict.FORBIDDEN and found.exit_code == 8
    assert found.line.startswith("permission denied: HTTP 403 (APIGW.0302:")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(503, json={"serviceUnavailable": {"message": "down"}}), "HTTP 503"),
        (httpx.Response(429, content=_gateway("APIGW.0308", "throttled")), "throttled"),
        (httpx.Response(200, text="<html>a login page</html>"), "no server listing"),
        (
            httpx.Response(404, content=_gateway("APIGW.0101", "The API does not exist")),
            "does not serve this API",
        ),
    ],
)
def test_other_answers_are_unexpected(response: httpx.Response, expected: str) -> None:
    found = _check_with(response)
    assert found.verdict is Verdict.API and found.exit_code == 9
    assert found.line.startswith("unexpected answer") and expected in found.line


def test_the_request_id_is_named_for_support() -> None:
    response = httpx.Response(
        403, content=_gateway("APIGW.0302", "denied"), headers={"X-Request-Id": "req-42"}
    )
    assert "[request req-42]" in _check_with(response).line


# --- diagnose() alone ---------------------------------------------------------------------


def test_a_name_that_does_not_resolve_is_dns() -> None:
    error = httpx.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    found = diagnose(None, {}, b"", error, target=TARGET, now=NOW)
    assert found.verdict is Verdict.UNREACHABLE
    assert found.line.startswith(
        "endpoint unreachable: ecs.cn-north-4.example.test: its host name does not resolve (DNS)"
    )


def test_a_connect_timeout_says_so() -> None:
    found = diagnose(None, {}, b"", httpx.ConnectTimeout("timed out"), target=TARGET, now=NOW)
    assert found.verdict is Verdict.UNREACHABLE and "no connection within 10 s" in found.line


def test_an_answer_from_another_host_says_which() -> None:
    found = diagnose(
        401,
        {},
        _gateway("APIGW.0301", "verify aksk signature fail"),
        None,
        target=TARGET,
        now=NOW,
        url="https://iam.cn-north-4.example.test/v3/auth/tokens",
    )
    assert found.line.startswith(
        "signature rejected (answered by iam.cn-north-4.example.test): HTTP 401"
    )


def test_the_line_is_one_line_and_redacted() -> None:
    from handler import redaction

    redaction.set_process_secrets([SECRET_SK])
    body = json.dumps({"error_msg": f"bad\nsignature for {SECRET_SK}", "error_code": "X"})
    found = diagnose(401, {}, body.encode(), None, target=TARGET, now=NOW)
    assert "\n" not in found.line and SECRET_SK not in found.line and "***" in found.line


def test_skew_is_read_from_the_date_header() -> None:
    headers = {"date": _date(NOW - dt.timedelta(minutes=16))}
    assert check.clock_skew_s(headers, NOW) == 16 * 60
    assert check.clock_skew_s({"Date": "not a date"}, NOW) is None
    assert check.clock_skew_s({}, NOW) is None
    within = {"Date": _date(NOW + dt.timedelta(minutes=14))}
    body = _gateway("APIGW.0301", "Incorrect IAM authentication information: verify aksk fail")
    found = diagnose(401, within, body, None, target=TARGET, now=NOW)
    assert found.verdict is Verdict.CREDENTIALS  # 14 minutes is within the gateway's window
