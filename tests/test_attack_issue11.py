"""Hostile review of issue 11 §4: the container entry (handler/asgi.py, `serve`, Runtime.submit).

Nine tests here each showed a defect the review found (they failed before its fix: a body that
never ends, SIGTERM during a body or at start, --port wrapping, a second Ctrl-C, a lost
Retry-After, a runtime built after shutdown, Cookie in logged events, /healthz after close);
the others pin behaviour that held under attack. Real servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from base64 import b64decode, b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler import app as entry
from handler import cli
from handler.asgi import App
from handler.config import load_config
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, SandboxFactory, configure_for, lines_of, metadata_of
from tests.sandbox._demo import DB1, SK, WEB1
from tests.sources.test_webhook import RAW_SECRET, SECRET, sign
from tests.test_asgi import WEBHOOK_BODY, client_for
from tests.test_cli_serve import ROOT, SERVING, Served, start

pytestmark = pytest.mark.anyio

#: An IAM token as ECS_AUTH_TOKEN (long, so any 16-character run of it is redacted too).
TOKEN = "MIIEcwYJKoZIhvcNAQcCoIIEZDCCBGACAQExDTALBglghkgBZQMEAgEwggLBBgkqhkiG9w0BBwGgggKy"
#: Credentials a gateway in front passes on in headers the function never needs.
GATEWAY_AUTH = "Bearer gateway-bearer-0123456789abcdef"
API_KEY = "apikey-secret-0123456789abcdef"
COOKIE = "session=cookie-secret-0123456789abcdef"


def deletes(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if r["method"] == "DELETE"]


class Conn:
    """One hand-driven ASGI http connection: the test feeds the body, reads what is sent."""

    def __init__(self, headers: dict[str, str], path: str = "/") -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))

    def chunk(self, data: bytes, *, more: bool) -> None:
        self.inbox.put_nowait({"type": "http.request", "body": data, "more_body": more})

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None


def signed_raw_request(body: bytes, msg_id: str = "msg_raw") -> bytes:
    """A signed POST / as raw HTTP/1.1 bytes: its head, the body left for the caller to send."""
    head = f"POST / HTTP/1.1\r\nHost: janitor\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in sign(body, msg_id=msg_id).items())
    return (head + "\r\n").encode()


def address(served: Served) -> tuple[str, int]:
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def recv_all(conn: socket.socket, timeout_s: float) -> bytes | None:
    """What the server sends until it closes (None when nothing came within the timeout)."""
    conn.settimeout(timeout_s)
    out = b""
    try:
        while chunk := conn.recv(65536):
            out += chunk
    except TimeoutError:
        return out or None
    return out


def exited(served: Served, timeout_s: float) -> None:
    """Wait for the process to end by itself (`stop` then signals it only if it did not)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        served.process.wait(timeout=timeout_s)


