"""Dead letters (SPEC §7): the record of each pair not settled, and the sinks that keep them."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import structlog

from handler import redaction, retrying
from handler.config import is_loopback_host
from handler.logs import unfiltered_logger
from handler.outcomes import Result

if TYPE_CHECKING:
    from standardwebhooks.webhooks import Webhook

SCHEMA = "ecs-metadata-janitor/dead-letter/1"

#: The longest one POST of dead letters may take (less when the invocation's time is short).
HTTP_SINK_TIMEOUT_S = 10.0
#: Dead letters per POST: an invocation's letters go in as few POSTs as this allows.
HTTP_SINK_CHUNK = 500
#: Attempts per POST (on network errors, 429 and 5xx), within the invocation's time.
HTTP_SINK_ATTEMPTS = 3
#: The longest an append to a dead-letter file waits for `replay`'s lock on it (less when the
#: invocation's time is short); a replay holds it for one rewrite: a read, an fsync, a rename.
FILE_SINK_LOCK_WAIT_S = 5.0
#: How often a waiting append tries the lock again.
FILE_SINK_LOCK_POLL_S = 0.005
#: Times one append opens the file again after a replay replaced it while the append waited.
FILE_SINK_REOPENS = 8


class DeadLetterError(RuntimeError):
    """Dead letters could not be written; the caller must make the platform retry them.

    `stored` records, the first ones given, were stored before the failure.
    """

    def __init__(
        self, message: str, *, stored: int = 0, unstored: Sequence[int] | None = None
    ) -> None:
        super().__init__(message)
        self.stored = stored
        #: The records not stored, by index, when they are not simply all after `stored` (a
        #: queue may refuse entries in the middle of a batch).
        self.unstored = None if unstored is None else tuple(unstored)

    def unstored_of(self, count: int) -> list[int]:
        """The indices, among `count` records given, of those not stored."""
        if self.unstored is not None:
            return [index for index in self.unstored if 0 <= index < count]
        return list(range(min(self.stored, count), count))


def make_record(
    result: Result,
    *,
    source_kind: str,
    source_id: str | None,
    invocation_id: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Build the dead-letter record of one result, with every known secret redacted."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    record = {
        "schema": SCHEMA,
        "item": result.pair.as_dict() if result.pair else None,
        "raw": result.raw if result.pair is None else None,
        "reason": result.outcome.value,
        "detail": result.detail,
        "status": result.status,
        "attempts": result.attempts,
        "request_id": result.request_id,
        "source": {"kind": source_kind, "id": source_id},
        "invocation_id": invocation_id,
        "dead_lettered_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    redacted: dict[str, Any] = redaction.current().value(record)
    return redacted


class DeadLetterSink(Protocol):
    """Where dead letters go; `write` returns only once every record is stored."""

    description: str
    #: Seconds one record takes to store, measured: the engine keeps that much time back.
    seconds_per_record: float

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Store the records, before the loop time `deadline` if given, or raise DeadLetterError."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds."""
        ...


