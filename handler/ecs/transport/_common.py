"""What every path shares: the TLS context, body limits and reading, building the response."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import httpx

# asyncio is imported where it is used, always inside a running loop (httpx does not import it).
if TYPE_CHECKING:
    import asyncio
    import ssl

#: The longest body of a successful reply (status < 300) read: a server listing page with its
#: metadata is a few MiB. A longer one is an `httpx.RemoteProtocolError`, and is never read whole.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: The most of an error reply's body (status >= 300) read: its outcome and detail are decided
#: from a prefix. A longer body is cut there (the rest is never read).
MAX_ERROR_BODY_BYTES = 64 * 1024
#: The name a reply's `Content-Encoding` header is handed to httpx under, its value unchanged:
#: httpx would inflate the body it names, and no path decompresses.
ENCODING_HEADER = "x-janitor-content-encoding"
#: Added to an error reply whose body was cut; its value is the limit, in bytes.
TRUNCATED_HEADER = "x-janitor-body-truncated"
#: How much a path reads from its socket or stream at a time.
_READ_SIZE = 64 * 1024

_SSL_CONTEXT: list[ssl.SSLContext] = []
_SSL_LOCK = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """The process's one verifying TLS context, built as httpx builds it, at the first use."""
    if not _SSL_CONTEXT:
        with _SSL_LOCK:
            if not _SSL_CONTEXT:
                _SSL_CONTEXT.append(httpx.create_ssl_context())
    return _SSL_CONTEXT[0]


class _Limits:
    """How much of a reply's body is read: `success` for status < 300, `error` for the others."""

    __slots__ = ("error", "success")

    def __init__(self, success: int, error: int) -> None:
        if success < 0 or error < 0:
            raise ValueError("body limits must be >= 0")
        self.success = success
        self.error = error


class _Body:
    """A reply's body, read chunk by chunk up to its status's limit."""

    __slots__ = ("chunks", "cut", "error", "limit", "request", "size")

    def __init__(self, request: httpx.Request, limits: _Limits, status: int) -> None:
        self.request = request
        self.error = status >= 300
        self.limit = limits.error if self.error else limits.success
        self.chunks: list[bytes] = []
        self.size = 0
        self.cut = False

    def add(self, data: bytes) -> bool:
        """Keep `data`; False once an error body is cut (read no more: close the connection).

        Past the limit, an error body keeps its first `limit` bytes; a successful reply's body
        is a RemoteProtocolError.
        """
        size = self.size + len(data)
        if size <= self.limit:
            self.chunks.append(data)
            self.size = size
            return True
        if not self.error:
            message = f"response body larger than {self.limit} bytes"
            raise httpx.RemoteProtocolError(message, request=self.request)
        self.chunks.append(data[: self.limit - self.size])
        self.size = self.limit
        self.cut = True
        return False


_DEFAULT_LIMITS = _Limits(MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES)
_CONTENT_ENCODING = b"content-encoding"
_ENCODING_HEADER = ENCODING_HEADER.encode("ascii")
_TRUNCATED_HEADER = TRUNCATED_HEADER.encode("ascii")


def _response(
    request: httpx.Request,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: _Body,
    http_version: bytes,
) -> httpx.Response:
    """The httpx.Response of a reply, its body as it came: httpx is not shown Content-Encoding."""
    raw = [
        (_ENCODING_HEADER, value) if name.lower() == _CONTENT_ENCODING else (name, value)
        for name, value in headers
    ]
    if body.cut:
        raw.append((_TRUNCATED_HEADER, b"%d" % body.limit))
    return httpx.Response(
        status_code=status,
        headers=raw,
        content=b"".join(body.chunks),
        request=request,
        extensions={"http_version": http_version},
    )


async def _close_on(
    loop: asyncio.AbstractEventLoop | None, close: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `close()` on `loop`, where its connections live, whichever loop is running now."""
    import asyncio

    running = asyncio.get_running_loop()
    if loop is None or loop is running:
        await close()
    elif loop.is_closed():
        # Its sockets were left to that loop; closing now only marks the pool closed.
        with contextlib.suppress(RuntimeError):  # "Event loop is closed", from a transport
            await close()
    elif loop.is_running():  # on another thread
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop))
    else:  # idle between run_until_complete calls: run it there, off this loop's thread
        await asyncio.to_thread(loop.run_until_complete, close())