def wait_for(check: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class Blackhole:
    """An http:// server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/dead-letters"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.held:
            conn.close()
        self.server.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def echoing_ecs() -> Iterator[str]:
    """An ECS endpoint on 127.0.0.1 answering 400 with every request header in its message."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def _echo(self) -> None:
            message = json.dumps(dict(self.headers.items()))
            data = json.dumps({"badRequest": {"code": 400, "message": message}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_DELETE = do_GET = _echo

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# === defects =====================================================================================


def test_a_body_that_never_finishes_is_cut_off_within_the_serve_timeout(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, tmp_path: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path, "--timeout", "1")
    body = WEBHOOK_BODY.encode()
    try:
        with socket.create_connection(address(running)) as slow:
            slow.sendall(signed_raw_request(body) + body[:5])  # ... and the rest never comes
            answer = recv_all(slow, 4.0)  # SERVE_TIMEOUT_S is 1 s
    finally:
        running.stop()
    # A 408 (or the connection closed) once the request's time is up; today: nothing, forever.
    assert answer is not None, "no answer and the connection still open 4 s after a 1 s timeout"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
    assert not deletes(sandbox)


def test_sigterm_while_a_body_is_arriving_answers_it_and_logs_no_traceback(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, tmp_path: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path, "--timeout", "1")
    body = WEBHOOK_BODY.encode()
    with socket.create_connection(address(running)) as slow:
        slow.sendall(signed_raw_request(body) + body[:5])
        time.sleep(0.2)
        stopped_at = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        answer = recv_all(slow, 15.0)
        exited(running, 15)  # a second SIGTERM in its last steps would kill it
        code = running.stop()
    took = time.monotonic() - stopped_at
    assert code == 0
    assert took < 1 + 5 + 3, took  # bounded by SERVE_TIMEOUT_S + the 5 s margin (this held)
    assert "Traceback" not in running.stderr, running.stderr
    # "stopped: every request in flight was answered" must be true: the client got an answer.
    assert answer is not None and answer.startswith(b"HTTP/1.1 "), answer


#: `serve` with a slower start (a loaded node): uvicorn takes 1 s longer to begin serving.
SLOW_START = """
import sys, time, uvicorn
run = uvicorn.Server.run
def slow_run(self, *args, **kwargs):
    time.sleep(1)
    return run(self, *args, **kwargs)
uvicorn.Server.run = slow_run
from handler.cli import main
sys.exit(main(["serve", "--port", "0"]))
"""


def test_sigterm_as_soon_as_it_says_serving_is_not_lost(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    # Without the 1 s delay the window is a few milliseconds wide, and still real: signalled as
    # soon as the line was read, 11 `serve` runs out of 15 hung here and one died of SIGTERM.
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_START],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert SERVING.search(line), line
    process.send_signal(signal.SIGTERM)  # Kubernetes scaling the new pod down again
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    finally:
        process.stderr.close()
    assert code == 0, "SIGTERM was ignored: still serving 5 s later" if code is None else code


def test_a_port_over_65535_is_refused_not_wrapped(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    process = subprocess.Popen(
        [sys.executable, "-m", "handler", "serve", "--port", "65536"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    if SERVING.search(first):
        process.kill()  # listening on some other port: the defect (SIGTERM could be lost here)
    try:
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert process.returncode == 2, first
    assert first.startswith("error: ") and "65536" in first


def test_ctrl_c_twice_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    tmp_path: Path,
) -> None:
    slow = make_sandbox(latency_ms=1500)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path, "--timeout", "3")
    client = threading.Thread(
        target=lambda: httpx.post(
            running.url + "/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY), timeout=20
        ),
        daemon=True,
    )
    client.start()
    wait_for(slow.requests)
    running.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    running.process.send_signal(signal.SIGINT)  # "I said stop"
    exited(running, 15)
    code = running.stop()
    client.join(20)
    assert code == 130
    assert "interrupted" in running.stderr
    assert "Traceback" not in running.stderr, running.stderr


async def test_a_webhook_id_being_processed_is_409_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory, dead_letters: Path
) -> None:
    slow = make_sandbox(latency_ms=400)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    runtime = Runtime(load_config())
    headers = sign(WEBHOOK_BODY, msg_id="msg_twice")
    try:
        async with client_for(App(runtime)) as client:
            answers = await asyncio.gather(
                *[client.post("/", content=WEBHOOK_BODY, headers=headers) for _ in range(3)]
            )
    finally:
        runtime.close()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409, 409]  # held: processed once
    assert len(deletes(slow)) == 2
    busy = [a for a in answers if a.status_code == 409]
    # The source sets Retry-After: 5 on this 409 (tests/sources/test_webhook.py); the runtime
    # rebuilds the refusal as a bare RejectedEvent and drops it (and a 400's `results`).
    assert all(a.headers.get("retry-after") == "5" for a in busy), [dict(a.headers) for a in busy]


async def test_a_request_whose_body_ends_after_shutdown_is_refused_and_builds_nothing(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    asgi = App()  # `uvicorn handler.asgi:app`: the app owns the function's runtime
    life = Conn({})
    lifespan = asyncio.create_task(asgi({"type": "lifespan"}, life.receive, life.send))
    life.inbox.put_nowait({"type": "lifespan.startup"})
    for _ in range(500):
        if life.sent:
            break
        await asyncio.sleep(0.01)
    assert life.sent == [{"type": "lifespan.startup.complete"}]
    body = WEBHOOK_BODY.encode()
    upload = Conn({**sign(WEBHOOK_BODY), "content-length": str(len(body))})
    upload.chunk(body[:5], more=True)
    request = asyncio.create_task(asgi(upload.scope, upload.receive, upload.send))
    await asyncio.sleep(0.05)
    life.inbox.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, 10)
    assert life.sent[-1] == {"type": "lifespan.shutdown.complete"}
    upload.chunk(body[5:], more=False)  # the rest of the body arrives after shutdown
    await asyncio.wait_for(request, 10)
    rebuilt = entry._RUNTIME  # what the app left behind
    assert rebuilt is None, "a new runtime was built after shutdown (and is never closed)"
    assert upload.status == 503
    assert "backup-policy" in metadata_of(sandbox, DB1)


async def test_log_event_keeps_gateway_credentials_out_of_the_logs(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, log_lines: io.StringIO
) -> None:
    configure_for(
        monkeypatch, sandbox, dead_letters, WEBHOOK_AUTH="none", POWERTOOLS_LOGGER_LOG_EVENT="true"
    )
    runtime = Runtime(load_config())
    body = json.dumps({"server_id": WEB1, "key": "env:stage"})
    try:
        async with client_for(App(runtime)) as client:
            response = await client.post(
                "/", content=body, headers={"x-api-key": API_KEY, "cookie": COOKIE}
            )
    finally:
        runtime.close()
    assert response.status_code == 200
    text = log_lines.getvalue()
    assert API_KEY not in text
    assert "cookie-secret" not in text


async def test_healthz_is_503_once_the_runtime_is_closed(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    runtime = Runtime(load_config())
    async with client_for(App(runtime)) as client:
        assert (await client.get("/healthz")).status_code == 200
        await asyncio.to_thread(runtime.close)
        refused = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
        health = await client.get("/healthz")
    assert refused.status_code == 503
    assert health.status_code == 503, health.json()


# === attacks that held ===========================================================================


def test_a_dead_letter_sink_that_never_answers_is_503_in_time_and_shutdown_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
    sandbox: Sandbox,
    dead_letters: Path,
    blackhole: Blackhole,
    tmp_path: Path,
) -> None:
    configure_for(
        monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET, DEAD_LETTER_URL=blackhole.url
    )
    running = start(tmp_path, "--timeout", "2")
    body = json.dumps([{"server_id": WEB1, "key": "env:stage"}, {"server_id": WEB1, "key": "a/b"}])
    answers: list[tuple[httpx.Response, float]] = []

    def post() -> None:
        began = time.monotonic()
        response = httpx.post(running.url + "/", content=body, headers=sign(body), timeout=30)
        answers.append((response, time.monotonic() - began))

    client = threading.Thread(target=post)
    client.start()
    wait_for(lambda: blackhole.held)  # the dead letter is being sent, and never answered
    stopping = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    client.join(20)
    exited(running, 20)
    stopped_in = time.monotonic() - stopping
    code = running.stop()
    assert answers, "no answer"
    response, took = answers[0]
    assert response.status_code == 503, response.text  # the dead letter could not be written
    assert took < 2.5, took
    assert response.json()["summary"]["dead_letter_failures"] == 1
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    assert code == 0 and stopped_in < 5, stopped_in
    assert "Traceback" not in running.stderr


def test_a_client_gone_mid_request_still_has_its_pairs_settled(
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    tmp_path: Path,
) -> None:
    slow = make_sandbox(latency_ms=600)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path, "--timeout", "5")
    body = WEBHOOK_BODY.encode()
    with socket.create_connection(address(running)) as gone:
        gone.sendall(signed_raw_request(body, msg_id="msg_gone") + body)
        wait_for(slow.requests)
    wait_for(lambda: len([r for r in deletes(slow) if r.get("status") == 204]) == 2)
    again = httpx.post(
        running.url + "/", content=body, headers=sign(body, msg_id="msg_gone"), timeout=10
    )
    stopping = time.monotonic()
    code = running.stop()
    assert again.status_code == 200  # the first answer, kept although nobody read it
    assert len(deletes(slow)) == 2  # nothing deleted twice
    assert code == 0 and time.monotonic() - stopping < 3  # nothing left in flight
    stdout = (tmp_path / "serve.out").read_text().splitlines()
    assert stdout and all(json.loads(line) for line in stdout)  # stdout is JSON lines only
    assert "Traceback" not in running.stderr


def test_ctrl_c_once_finishes_the_request_then_exits_130(
    monkeypatch: pytest.MonkeyPatch,
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    tmp_path: Path,
) -> None:
    slow = make_sandbox(latency_ms=700)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path, "--timeout", "3")
    answers: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                running.url + "/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY), timeout=20
            )
        )
    )
    client.start()
    wait_for(slow.requests)
    code = running.stop(signal.SIGINT)
    client.join(20)
    assert code == 130
    assert answers and answers[0].status_code == 200
    assert running.stderr.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in running.stderr


