"""The lean path's own HTTP/1.1 client (h11 on asyncio streams): keep-alive, limits, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from handler.ecs.transport import AdaptiveTransport, _h11
from tests.ecs._servers import (
    NO_CONTENT,
    RawServer,
    Reply,
    Script,
    ScriptedServer,
    Seen,
    failing_on_leaks,
    read_request,
)


@pytest.fixture(autouse=True)
def no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on any ResourceWarning or asyncio "Unclosed ..." report."""
    with failing_on_leaks(caplog):
        yield


def lean(**options: int | float) -> AdaptiveTransport:
    """The lean path alone (it never moves to aiohttp); direct URLs go over h11."""
    return AdaptiveTransport(switch_after=None, **options)  # type: ignore[arg-type]


def delete(url: str, **timeouts: float) -> httpx.Request:
    extensions = {"timeout": httpx.Timeout(5.0, **timeouts).as_dict()}
    return httpx.Request("DELETE", url, extensions=extensions)


def answering(
    reply: bytes = NO_CONTENT, *, then: bytes = b"", sent: asyncio.Event | None = None
) -> Script:
    """Answer every request with `reply`; the first answer followed by `then`.

    With `sent`, `then` goes out once the reply has been read, and `sent` is set.
    """

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        first = True
        while True:
            await read_request(reader)
            if first and then and sent is None:
                writer.write(reply + then)
            else:
                writer.write(reply)
            await writer.drain()
            if first and then and sent is not None:
                await asyncio.sleep(0.02)
                writer.write(then)
                sent.set()
            first = False

    return script


async def by_connection(seen: Seen) -> Reply:
    """Answer with the number of the connection the request came on."""
    return 200, [], str(seen.connection).encode()


# --- keep-alive -----------------------------------------------------------------------------


def test_one_connection_carries_requests_in_turn_and_nothing_is_added() -> None:
    async def main() -> list[Seen]:
        async with RawServer(by_connection) as server:
            transport = lean()
            for n in range(3):
                response = await transport.handle_async_request(delete(f"{server.url}/{n}"))
                assert response.status_code == 200
                assert await response.aread() == b"0"
                assert response.extensions["http_version"] == b"HTTP/1.1"
            await transport.aclose()
            assert await server.wait_all_closed()
        return server.seen

    seen = asyncio.run(main())
    assert [(s.connection, s.target) for s in seen] == [(0, "/0"), (0, "/1"), (0, "/2")]
    # a body-less DELETE goes out with the headers httpx built, nothing else (no Content-Length)
    assert [[name.lower() for name, _ in s.headers] for s in seen] == [["host"]] * 3


def test_idle_connections_are_reused_last_in_first_out() -> None:
    async def reply(seen: Seen) -> Reply:
        if seen.target == "/slow":
            await asyncio.sleep(0.2)
        return 200, [], str(seen.connection).encode()

    async def main() -> list[bytes]:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=lean()) as client:
            fast = asyncio.create_task(client.get(f"{server.url}/fast"))
            slow = asyncio.create_task(client.get(f"{server.url}/slow"))
            first, last = await fast, await slow  # /fast's connection goes idle first
            after = await client.get(f"{server.url}/next")
            return [first.content, last.content, after.content]

    first, last, after = asyncio.run(main())
    assert first != last
    assert after == last  # the connection that went idle last


def test_a_connection_the_server_said_to_close_is_closed_not_reused() -> None:
    async def reply(seen: Seen) -> Reply:
        return 200, [("Connection", "close")], str(seen.connection).encode()

    async def main() -> list[bytes]:
        async with RawServer(reply) as server, httpx.AsyncClient(transport=lean()) as client:
            answers = [(await client.get(f"{server.url}/{n}")).content for n in range(2)]
            assert await server.wait_all_closed()  # the client closed both (the server did not)
            return answers

    assert asyncio.run(main()) == [b"0", b"1"]


