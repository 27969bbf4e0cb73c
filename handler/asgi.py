"""The function as an ASGI app: its webhook and CloudEvents doors over plain HTTP (containers).

Every request goes through the same runtime and engine as `handler.app.handler`: the request is
handed to the runtime's loop as an `HttpRequest` (the `http` source), with a deadline of
`SERVE_TIMEOUT_S` as a function's timeout, and its `HttpAnswer` is written back. Routes:

- `POST /`, `POST /webhook`, `POST /cloudevents`: a Standard Webhooks request or a CloudEvent
  (binary, structured or batched mode), answered as SPEC §5 answers a webhook;
- `GET /healthz`: 200 while requests are taken, 503 while starting failed or shutting down.

At shutdown (the server's lifespan event, after SIGTERM) no request is taken any more, those in
flight are finished (their pairs settled, dead-lettered or answered) and the runtime is closed.
Run it with `ecs-metadata-janitor serve`, or any ASGI server: `uvicorn handler.asgi:app`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

from handler.config import ConfigError
from handler.context import Invocation
from handler.sources.base import HttpAnswer, HttpRequest
from handler.sources.webhook import json_body

if TYPE_CHECKING:
    from handler.runtime import Invoked, Runtime

__all__ = ["HEALTH_PATH", "MAX_BODY_BYTES", "ROUTES", "App", "app", "servable_problem"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The paths a webhook or a CloudEvent may be POSTed to (Knative's brokers send to `/`).
ROUTES = frozenset({"/", "/webhook", "/cloudevents"})
HEALTH_PATH = "/healthz"
#: A body larger than this is answered 413 unread: Lambda's limit for a synchronous request.
MAX_BODY_BYTES = 6 * 1024 * 1024
#: Seconds a client is told to wait before sending again a request refused while shutting down.
RETRY_AFTER_S = 5

_log = structlog.get_logger("handler.asgi")


def _answer(status: int, body: dict[str, Any], **headers: str) -> HttpAnswer:
    return HttpAnswer(status, body, {"Content-Type": "application/json", **headers})


def _unavailable() -> HttpAnswer:
    """503: the server is shutting down; the caller sends the request again (elsewhere)."""
    return _answer(
        503,
        {"error": "the server is shutting down; send the request again"},
        **{"Retry-After": str(RETRY_AFTER_S)},
    )


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased; a repeated header's values joined by commas."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = bytes(raw_name).decode("latin-1").lower()
        value = bytes(raw_value).decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def servable_problem(runtime: Runtime) -> str | None:
    """Why requests cannot be served with this runtime's configuration, or None."""
    if runtime.needs_platform_credentials:
        return (
            "no credentials for the ECS calls: a container has no platform context to take "
            "them from; set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, ECS_AUTH_TOKEN, or the "
            "OS_* variables (or DRY_RUN=true)"
        )
    config = runtime.config
    if config.webhook_auth == "signature" and config.webhook_secret is None:
        return (
            "every request would be answered 401: set WEBHOOK_SECRET, or WEBHOOK_AUTH=none "
            "when a gateway in front authenticates"
        )
    return None


class _TooLarge(Exception):
    """The body is larger than the app accepts."""


class _Disconnected(Exception):
    """The client went away before its request's body arrived."""


