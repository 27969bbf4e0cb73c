"""The HTTP sink's authentication: Standard Webhooks signatures and a static header."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from handler import app
from handler.config import ConfigError, load_config
from handler.deadletter import DeadLetterError, HttpSink, HttpSinkAuth
from handler.local import FakeContext
from handler.runtime import DeadLetterWriteError
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, configure_for
from tests.sandbox._demo import MISSING

SECRET = "whsec_" + base64.b64encode(b"dead-letter-signing-key-0123456789").decode()
HEADER_VALUE = "Bearer dl-token-Recognisable-0123456789abcdef"
HEADER = f"X-Janitor-Auth: {HEADER_VALUE}"
BASE = {"HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT, "HUAWEICLOUD_SDK_REGION": "cn-north-4"}


# --- a receiver on 127.0.0.1 ---------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class _State:
    status: int = 204
    received: list[Received] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        state = self.server.state
        state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(state.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/letters"


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _verify(received: Received, secret: str = SECRET) -> None:
    """What a receiver does with the same package: raises unless the signature is valid."""
    Webhook(secret).verify(received.body, received.headers, json_parse=False)


def _configure(
    monkeypatch: pytest.MonkeyPatch, sb: Sandbox, receiver: _Receiver, **extra: str
) -> None:
    configure_for(monkeypatch, sb, Path("unused.jsonl"), DEAD_LETTER_URL=receiver.url, **extra)


# --- end to end, through app.handler ---------------------------------------------------------


def test_each_post_is_a_standard_webhook_the_receiver_can_verify(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, receiver: _Receiver
) -> None:
    _configure(monkeypatch, sandbox, receiver, DEAD_LETTER_SECRET=SECRET)
    response = app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    assert response["summary"]["dead_lettered"] == 1
    (post,) = receiver.state.received
    _verify(post)
    assert post.headers["webhook-id"].startswith("msg_")
    (letter,) = json.loads(post.body)
    assert letter["item"]["server_id"] == MISSING
    # Another secret, or a changed body, does not verify.
    other = "whsec_" + base64.b64encode(b"another-key-entirely-0123456789").decode()
    with pytest.raises(WebhookVerificationError):
        _verify(post, other)
    with pytest.raises(WebhookVerificationError):
        _verify(Received(post.headers, post.body.replace(b"k", b"K")))


def test_the_static_header_arrives(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, receiver: _Receiver
) -> None:
    _configure(monkeypatch, sandbox, receiver, DEAD_LETTER_AUTH_HEADER=HEADER)
    app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    (post,) = receiver.state.received
    assert post.headers["x-janitor-auth"] == HEADER_VALUE
    assert "webhook-signature" not in post.headers


def test_with_both_each_post_is_signed_and_carries_the_header(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, receiver: _Receiver
) -> None:
    _configure(
        monkeypatch, sandbox, receiver, DEAD_LETTER_SECRET=SECRET, DEAD_LETTER_AUTH_HEADER=HEADER
    )
    app.handler({"server_id": MISSING, "key": "k"}, FakeContext(10_000))
    (post,) = receiver.state.received
    _verify(post)
    assert post.headers["x-janitor-auth"] == HEADER_VALUE


def test_neither_secret_reaches_the_logs_the_dead_letters_or_the_error(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    receiver: _Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _configure(
        monkeypatch,
        sandbox,
        receiver,
        DEAD_LETTER_SECRET=SECRET,
        DEAD_LETTER_AUTH_HEADER=HEADER,
        POWERTOOLS_LOG_LEVEL="DEBUG",
        POWERTOOLS_LOGGER_LOG_EVENT="true",
    )
    token = HEADER_VALUE.split()[-1]
    # A payload carrying both secrets: its dead letter (and the logged event) hold neither.
    item = {"server_id": MISSING, "key": f"{SECRET}-{token}"}
    app.handler(item, FakeContext(10_000))
    (post,) = receiver.state.received
    stored = post.body.decode()
    assert "***" in stored
    # The receiver refuses: nothing stored, a direct invocation raises.
    receiver.state.status = 401
    with pytest.raises(DeadLetterWriteError) as raised:
        app.handler(item, FakeContext(5_000))
    out = capsys.readouterr()
    text = out.out + out.err + str(raised.value) + repr(raised.value)
    assert "HTTP 401" in text
    for secret in (SECRET, SECRET.removeprefix("whsec_"), HEADER_VALUE, token):
        assert secret not in text
        assert secret not in stored


def test_a_refusing_receiver_sends_sqs_messages_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, receiver: _Receiver
) -> None:
    _configure(monkeypatch, sandbox, receiver, DEAD_LETTER_SECRET=SECRET)
    receiver.state.status = 403
    event = {
        "Records": [
            {"messageId": "m-1", "eventSource": "aws:sqs", "attributes": {},
             "body": json.dumps({"server_id": MISSING, "key": "k"})},
        ]
    }  # fmt: skip
    response = app.handler(event, FakeContext(10_000))
    assert response["batchItemFailures"] == [{"itemIdentifier": "m-1"}]
    assert len(receiver.state.received) == 1  # a 403 is not retried


# --- retries: the same webhook-id, a fresh timestamp and signature ----------------------------


def test_a_retry_keeps_the_webhook_id_and_signs_afresh() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(503), httpx.Response(500), httpx.Response(200)]

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    now = [1_800_000_000.0]

    def clock() -> float:
        now[0] += 7.0
        return now[0]

    sink = HttpSink(
        "https://dl.example.com/in",
        transport=httpx.MockTransport(answer),
        auth=HttpSinkAuth(webhook_secret=SECRET, header=("Authorization", HEADER_VALUE)),
        clock=clock,
    )

    async def main() -> None:
        await sink.write([{"n": 1}], deadline=asyncio.get_running_loop().time() + 5.0)
        await sink.aclose()

    asyncio.run(main())
    assert len(seen) == 3
    ids = {r.headers["webhook-id"] for r in seen}
    stamps = [r.headers["webhook-timestamp"] for r in seen]
    signatures = {r.headers["webhook-signature"] for r in seen}
    assert len(ids) == 1 and len(set(stamps)) == 3 and len(signatures) == 3
    assert stamps == ["1800000007", "1800000014", "1800000021"]
    key = Webhook(SECRET)
    for request in seen:
        at = int(request.headers["webhook-timestamp"])
        expected = key.sign(
            request.headers["webhook-id"],
            dt.datetime.fromtimestamp(at, dt.UTC),
            request.content.decode(),
        )
        assert request.headers["webhook-signature"] == expected
        assert request.headers["authorization"] == HEADER_VALUE


def test_each_chunk_has_its_own_webhook_id() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sink = HttpSink(
        "https://dl.example.com/in",
        transport=httpx.MockTransport(answer),
        auth=HttpSinkAuth(webhook_secret=SECRET),
    )

    async def main() -> None:
        await sink.write([{"n": i} for i in range(1_001)], deadline=None)

    asyncio.run(main())
    assert len(seen) == 3 and len({r.headers["webhook-id"] for r in seen}) == 3


def test_an_unusable_secret_given_directly_is_refused_without_quoting_it() -> None:
    bad = "whsec_!not-base64-Recognisable"
    with pytest.raises(ValueError, match="DEAD_LETTER_SECRET: must be") as raised:
        HttpSink("https://dl.example.com/in", auth=HttpSinkAuth(webhook_secret=bad))
    assert "Recognisable" not in str(raised.value)
    assert "***" in repr(HttpSinkAuth(webhook_secret=SECRET, header=("X-A", HEADER_VALUE)))
    assert HEADER_VALUE not in repr(HttpSinkAuth(header=("X-A", HEADER_VALUE)))


def test_a_refused_post_says_so_without_a_secret() -> None:
    sink = HttpSink(
        "https://dl.example.com/in",
        transport=httpx.MockTransport(lambda _: httpx.Response(401)),
        auth=HttpSinkAuth(webhook_secret=SECRET, header=("X-Key", HEADER_VALUE)),
    )

    async def main() -> None:
        await sink.write([{"n": 1}], deadline=None)

    with pytest.raises(DeadLetterError) as raised:
        asyncio.run(main())
    assert str(raised.value) == "cannot POST https://dl.example.com: HTTP 401"


# --- configuration ---------------------------------------------------------------------------


def _load(**values: str) -> Any:
    return load_config({**BASE, "DEAD_LETTER_URL": "https://dl.example.com/in", **values})


def test_the_new_variables_are_read_and_their_values_are_secrets() -> None:
    config = _load(
        DEAD_LETTER_SECRET=SECRET,
        DEAD_LETTER_AUTH_HEADER=f"  x-api-key :  {HEADER_VALUE} ",
        SMN_ENDPOINT="https://smn.example.com/",
    )
    assert config.dead_letter_header() == ("x-api-key", HEADER_VALUE)
    assert config.smn_endpoint == "https://smn.example.com"
    secrets = config.secrets()
    for value in (SECRET, SECRET.removeprefix("whsec_"), HEADER_VALUE, HEADER_VALUE.split()[-1]):
        assert value in secrets
    assert SECRET not in repr(config) and HEADER_VALUE not in repr(config)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"DEAD_LETTER_SECRET": "not-a-secret!"}, "DEAD_LETTER_SECRET: must be a Standard"),
        ({"DEAD_LETTER_SECRET": "whsec_"}, "DEAD_LETTER_SECRET: must be a Standard"),
        ({"DEAD_LETTER_AUTH_HEADER": "just-a-token-value"}, "DEAD_LETTER_AUTH_HEADER: must be"),
        ({"DEAD_LETTER_AUTH_HEADER": ": v4lue"}, "DEAD_LETTER_AUTH_HEADER: must be one"),
        ({"DEAD_LETTER_AUTH_HEADER": "Bad Name: v4lue"}, "the name must be letters"),
        ({"DEAD_LETTER_AUTH_HEADER": "Content-Type: text/plain"}, "one the sink sets itself"),
        ({"DEAD_LETTER_AUTH_HEADER": "webhook-id: mine"}, "one the sink sets itself"),
        ({"DEAD_LETTER_AUTH_HEADER": "X-Key:   "}, "the value is empty"),
        ({"DEAD_LETTER_AUTH_HEADER": "X-Key: s3cret\n"}, "printable ASCII"),
        ({"DEAD_LETTER_AUTH_HEADER": "X-Key: s3cr\u00e9t"}, "printable ASCII"),
        (
            {"DEAD_LETTER_URL": "log", "DEAD_LETTER_SECRET": SECRET},
            "DEAD_LETTER_SECRET: authenticates the HTTP sink's POSTs, but DEAD_LETTER_URL",
        ),
        (
            {"DEAD_LETTER_URL": "/tmp/dl.jsonl", "DEAD_LETTER_AUTH_HEADER": HEADER},
            "DEAD_LETTER_AUTH_HEADER: authenticates",
        ),
        ({"DEAD_LETTER_URL": "smn://urn:smn:cn-north-4:p"}, "DEAD_LETTER_URL: an SMN topic is"),
        (
            {"DEAD_LETTER_URL": f"smn://urn:smn:cn-north-4:{DEMO_PROJECT}:-x"},
            "the topic name must be",
        ),
        ({"SMN_ENDPOINT": "https://smn.example.com?x=1"}, "SMN_ENDPOINT: must be an http"),
    ],
)
def test_bad_values_fail_in_one_line_that_quotes_no_secret(
    values: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        _load(**values)
    message = str(raised.value)
    assert "\n" not in message
    for name in ("DEAD_LETTER_SECRET", "DEAD_LETTER_AUTH_HEADER"):
        if name in values and len(values[name]) > 6:
            assert values[name].strip() not in message
    assert "s3cr" not in message and "v4lue" not in message


def test_an_smn_urn_is_accepted_by_the_configuration() -> None:
    urn = f"urn:smn:cn-north-4:{DEMO_PROJECT}:janitor-dlq"
    assert _load(DEAD_LETTER_URL=f"smn://{urn}").dead_letter_url == f"smn://{urn}"


def test_a_static_header_over_plain_http_elsewhere_is_warned_about(
    capsys: pytest.CaptureFixture[str],
) -> None:
    auth = HttpSinkAuth(header=("X-Key", HEADER_VALUE))
    HttpSink("http://127.0.0.1:9/in", auth=auth)
    HttpSink("https://dl.example.com/in", auth=auth)
    assert "cleartext" not in capsys.readouterr().out
    HttpSink("http://dl.example.com/in", auth=auth)
    out = capsys.readouterr().out
    assert "crosses the network in cleartext" in out and HEADER_VALUE not in out