@pytest.mark.parametrize("seen_by", ["the kernel", "the loop"])
def test_an_idle_connection_the_server_closed_is_dropped_before_anything_is_sent(
    seen_by: str,
) -> None:
    async def answer_once(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(NO_CONTENT)  # keep-alive, as far as the headers go; then it closes
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    closed = asyncio.Event()

    async def main() -> int:
        async with ScriptedServer(answer_once) as server:
            transport = lean()
            await transport.handle_async_request(delete(f"{server.url}/one"))
            await closed.wait()  # the server's close is in the client's kernel now
            if seen_by == "the loop":
                await asyncio.sleep(0.05)  # the client's loop has read the EOF too
            response = await transport.handle_async_request(delete(f"{server.url}/two"))
            await transport.aclose()
            assert server.opened == 2
            return response.status_code

    assert asyncio.run(main()) == 204


@pytest.mark.parametrize("when", ["with the reply", "idle, in the kernel", "idle, read"])
def test_bytes_after_a_reply_are_never_read_as_the_next_reply(when: str) -> None:
    late = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"

    async def main() -> list[int]:
        sent = None if when == "with the reply" else asyncio.Event()
        async with ScriptedServer(answering(then=late, sent=sent)) as server:
            transport = lean()
            statuses = []
            for n in range(2):
                response = await transport.handle_async_request(delete(f"{server.url}/{n}"))
                statuses.append(response.status_code)
                if sent is not None and not sent.is_set():
                    await sent.wait()  # the stray 408 is in the client's kernel now
                    if when == "idle, read":
                        await asyncio.sleep(0.05)  # and its loop has read it
            await transport.aclose()
            assert server.opened == 2
            return statuses

    assert asyncio.run(main()) == [204, 204]


def test_an_idle_connection_past_its_keepalive_is_closed_not_reused() -> None:
    async def main() -> list[bytes]:
        async with RawServer(by_connection) as server:
            transport = lean(keepalive_s=0.05)
            async with httpx.AsyncClient(transport=transport) as client:
                first = (await client.get(server.url)).content
                await asyncio.sleep(0.1)
                second = (await client.get(server.url)).content
                for _ in range(100):  # the expired connection was closed by the client
                    if 0 not in server.open:
                        break
                    await asyncio.sleep(0.01)
                assert server.open == {1}
            return [first, second]

    assert asyncio.run(main()) == [b"0", b"1"]


def test_a_chunked_reply_is_read_whole_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def main() -> list[httpx.Response]:
        async with ScriptedServer(answering(chunked)) as server:
            async with httpx.AsyncClient(transport=lean()) as client:
                responses = [await client.get(f"{server.url}/{n}") for n in range(2)]
            assert server.opened == 1
            return responses

    for response in asyncio.run(main()):
        assert (response.status_code, response.content) == (200, b"hello world")
        assert response.headers["X-Id"] == "7"


def test_an_http_1_0_reply_without_a_length_is_read_to_the_close() -> None:
    async def until_close(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def main() -> list[httpx.Response]:
        async with ScriptedServer(until_close) as server:
            async with httpx.AsyncClient(transport=lean()) as client:
                responses = [await client.get(f"{server.url}/{n}") for n in range(2)]
            assert server.opened == 2
            return responses

    for response in asyncio.run(main()):
        assert (response.content, response.http_version) == (b"all of it", "HTTP/1.0")


def test_an_informational_reply_is_skipped() -> None:
    async def main() -> int:
        script = answering(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + NO_CONTENT)
        async with ScriptedServer(script) as server, httpx.AsyncClient(transport=lean()) as client:
            return (await client.delete(server.url)).status_code

    assert asyncio.run(main()) == 204


# --- limits ---------------------------------------------------------------------------------


def test_at_most_max_connections_are_open() -> None:
    async def slow(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        while True:
            await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(NO_CONTENT)
            await writer.drain()

    async def main() -> None:
        async with ScriptedServer(slow) as server:
            transport = lean(max_connections=3)
            async with httpx.AsyncClient(transport=transport) as client:
                statuses = await asyncio.gather(
                    *(client.delete(f"{server.url}/{n}") for n in range(20))
                )
            assert {s.status_code for s in statuses} == {204}
            assert (server.opened, server.most_open) == (3, 3)

    asyncio.run(main())


def test_waiting_longer_than_the_pool_timeout_is_a_pool_timeout() -> None:
    async def reply(seen: Seen) -> Reply:
        if seen.target == "/slow":
            await asyncio.sleep(0.3)
        return 204, [], b""

    async def main() -> None:
        async with RawServer(reply) as server:
            transport = lean(max_connections=1)
            slow = asyncio.create_task(transport.handle_async_request(delete(f"{server.url}/slow")))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await transport.handle_async_request(delete(f"{server.url}/late", pool=0.05))
            assert (await slow).status_code == 204
            response = await transport.handle_async_request(delete(f"{server.url}/after"))
            assert response.status_code == 204
            await transport.aclose()
            assert [(s.connection, s.target) for s in server.seen] == [(0, "/slow"), (0, "/after")]

    asyncio.run(main())


def test_a_full_pool_closes_an_idle_connection_to_another_origin() -> None:
    async def main() -> None:
        async with RawServer() as one, RawServer() as other:
            transport = lean(max_connections=1)
            async with httpx.AsyncClient(transport=transport) as client:
                assert (await client.delete(one.url)).status_code == 204
                assert (await client.delete(other.url)).status_code == 204
                assert await one.wait_all_closed()
                assert other.open == {0}

    asyncio.run(main())


def test_a_cancelled_request_frees_its_connection() -> None:
    async def reply(seen: Seen) -> Reply:
        if seen.target == "/slow":
            await asyncio.sleep(5)
        return 204, [], b""

    async def main() -> None:
        async with RawServer(reply) as server:
            transport = lean(max_connections=1)
            slow = asyncio.create_task(transport.handle_async_request(delete(f"{server.url}/slow")))
            await asyncio.sleep(0.05)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            response = await transport.handle_async_request(delete(f"{server.url}/next"))
            assert response.status_code == 204
            await transport.aclose()
            # the cancelled exchange's connection was closed, not reused for /next
            assert [(s.connection, s.target) for s in server.seen] == [(0, "/slow"), (1, "/next")]

    asyncio.run(main())


# --- errors ---------------------------------------------------------------------------------


def test_a_reply_cut_short_is_a_protocol_error_and_the_connection_is_closed() -> None:
    async def short(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with ScriptedServer(short) as server:
            transport = lean()
            with pytest.raises(
                httpx.RemoteProtocolError, match="without sending complete message body"
            ):
                await transport.handle_async_request(delete(server.url))
            await transport.aclose()

    asyncio.run(main())


def test_a_reply_that_is_not_http_is_a_protocol_error() -> None:
    async def main() -> None:
        async with ScriptedServer(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as server:
            transport = lean()
            with pytest.raises(httpx.RemoteProtocolError):
                await transport.handle_async_request(delete(server.url))
            await transport.aclose()

    asyncio.run(main())


def test_a_read_timeout_mid_body_closes_the_connection() -> None:
    async def stall(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        if number == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await writer.drain()
            assert await reader.read() == b""  # until the client closes it
            return
        writer.write(NO_CONTENT)
        await writer.drain()
        await reader.read()

    async def main() -> None:
        async with ScriptedServer(stall) as server:
            transport = lean()
            with pytest.raises(httpx.ReadTimeout):
                await transport.handle_async_request(delete(server.url, read=0.1))
            assert await server.wait_closed(0)
            assert (await transport.handle_async_request(delete(server.url))).status_code == 204
            assert server.opened == 2
            await transport.aclose()

    asyncio.run(main())


def test_a_write_that_stalls_is_a_write_timeout() -> None:
    async def never_reads(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await asyncio.sleep(5)

    async def main() -> None:
        async with ScriptedServer(never_reads) as server:
            transport = lean()
            request = httpx.Request(
                "PUT",
                server.url,
                content=b"x" * (64 << 20),  # more than loopback's socket buffers hold
                extensions={"timeout": httpx.Timeout(5.0, write=0.2).as_dict()},
            )
            with pytest.raises(httpx.WriteTimeout):
                await transport.handle_async_request(request)
            await transport.aclose()

    asyncio.run(main())


def test_a_connect_that_stalls_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stalled(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(5)

    monkeypatch.setattr(asyncio, "open_connection", stalled)

    async def main() -> None:
        transport = lean(max_connections=1)
        with pytest.raises(httpx.ConnectTimeout):
            await transport.handle_async_request(delete("http://127.0.0.1:9/", connect=0.05))
        with pytest.raises(httpx.ConnectTimeout):  # the failed connect gave its slot back
            await transport.handle_async_request(delete("http://127.0.0.1:9/", connect=0.05))
        await transport.aclose()

    asyncio.run(main())


def test_an_unsupported_scheme_is_refused() -> None:
    async def main() -> None:
        transport = lean()
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
        await transport.aclose()

    asyncio.run(main())


# --- closing --------------------------------------------------------------------------------


def test_aclose_closes_a_connection_under_way_and_fails_a_waiting_request() -> None:
    async def stall(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        assert await reader.read() == b""  # no answer, until the client closes

    async def main() -> None:
        async with ScriptedServer(stall) as server:
            transport = lean(max_connections=1)
            busy = asyncio.create_task(transport.handle_async_request(delete(server.url)))
            waiting = asyncio.create_task(transport.handle_async_request(delete(server.url)))
            await asyncio.sleep(0.05)
            await transport.aclose()
            assert await server.wait_closed(0)
            with pytest.raises(httpx.TransportError):
                await busy
            with pytest.raises(RuntimeError, match="closed"):
                await waiting
            assert server.opened == 1

    asyncio.run(main())


def test_the_h11_pool_alone_closes_twice() -> None:
    pool = _h11._H11Pool(max_connections=1, keepalive_s=1.0)

    async def main() -> int:
        async with RawServer() as server:
            response = await pool.handle_async_request(delete(server.url))
            await pool.aclose()
            await pool.aclose()  # twice is fine
            return response.status_code

    assert asyncio.run(main()) == 204


def test_a_connection_opened_after_aclose_is_closed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    real = asyncio.open_connection

    async def held(*args: object, **kwargs: object) -> object:
        entered.set()
        await release.wait()
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "open_connection", held)

    async def main() -> None:
        async with RawServer() as server:
            transport = lean()
            sending = asyncio.create_task(transport.handle_async_request(delete(server.url)))
            await entered.wait()
            await transport.aclose()
            release.set()
            with pytest.raises(RuntimeError, match="closed"):
                await sending
            assert await server.wait_all_closed()
            assert server.seen == []

    asyncio.run(main())