class App:
    """An ASGI 3 app over one runtime: webhooks and CloudEvents in, SPEC §5 answers out.

    Given a runtime, it uses it and leaves it open; without one, it uses `handler.app`'s
    (built from the environment at startup, or at the first request when the server sends
    no lifespan events) and closes it at shutdown.
    """

    def __init__(
        self, runtime: Runtime | None = None, *, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._runtime = runtime
        self._owns_runtime = runtime is None
        self.max_body_bytes = max_body_bytes
        self._building = threading.Lock()
        self._start_error: str | None = None
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        #: True from shutdown on: new requests get 503 (their caller sends them elsewhere).
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection's scope: `lifespan` or `http` (anything else is refused)."""
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    # The runtime's life.

    def _build(self) -> Runtime:
        """The runtime, built once (raises what building it raised)."""
        with self._building:
            if self._runtime is None:
                from handler import app as entry

                entry.warm_up()
                runtime = entry.current_runtime()
                problem = servable_problem(runtime)
                if problem is not None:
                    raise ConfigError(problem)
                self._runtime = runtime
            return self._runtime

    async def _ready(self) -> Runtime | None:
        """The runtime, or None when it cannot be built (the reason is logged once) or the app
        is shutting down (a runtime is never built then: nothing would close it)."""
        if self._runtime is not None:
            return self._runtime
        if self._start_error is not None or self.draining:
            return None
        try:
            return await asyncio.to_thread(self._build)
        except ConfigError as exc:
            self._start_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any cold-start failure is answered, not raised
            self._start_error = f"{type(exc).__name__}: {exc}"
        _log.error("cold start failed", error=self._start_error)
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                runtime = await self._ready()
                if runtime is None:
                    await send({"type": "lifespan.startup.failed", "message": self._start_error})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        """Take no more requests, wait for those in flight, then close the runtime if owned."""
        self.draining = True
        if self._in_flight:
            _log.info("finishing requests in flight", requests=self._in_flight)
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
        runtime = self._runtime
        if runtime is not None and self._owns_runtime:
            from handler import app as entry

            await asyncio.to_thread(entry.reset_runtime)
            self._runtime = None

    # Requests.

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path", "/"), scope.get("method", "GET").upper()
        if path == HEALTH_PATH:
            if method not in ("GET", "HEAD"):
                await self._write(send, _answer(405, {"error": "use GET"}, Allow="GET, HEAD"))
                return
            await self._write(send, await self._health(), head=method == "HEAD")
            return
        if path not in ROUTES:
            await self._write(send, _answer(404, {"error": "no such route; POST to /"}))
            return
        if method != "POST":
            await self._write(send, _answer(405, {"error": "use POST"}, Allow="POST"))
            return
        try:
            answer = await self._handle(scope, receive)
        except asyncio.CancelledError:
            # The server cut the request short: its shutdown grace ran out, or a second Ctrl-C.
            # Its pairs were not all settled: the caller is told to send it again.
            _log.warning("request cut short by the server's shutdown")
            with contextlib.suppress(Exception):
                await self._write(send, _unavailable())
            return
        if answer is not None:
            await self._write(send, answer)

    async def _health(self) -> HttpAnswer:
        if self.draining or (self._runtime is not None and self._runtime.closed):
            return _answer(503, {"status": "shutting down"})
        if await self._ready() is None:
            return _answer(503, {"status": "not configured; see the logs"})
        return _answer(200, {"status": "ok"})

    async def _handle(self, scope: Scope, receive: Receive) -> HttpAnswer | None:
        """The answer to a POST (None when the client went away before its body arrived)."""
        if self.draining:
            return _unavailable()
        runtime = await self._ready()
        if runtime is None:
            if self.draining:
                return _unavailable()
            return _answer(503, {"error": "the function is not configured; see its logs"})
        # One deadline for the whole request, as a function's timeout: the body's arrival too.
        timeout_s = runtime.config.serve_timeout_s
        deadline = time.monotonic() + timeout_s
        headers = _headers(scope)
        try:
            async with asyncio.timeout(timeout_s):
                body = await self._body(headers, receive)
        except TimeoutError:
            error = f"the request body did not arrive within SERVE_TIMEOUT_S ({timeout_s:g} s)"
            return _answer(408, {"error": error}, Connection="close")
        except _TooLarge:
            limit = self.max_body_bytes
            return _answer(413, {"error": f"the request body is larger than {limit} bytes"})
        except _Disconnected:
            return None
        if self.draining:  # shutdown began while the body arrived
            return _unavailable()
        request = HttpRequest(scope.get("method", "POST").upper(), headers, body, scope["path"])
        self._in_flight += 1
        try:
            return await self._invoke(runtime, request, deadline)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _invoke(self, runtime: Runtime, request: HttpRequest, deadline: float) -> HttpAnswer:
        """Run the request through the runtime; any failure becomes an answer, never a trace."""
        from handler.runtime import RuntimeClosedError

        invocation = Invocation(
            request_id=str(uuid.uuid4()),
            platform="asgi",
            remaining_ms=lambda: max(0, int((deadline - time.monotonic()) * 1000)),
        )
        try:
            future: concurrent.futures.Future[Invoked] = runtime.submit(request, invocation)
        except RuntimeClosedError:
            return _unavailable()
        try:
            invoked = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and (task is None or not task.cancelling()):
                return _unavailable()  # the runtime was closed under it, not this request
            raise
        except Exception as exc:  # noqa: BLE001 - answered 500; the logs say what it was
            _log.error(
                "request failed",
                request_id=invocation.request_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            return _answer(
                500,
                {"error": "the request failed; see the logs", "request_id": invocation.request_id},
            )
        answer: HttpAnswer = invoked.response  # the http source renders its HttpAnswer
        return answer

    @staticmethod
    async def _write(send: Send, answer: HttpAnswer, *, head: bool = False) -> None:
        # A lone surrogate (JSON allows one escaped) is written as its JSON escape, `\udXXX`.
        body = json_body(answer).encode("utf-8", errors="backslashreplace")
        headers = [
            (str(k).lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in answer.headers.items()
            if str(k).lower() != "content-length"
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})


#: The app over the function's own runtime, built from the environment (`uvicorn handler.asgi:app`).
app = App()
