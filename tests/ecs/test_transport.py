"""The transports on both paths (lean: h11 or httpcore; aiohttp), against real servers on 127.0.0.1.

`RawServer` and `PATHS` are shared with the other `test_transport_*.py` files.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import httpx
import pytest

from handler.ecs.transport import AdaptiveTransport, AiohttpTransport


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
class RawServer:
    """A small HTTP/1.1 server on 127.0.0.1 that logs every request and every connection."""

    reply: Replier = no_content
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    open: set[int] = field(default_factory=set)
    opened: int = 0
    url: str = ""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = self.opened
        self.opened += 1
        self.open.add(connection)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")[:-2]
                method, target, _ = request_line.split(" ")
                headers = [tuple(line.split(": ", 1)) for line in lines]
                seen = Seen(connection, method, target, headers, b"")  # type: ignore[arg-type]
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
        except (asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self.open.discard(connection)
            writer.close()
            self._tasks.discard(task)


#: The two paths a request can take: the lean one (AdaptiveTransport before it switches: h11
#: for a direct URL, httpcore for one a proxy carries) and aiohttp (AiohttpTransport, or
#: AdaptiveTransport told to use it from the start).
PATHS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "lean": lambda: AdaptiveTransport(switch_after=None),
    "aiohttp": AiohttpTransport,
    "adaptive-aiohttp": lambda: AdaptiveTransport(switch_after=0),
}


@pytest.fixture(params=sorted(PATHS))
def make(request: pytest.FixtureRequest) -> Callable[[], httpx.AsyncBaseTransport]:
    maker: Callable[[], httpx.AsyncBaseTransport] = PATHS[request.param]
    return maker


Make = Callable[[], httpx.AsyncBaseTransport]


def test_the_encoded_path_is_sent_byte_for_byte(make: Make) -> None:
    async def main() -> int:
        async with RawServer() as server, httpx.AsyncClient(transport=make()) as client:
            response = await client.delete(f"{server.url}/m/env%3Astage/team%20name/%2E%2E")
        assert [s.target for s in server.seen] == ["/m/env%3Astage/team%20name/%2E%2E"]
        return response.status_code

    assert asyncio.run(main()) == 204


def test_nothing_is_added_to_the_request_headers(make: Make) -> None:
    async def main() -> list[tuple[str, str]]:
        async with RawServer() as server:
            transport = make()
            request = httpx.Request("DELETE", f"{server.url}/x", headers={"X-Auth-Token": "t"})
            response = await transport.handle_async_request(request)
            assert response.status_code == 204
            await transport.aclose()
        return server.seen[0].headers

    headers = {name.lower(): value for name, value in asyncio.run(main())}
    # aiohttp states an empty body as `Content-Length: 0`; nothing else is added
    assert headers.keys() - {"content-length"} == {"host", "x-auth-token"}
    assert headers.get("content-length", "0") == "0"


def test_a_body_is_sent_once_with_its_length(make: Make) -> None:
    async def main() -> Seen:
        async with RawServer() as server, httpx.AsyncClient(transport=make()) as client:
            await client.put(f"{server.url}/x", content=b'{"a": 1}')
        [seen] = server.seen
        return seen

    seen = asyncio.run(main())
    assert (seen.method, seen.body, seen.header("Content-Length")) == ("PUT", b'{"a": 1}', "8")


def test_a_body_is_never_decompressed(make: Make) -> None:
    # The API is called without Accept-Encoding; a compressed reply is kept as it came (a gzip
    # bomb in an error reply must cost nothing), its encoding visible under another name.
    packed = gzip.compress(b'{"ok": true}')

    async def reply(seen: Seen) -> Reply:
        return 200, [("Content-Encoding", "gzip")], packed

    async def main() -> httpx.Response:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=make()) as client:
            return await client.get(f"{server.url}/x")

    response = asyncio.run(main())
    assert response.content == packed
    assert "content-encoding" not in response.headers
    assert response.headers["x-janitor-content-encoding"] == "gzip"


def test_a_body_that_is_not_the_gzip_it_claims_is_returned_as_it_came(make: Make) -> None:
    async def reply(seen: Seen) -> Reply:
        return 200, [("Content-Encoding", "gzip")], b"not gzip"

    async def main() -> httpx.Response:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=make()) as client:
            return await client.get(f"{server.url}/x")

    assert asyncio.run(main()).content == b"not gzip"


def test_a_refused_connection_is_a_connect_error(make: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            async with httpx.AsyncClient(transport=make()) as client:
                await client.get(f"http://127.0.0.1:{port}/")

        with pytest.raises(httpx.ConnectError):
            asyncio.run(main())


def test_a_dropped_connection_is_a_protocol_error(make: Make) -> None:
    async def drop(seen: Seen) -> Reply:
        return None

    async def main() -> None:
        async with RawServer(drop) as server, httpx.AsyncClient(transport=make()) as client:
            try:
                await client.delete(f"{server.url}/x")
            finally:
                assert len(server.seen) == 1

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(main())


def test_the_request_read_timeout_is_honoured(make: Make) -> None:
    async def slow(seen: Seen) -> Reply:
        await asyncio.sleep(5)
        return 204, [], b""

    async def main() -> float:
        async with RawServer(slow) as server, httpx.AsyncClient(transport=make()) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{server.url}/x", timeout=httpx.Timeout(5.0, read=0.2))
            return loop.time() - start

    assert asyncio.run(main()) < 2.0


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
