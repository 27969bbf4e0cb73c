"""AdaptiveTransport: from the lean path to aiohttp off the loop; closes all it opened."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from handler.ecs.transport import AdaptiveTransport, AiohttpTransport, _loading, load_aiohttp
from tests.ecs._servers import (
    RawServer,
    Reply,
    Seen,
    all_closed,
    failing_on_leaks,
    serving_in_thread,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a fresh process: nobody has loaded aiohttp for the transports yet."""
    monkeypatch.setattr(_loading._AIOHTTP, "loaded", False)


@pytest.fixture
def held_import(monkeypatch: pytest.MonkeyPatch, not_loaded: None) -> Iterator[threading.Event]:
    """The background import blocks until the returned event is set; it runs on `threads`."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def import_aiohttp() -> None:
        threads.append(threading.current_thread())
        assert release.wait(10)
        _loading._AIOHTTP.loaded = True

    monkeypatch.setattr(_loading, "_import_aiohttp", import_aiohttp)
    release.threads = threads  # type: ignore[attr-defined]
    yield release
    release.set()


def path_of(transport: AdaptiveTransport) -> str:
    """The transport's path, read anew (not narrowed by an earlier assertion)."""
    return transport.path


async def wait_loaded() -> None:
    for _ in range(500):
        if _loading._AIOHTTP.loaded:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("aiohttp was never loaded")


_FRESH = """
import asyncio, json, sys
import httpx
import handler.ecs.transport as t
from handler.ecs.transport import _common
LIBRARIES = ("aiohttp", "anyio", "h11", "httpcore")
after_import = sorted(m for m in LIBRARIES if m in sys.modules)

async def main():
    async def serve(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 204 No Content\\r\\nContent-Length: 0\\r\\n\\r\\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await t.AdaptiveTransport().aclose()  # never used: opens and imports nothing
    unused = sorted(m for m in LIBRARIES if m in sys.modules)
    transport = t.AdaptiveTransport()
    request = httpx.Request("DELETE", f"http://127.0.0.1:{port}/x")
    response = await transport.handle_async_request(request)
    await transport.aclose()
    server.close()
    return response.status_code, unused, transport.path

status, unused, path = asyncio.run(main())
print(json.dumps({
    "after_import": after_import, "unused": unused, "status": status, "path": path,
    "loaded": sorted(m for m in LIBRARIES if m in sys.modules),
    "tls_contexts": len(_common._SSL_CONTEXT),
}))
"""


def test_a_fresh_process_answers_its_first_request_on_h11_alone_without_tls() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FRESH], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(run.stdout) == {
        "after_import": [],  # the module imports none of them
        "unused": [],
        "status": 204,
        "path": "lean",
        "loaded": ["h11"],  # neither aiohttp nor httpcore (nor anyio, which httpcore's locks use)
        "tls_contexts": 0,  # plain http never builds one
    }


def test_aiohttp_loads_on_a_worker_thread_while_the_lean_path_carries_on(
    held_import: threading.Event,
) -> None:
    async def main() -> list[Seen]:
        async with RawServer() as server:
            transport = AdaptiveTransport(switch_after=3)
            async with httpx.AsyncClient(transport=transport) as client:
                for n in range(3):
                    await client.delete(f"{server.url}/core{n}")
                assert transport.path == "lean"
                for n in range(3, 6):  # the import has started and is held: no stall
                    assert (await client.delete(f"{server.url}/core{n}")).status_code == 204
                    assert transport.path == "lean"
                threads = held_import.threads  # type: ignore[attr-defined]
                assert len(threads) == 1
                assert threads[0] is not threading.current_thread()
                held_import.set()
                await wait_loaded()
                for n in range(2):
                    assert (await client.delete(f"{server.url}/aio{n}")).status_code == 204
                    assert path_of(transport) == "aiohttp"
                # the switch closed the lean path's idle connection
                assert 0 not in server.open
            return server.seen

    seen = asyncio.run(main())
    assert [(s.connection, s.target) for s in seen] == [
        *((0, f"/core{n}") for n in range(6)),
        (1, "/aio0"),
        (1, "/aio1"),
    ]


def test_requests_under_way_finish_on_the_lean_path(not_loaded: None) -> None:
    async def reply(seen: Seen) -> Reply:
        if seen.target == "/slow":
            await asyncio.sleep(0.3)
        return 200, [], seen.target.encode()

    async def main() -> None:
        async with RawServer(reply) as server:
            transport = AdaptiveTransport(switch_after=100)
            async with httpx.AsyncClient(transport=transport) as client:
                slow = asyncio.create_task(client.get(f"{server.url}/slow"))
                await asyncio.sleep(0.1)
                assert [s.target for s in server.seen] == ["/slow"]
                _loading._AIOHTTP.loaded = True  # as if the background import had just finished
                fast = await client.get(f"{server.url}/fast")
                assert (fast.content, transport.path) == (b"/fast", "aiohttp")
                assert server.open == {0, 1}  # the lean connection still carries /slow
                assert (await slow).content == b"/slow"
                assert await server.wait_all_closed(timeout_s=0) is False
                for _ in range(100):  # then the lean path's connections are closed
                    if server.open == {1}:
                        break
                    await asyncio.sleep(0.01)
                assert server.open == {1}
            assert [(s.connection, s.target) for s in server.seen] == [(0, "/slow"), (1, "/fast")]

    asyncio.run(main())


