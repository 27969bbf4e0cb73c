"""Reply bodies are bounded and never decompressed, on every path (h11, httpcore, aiohttp).

An error reply (status >= 300) keeps at most its first 64 KiB, a successful one is at most
32 MiB (a RemoteProtocolError beyond); a body cut short closes its connection. A body comes
as it was sent: its Content-Encoding is handed to httpx renamed, so httpx does not inflate it.
Every server here is on 127.0.0.1; the httpcore path is a direct server named as the proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import pytest

from handler.ecs.transport import (
    ENCODING_HEADER,
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    TRUNCATED_HEADER,
    AdaptiveTransport,
    AiohttpTransport,
    _common,
)
from tests.ecs._servers import StreamReply, StreamServer, failing_on_leaks, no_proxy_environment

MiB = 1024 * 1024


def head(status: int, *headers: str) -> bytes:
    return "\r\n".join([f"HTTP/1.1 {status} X", *headers]).encode("latin-1")


def whole(status: int, body: bytes, *headers: str) -> StreamReply:
    return head(status, f"Content-Length: {len(body)}", *headers), [body]


def endless(status: int, size: int, chunk: bytes = b"x" * 65536) -> StreamReply:
    """A reply that declares `size` bytes and sends them chunk by chunk (as long as read)."""
    return head(status, f"Content-Length: {size}"), itertools.repeat(chunk, size // len(chunk))


#: Builds a transport (with body limits, if given) for a server; returns it and the base URL.
Make = Callable[..., tuple[httpx.AsyncBaseTransport, str]]

PATHS = ("h11", "httpcore", "aiohttp", "adaptive-aiohttp")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy_environment(monkeypatch)


@pytest.fixture(autouse=True)
def no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on any ResourceWarning or asyncio "Unclosed ..." report: a cut leaves nothing open."""
    with failing_on_leaks(caplog):
        yield


