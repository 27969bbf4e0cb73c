"""A hostile user's findings: each test failed before its fix (xfail(strict) while one is open).

Everything runs against servers on 127.0.0.1 started here (or the sandbox), through the public
entry points: handler.app.handler / warm_up / reset_runtime and handler.cli.main.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import random
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina

from handler import app, cli, logs
from handler.config import ConfigError
from handler.local import FakeContext as LambdaContext
from handler.runtime import RuntimeClosedError
from handler.sources import UnknownEventError
from tests.conftest import DEMO_PROJECT, SandboxFactory, configure_for, demo_seed, metadata_of
from tests.sandbox._demo import WEB1

RUN = 16  # the shortest run of a secret that must not survive anywhere


def leaked_runs(text: str, secret: str, run: int = RUN) -> list[str]:
    return [
        secret[i : i + run] for i in range(len(secret) - run + 1) if secret[i : i + run] in text
    ]


def _secret(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


Reply = Callable[["RawServer", socket.socket, bytes], bool | None]


class RawServer:
    """127.0.0.1: reads each request (head and Content-Length body), then calls `reply`.

    `reply` returns False to close the connection; `sent` counts body bytes it pushed.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sent = 0
        self.heads: list[bytes] = []
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self.stop.is_set():
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                if self.reply(self, conn, head) is False:
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Reply], RawServer]]:
    servers: list[RawServer] = []

    def start(reply: Reply) -> RawServer:
        server = RawServer(reply)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _base_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, dead_letters: str) -> str:
    token = "tok-" + _secret(40, 7)
    monkeypatch.setenv("ECS_ENDPOINT", endpoint)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("ECS_AUTH_TOKEN", token)
    monkeypatch.setenv("DEAD_LETTER_URL", dead_letters)
    return token


# --- deadlines -------------------------------------------------------------------------------