RAW_REQUESTS = {
    b"HEAD / HTTP/1.1": b"HTTP/1.1 405",
    b"OPTIONS * HTTP/1.1": b"HTTP/1.1 404",
    b"BREW / HTTP/1.1": b"HTTP/1.1 405",
    b"GET /healthz?probe=1 HTTP/1.1": b"HTTP/1.1 200",
    b"GET /%68ealthz HTTP/1.1": b"HTTP/1.1 200",
    b"GET //healthz HTTP/1.1": b"HTTP/1.1 404",
    b"GET /healthz/ HTTP/1.1": b"HTTP/1.1 404",
    b"GET /%ff HTTP/1.1": b"HTTP/1.1 404",
    b"POST /webhook/ HTTP/1.1": b"HTTP/1.1 404",
}


def test_odd_methods_and_paths_over_real_http_are_json_and_never_500(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, tmp_path: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    running = start(tmp_path)
    seen: dict[bytes, bytes | None] = {}
    try:
        for line in RAW_REQUESTS:
            with socket.create_connection(address(running)) as conn:
                conn.sendall(line + b"\r\nHost: janitor\r\nConnection: close\r\n\r\n")
                seen[line] = recv_all(conn, 5.0)
        chunked = b'{"server_id": "' + WEB1.encode() + b'", "key": "env:stage"}'
        with socket.create_connection(address(running)) as conn:
            head = signed_raw_request(chunked, msg_id="msg_chunked").replace(
                f"Content-Length: {len(chunked)}".encode(), b"Transfer-Encoding: chunked"
            )
            pieces = [chunked[:7], chunked[7:]]
            framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            conn.sendall(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + framed)
            chunked_answer = recv_all(conn, 5.0)
    finally:
        assert running.stop() == 0
    for line, status in RAW_REQUESTS.items():
        answer = seen[line]
        assert answer is not None and answer.startswith(status), (line, answer)
        if not line.startswith(b"HEAD"):
            assert b"application/json" in answer.partition(b"\r\n\r\n")[0]
    assert seen[b"HEAD / HTTP/1.1"].endswith(b"\r\n\r\n")  # type: ignore[union-attr]
    assert chunked_answer is not None and chunked_answer.startswith(b"HTTP/1.1 200")
    assert "env:stage" not in metadata_of(sandbox, WEB1)


@pytest.mark.parametrize("auth", ["token", "aksk"])
async def test_credentials_echoed_by_ecs_reach_no_answer_log_or_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
    echoing_ecs: str,
    dead_letters: Path,
    log_lines: io.StringIO,
    auth: str,
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", echoing_ecs)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    if auth == "token":
        monkeypatch.setenv("ECS_AUTH_TOKEN", TOKEN)
    else:
        monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKIDECHOTEST0123456789")
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SK)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    runtime = Runtime(load_config())
    body = json.dumps([{"server_id": WEB1, "key": "env:stage"}])
    signed = sign(body)
    headers = {**signed, "authorization": GATEWAY_AUTH, "proxy-authorization": GATEWAY_AUTH}
    try:
        async with client_for(App(runtime)) as client:
            response = await client.post("/", content=body, headers=headers)
    finally:
        runtime.close()
    assert response.status_code == 207
    echoed = response.json()["results"][0]["detail"]
    assert "User-Agent" in echoed  # the echo did reach the answer: redaction is what held
    letters = await asyncio.to_thread(dead_letters.read_text)
    outward = [response.text, log_lines.getvalue(), letters]
    logged = lines_of(log_lines)
    assert logged and logged[0]["message"]["headers"]["authorization"] == "***"
    for text in outward:
        for secret in (TOKEN, SK, "AKIDECHOTEST0123456789", RAW_SECRET, SECRET, GATEWAY_AUTH):
            assert secret not in text
        assert signed["webhook-signature"] not in text
        assert signed["webhook-signature"].split(",", 1)[1] not in text