def test_load_aiohttp_moves_every_switching_adaptive_transport_at_its_next_request(
    not_loaded: None,
) -> None:
    async def main() -> None:
        async with RawServer() as server:
            before = AdaptiveTransport(switch_after=10_000)
            never = AdaptiveTransport()  # the default never switches
            async with httpx.AsyncClient(transport=before) as client:
                await client.get(server.url)
                assert before.path == "lean"
                load_aiohttp()
                await client.get(server.url)
                assert path_of(before) == "aiohttp"
            after = AdaptiveTransport(switch_after=10_000)
            async with httpx.AsyncClient(transport=after) as client:
                await client.get(server.url)
                assert after.path == "aiohttp"
            async with httpx.AsyncClient(transport=never) as client:
                await client.get(server.url)
                assert never.path == "lean"

    asyncio.run(main())


def test_switch_after_zero_is_aiohttp_from_the_first_request(not_loaded: None) -> None:
    assert AdaptiveTransport(switch_after=0).path == "aiohttp"
    with pytest.raises(ValueError, match="switch_after"):
        AdaptiveTransport(switch_after=-1)


# --- closing --------------------------------------------------------------------------------


async def _use(transport: httpx.AsyncBaseTransport, url: str, switch: bool = False) -> None:
    async with asyncio.timeout(10):
        for n in range(3):
            await transport.handle_async_request(httpx.Request("DELETE", f"{url}/{n}"))
        if switch:
            await wait_loaded()
            await transport.handle_async_request(httpx.Request("DELETE", f"{url}/after"))
            assert isinstance(transport, AdaptiveTransport)
            assert transport.path == "aiohttp"


_SCENARIOS: dict[str, tuple[Callable[[], httpx.AsyncBaseTransport], bool]] = {
    "lean": (lambda: AdaptiveTransport(switch_after=None), False),
    "switched": (lambda: AdaptiveTransport(switch_after=2), True),
    "adaptive-aiohttp": (lambda: AdaptiveTransport(switch_after=0), False),
    "aiohttp": (AiohttpTransport, False),
}


@pytest.fixture
def no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on any ResourceWarning or asyncio/aiohttp "Unclosed ..." report."""
    with failing_on_leaks(caplog):
        yield


@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_aclose_closes_every_connection_it_opened(
    scenario: str, not_loaded: None, no_leaks: None
) -> None:
    make, switch = _SCENARIOS[scenario]

    async def main() -> None:
        async with RawServer() as server:
            transport = make()
            await _use(transport, server.url, switch)
            assert server.open
            await transport.aclose()
            assert await server.wait_all_closed()
            await transport.aclose()  # twice is fine
            with pytest.raises(RuntimeError, match="closed"):
                await transport.handle_async_request(httpx.Request("GET", server.url))
            del transport
            gc.collect()  # any unclosed session or connector would report now, on this loop

    asyncio.run(main())


@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_aclose_from_another_loop_closes_on_the_loop_that_opened(
    scenario: str, not_loaded: None, no_leaks: None
) -> None:
    """The runtime's loop is idle between invocations; closing from elsewhere still works."""
    make, switch = _SCENARIOS[scenario]
    with serving_in_thread() as server:
        transport = make()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(_use(transport, server.url, switch))
            assert server.open
            asyncio.run(transport.aclose())
            assert all_closed(server)
        finally:
            loop.close()
        del transport
        gc.collect()


def test_aclose_after_the_opening_loop_closed_does_not_fail(not_loaded: None) -> None:
    with serving_in_thread() as server, warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # that loop's sockets died with it
        transport = AdaptiveTransport(switch_after=2)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_use(transport, server.url, switch=True))
        loop.close()
        asyncio.run(transport.aclose())
        assert transport._aiohttp is not None
        assert transport._aiohttp._session is None
        del transport, loop
        gc.collect()


def test_aclose_while_aiohttp_is_still_loading(
    held_import: threading.Event, no_leaks: None
) -> None:
    async def main() -> None:
        async with RawServer() as server:
            transport = AdaptiveTransport(switch_after=1)
            await transport.handle_async_request(httpx.Request("GET", server.url))
            await transport.aclose()
            assert await server.wait_all_closed()
            held_import.set()
            await wait_loaded()
            with pytest.raises(RuntimeError, match="closed"):
                await transport.handle_async_request(httpx.Request("GET", server.url))
            assert transport._aiohttp is None or transport._aiohttp._session is None

    asyncio.run(main())


def test_aclose_while_the_opening_loop_runs_on_another_thread(not_loaded: None) -> None:
    with serving_in_thread() as server:
        transport = AdaptiveTransport(switch_after=2)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            use = asyncio.run_coroutine_threadsafe(_use(transport, server.url, True), loop)
            use.result(10)
            assert server.open
            asyncio.run(transport.aclose())
            assert all_closed(server)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


def test_a_failed_import_keeps_the_lean_path(
    monkeypatch: pytest.MonkeyPatch, not_loaded: None
) -> None:
    def broken() -> None:
        raise ImportError("no aiohttp here")

    monkeypatch.setattr(_loading, "_import_aiohttp", broken)

    async def main() -> None:
        async with RawServer() as server:
            transport = AdaptiveTransport(switch_after=1)
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(20):
                    assert (await client.get(server.url)).status_code == 204
                    await asyncio.sleep(0.01)
            assert transport.path == "lean"
            assert transport._switch_after is None

    asyncio.run(main())