def test_http_sink_that_never_answers_lets_closing_run_past_the_limit(
    raw_server: Callable[[Reply], RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = raw_server(lambda *_: None)  # reads the POST, never answers
    _base_env(monkeypatch, "http://127.0.0.1:9", f"{silent.url}/dead-letters")
    logs.set_stream(io.StringIO())
    app.warm_up()
    # 15,000 protected keys: no ECS call, 15,000 dead letters for the sink.
    event = [{"server_id": WEB1, "key": f"__k{i}"} for i in range(15_000)]

    context = LambdaContext(1000)
    started = time.perf_counter()
    with pytest.raises(app.DeadLetterWriteError):
        app.handler(event, context)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0, f"answered after {elapsed * 1000:.0f} ms; the limit was 1,000"


def test_dead_letter_url_naming_a_fifo_blocks_the_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "dead-letters.fifo"
    os.mkfifo(fifo)
    _base_env(monkeypatch, "http://127.0.0.1:9", str(fifo))
    logs.set_stream(io.StringIO())
    outcome: dict[str, Any] = {}

    def invoke() -> None:
        try:
            outcome["response"] = app.handler({"server_id": "nope", "key": "k"}, LambdaContext(500))
        except Exception as exc:  # noqa: BLE001 - any answer will do: it must come
            outcome["error"] = exc

    thread = threading.Thread(target=invoke, daemon=True)
    thread.start()
    thread.join(1.5)
    hung = thread.is_alive()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # unblock it before the teardown
    try:
        thread.join(5)
    finally:
        os.close(reader)
    assert not hung, "still running 1 s after a 500 ms limit: the loop is blocked in open()"


def test_gzip_bomb_error_reply_runs_past_the_limit(
    raw_server: Callable[[Reply], RawServer],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)  # about 64 KB on the wire

    def reply(_: RawServer, conn: socket.socket, __: bytes) -> bool:
        head = b"HTTP/1.1 500 Oops\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        conn.sendall(head % len(bomb) + bomb)
        return False

    server = raw_server(reply)
    _base_env(monkeypatch, server.url, str(dead_letters))
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    logs.set_stream(io.StringIO())
    app.warm_up()

    context = LambdaContext(500)
    started = time.perf_counter()
    app.handler({"server_id": WEB1, "key": "lease-owner"}, context)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, f"answered after {elapsed * 1000:.0f} ms; the limit was 500"


def test_huge_error_reply_is_read_whole(
    raw_server: Callable[[Reply], RawServer],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 48 * 1024 * 1024
    chunk = b"x" * 65536

    def reply(server: RawServer, conn: socket.socket, _: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(chunk)):
            conn.sendall(chunk)
            server.sent += len(chunk)
        return False

    server = raw_server(reply)
    _base_env(monkeypatch, server.url, str(dead_letters))
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    logs.set_stream(io.StringIO())

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, LambdaContext(5000))

    assert response["summary"]["pairs"] == 1
    assert server.sent < 16 * 1024 * 1024, f"{server.sent >> 20} MiB of one error body were read"


def test_trickling_reply_outlives_request_timeout(
    raw_server: Callable[[Reply], RawServer],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def reply(server: RawServer, conn: socket.socket, _: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n")
        while not server.stop.wait(0.05):
            conn.sendall(b"x")  # one byte every 50 ms: no read ever waits 0.3 s
        return False

    server = raw_server(reply)
    _base_env(monkeypatch, server.url, str(dead_letters))
    monkeypatch.setenv("REQUEST_TIMEOUT_S", "0.3")
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    logs.set_stream(io.StringIO())
    app.warm_up()

    started = time.perf_counter()
    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, LambdaContext(1500))
    elapsed = time.perf_counter() - started

    (result,) = response["results"]
    assert result["outcome"] == "retries_exhausted", result
    assert elapsed < 1.0, f"one attempt with REQUEST_TIMEOUT_S=0.3 took {elapsed:.2f} s"


def test_infinite_remaining_time_does_not_crash(
    sandbox: Any, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_for(monkeypatch, sandbox, dead_letters)
    logs.set_stream(io.StringIO())

    class Context:
        aws_request_id = "inf"

        def get_remaining_time_in_millis(self) -> float:
            return float("inf")

    response = app.handler({"server_id": WEB1, "key": "owner"}, Context())
    assert response["results"][0]["outcome"] == "deleted"


# --- concurrency ---------------------------------------------------------------------------


def test_reset_runtime_during_an_invocation_lets_the_caller_return(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(latency_ms=300)
    configure_for(monkeypatch, sb, dead_letters)
    logs.set_stream(io.StringIO())
    app.warm_up()
    stamina.set_testing(False)  # real backoff, as deployed
    try:
        ended: list[object] = []

        def invoke() -> None:
            try:
                ended.append(app.handler({"server_id": WEB1, "keys": ["owner", "lease-owner"]}))
            except RuntimeClosedError as exc:  # the platform retries the event
                ended.append(exc)

        thread = threading.Thread(target=invoke, daemon=True)
        thread.start()
        time.sleep(0.1)
        app.reset_runtime()
        thread.join(3)
    finally:
        stamina.set_testing(True, attempts=100, cap=True)
    assert not thread.is_alive(), "the invocation never answered (nor raised)"
    assert len(ended) == 1


# --- configuration -------------------------------------------------------------------------


def _token_with_newline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("ECS_AUTH_TOKEN", "tok-" + _secret(40, 8) + "\n")
    return "ECS_AUTH_TOKEN"


def _dead_letter_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("DEAD_LETTER_URL", str(tmp_path))
    return "DEAD_LETTER_URL"


def _fullwidth_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("ECS_ENDPOINT", "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")
    return "ECS_ENDPOINT"


def _bracketed_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@[bad")
    return "HTTP_PROXY"


def _socks_proxy_for_sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the endpoint is bypassed, the sink is not
    monkeypatch.setenv("DEAD_LETTER_URL", "http://localhost:9/dead-letters")
    return "HTTP_PROXY"


@pytest.mark.parametrize(
    "setting",
    [
        _token_with_newline,
        _dead_letter_dir,
        _fullwidth_endpoint,
        _bracketed_proxy,
        _socks_proxy_for_sink,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_unusable_setting_fails_the_cold_start_naming_it(
    setting: Callable[[pytest.MonkeyPatch, Path], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _base_env(monkeypatch, "http://127.0.0.1:9", str(tmp_path / "dl.jsonl"))
    variable = setting(monkeypatch, tmp_path)
    logs.set_stream(io.StringIO())
    with pytest.raises(ConfigError) as caught:
        app.warm_up()
    assert variable in str(caught.value)


# --- the command line ----------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """The CLI's exit status; anything but a return or SystemExit is a traceback."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def test_cli_invoke_on_a_deeply_nested_event_file_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "deep.json"
    event.write_text("[" * 100_000 + "]" * 100_000)
    assert _cli(["invoke", str(event)]) != 0


@pytest.mark.parametrize(
    ("event", "extra"),
    [
        (json.dumps({"server_id": WEB1, "key": "\ud800"}), ["--remaining-ms", "200"]),
        (
            json.dumps(
                {
                    "Records": [
                        {
                            "eventSource": "aws:sqs",
                            "messageId": "m\udc00",
                            "body": json.dumps({"server_id": WEB1, "key": "owner"}),
                        }
                    ]
                }
            ),
            ["--remaining-ms", "200"],
        ),
    ],
    ids=["direct-raw-at-deadline", "sqs-message-id"],
)
def test_cli_invoke_prints_a_response_holding_a_lone_surrogate(
    event: str, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    path.write_text(event)
    status = _cli(["invoke", str(path), *extra])
    out = capsys.readouterr().out
    assert status == 0
    json.loads(out)


# --- secrets -------------------------------------------------------------------------------


def test_proxy_credentials_echoed_back_are_redacted(
    raw_server: Callable[[Reply], RawServer],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def echo(_: RawServer, conn: socket.socket, head: bytes) -> bool:
        body = b"bad gateway; your request was:\n" + head
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return False

    proxy = raw_server(echo)
    password = "proxy-" + _secret(30, 9)
    basic = base64.b64encode(f"janitor:{password}".encode()).decode()
    _base_env(monkeypatch, "http://127.0.0.1:9", str(dead_letters))
    monkeypatch.setenv("HTTP_PROXY", f"http://janitor:{password}@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("MAX_ATTEMPTS", "1")

    response = app.handler({"server_id": WEB1, "key": "lease-owner"}, None)
    everything = json.dumps(response) + dead_letters.read_text() + capsys.readouterr().out

    assert response["results"][0]["status"] == 502  # the proxy was used and echoed
    assert not leaked_runs(everything, basic), "Proxy-Authorization (user:password) leaked"
    assert not leaked_runs(everything, password)


def test_http_sink_url_credentials_stay_out_of_library_logs(
    raw_server: Callable[[Reply], RawServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def ok(_: RawServer, conn: socket.socket, __: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    sink = raw_server(ok)
    password = "sink-" + _secret(30, 10)
    query_token = "q-" + _secret(30, 11)
    url = f"http://hook:{password}@127.0.0.1:{sink.port}/dl?token={query_token}"
    _base_env(monkeypatch, "http://127.0.0.1:9", url)
    logs.set_stream(io.StringIO())
    caplog.set_level(logging.INFO)  # e.g. Lambda's application log level INFO

    response = app.handler({"server_id": "nope", "key": "k"}, None)

    assert response["summary"]["dead_lettered"] == 1
    assert not leaked_runs(caplog.text, password)
    assert not leaked_runs(caplog.text, query_token)


# --- hygiene -------------------------------------------------------------------------------


def test_no_python_warning_when_the_sink_gets_no_time(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    _base_env(monkeypatch, "http://127.0.0.1:9", "http://127.0.0.1:9/dead-letters")
    logs.set_stream(io.StringIO())
    with pytest.raises(app.DeadLetterWriteError):
        app.handler({"server_id": "nope", "key": "k"}, LambdaContext(50))
    assert not [str(w.message) for w in recwarn]


# --- what held (cheap checks, unmarked) ----------------------------------------------------


def test_dot_segment_and_space_keys_are_deleted_exactly(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = demo_seed()
    keys = ["..", ".", "...", " ..", ". .", " "]
    for key in keys:
        seed["servers"][0]["metadata"][key] = "v"
    sb = make_sandbox(seed)
    configure_for(monkeypatch, sb, dead_letters)
    logs.set_stream(io.StringIO())
    bad = ["a/b", "%2F", "lease-owner\n", "\uff4cease-owner", "lease\u2010owner", "a" * 256]

    response = app.handler([{"server_id": WEB1, "key": k} for k in keys + bad], None)

    assert response["summary"]["deleted"] == len(keys)
    assert response["summary"]["invalid"] == len(bad)
    left = set(metadata_of(sb, WEB1))
    assert left == {"lease-owner", "lease-expires", "env:stage", "team name", "owner"}


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        "[]",
        5,
        {"Records": {"eventSource": "aws:sqs"}},
        {"Records": [{"eventSource": "aws:sqs", "body": "{}"}, 5]},
        # SNS and FunctionGraph TIMER are known since issue 8; these still are not:
        {"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "k"}}}]},
        {"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {}}]},
        {"cts": {"service_type": "ECS", "resource_type": "ecs", "trace_name": "deleteServer"}},
        {"detail-type": "Object Deleted", "source": "aws.s3", "detail": {"bucket": {}}},
    ],
)
def test_events_of_unknown_shape_raise(event: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _base_env(monkeypatch, "http://127.0.0.1:9", "log")
    logs.set_stream(io.StringIO())
    with pytest.raises(UnknownEventError, match=r"unrecognised event: (got|an EventBridge)"):
        app.handler(event, None)


def test_concurrent_functiongraph_invocations_leak_no_credential_run(
    raw_server: Callable[[Reply], RawServer],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def echo(_: RawServer, conn: socket.socket, head: bytes) -> None:
        body = b"denied; headers: " + head
        request_id = head.split(b"\r\n")[-1][:200]  # a header echoed as the request id too
        conn.sendall(
            b"HTTP/1.1 401 No\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n\r\n"
            % (request_id, len(body))
            + body
        )

    server = raw_server(echo)
    monkeypatch.setenv("ECS_ENDPOINT", server.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    stream = io.StringIO()
    logs.set_stream(stream)

    class FunctionGraphContext:
        def __init__(self, i: int) -> None:
            self.i, self.ak = i, "AK" + _secret(18, i)
            self.sk, self.token = _secret(40, 100 + i), _secret(1500, 200 + i)

        def getRequestID(self) -> str:
            return f"req-{self.i}"

        def getRemainingTimeInMilliSeconds(self) -> int:
            return 5000

        def getSecurityAccessKey(self) -> str:
            return self.ak

        def getSecuritySecretKey(self) -> str:
            return self.sk

        def getSecurityToken(self) -> str:
            return self.token

    contexts = [FunctionGraphContext(i) for i in range(4)]
    answers: list[str] = []

    def invoke(context: FunctionGraphContext) -> None:
        event = [{"server_id": WEB1, "key": f"k{j}"} for j in range(20)]
        answers.append(json.dumps(app.handler(event, context)))

    threads = [threading.Thread(target=invoke, args=(c,)) for c in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(answers) == 4 and all('"forbidden": 20' in a for a in answers)
    everything = "".join(answers) + stream.getvalue() + dead_letters.read_text()
    for context in contexts:
        for secret in (context.ak, context.sk, context.token):
            assert not leaked_runs(everything, secret)
