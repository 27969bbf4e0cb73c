"""Dead letters (SPEC §7): the record of each pair not settled, and the sinks that keep them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from handler.logs import REDACTOR, unfiltered_logger
from handler.outcomes import Result

SCHEMA = "ecs-metadata-janitor/dead-letter/1"

#: The longest one POST of dead letters may take (less when the invocation's time is short).
HTTP_SINK_TIMEOUT_S = 10.0


class DeadLetterError(RuntimeError):
    """A dead letter could not be written; the caller must make the platform retry."""


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
    redacted: dict[str, Any] = REDACTOR.value(record)
    return redacted


class DeadLetterSink(Protocol):
    """Where dead letters go; `write` returns only once every record is stored."""

    description: str

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Store the records, before the loop time `deadline` if given, or raise DeadLetterError."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds."""
        ...


class LogSink:
    """Dead letters as structured log lines (one per record, level ERROR)."""

    description = "the log (one 'dead letter' line each)"

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Log each record, whatever the configured log level: a dead letter is never filtered."""
        log = unfiltered_logger()
        for record in records:
            log.error("dead letter", dead_letter=record)

    async def aclose(self) -> None:
        """Nothing to release."""


class FileSink:
    """Dead letters appended to a JSON Lines file, flushed and fsync'd before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"the file {path}"
        self._lock = asyncio.Lock()

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Append the records as whole lines in one write, then fsync."""
        if not records:
            return
        # ASCII JSON: no character inside a record (U+0085, U+2028, a lone surrogate) can look
        # like a line break to a reader or fail to encode.
        data = "".join(json.dumps(r) + "\n" for r in records).encode("ascii")
        async with self._lock:
            try:
                self._append(data)
            except OSError as exc:
                raise DeadLetterError(
                    f"cannot write dead letters to {self.path}: {exc.strerror}"
                ) from None

    async def aclose(self) -> None:
        """Nothing to release: each write opens and closes the file."""


class HttpSink:
    """Dead letters POSTed as one JSON array per batch to an HTTP(S) endpoint; 2xx means stored."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        # No query string and no user info: either may carry a credential.
        self.description = f"POST {parts.scheme}://{parts.hostname}{port}{parts.path}"
        self._url = url
        self._http = httpx.AsyncClient(transport=transport)

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """POST the records; up to three attempts on network errors, 429 and 5xx, in time."""
        if not records:
            return
        # ASCII JSON: any text, even a lone surrogate from a bad payload, encodes.
        body = json.dumps(records).encode("ascii")
        headers = {"Content-Type": "application/json"}
        loop = asyncio.get_running_loop()
        last = "no time left before the invocation's deadline"
        for attempt in range(3):
            timeout = HTTP_SINK_TIMEOUT_S
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
                if timeout <= 0.05:
                    break
            try:
                async with asyncio.timeout(timeout):  # whatever the transport does
                    response = await self._http.post(
                        self._url, content=body, headers=headers, timeout=timeout
                    )
            except TimeoutError:
                last = f"no answer within {timeout:.1f} s"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if response.is_success:
                    return
                last = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            if attempt < 2:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise DeadLetterError(f"cannot {self.description}: {last}")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


def make_sink(url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> DeadLetterSink:
    """Build the sink that DEAD_LETTER_URL names: `log`, a path, `file://…` or `http(s)://…`."""
    if url.lower() == "log":
        return LogSink()
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return HttpSink(url, transport=transport)
    if parts.scheme == "file":
        return FileSink(Path(unquote(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:
        raise ValueError(f"DEAD_LETTER_URL: unsupported scheme {parts.scheme!r}")
    return FileSink(Path(url))
