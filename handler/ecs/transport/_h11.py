"""The h11 path: direct HTTP/1.1 connections on asyncio streams, pooled per origin."""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

import httpx

from handler.ecs.transport._common import (
    _DEFAULT_LIMITS,
    _READ_SIZE,
    _Body,
    _close_on,
    _Limits,
    _response,
    _ssl_context,
)

# h11 (and asyncio) are imported where they are used, so importing the package loads neither.
if TYPE_CHECKING:
    import asyncio
    import socket


#: The most a response's head may take (httpcore's limit too); a longer one is a protocol error.
_MAX_HEAD = 100 * 1024
#: How long `aclose()` lets connections close politely (a TLS close_notify) before aborting them.
_CLOSE_WAIT_S = 1.0
_DEFAULT_PORTS = {b"http": 80, b"https": 443}

#: scheme, host, port: the connections a request may reuse.
_Origin = tuple[bytes, bytes, int]


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read on the socket would not block: bytes or the peer's close are waiting."""
    fileno = -1 if sock is None else sock.fileno()
    if fileno < 0:
        return True  # closed already
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fileno], [], [], 0)[0])  # pragma: no cover - Windows


class _H11Connection:
    """One HTTP/1.1 connection: asyncio streams carry the bytes, h11 writes and reads them."""

    __slots__ = ("h11", "idle_since", "origin", "reader", "writer")

    def __init__(
        self, origin: _Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        import h11

        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.idle_since = 0.0

    def stale(self) -> bool:
        """True when the server closed it (or sent anything) while it was idle."""
        reader = self.reader
        return (
            self.writer.transport.is_closing()
            or reader.at_eof()
            or reader.exception() is not None
            # Bytes on an idle connection (a late "408", then a close): never read them as the
            # next request's reply. StreamReader has no public way to ask.
            or bool(getattr(reader, "_buffer", None))
            # A close (or bytes) the loop has not read yet, as httpcore checks (a few µs)
            or _readable(self.writer.get_extra_info("socket"))
        )

    def abort(self) -> None:
        """Close at once: nothing more is written, read or awaited."""
        with contextlib.suppress(RuntimeError):  # "Event loop is closed": it died with its loop
            self.writer.transport.abort()

    async def exchange(
        self,
        request: httpx.Request,
        content: bytes,
        timeouts: dict[str, float | None],
        limits: _Limits,
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body, bytes, bool]:
        """Send the request once; read the reply: status, headers, body, version, reusable.

        The body is read up to its limit (see `_Body`): an error body cut there leaves the
        connection unusable (the rest is never read).
        """
        import asyncio

        import h11

        state = self.h11
        try:
            data = state.send(
                h11.Request(
                    method=request.method,
                    target=request.url.raw_path,
                    headers=request.headers.raw,
                )
            )
            if content:
                data += state.send(h11.Data(data=content))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(_message(exc), request=request) from exc
        writer = self.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():  # else the kernel has it all already
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpx.WriteTimeout("timed out writing the request", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(_message(exc), request=request) from exc

        reader = self.reader
        read_timeout = timeouts.get("read")
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        version = b"HTTP/1.1"
        body = _Body(request, limits, 0)  # until the reply's head comes
        while True:
            try:
                event = state.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(_message(exc), request=request) from exc
            if event is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(read_timeout):
                        chunk = await reader.read(_READ_SIZE)
                except TimeoutError as exc:
                    raise httpx.ReadTimeout("timed out reading the reply", request=request) from exc
                except OSError as exc:
                    raise httpx.ReadError(_message(exc), request=request) from exc
                if not chunk and state.their_state is h11.SEND_RESPONSE:
                    message = "Server disconnected without sending a response."
                    raise httpx.RemoteProtocolError(message, request=request)
                state.receive_data(chunk)  # b"": the end of the stream, for h11 to judge
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = event.headers.raw_items()
                version = b"HTTP/" + event.http_version
                body = _Body(request, limits, status)
            elif isinstance(event, h11.Data):
                if not body.add(event.data):
                    break  # an error body cut at its limit
            elif isinstance(event, h11.EndOfMessage):
                break
            elif not isinstance(event, h11.InformationalResponse):  # 1xx: the reply follows
                # ConnectionClosed or PAUSED cannot come before the reply's end
                raise httpx.RemoteProtocolError(f"unexpected {event!r}", request=request)
        trailing, closed = state.trailing_data
        reusable = (
            not body.cut
            and state.our_state is h11.DONE
            and state.their_state is h11.DONE
            and not trailing
            and not closed
        )
        if reusable:
            state.start_next_cycle()
        return status, headers, body, version, reusable


async def _shut(connections: list[_H11Connection]) -> None:
    """Close connections politely, then abort those not closed within `_CLOSE_WAIT_S`."""
    import asyncio

    closing: dict[asyncio.Future[None], _H11Connection] = {}
    for connection in connections:
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to wait for
            connection.writer.close()
            closing[asyncio.ensure_future(connection.writer.wait_closed())] = connection
    if closing:
        _, pending = await asyncio.wait(closing, timeout=_CLOSE_WAIT_S)
        for waiting in pending:
            waiting.cancel()
        for waiting in closing:  # wait_closed raises what ended the connection, if anything
            if waiting.done() and not waiting.cancelled():
                waiting.exception()
    for connection in connections:
        connection.abort()


class _H11Pool:
    """Direct HTTP/1.1 connections on asyncio streams and h11, kept alive per origin.

    At most `max_connections` are open (or opening) at once; idle ones are reused last in,
    first out, and one the server has closed, or that was idle longer than `keepalive_s`, is
    dropped before anything is sent on it. A request that was sent and then failed raises: it
    is never sent again. A connection is reused only when h11 says both sides are done with
    the last exchange; any error or cancellation aborts it, as does a body cut at its limit.
    """

    def __init__(
        self, *, max_connections: int, keepalive_s: float, limits: _Limits | None = None
    ) -> None:
        self._limits = limits or _DEFAULT_LIMITS
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._idle: dict[_Origin, list[_H11Connection]] = {}
        self._connections: set[_H11Connection] = set()  # open: idle or carrying a request
        self._slots = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request over an idle or a new connection and read the reply."""
        url = request.url
        scheme = url.raw_scheme
        default_port = _DEFAULT_PORTS.get(scheme)
        if default_port is None:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{url.scheme}://'.", request=request
            )
        origin = (scheme, url.raw_host, url.port or default_port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        content = await request.aread()
        connection = await self._acquire(origin, timeouts.get("pool"), request)
        if connection is None:
            try:
                connection = await self._connect(origin, timeouts.get("connect"), request)
            except BaseException:
                self._slots -= 1
                self._wake()
                raise
        try:
            status, headers, body, version, reusable = await connection.exchange(
                request, content, timeouts, self._limits
            )
        except BaseException:
            self._drop(connection)
            raise
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
            self._wake()
        else:
            self._drop(connection)
        return _response(request, status, headers, body, version)

    async def _acquire(
        self, origin: _Origin, pool_s: float | None, request: httpx.Request
    ) -> _H11Connection | None:
        """An idle connection to `origin`; or None, a slot reserved to open a new one."""
        import asyncio

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        if not self._waiters:  # first come, first served
            taken = self._take(origin)
            if taken is not False:
                return taken
        deadline = None if pool_s is None else loop.time() + pool_s
        woken = False
        while True:
            waiter = loop.create_future()
            if woken:  # its turn came and went to a newcomer: it stays first in line
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the turn passes to the next
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    message = "timed out waiting for a connection"
                    raise httpx.PoolTimeout(message, request=request) from exc
                raise
            taken = self._take(origin)
            if taken is not False:
                return taken
            woken = True

    def _take(self, origin: _Origin) -> _H11Connection | Literal[False] | None:
        """An idle connection, None for a slot reserved, or False: none free (wait)."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        idle = self._idle.get(origin)
        if idle:
            fresh_since = time.monotonic() - self._keepalive_s
            while idle:
                connection = idle.pop()
                if connection.idle_since >= fresh_since and not connection.stale():
                    return connection
                self._drop(connection)
        if self._slots < self._max_connections:
            self._slots += 1
            return None
        for others in self._idle.values():  # all busy but some idle elsewhere: close the oldest
            if others:
                self._drop(others.pop(0))
                self._slots += 1
                return None
        return False

    async def _connect(
        self, origin: _Origin, connect_s: float | None, request: httpx.Request
    ) -> _H11Connection:
        import asyncio

        scheme, host, port = origin
        name = host.decode("ascii")
        tls = _ssl_context() if scheme == b"https" else None
        try:
            async with asyncio.timeout(connect_s):
                reader, writer = await asyncio.open_connection(
                    name, port, ssl=tls, server_hostname=name if tls is not None else None
                )
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpx.ConnectTimeout("timed out connecting", request=request) from exc
        except OSError as exc:  # refused, unreachable, unresolved, a certificate not trusted
            raise httpx.ConnectError(_message(exc), request=request) from exc
        if self._closed:  # aclose() ran meanwhile: it could not close this one
            writer.transport.abort()
            raise RuntimeError("the transport is closed")
        connection = _H11Connection(origin, reader, writer)
        self._connections.add(connection)
        return connection

    def _drop(self, connection: _H11Connection) -> None:
        """Abort a connection and free its slot for whoever waits."""
        connection.abort()
        self._connections.discard(connection)
        self._slots -= 1
        self._wake()

    def _wake(self) -> None:
        """Let the first request waiting for a connection try again."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve `loop` from now on: idle connections opened on another loop cannot be used."""
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())
        self._waiters.clear()
        self._loop = loop

    async def aclose(self) -> None:
        """Close every connection, idle or carrying a request; waiting requests then fail."""
        self._closed = True
        if self._connections or self._waiters:
            await _close_on(self._loop, self._close_all)

    async def _close_all(self) -> None:
        self._idle.clear()
        connections = list(self._connections)
        self._connections.clear()
        while self._waiters:
            self._wake()  # each finds the pool closed
        await _shut(connections)