async def test_many_requests_at_once_are_all_answered_and_none_stays_in_flight(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory, dead_letters: Path
) -> None:
    slow = make_sandbox(latency_ms=50)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET, MAX_CONCURRENCY="4")
    runtime = Runtime(load_config())
    asgi = App(runtime)
    bodies = [json.dumps({"server_id": WEB1, "key": f"no-such-key-{i}"}) for i in range(60)]
    try:
        async with client_for(asgi) as client:
            answers = await asyncio.gather(
                *[
                    client.post("/", content=b, headers=sign(b, msg_id=f"msg_{i}"))
                    for i, b in enumerate(bodies)
                ]
            )
            await asyncio.wait_for(asgi.shutdown(), 5)
    finally:
        runtime.close()
    assert [a.status_code for a in answers] == [200] * 60
    assert {a.json()["results"][0]["outcome"] for a in answers} == {"absent"}
    assert asgi._in_flight == 0  # what a shutdown waits on


async def test_a_slow_ecs_is_answered_within_the_serve_timeout_as_transient(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: SandboxFactory, dead_letters: Path
) -> None:
    slow = make_sandbox(latency_ms=3000)
    configure_for(monkeypatch, slow, dead_letters, WEBHOOK_SECRET=SECRET, SERVE_TIMEOUT_S="1")
    runtime = Runtime(load_config())
    try:
        async with client_for(App(runtime)) as client:
            began = time.monotonic()
            response = await client.post("/", content=WEBHOOK_BODY, headers=sign(WEBHOOK_BODY))
            took = time.monotonic() - began
    finally:
        runtime.close()
    assert took < 1.2, took
    assert response.status_code == 207
    assert response.json()["summary"]["deadline"] == 2