class LogSink:
    """Dead letters as structured log lines (one per record, level ERROR)."""

    description = "the log (one 'dead letter' line each)"
    #: Measured ~25 µs a line, ~80 µs with 240-character keys and a long secret searched for.
    seconds_per_record = 100e-6

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Log each record, whatever the configured log level: a dead letter is never filtered.

        Stops at `deadline` (checked every 100 records) and says how many were written: those
        left go back to the platform rather than the invocation overrunning its limit.
        """
        log = unfiltered_logger()
        clock = asyncio.get_running_loop().time
        for index, record in enumerate(records):
            if deadline is not None and index % 100 == 0 and clock() >= deadline:
                raise DeadLetterError(
                    f"no time left to log {len(records) - index} dead letter(s)", stored=index
                )
            log.error("dead letter", dead_letter=record)

    async def aclose(self) -> None:
        """Nothing to release."""


class FileSink:
    """Dead letters appended to a JSON Lines file, flushed and fsync'd before returning.

    Each append holds a shared flock on the file (where the system has `fcntl`): `replay`
    rewrites the file under an exclusive one and renames its copy into place, so an append
    that waited for it finds the path naming another file, and appends to that one instead.
    """

    def __init__(self, path: Path) -> None:
        _check_writable(path)
        self.path = path
        self.description = f"the file {path}"
        self.seconds_per_record = 20e-6
        self._lock = asyncio.Lock()

    def _append(self, data: bytes, wait_s: float = FILE_SINK_LOCK_WAIT_S) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO put in the file's place fails at once instead of blocking forever.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
        until = time.monotonic() + wait_s
        for _ in range(FILE_SINK_REOPENS):
            fd = os.open(self.path, flags, 0o600)
            try:
                _lock_shared(fd, until)
                if not _names(self.path, fd):
                    continue  # replaced (by a replay) while this waited: append to its successor
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
                return
            finally:
                os.close(fd)  # closing releases the lock
        raise OSError(errno.EAGAIN, "the file was replaced again and again while appending")

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Append the records as whole lines in one write, then fsync."""
        if not records:
            return
        # ASCII JSON: no character inside a record (U+0085, U+2028, a lone surrogate) can look
        # like a line break to a reader or fail to encode.
        data = "".join(json.dumps(r) + "\n" for r in records).encode("ascii")
        wait_s = FILE_SINK_LOCK_WAIT_S
        if deadline is not None:
            wait_s = min(wait_s, max(deadline - asyncio.get_running_loop().time(), 0.0))
        async with self._lock:
            try:
                # On a worker thread: a slow disk's fsync must not hold the loop (and every
                # other invocation on it).
                await asyncio.to_thread(self._append, data, wait_s)
            except OSError as exc:
                raise DeadLetterError(
                    f"cannot write dead letters to {self.path}: {exc.strerror}"
                ) from None

    async def aclose(self) -> None:
        """Nothing to release: each write opens and closes the file."""


def _lock_shared(fd: int, until: float) -> None:
    """Take a shared flock on `fd`, waiting for an exclusive holder until `until` (monotonic).

    Raises OSError when the wait runs out. Where flock is missing or the file system refuses it,
    the append goes on without the lock, as it always did.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= until:
                raise OSError(
                    errno.EWOULDBLOCK, "locked (by a replay rewriting it?) for too long"
                ) from None
            time.sleep(FILE_SINK_LOCK_POLL_S)
        except OSError:  # no locks on this file system (EBADF, ENOLCK, EOPNOTSUPP …)
            return


def _names(path: Path, fd: int) -> bool:
    """True when `path` still names the file open as `fd`."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _check_writable(path: Path) -> None:
    """Raise ValueError unless dead letters can be appended to `path` (checked at cold start)."""
    if path.exists():
        if not path.is_file():
            raise ValueError(f"DEAD_LETTER_URL: {path} is not a regular file")
        if not os.access(path, os.W_OK):
            raise ValueError(f"DEAD_LETTER_URL: {path} is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"DEAD_LETTER_URL: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"DEAD_LETTER_URL: cannot create files in {parent}")


@dataclass(frozen=True, slots=True)
class HttpSinkAuth:
    """How the HTTP sink authenticates: a Standard Webhooks secret, a static header, or both."""

    webhook_secret: str | None = None
    header: tuple[str, str] | None = None

    def __repr__(self) -> str:
        secret = "***" if self.webhook_secret else None
        header = f"({self.header[0]!r}, ***)" if self.header else None
        return f"HttpSinkAuth(webhook_secret={secret}, header={header})"


