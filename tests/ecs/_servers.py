"""The transport tests' small servers on 127.0.0.1, the paths they test, and their leak check.

`LocalServer` runs the server and counts connections; its kinds differ in what a connection
says: `RawServer` parses each request and answers from a `Replier`, `ScriptedServer` runs a
raw-bytes script (any misbehaviour), `StreamServer` streams a body chunk by chunk.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from types import TracebackType
from typing import Self

import httpx
import pytest

from handler.ecs.transport import AdaptiveTransport, AiohttpTransport

#: The two paths a request can take: the lean one (AdaptiveTransport before it switches: h11
#: for a direct URL, httpcore for one a proxy carries) and aiohttp (AiohttpTransport, or
#: AdaptiveTransport told to use it from the start).
PATHS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "lean": lambda: AdaptiveTransport(switch_after=None),
    "aiohttp": AiohttpTransport,
    "adaptive-aiohttp": lambda: AdaptiveTransport(switch_after=0),
}

Make = Callable[[], httpx.AsyncBaseTransport]

#: The proxy variables (each also in upper case) that `no_proxy_environment` removes.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every proxy variable (and REQUEST_METHOD, which turns HTTP_PROXY off) for a test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@contextmanager
def failing_on_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on any ResourceWarning or asyncio/aiohttp "Unclosed ..." report within."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.ERROR):
            yield
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    leaks += [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
    assert leaks == []


@dataclass
class LocalServer:
    """A server on 127.0.0.1 (https with `tls`) that numbers its connections and tracks them.

    `opened` counts the connections, `open` holds the numbers of those the client has not
    closed yet, `most_open` is the most open at once. A subclass says what a connection does.
    """

    _: KW_ONLY
    tls: ssl.SSLContext | None = None
    url: str = ""
    opened: int = 0
    open: set[int] = field(default_factory=set)
    most_open: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_all_closed(self, timeout_s: float = 2.0) -> bool:
        """True once every connection a client opened has been closed by it."""
        for _ in range(int(timeout_s / 0.01)):
            if not self.open:
                break
            await asyncio.sleep(0.01)
        return not self.open

    async def wait_closed(self, number: int) -> bool:
        """True once the client closed connection `number` (the server reads its EOF)."""
        for _ in range(200):
            if number not in self.open:
                return True
            await asyncio.sleep(0.01)
        return False

    async def converse(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """What connection `number` does; it is closed when this returns."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        number = self.opened
        self.opened += 1
        self.open.add(number)
        self.most_open = max(self.most_open, len(self.open))
        try:
            await self.converse(number, reader, writer)
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self.open.discard(number)
            writer.close()
            self._tasks.discard(task)


# --- RawServer: requests parsed, answered by a Replier ------------------------------------------


@dataclass
class Seen:
    """One request as a server read it."""

    connection: int
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


#: status, headers, body; or None to close the connection without answering.
Reply = tuple[int, list[tuple[str, str]], bytes] | None
Replier = Callable[[Seen], Awaitable[Reply]]


async def no_content(seen: Seen) -> Reply:
    return 204, [], b""


@dataclass
class RawServer(LocalServer):
    """A small HTTP/1.1 server that logs every request (`seen`) and answers it with `reply`."""

    reply: Replier = no_content
    seen: list[Seen] = field(default_factory=list)

    async def converse(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")[:-2]
            method, target, _ = request_line.split(" ")
            headers = [tuple(line.split(": ", 1)) for line in lines]
            seen = Seen(number, method, target, headers, b"")  # type: ignore[arg-type]
            length = int(seen.header("Content-Length") or 0)
            seen.body = await reader.readexactly(length)
            self.seen.append(seen)
            reply = await self.reply(seen)
            if reply is None:
                break
            status, reply_headers, body = reply
            lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in reply_headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()


@contextmanager
def serving_in_thread(reply: Replier = no_content) -> Iterator[RawServer]:
    """A RawServer on its own loop in a thread: it keeps serving whatever the test's loops do."""
    server = RawServer(reply)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def run() -> None:
        async with server:
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


def all_closed(server: RawServer, timeout_s: float = 2.0) -> bool:
    """True once every connection to a `serving_in_thread` server has been closed by its client."""
    end = time.monotonic() + timeout_s
    while server.open and time.monotonic() < end:
        time.sleep(0.01)
    return not server.open


# --- ScriptedServer: raw bytes, any misbehaviour -------------------------------------------------

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

#: One connection's conversation: its number, and its streams.
Script = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> str:
    """Read one body-less request's head; return its target."""
    head = await reader.readuntil(b"\r\n\r\n")
    return head.split(b" ", 2)[1].decode()


@dataclass
class ScriptedServer(LocalServer):
    """A server whose every connection runs `script` (raw bytes, any misbehaviour)."""

    script: Script

    async def converse(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self.script(number, reader, writer)


# --- StreamServer: bodies streamed chunk by chunk ------------------------------------------------

#: A streamed reply: its head (status line and headers, without the blank line), then its body's
#: chunks; a None chunk stalls: nothing more is sent until the client closes the connection.
StreamReply = tuple[bytes, Iterable[bytes | None]]


@dataclass
class StreamServer(LocalServer):
    """HTTP/1.1: answers each request with `reply(request head)`, body streamed.

    It keeps the request heads, counts the body bytes the client took (`sent`), and keeps a
    connection alive for the next request until the client closes it.
    """

    reply: Callable[[bytes], StreamReply]
    heads: list[bytes] = field(default_factory=list)
    sent: int = 0

    async def converse(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(request)
            for line in request.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    await reader.readexactly(int(value))
            reply_head, chunks = self.reply(request)
            writer.write(reply_head + b"\r\n\r\n")
            for chunk in chunks:
                if chunk is None:
                    await reader.read()  # until the client closes
                    return
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
            await writer.drain()
