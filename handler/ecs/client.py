"""The ECS metadata client: one DELETE per pair, retried idempotently, answered with an outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import structlog

from handler import metrics
from handler.ecs.api import ComputeApi
from handler.ecs.keystone import KeystoneError
from handler.ecs.nova import NovaApi, ServerInfo, metadata_path
from handler.ecs.pacing import Pacer
from handler.ecs.reply import Reply
from handler.ecs.retry import BUDGET_EXTENSION, AttemptBudget, RetryableReply, RetryState, attempts
from handler.ecs.signing import CredentialsUnavailableError
from handler.ecs.transport import AdaptiveTransport
from handler.outcomes import Outcome, Pair, Result

__all__ = [
    "ComputeApiError",
    "CookielessClient",
    "CountingTransport",
    "EcsClient",
    "ServerInfo",
    "metadata_path",
]

_log = structlog.get_logger("handler.ecs.client")


_HEADERS = {"User-Agent": "ecs-metadata-janitor", "Accept": "application/json"}


class NoCookies(httpx.Cookies):
    """A jar that keeps nothing: the ECS API sets no cookies, and reading each response for
    them (httpx builds a urllib request per response) cost about 25 µs of CPU per request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep no cookie."""

    def set_cookie_header(self, request: httpx.Request) -> None:
        """Send no cookie."""


class CookielessClient(httpx.AsyncClient):
    """An httpx client without cookie handling."""

    _no_cookies = NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        """The empty jar."""
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("this client keeps no cookies")


class ComputeApiError(RuntimeError):
    """A read of the compute API (metadata, a server listing) failed for good."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts each request it hands on against the budget the request carries, if any.

    It sits right above the wire, below httpx's auth flow, so a 401 re-sign counts as the
    DELETE it is, and a request still waiting for a slot when the deadline came counts as none.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Count the request, then send it."""
        budget: AttemptBudget | None = request.extensions.get(BUDGET_EXTENSION)
        if budget is None:
            return await self.inner.handle_async_request(request)
        budget.sent += 1
        try:
            return await self.inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            budget.sent -= 1  # no connection: the request never left
            raise

    async def aclose(self) -> None:
        """Close the transport underneath."""
        await self.inner.aclose()


class EcsClient:
    """Delete metadata keys over one pooled httpx client; safe to reuse across invocations.

    The base URL is `endpoint`, or, when that is None, what `resolve_endpoint` answers at the
    first request (a Keystone catalog, known only once a token is taken); it is asked again
    until it answers, then kept.
    """

    def __init__(
        self,
        *,
        endpoint: str | None,
        auth: httpx.Auth,
        resolve_endpoint: Callable[[], Awaitable[str]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 6,
        max_in_flight: int = 16,
        api: ComputeApi | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        inner = transport or AdaptiveTransport(max_connections=max_in_flight)
        self._http = CookielessClient(
            auth=auth, transport=CountingTransport(inner), timeout=timeout_s, trust_env=False
        )
        self.api: ComputeApi = api or NovaApi()
        if endpoint is None and resolve_endpoint is None:
            raise ValueError("EcsClient needs an endpoint or a resolve_endpoint")
        self._base = endpoint.rstrip("/") if endpoint is not None else None
        self._resolve_endpoint = resolve_endpoint
        self._timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        self._max_attempts = max_attempts
        self._slots = asyncio.Semaphore(max_in_flight)
        #: Paces every request sent (MAX_REQUESTS_PER_SECOND, and the rate after a 429).
        self.pacer = pacer or Pacer()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def endpoint(self) -> str | None:
        """The base URL requests go to (None until a resolved one is known)."""
        return self._base

    async def base_url(self) -> str:
        """The base URL, resolved first if needed (KeystoneError when it cannot be)."""
        base = self._base
        if base is None:
            assert self._resolve_endpoint is not None  # one of the two is set (__init__)
            base = self._base = (await self._resolve_endpoint()).rstrip("/")
        return base

    async def _send(
        self,
        method: str,
        project_id: str,
        path: str,
        deadline: float | None,
        budget: AttemptBudget | None = None,
    ) -> httpx.Response:
        timeout, limit = self._timeout, self._timeout_s
        if deadline is not None:
            left = deadline - asyncio.get_running_loop().time()
            if left < self._timeout_s:
                limit = max(left, 0.001)
                timeout = httpx.Timeout(limit).as_dict()
        base = self._base
        if base is None:  # the catalog's endpoint, until it is known
            base = await self.base_url()
        # Built directly rather than through client.build_request, which merges base URL,
        # default headers and cookies on every call (about 25 µs of CPU per request).
        request = httpx.Request(
            method,
            base + path,
            headers={**_HEADERS, "X-Project-Id": project_id},
            extensions={"timeout": timeout, BUDGET_EXTENSION: budget}
            if budget is not None
            else {"timeout": timeout},
        )
        pacer = self.pacer
        async with self._slots:
            sent_at = await pacer.acquire()
            # REQUEST_TIMEOUT_S bounds the whole attempt: the transport's timeouts bound each
            # read, and a reply trickling one byte at a time would otherwise never end.
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limit):
                    response = await self._http.send(request)
                pacer.record(sent_at, throttled=response.status_code == 429)
                return response
            except TimeoutError:
                raise httpx.ReadTimeout(
                    f"no whole answer within {limit:.3g} s", request=request
                ) from None
            finally:
                metrics.request_took(time.perf_counter() - started)

    async def _attempt(self, pair: Pair, state: RetryState) -> Reply:
        deadline = state.deadline
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError  # no request is started once the deadline has passed
        api = self.api
        response = await self._send(
            "DELETE", pair.project_id, api.delete_path(pair), deadline, state.budget
        )
        reply = api.classify_delete(response)
        if reply.outcome is None:
            probe = await self._send("GET", pair.project_id, api.metadata_path(pair), deadline)
            reply = api.classify_probe(probe, reply, pair.key)
        if reply.retry:
            raise RetryableReply(reply)
        return reply

    async def read_metadata(
        self, project_id: str, server_id: str, *, deadline: float | None = None
    ) -> dict[str, str]:
        """Return one server's metadata; raise ComputeApiError if it cannot be read."""
        body = await self._get_json(
            project_id, self.api.metadata_path(Pair(project_id, server_id, "")), deadline
        )
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(metadata, dict):
            raise ComputeApiError("not a metadata listing: no 'metadata' object")
        return {str(k): str(v) for k, v in metadata.items()}

    async def list_servers(
        self,
        project_id: str,
        *,
        page_size: int = 1000,
        deadline: float | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncIterator[ServerInfo]:
        """Yield every server of a project, page after page, as `servers_links` leads
        (`on_page` is told each page's server count as it is read)."""
        marker: str | None = None
        seen: set[str] = set()
        while True:
            path = self.api.servers_path(project_id, limit=page_size, marker=marker)
            body = await self._get_json(project_id, path, deadline)
            try:
                page = self.api.read_servers_page(body)
            except ValueError as exc:
                raise ComputeApiError(str(exc)) from None
            if on_page is not None:
                on_page(len(page.servers))
            for server in page.servers:
                yield server
            marker = page.next_marker
            if marker is None:
                return
            if marker in seen:
                raise ComputeApiError(f"the listing pages in a loop (marker {marker} again)")
            seen.add(marker)

    async def _get_json(self, project_id: str, path: str, deadline: float | None) -> Any:
        """GET a JSON document, retried as a DELETE would be (409, 429, 5xx, network errors)."""
        state = RetryState(deadline, self._max_attempts)

        async def once() -> Any:
            response = await self._send("GET", project_id, path, deadline)
            if response.status_code == 200:
                try:
                    return response.json()
                except (ValueError, RecursionError):  # not JSON, or nested past the stack
                    raise ComputeApiError("HTTP 200 with a body that is not JSON", 200) from None
            reply = self.api.classify_delete(response)
            if reply.retry:
                raise RetryableReply(reply)
            raise ComputeApiError(
                f"HTTP {reply.status}" + (f": {reply.detail}" if reply.detail else ""),
                reply.status,
            )

        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in attempts(self._max_attempts, state):
                    with attempt:
                        return await once()
        except TimeoutError:
            raise ComputeApiError("the invocation's time ran out") from None
        except RetryableReply as exc:
            raise ComputeApiError(
                f"HTTP {exc.reply.status} after the retries", exc.reply.status
            ) from None
        except KeystoneError as exc:  # kept as the cause: `check` names it
            after = " (after the retries)" if isinstance(exc, httpx.TransportError) else ""
            raise ComputeApiError(f"{exc}{after}") from exc
        except httpx.TransportError as exc:
            raise ComputeApiError(f"{type(exc).__name__} after the retries") from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def delete_metadata(self, pair: Pair, *, deadline: float | None = None) -> Result:
        """Delete one key and return its outcome; never raises (but for cancellation)."""
        state = RetryState(deadline, self._max_attempts)
        try:
            if deadline is None:  # no timer to set up (a local run, a test)
                reply = await self._first_attempt(pair, state)
            else:
                async with asyncio.timeout_at(deadline):
                    reply = await self._first_attempt(pair, state)
            if isinstance(reply, Result):
                return reply
        except TimeoutError:
            why = "the invocation's time ran out"
            return _failed(pair, Outcome.DEADLINE, state.tries, state.error, why)
        except CredentialsUnavailableError as exc:
            # No token (Keystone refused the password, its catalog has no compute endpoint…):
            # a forbidden or rejected pair, dead-lettered with the reason; never a traceback.
            outcome = exc.outcome if isinstance(exc, KeystoneError) else Outcome.FORBIDDEN
            return _failed(pair, outcome, state.tries, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must fail one pair, transiently, not all
            _log.exception("unexpected error deleting a pair", error=type(exc).__name__)
            why = "unexpected error (a bug: see the log)"
            return _failed(pair, Outcome.RETRIES_EXHAUSTED, state.tries, exc, why)
        assert reply.outcome is not None
        return _result(pair, reply.outcome, state.tries, reply)

    async def _first_attempt(self, pair: Pair, state: RetryState) -> Reply | Result:
        """The fast path: one attempt, and only if it fails, stamina's loop for the rest."""
        try:
            return await self._attempt(pair, state)
        except (RetryableReply, httpx.TransportError) as exc:
            state.error = exc
            return await self._retry(pair, state)

    async def _retry(self, pair: Pair, state: RetryState) -> Result:
        """Go on after a failed first attempt; stamina decides, starting from that failure."""
        replay = state.error
        try:
            async for attempt in attempts(self._max_attempts, state):
                with attempt:
                    if replay is not None:
                        # The first attempt already ran (the fast path): hand its failure to
                        # stamina, so the decision and the wait are stamina's as for any other.
                        failure: Exception = replay
                        replay = None
                        raise failure
                    try:
                        reply = await self._attempt(pair, state)
                    except (RetryableReply, httpx.TransportError) as exc:
                        state.error = exc
                        raise
                    assert reply.outcome is not None
                    return _result(pair, reply.outcome, state.tries, reply)
        except RetryableReply as exc:
            if state.stopped_for_deadline:
                why = "the wait asked by Retry-After would pass the deadline"
                return _failed(pair, Outcome.DEADLINE, state.tries, exc, why)
            return _failed(pair, exc.reply.outcome or Outcome.RETRIES_EXHAUSTED, state.tries, exc)
        except httpx.TransportError as exc:
            return _failed(pair, Outcome.RETRIES_EXHAUSTED, state.tries, exc)
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover


def _result(
    pair: Pair, outcome: Outcome, tries: int, reply: Reply, detail: str | None = None
) -> Result:
    return Result(
        outcome,
        pair=pair,
        detail=detail or reply.detail,
        status=reply.status,
        attempts=tries,
        request_id=reply.request_id,
    )


def _failed(
    pair: Pair, outcome: Outcome, tries: int, error: Exception | None, why: str | None = None
) -> Result:
    """The result of a pair whose last attempt failed, saying why and what was last seen."""
    if isinstance(error, RetryableReply):
        reply = error.reply
        last = f"last answer HTTP {reply.status}" + (f": {reply.detail}" if reply.detail else "")
        detail = f"{why}; {last}" if why else None
        return _result(pair, outcome, tries, reply, detail)
    parts = [why] if why else []
    if error is not None:
        parts.append(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    return Result(outcome, pair=pair, detail="; ".join(parts) or None, attempts=tries)
