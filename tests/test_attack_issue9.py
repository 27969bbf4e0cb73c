"""Hostile probes of what issue 9 added: cleanup selectors over a hostile listing, pacing, and
the operator commands (check, cleanup, replay).

Each `xfail(strict=True)` test asserts the correct behaviour and fails today because of the
defect named in its reason; the others are attacks that held and add coverage.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import app, cli, redaction
from handler.commands.check import Target, Verdict, diagnose, run_check
from handler.commands.cleanup import table_lines
from handler.config import ConfigError, load_config
from handler.deadletter import make_record
from handler.ecs.nova import NovaApi
from handler.local import FakeContext
from handler.outcomes import Outcome, Pair, Result
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory, configure_for
from tests.sandbox._demo import PROJECT, WEB1

TOKEN = "tok-attack-" + "t" * 32
ENDPOINT = "http://ecs.attack.test"
S1 = "00000000-0000-4000-8000-000000000001"
WHEN = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
#: A Date / Retry-After whose year no datetime can hold: parsedate_to_datetime overflows.
HUGE_DATE = "Tue, 01 Dec 99999999999999999999 17:00:00 GMT"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")

Handler = Callable[[httpx.Request], httpx.Response]


def _install(handler: Handler, **env: str) -> Runtime:
    """A runtime whose every request is answered by `handler` (no network), as the function."""
    config = load_config(
        {
            "ECS_ENDPOINT": ENDPOINT,
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
            "ECS_AUTH_TOKEN": TOKEN,
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            **env,
        }
    )
    runtime = Runtime(config, transport=httpx.MockTransport(handler))
    app.set_runtime(runtime)
    return runtime


def _listing(servers: list[dict[str, Any]], deletes: list[str] | None = None) -> Handler:
    """One listing page of `servers`; every DELETE answered 204 (and its raw path kept)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if "/servers/detail" in request.url.path:
            return httpx.Response(200, json={"servers": servers})
        if deletes is not None and request.method == "DELETE":
            deletes.append(request.url.raw_path.decode())
        return httpx.Response(204)

    return handler


def _invoke(event: Any, remaining_ms: float = 5000) -> dict[str, Any]:
    response = app.handler(event, FakeContext(remaining_ms))
    assert isinstance(response, dict)
    return response


def _cleanup(**selector: Any) -> dict[str, Any]:
    return {"cleanup": {"key_patterns": ["lease-*"], **selector}}


def _record(server: str, key: str, n: int = 1) -> bytes:
    result = Result(Outcome.RETRIES_EXHAUSTED, pair=Pair(PROJECT, server, key), attempts=n)
    record = make_record(
        result, source_kind="sqs", source_id=f"m-{n}", invocation_id="inv", now=WHEN
    )
    return (json.dumps(record) + "\n").encode("ascii")


def _config(**env: str) -> Any:
    return load_config(
        {
            "ECS_ENDPOINT": "https://ecs.cn-north-4.example.test",
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
            "HUAWEICLOUD_SDK_AK": "AKATTACK000000000001",
            "HUAWEICLOUD_SDK_SK": "sk-attack-" + "s" * 30,
            **env,
        }
    )


# --- cleanup selectors over a hostile listing ----------------------------------------------


@pytest.mark.parametrize("state", [1, True, ["active"], {"x": 1}])
def test_a_listed_vm_state_that_is_not_text_does_not_crash_the_invocation(state: Any) -> None:
    deletes: list[str] = []
    server = {"id": S1, "name": "web", "OS-EXT-STS:vm_state": state, "metadata": {"lease-a": "1"}}
    _install(_listing([server], deletes))
    summary = _invoke(_cleanup(vm_states=["active"]))["summary"]
    assert "cleanup" in summary
    assert deletes == []  # its state is not "active"


def test_a_listing_nested_too_deeply_stops_the_cleanup_instead_of_crashing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/servers/detail" in request.url.path:
            return httpx.Response(200, content=b"[" * 50_000)
        return httpx.Response(204)

    _install(handler)
    summary = _invoke(_cleanup())["summary"]
    assert summary["cleanup"]["stopped"] and summary["pairs"] == 0


def test_a_retry_after_date_that_overflows_stops_the_listing_instead_of_crashing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/servers/detail" in request.url.path:
            return httpx.Response(503, headers={"Retry-After": HUGE_DATE})
        return httpx.Response(204)

    _install(handler)
    summary = _invoke(_cleanup())["summary"]
    assert summary["cleanup"]["stopped"] and summary["pairs"] == 0