class HttpSink:
    """Dead letters POSTed as JSON arrays of up to HTTP_SINK_CHUNK records; 2xx means stored.

    With a Standard Webhooks secret, each POST carries `webhook-id` (one per chunk, the same
    on every attempt: the receiver's idempotency key), `webhook-timestamp` and
    `webhook-signature` (fresh on every attempt); with a static header, that header too.
    """

    #: A POST carries hundreds of records: the per-record share of its time is small.
    seconds_per_record = 50e-6

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: HttpSinkAuth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(url)
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError("DEAD_LETTER_URL: not a URL httpx can send to") from None
        port = f":{parts.port}" if parts.port else ""
        # Scheme and host only: a path or query may carry a credential.
        self.description = f"POST {parts.scheme}://{parts.hostname}{port}"
        self._url = url
        self._signer = _webhook_signer(auth.webhook_secret) if auth else None
        self._header = auth.header if auth else None
        if (
            self._header is not None
            and parts.scheme == "http"
            and not is_loopback_host(parts.hostname)
        ):
            structlog.get_logger("handler.deadletter").warning(
                "DEAD_LETTER_AUTH_HEADER is sent over plain http to a host that is not this "
                "machine: the credential crosses the network in cleartext; use an https URL",
                sink=self.description,
            )
        self._clock = clock
        # The function's own transport (one pool for ECS and the sink) unless told otherwise.
        self._http = httpx.AsyncClient(transport=transport, trust_env=False)
        self._owns_transport = transport is None

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """POST the records in chunks, in order; on failure, say how many were stored."""
        stored = 0
        for start in range(0, len(records), HTTP_SINK_CHUNK):
            chunk = records[start : start + HTTP_SINK_CHUNK]
            try:
                await self._post(json.dumps(chunk).encode("ascii"), deadline)
            except DeadLetterError as exc:
                raise DeadLetterError(str(exc), stored=stored) from None
            stored += len(chunk)

    def _headers(self, body: bytes, webhook_id: str) -> dict[str, str]:
        """The headers of one attempt: signed now, when a secret is configured."""
        headers = {"Content-Type": "application/json"}
        if self._header is not None:
            name, value = self._header
            headers[name] = value
        if self._signer is not None:
            now = dt.datetime.fromtimestamp(int(self._clock()), dt.UTC)
            headers["webhook-id"] = webhook_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._signer.sign(webhook_id, now, body.decode("ascii"))
        return headers

    async def _post(self, body: bytes, deadline: float | None) -> None:
        """One chunk, retried by stamina on network errors, 429 and 5xx, never past `deadline`."""
        last = ["no time left before the invocation's deadline"]
        webhook_id = f"msg_{uuid.uuid4().hex}"

        def retryable(exc: Exception) -> bool:
            return isinstance(exc, _Retryable)

        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in retrying.attempts(
                    retryable,
                    max_attempts=HTTP_SINK_ATTEMPTS,
                    deadline=deadline,
                    wait_initial=0.1,
                    wait_max=1.0,
                    wait_jitter=0.1,
                ):
                    with attempt:
                        await self._post_once(body, webhook_id, deadline, last)
                        return
        except TimeoutError:
            if last[0].startswith("no time"):
                last[0] = "no answer before the invocation's deadline"
        except (_Retryable, _Refused):
            pass
        raise DeadLetterError(f"cannot {self.description}: {last[0]}")

    async def _post_once(
        self, body: bytes, webhook_id: str, deadline: float | None, last: list[str]
    ) -> None:
        timeout = retrying.time_left(deadline, HTTP_SINK_TIMEOUT_S)
        if timeout <= 0.0:
            raise TimeoutError
        headers = self._headers(body, webhook_id)
        try:
            # The whole POST, not each read: a sink trickling bytes (or endless 100 Continue
            # lines) is cut at the timeout.
            async with asyncio.timeout(timeout):
                response = await self._http.post(
                    self._url, content=body, headers=headers, timeout=timeout
                )
        except (httpx.TimeoutException, TimeoutError):
            last[0] = f"no answer within {timeout:.1f} s"
            raise _Retryable(last[0]) from None
        except httpx.HTTPError as exc:
            last[0] = type(exc).__name__
            raise _Retryable(last[0]) from None
        if response.is_success:
            return
        last[0] = f"HTTP {response.status_code}"
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retryable(last[0])
        raise _Refused(last[0])

    async def aclose(self) -> None:
        """Close the HTTP client (not a transport it shares with the ECS client)."""
        if self._owns_transport:
            await self._http.aclose()