async def test_bodies_that_are_not_utf8_are_400_or_401_never_500(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    runtime = Runtime(load_config())
    body = b'[{"server_id": "\xff\xfe", "key": "k"}]'
    stamp = str(int(time.time()))
    mac = hmac.new(b64decode(RAW_SECRET), b"msg_bytes." + stamp.encode() + b"." + body, "sha256")
    headers = {
        "webhook-id": "msg_bytes",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + b64encode(mac.digest()).decode(),
    }
    try:
        async with client_for(App(runtime)) as client:
            signed = await client.post("/", content=body, headers=headers)
            dup = await client.post(
                "/",
                content=WEBHOOK_BODY,
                headers=[*sign(WEBHOOK_BODY).items(), ("webhook-id", "msg_1")],
            )
    finally:
        runtime.close()
    assert signed.status_code in (400, 401), signed.text
    assert dup.status_code == 401  # a repeated webhook-id header is not the signed one
    assert not deletes(sandbox)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e9"])
def test_an_unusable_timeout_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    sandbox: Sandbox,
    dead_letters: Path,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    assert cli.main(["serve", "--port", "0", f"--timeout={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "SERVE_TIMEOUT_S" in err
    assert len(err.strip().splitlines()) == 1


async def test_a_websocket_is_closed_unaccepted(runtime_for_ws: Runtime) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await asyncio.wait_for(App(runtime_for_ws)({"type": "websocket"}, receive, send), 5)
    assert [m["type"] for m in sent] == ["websocket.close"]


@pytest.fixture
def runtime_for_ws(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> Iterator[Runtime]:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_SECRET=SECRET)
    built = Runtime(load_config())
    yield built
    built.close()


async def test_dry_run_without_credentials_sends_no_delete_even_if_the_body_says_false(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path
) -> None:
    monkeypatch.setenv("ECS_ENDPOINT", sandbox.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    monkeypatch.setenv("DRY_RUN", "true")
    monkeypatch.setenv("WEBHOOK_AUTH", "none")
    body = json.dumps({"items": [{"server_id": WEB1, "key": "env:stage"}], "dry_run": False})
    async with client_for(App()) as client:
        response = await client.post("/", content=body)
    assert response.status_code == 200
    assert response.json()["summary"]["dry_run"] == 1
    assert not deletes(sandbox)
    assert "env:stage" in metadata_of(sandbox, WEB1)


async def test_a_hostile_request_id_cannot_break_a_log_line(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, dead_letters: Path, log_lines: io.StringIO
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters, WEBHOOK_AUTH="none")
    runtime = Runtime(load_config())
    hostile = '","level":"CRITICAL","x":"\\'
    body = json.dumps({"server_id": WEB1, "key": "env:stage"})
    try:
        async with client_for(App(runtime)) as client:
            response = await client.post("/", content=body, headers={"x-request-id": hostile})
    finally:
        runtime.close()
    assert response.status_code == 200
    assert hostile not in response.text
    lines = lines_of(log_lines)  # every line still parses
    pair = [line for line in lines if line["message"] == "pair settled"]
    assert pair and pair[0]["source_id"] == hostile and pair[0]["level"] == "INFO"
    assert not await asyncio.to_thread(dead_letters.exists)  # nothing dead-lettered


def test_the_hand_made_signature_is_the_librarys() -> None:
    # Guards the hand-made signature above: it matches the library's for a UTF-8 body.
    stamp = str(int(time.time()))
    body = WEBHOOK_BODY.encode()
    mac = hmac.new(b64decode(RAW_SECRET), b"msg_x." + stamp.encode() + b"." + body, hashlib.sha256)
    from datetime import UTC, datetime

    ours = "v1," + b64encode(mac.digest()).decode()
    theirs = sign(WEBHOOK_BODY, msg_id="msg_x", when=datetime.fromtimestamp(int(stamp), UTC))
    assert theirs["webhook-signature"] == ours