@pytest.mark.parametrize(
    ("server_id", "metadata"),
    [
        (S1, {"": "x", "lease-ok": "1"}),
        (S1, {"lease-\x1b[2J\n": "x", "lease-ok": "1"}),
        (S1, {"lease-" + "k" * 300: "x", "lease-ok": "1"}),
        ("", {"lease-ok": "1"}),
    ],
    ids=["empty-key", "control-characters", "too-long", "empty-server-id"],
)
def test_only_keys_and_servers_a_payload_could_name_are_deleted(
    server_id: str, metadata: dict[str, str]
) -> None:
    deletes: list[str] = []
    _install(_listing([{"id": server_id, "name": "n", "metadata": metadata}], deletes))
    _invoke({"cleanup": {"key_patterns": ["*"]}})
    prefix = f"/v2.1/{PROJECT}/servers/{S1}/metadata/"
    assert set(deletes) <= {prefix + "lease-ok"}, deletes


def test_matching_a_page_against_heavy_globs_keeps_to_the_deadline() -> None:
    servers = [
        {
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "name": "n",
            "metadata": {f"{k:03d}" + "a" * 252: "v" for k in range(128)},  # Nova's quota
        }
        for n in range(24)
    ]
    _install(_listing(servers))
    patterns = ["*" + "?" * (200 + n) + "x" for n in range(50)]  # 50 valid globs, none match
    started = time.perf_counter()
    summary = _invoke({"cleanup": {"key_patterns": patterns}}, remaining_ms=400)["summary"]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.6, f"answered after {elapsed:.2f} s for a 0.4 s limit: {summary}"


def test_a_server_listed_twice_is_counted_once_in_every_figure() -> None:
    server = {"id": S1, "name": "n", "metadata": {"__sys": "1", "lease-a": "1", "lease-b": "1"}}
    handler = _listing([server, server, server])
    _install(handler)
    summary = _invoke(_cleanup(key_patterns=["*"], max_deletions=1))["summary"]["cleanup"]
    assert summary["capped"] is True
    assert (summary["pairs_matched"], summary["protected_skipped"]) == (2, 1), summary