def _webhook_signer(secret: str | None) -> Webhook | None:
    """The Standard Webhooks signer of `secret`; ValueError (never quoting it) if unusable."""
    if secret is None:
        return None
    from standardwebhooks.webhooks import Webhook

    try:
        return Webhook(secret)
    except Exception:  # noqa: BLE001 - binascii.Error, EmptyWebhookSecretError: the value's fault
        raise ValueError(
            "DEAD_LETTER_SECRET: must be a Standard Webhooks secret: whsec_ followed by base64"
        ) from None


def _smn_sink(
    url: str,
    transport: httpx.AsyncBaseTransport | None,
    auth: httpx.Auth | None,
    endpoint: str | None,
) -> DeadLetterSink:
    from handler.queues.sinks import SmnSink
    from handler.queues.smn import parse_topic

    topic = parse_topic(url, endpoint=endpoint)
    if auth is None:
        raise ValueError(
            "DEAD_LETTER_URL: an SMN topic is published to with the ECS calls' credentials, "
            "and none were given"
        )
    return SmnSink(topic, auth, transport=transport)


def _sqs_sink(
    url: str,
    transport: httpx.AsyncBaseTransport | None,
    aws: Mapping[str, str],
    credentials: tuple[str, str, str | None] | None,
) -> DeadLetterSink:
    from handler.queues.sqs import parse_queue

    queue = parse_queue(url, aws)
    if credentials is None:
        raise ValueError(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: needed to sign for the SQS queue of "
            "DEAD_LETTER_URL (Lambda sets them from the function's role)"
        )
    from handler.queues.sigv4 import AwsCredentials
    from handler.queues.sinks import SqsSink

    try:
        SqsSink.check_signer()
    except ImportError:
        raise ValueError(
            "DEAD_LETTER_URL: an SQS queue needs aws-sdk-signers, which needs Python 3.12 or "
            "later (the function's runtime)"
        ) from None
    return SqsSink(queue, AwsCredentials(*credentials), transport=transport)


class _Retryable(Exception):
    """A POST worth another attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Refused(Exception):
    """A POST the sink refused for good (a 4xx other than 429)."""


def make_sink(
    url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    aws: Mapping[str, str] | None = None,
    aws_credentials: tuple[str, str, str | None] | None = None,
    huawei_auth: httpx.Auth | None = None,
    smn_endpoint: str | None = None,
    http_auth: HttpSinkAuth | None = None,
) -> DeadLetterSink:
    """Build the sink that DEAD_LETTER_URL names: `log`, a path, `file://…`, `http(s)://…`
    (authenticated by `http_auth`), an SQS queue (`sqs://…`, or the https URL of one) with the
    AWS_* settings given, or an SMN topic (`smn://urn:smn:…`) published to with `huawei_auth`,
    the ECS calls' own authentication.

    Raises ValueError saying what is wrong or missing.
    """
    if url.lower() == "log":
        return LogSink()
    from handler.queues.smn import is_smn_url
    from handler.queues.sqs import is_sqs_url

    if is_sqs_url(url):
        return _sqs_sink(url, transport, aws or {}, aws_credentials)
    if is_smn_url(url):
        return _smn_sink(url, transport, huawei_auth, smn_endpoint)
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return HttpSink(url, transport=transport, auth=http_auth)
    if parts.scheme == "file":
        return FileSink(Path(unquote(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:
        raise ValueError(f"DEAD_LETTER_URL: unsupported scheme {parts.scheme!r}")
    return FileSink(Path(url))