@pytest.fixture(params=PATHS)
def make(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Make:
    path: str = request.param

    def build(
        server_url: str,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_error_body_bytes: int = MAX_ERROR_BODY_BYTES,
    ) -> tuple[httpx.AsyncBaseTransport, str]:
        limits = {"max_body_bytes": max_body_bytes, "max_error_body_bytes": max_error_body_bytes}
        if path == "httpcore":  # the server, named as the proxy, answers the forwarded request
            monkeypatch.setenv("HTTP_PROXY", server_url)
            return AdaptiveTransport(switch_after=None, **limits), "http://ecs.test"
        if path == "aiohttp":
            return AiohttpTransport(
                max_body_bytes=max_body_bytes, max_error_body_bytes=max_error_body_bytes
            ), server_url
        return AdaptiveTransport(switch_after=0 if path != "h11" else None, **limits), server_url

    return build


def get(url: str, **timeouts: float) -> httpx.Request:
    return httpx.Request(
        "GET", url, extensions={"timeout": httpx.Timeout(5.0, **timeouts).as_dict()}
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip.compress(b"\0" * (64 * MiB), 9)  # about 64 KB on the wire


def test_the_limits() -> None:
    assert MAX_ERROR_BODY_BYTES == 64 * 1024
    assert MAX_BODY_BYTES == 32 * 1024 * 1024
    with pytest.raises(ValueError, match=">= 0"):
        AdaptiveTransport(max_body_bytes=-1)
    with pytest.raises(ValueError, match=">= 0"):
        AiohttpTransport(max_error_body_bytes=-1)


def test_a_gzip_bomb_error_reply_comes_as_its_raw_bytes(make: Make, bomb: bytes) -> None:
    assert len(bomb) < MAX_ERROR_BODY_BYTES

    def reply(request: bytes) -> StreamReply:
        if b"/warm" in request:
            return whole(204, b"")
        return whole(500, bomb, "Content-Encoding: gzip")

    async def main() -> tuple[httpx.Response, float, int]:
        async with StreamServer(reply) as server:
            transport, base = make(server.url)
            await transport.handle_async_request(get(f"{base}/warm"))  # imports done
            tracemalloc.start()
            try:
                started = time.perf_counter()
                response = await transport.handle_async_request(get(f"{base}/x"))
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            await transport.aclose()
        return response, elapsed, peak

    response, elapsed, peak = asyncio.run(main())
    assert response.status_code == 500
    assert response.content == bomb  # as sent: nothing inflated
    assert "content-encoding" not in response.headers
    assert response.headers[ENCODING_HEADER] == "gzip"  # renamed, not hidden
    assert TRUNCATED_HEADER not in response.headers
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB allocated for one reply"  # inflated: 64 MiB
    assert elapsed < 1.0


def test_a_huge_error_body_is_cut_and_its_connection_closed(make: Make) -> None:
    def reply(request: bytes) -> StreamReply:
        return endless(500, 48 * MiB) if b"/huge" in request else whole(204, b"")

    async def main() -> tuple[httpx.Response, int, int]:
        async with StreamServer(reply) as server:
            transport, base = make(server.url)
            response = await transport.handle_async_request(get(f"{base}/huge"))
            assert server.opened == 1
            after = await transport.handle_async_request(get(f"{base}/next"))
            assert after.status_code == 204
            await transport.aclose()
        return response, server.opened, server.sent

    response, opened, sent = asyncio.run(main())
    assert response.status_code == 500
    assert len(response.content) == MAX_ERROR_BODY_BYTES  # (no diff of megabytes if not)
    assert response.content.strip(b"x") == b""
    assert response.headers[TRUNCATED_HEADER] == str(MAX_ERROR_BODY_BYTES)
    assert response.headers["content-length"] == str(48 * MiB)  # the server's, as it came
    assert opened == 2  # the cut connection was not reused
    assert sent < 16 * MiB, f"{sent / MiB:.0f} MiB of the error body were taken"


def test_an_endless_chunked_error_body_is_cut(make: Make) -> None:
    def chunks() -> Iterator[bytes]:
        piece = b"y" * 4096
        for _ in range(64 * MiB // len(piece)):  # "endless" for any reader that keeps to a limit
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"0\r\n\r\n"

    async def main() -> httpx.Response:
        async with StreamServer(lambda _: (head(503, "Transfer-Encoding: chunked"), chunks())) as s:
            transport, base = make(s.url, max_error_body_bytes=10_000)
            response = await transport.handle_async_request(get(f"{base}/x"))
            await transport.aclose()
        return response

    response = asyncio.run(main())
    assert response.status_code == 503
    assert len(response.content) == 10_000
    assert response.content.strip(b"y") == b""
    assert response.headers[TRUNCATED_HEADER] == "10000"


def test_an_error_body_of_exactly_the_limit_is_whole(make: Make) -> None:
    body = b"e" * 1000

    async def main() -> tuple[httpx.Response, httpx.Response, int]:
        async with StreamServer(lambda _: whole(404, body)) as server:
            transport, base = make(server.url, max_error_body_bytes=1000)
            first = await transport.handle_async_request(get(f"{base}/a"))
            second = await transport.handle_async_request(get(f"{base}/b"))
            await transport.aclose()
        return first, second, server.opened

    first, second, opened = asyncio.run(main())
    assert first.content == second.content == body
    assert TRUNCATED_HEADER not in first.headers
    assert opened == 1


def test_a_successful_body_over_its_limit_is_a_protocol_error(make: Make) -> None:
    def reply(request: bytes) -> StreamReply:
        return endless(200, 64 * MiB) if b"/big" in request else whole(200, b"m" * MiB)

    async def main() -> tuple[int, int]:
        async with StreamServer(reply) as server:
            transport, base = make(server.url, max_body_bytes=MiB)
            exact = await transport.handle_async_request(get(f"{base}/exact"))
            assert len(exact.content) == MiB  # at the limit: whole
            with pytest.raises(httpx.RemoteProtocolError, match=f"larger than {MiB} bytes"):
                await transport.handle_async_request(get(f"{base}/big"))
            after = await transport.handle_async_request(get(f"{base}/exact"))
            assert after.status_code == 200
            await transport.aclose()
        return server.opened, server.sent

    opened, sent = asyncio.run(main())
    assert opened == 2  # /exact and /big on one connection, then a new one: /big's was closed
    assert sent < 32 * MiB, f"{sent / MiB:.0f} MiB of the body were taken"


@pytest.mark.parametrize("status", [200, 500])
def test_a_stalled_body_is_bounded_by_the_read_timeout(make: Make, status: int) -> None:
    def reply(request: bytes) -> StreamReply:
        return head(status, "Content-Length: 100"), [b"0123456789", None]  # 10 bytes of 100

    async def main() -> float:
        async with StreamServer(reply) as server:
            transport, base = make(server.url)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                await transport.handle_async_request(get(f"{base}/x", read=0.2))
            elapsed = loop.time() - started
            await transport.aclose()
        return elapsed

    assert asyncio.run(main()) < 2.0


def test_small_bodies_are_unchanged_and_connections_kept_alive(make: Make) -> None:
    ok = b'{"metadata": {"lease-owner": "web-1"}}'
    missing = b'{"itemNotFound": {"code": 404, "message": "Metadata item was not found"}}'
    raw = gzip.compress(b'{"ok": true}')

    def reply(request: bytes) -> StreamReply:
        target = request.split(b" ", 2)[1]
        if target.endswith(b"/ok"):
            return whole(200, ok, "Content-Type: application/json", "X-Request-Id: r-1")
        if target.endswith(b"/gzip"):
            return whole(200, raw, "Content-Encoding: gzip")
        return whole(404, missing, "Content-Type: application/json")

    async def main() -> tuple[list[httpx.Response], int, list[bytes]]:
        async with StreamServer(reply) as server:
            transport, base = make(server.url)
            async with httpx.AsyncClient(transport=transport) as client:
                responses = [await client.get(f"{base}/{name}") for name in ("ok", "no", "gzip")]
                responses.append(await client.get(f"{base}/ok"))
        return responses, server.opened, server.heads

    (first, second, third, fourth), opened, heads = asyncio.run(main())
    assert (first.status_code, first.content, first.json()) == (
        200,
        ok,
        {"metadata": {"lease-owner": "web-1"}},
    )
    assert first.headers["x-request-id"] == "r-1"
    assert first.headers["content-length"] == str(len(ok))
    assert (second.status_code, second.content) == (404, missing)
    assert (third.status_code, third.content) == (200, raw)  # never inflated
    assert third.headers[ENCODING_HEADER] == "gzip"
    assert "content-encoding" not in third.headers
    assert fourth.content == ok
    assert all(TRUNCATED_HEADER not in r.headers for r in (first, second, third, fourth))
    assert opened == 1  # every reply read to its end: one connection, kept alive
    if heads[0].startswith(b"GET http://ecs.test/"):  # the httpcore path, through the "proxy"
        assert all(h.startswith(b"GET http://ecs.test/") for h in heads)


def test_the_headers_httpx_gets() -> None:
    request = httpx.Request("GET", "http://ecs.test/x")
    body = _common._Body(request, _common._Limits(10, 4), 500)
    assert body.add(b"abc")
    assert not body.add(b"defg")
    response = _common._response(
        request,
        500,
        [(b"Content-Encoding", b"br"), (b"Content-Length", b"7"), (b"X-Other", b"1")],
        body,
        b"HTTP/1.1",
    )
    assert response.content == b"abcd"
    assert response.headers.raw == [
        (b"x-janitor-content-encoding", b"br"),
        (b"Content-Length", b"7"),
        (b"X-Other", b"1"),
        (b"x-janitor-body-truncated", b"4"),
    ]