def test_two_cleanups_at_once_on_one_runtime_delete_each_pair_once(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"ak": "AKCONCURRENT00000001", "sk": "sk-concurrent-" + "c" * 20},
        "servers": [
            {"id": f"00000000-0000-4000-8000-{n:012d}", "name": f"n-{n}",
             "metadata": {f"lease-{k}": "b" for k in range(4)} | {"keep": "x"}}
            for n in range(60)
        ],
    }  # fmt: skip
    sb = make_sandbox(seed=seed)
    configure_for(monkeypatch, sb, dead_letters, MAX_REQUESTS_PER_SECOND="5000")
    summaries: list[dict[str, Any]] = []

    def run() -> None:
        summaries.append(_invoke(_cleanup(), remaining_ms=20_000)["summary"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(summaries) == 2
    # Each pair deleted by exactly one of them; each run settles what its own listing saw (a
    # key the other run deleted before this one listed its server is not matched at all).
    assert sum(s["deleted"] for s in summaries) == 240, summaries
    assert all(s["deleted"] + s["absent"] == s["pairs"] <= 240 for s in summaries), summaries
    assert all(server["metadata"] == {"keep": "x"} for server in sb.state()["servers"])
    assert not dead_letters.exists()


# --- pacing ----------------------------------------------------------------------------------


def test_one_stray_429_on_an_idle_runtime_does_not_starve_the_invocation() -> None:
    sent = {"DELETE": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        sent["DELETE"] += 1
        if sent["DELETE"] == 1:
            return httpx.Response(429, json={"error_code": "APIGW.0308", "error_msg": "busy"})
        return httpx.Response(204)

    _install(handler, MAX_CONCURRENCY="4")
    items = [{"server_id": f"00000000-0000-4000-8000-{n:012d}", "key": "k"} for n in range(40)]
    summary = _invoke({"items": items}, remaining_ms=3000)["summary"]
    # The gateway throttled once and accepted everything else, instantly.
    assert summary["deleted"] == 40, summary


def test_a_ceiling_too_small_to_use_is_refused_or_held() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(204)

    try:
        _install(handler, MAX_REQUESTS_PER_SECOND="1e-310")
    except ConfigError:
        return  # refused at the cold start, naming the variable: fine
    items = [{"server_id": f"00000000-0000-4000-8000-{n:012d}", "key": "k"} for n in range(10)]
    _invoke({"items": items}, remaining_ms=600)
    assert len(sent) <= 2, f"{len(sent)} requests sent under a ceiling of 1e-310 per second"


@pytest.mark.parametrize("rate", ["0.01", "0.05"])  # the lowest ceilings allowed
def test_a_tiny_ceiling_ends_waiting_pairs_at_the_deadline_never_hangs(rate: str) -> None:
    _install(lambda request: httpx.Response(204), MAX_REQUESTS_PER_SECOND=rate)
    items = [{"server_id": f"00000000-0000-4000-8000-{n:012d}", "key": "k"} for n in range(10)]
    started = time.perf_counter()
    summary = _invoke({"items": items}, remaining_ms=800)["summary"]
    assert time.perf_counter() - started < 0.8
    assert summary["deleted"] == 2 and summary["deadline"] == 8  # BURST, then the deadline


def test_a_listing_throttled_with_retry_after_3600_stops_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/servers/detail" in request.url.path:
            return httpx.Response(429, headers={"Retry-After": "3600"}, json={"x": "busy"})
        return httpx.Response(204)

    _install(handler)
    started = time.perf_counter()
    summary = _invoke(_cleanup(), remaining_ms=3000)["summary"]
    assert time.perf_counter() - started < 1.0
    assert summary["cleanup"]["stopped"] and summary["pairs"] == 0


def test_waiters_cancelled_by_one_deadline_leave_the_pacer_usable_by_the_next() -> None:
    runtime = _install(lambda request: httpx.Response(204), MAX_REQUESTS_PER_SECOND="5")
    items = [{"server_id": f"00000000-0000-4000-8000-{n:012d}", "key": "k"} for n in range(30)]
    first = _invoke({"items": items}, remaining_ms=600)["summary"]
    assert first["deadline"] > 0
    assert not runtime.client.pacer._waiting  # every cancelled waiter let go of its cost
    started = time.perf_counter()
    second = _invoke({"items": items[:1]}, remaining_ms=5000)["summary"]
    assert second["deleted"] == 1 and time.perf_counter() - started < 0.5


# --- check ------------------------------------------------------------------------------------


def test_check_of_a_deeply_nested_listing_is_one_line() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"[" * 50_000))
    diagnosis = run_check(_config(), transport=transport)
    assert diagnosis.verdict is Verdict.API and "\n" not in diagnosis.line


def test_check_with_a_date_header_that_overflows_is_one_line() -> None:
    body = json.dumps({"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"})
    response = httpx.Response(401, content=body.encode(), headers={"Date": HUGE_DATE})
    diagnosis = run_check(_config(), transport=httpx.MockTransport(lambda request: response))
    assert diagnosis.verdict is Verdict.CREDENTIALS


def test_a_signature_failure_echoing_the_signed_headers_is_not_a_project_mismatch() -> None:
    body = {
        "error_code": "APIGW.0301",
        "error_msg": "Incorrect IAM authentication information: verify aksk signature fail, "
        "SignedHeaders: host;x-project-id;x-sdk-date",
    }
    target = Target("https://ecs.test", PROJECT, NovaApi(), "AK/SK")
    diagnosis = diagnose(401, {}, json.dumps(body).encode(), None, target=target, now=WHEN)
    assert diagnosis.verdict is Verdict.CREDENTIALS, diagnosis.line


def test_check_never_prints_a_secret_a_gateway_echoes_back() -> None:
    token, security = "MIITtok+/=" + "Q" * 40, "st-" + "w" * 60
    configs = [
        (_config(ECS_AUTH_TOKEN=token), [token]),
        (_config(HUAWEICLOUD_SDK_SECURITY_TOKEN=security), [security, "AKATTACK000000000001"]),
    ]
    for config, secrets in configs:
        for status in (400, 401, 403, 404, 429, 500):

            def echo(request: httpx.Request, status: int = status) -> httpx.Response:
                # The secrets first, so no cut of the body can hide them from the line.
                headers = dict(sorted(request.headers.items(), key=lambda kv: "auth" not in kv[0]))
                text = " ".join(f"{k}={v}" for k, v in headers.items())
                return httpx.Response(status, json={"error_msg": text, "error_code": "X"})

            line = run_check(config, transport=httpx.MockTransport(echo)).line
            for secret in secrets:
                assert secret not in line and secret[:16] not in line, (status, line)


def test_a_non_ascii_password_echoed_as_ascii_json_is_redacted() -> None:
    password = "pässwörd-Geheim!"
    redactor = redaction.Redactor([password])
    # What a Keystone answering 400/401 with the request body in its message shows: the
    # request's JSON (json.dumps, ensure_ascii) holds the password as \u escapes.
    echoed = json.dumps({"auth": {"identity": {"password": {"user": {"password": password}}}}})
    shown = redactor.text(f"Keystone answered HTTP 401: {echoed}")
    # Nothing of the password, raw or \u-escaped (the JSON key "password" itself may stay).
    assert "Geheim" not in shown and "p\\u00e4ssw" not in shown, shown
    assert "***" in shown


def test_operator_output_carries_no_control_characters() -> None:
    body = {"computeFault": {"message": "boom \x1b]0;pwned\x07\x1b[2J", "code": 500}}
    target = Target("https://ecs.test", PROJECT, NovaApi(), "token")
    line = diagnose(500, {}, json.dumps(body).encode(), None, target=target, now=WHEN).line
    result = Result(
        Outcome.REJECTED, pair=Pair(PROJECT, S1, "k\x1b[2J"), detail="no \x1b[31mred", status=400
    )
    for text in [line, *table_lines([result])]:
        assert not _CONTROL.search(text), repr(text)


def test_ctrl_c_during_check_is_one_line(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    real = concurrent.futures.Future.result
    pressed: list[bool] = []

    def result(self: Any, timeout: float | None = None) -> Any:
        if not pressed:  # the first wait is check's wait for its one call: Ctrl-C there
            pressed.append(True)
            raise KeyboardInterrupt
        return real(self, timeout)

    monkeypatch.setattr(concurrent.futures.Future, "result", result)
    try:
        code = cli.main(["check"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped `check`: a traceback on the terminal")
    err = capsys.readouterr().err
    assert code == 130 and len(err.strip().splitlines()) == 1, err


# --- replay -----------------------------------------------------------------------------------


def test_replay_of_a_fifo_refuses_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "dead-letters.jsonl"
    os.mkfifo(fifo)
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(
            cli.main(["replay", str(fifo), "--dry-run", "--sandbox", "--progress", "none"])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=2)
    hung = worker.is_alive()
    if hung:  # let the blocked open() go, so the thread ends
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=5)
    assert not hung, "replay blocked opening a FIFO"
    assert codes == [2]


def test_replay_through_a_symlink_rewrites_the_file_it_points_to(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "store" / "dead-letters.jsonl"
    real.parent.mkdir()
    real.write_bytes(_record(WEB1, "gone-1") + _record(WEB1, "gone-2"))
    link = tmp_path / "current.jsonl"
    link.symlink_to(real)
    configure_for(monkeypatch, sandbox, real)
    assert cli.main(["replay", str(link), "--progress", "none"]) == 0
    assert link.is_symlink(), "the symlink was replaced by a regular file"
    assert real.read_bytes() == b"", "the records settled are still in the real file"


def test_a_dead_letter_appended_while_the_rewrite_is_synced_is_kept(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letters.write_bytes(_record(WEB1, "gone-1") + _record(WEB1, "gone-2"))
    configure_for(monkeypatch, sandbox, dead_letters)
    newcomer = _record(WEB1, "lease-owner", n=99)
    original = dead_letters.stat().st_ino
    real_fsync = os.fsync
    appended: list[bool] = []

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        if stat.S_ISREG(status.st_mode) and status.st_ino != original and not appended:
            # The function's file sink appends its line (O_APPEND) while replay syncs its copy.
            appended.append(True)
            with dead_letters.open("ab") as handle:
                handle.write(newcomer)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    cli.main(["replay", str(dead_letters), "--progress", "none"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert appended, "the probe never ran: rewrite no longer fsyncs its temporary file"
    assert newcomer in dead_letters.read_bytes(), "a dead letter written during replay was lost"


def test_replay_keeps_the_files_owner(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file another owner")
    dead_letters.write_bytes(_record(WEB1, "gone-1") + _record(WEB1, "lease-owner"))
    os.chown(dead_letters, 1234, 2345)
    dead_letters.chmod(0o600)
    configure_for(monkeypatch, sandbox, dead_letters)
    cli.main(["replay", str(dead_letters), "--progress", "none"])
    status = dead_letters.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (1234, 2345, 0o600)


def test_replay_never_prints_what_a_record_holds_beyond_its_pair(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "sk-in-a-record-" + "z" * 30
    record = json.loads(_record(WEB1, "gone-1"))
    record["detail"] = f"Authorization: {secret}"
    record["raw"] = secret
    unreadable = f"not a record {secret}\n".encode()
    dead_letters.write_bytes(json.dumps(record).encode() + b"\n" + unreadable)
    configure_for(monkeypatch, sandbox, dead_letters)
    cli.main(["replay", str(dead_letters), "--progress", "lines"])
    out, err = capsys.readouterr()
    assert secret not in out + err and secret[:16] not in out + err
    assert dead_letters.read_bytes() == unreadable  # the settled record went, the line stayed
