"""The sandbox's HTTP request handler: routing, authentication, faults and the request log.

Besides the ECS routes it answers SQS (AWS JSON protocol, SigV4: handler/sandbox/sqs.py) and
SMN publish (handler/sandbox/smn.py) on the same port.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import re
import time
import uuid
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlencode

from aiohttp import web

from handler.sandbox import responses as r
from handler.sandbox.auth import KEYSTONE, Authenticator
from handler.sandbox.faults import RATE_LIMIT_FAULT, FaultConfig, FaultInjector
from handler.sandbox.keystone import TOKENS_PATH, KeystoneTokens
from handler.sandbox.seed import QueueFaultsSeed, Seed
from handler.sandbox.smn import SmnService
from handler.sandbox.sqs import SqsService
from handler.sandbox.state import STATUS_BY_VM_STATE, Page, Problem, Server, State

logger = logging.getLogger(__name__)

REQUEST_LOG_LIMIT = 100_000
"""The request log keeps this many most recent entries."""

_KEY_PATTERN = re.compile(r"^[a-zA-Z0-9\-_:. ]{1,255}$")
_NOVA_VERSIONS = frozenset({"v2.1", "v2"})
_INJECTED_STATUS = {"500": 500, "502": 502, "503": 503, "504": 504}


class Kind(enum.Enum):
    """The routes the sandbox answers."""

    SERVERS = "servers"
    SERVERS_DETAIL = "servers/detail"
    SERVER = "server"
    METADATA = "metadata"
    ITEM = "metadata item"
    V1_DETAIL = "cloudservers/detail"
    V1_METADATA = "cloudservers metadata"
    V1_ITEM = "cloudservers metadata item"


ALLOWED_METHODS: dict[Kind, frozenset[str]] = {
    Kind.SERVERS: frozenset({"GET"}),
    Kind.SERVERS_DETAIL: frozenset({"GET"}),
    Kind.SERVER: frozenset({"GET"}),
    Kind.METADATA: frozenset({"GET", "POST", "PUT"}),
    Kind.ITEM: frozenset({"GET", "PUT", "DELETE"}),
    Kind.V1_DETAIL: frozenset({"GET"}),
    Kind.V1_METADATA: frozenset({"GET", "POST"}),
    Kind.V1_ITEM: frozenset({"DELETE"}),
}


class Route(NamedTuple):
    """A matched route with its decoded path parameters."""

    kind: Kind
    project_id: str
    server_id: str
    key: str


def match_route(path: str) -> Route | None:
    """Match a raw (percent-encoded) path; the key is one segment, percent-decoded once."""
    segments = path.split("/")
    count = len(segments)
    if count < 4 or count > 7 or segments[0] or not segments[2]:
        return None
    version, project, collection = segments[1], segments[2], segments[3]
    if version in _NOVA_VERSIONS and collection == "servers":
        if count == 4:
            return Route(Kind.SERVERS, project, "", "")
        server_id = unquote(segments[4])
        if not server_id:
            return None
        if count == 5:
            if server_id == "detail":
                return Route(Kind.SERVERS_DETAIL, project, "", "")
            return Route(Kind.SERVER, project, server_id, "")
        if segments[5] != "metadata":
            return None
        if count == 6:
            return Route(Kind.METADATA, project, server_id, "")
        key = unquote(segments[6])
        return Route(Kind.ITEM, project, server_id, key) if key else None
    if version == "v1" and collection == "cloudservers" and count >= 5:
        server_id = unquote(segments[4])
        if count == 5:
            return Route(Kind.V1_DETAIL, project, "", "") if server_id == "detail" else None
        if not server_id or segments[5] != "metadata":
            return None
        if count == 6:
            return Route(Kind.V1_METADATA, project, server_id, "")
        key = unquote(segments[6])
        return Route(Kind.V1_ITEM, project, server_id, key) if key else None
    return None


def _path_project(path: str) -> str | None:
    """The project segment of an API path, for the X-Project-Id check."""
    segments = path.split("/", 3)
    if len(segments) >= 3 and (segments[1] in _NOVA_VERSIONS or segments[1] == "v1"):
        return segments[2] or None
    return None


class BadRequest(Exception):
    """A request body or query Nova would refuse with 400."""


class SandboxApp:
    """Everything a request touches: state, credentials, faults and the request log.

    Only ever used from the event loop that serves it.
    """

    faults: FaultInjector
    _latency_s: float

    def __init__(self, seed: Seed, faults: FaultConfig, *, latency_ms: float = 0.0) -> None:
        self.state = State(seed)
        self.keystone = KeystoneTokens(seed.keystone) if seed.keystone is not None else None
        self.auth = Authenticator(seed.credentials, keystone=self.keystone)
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
        self.aws = seed.aws
        self.queue_faults = seed.queue_faults
        self.sqs = SqsService(seed)
        self.smn = SmnService(seed)
        self._latency_override_s = max(latency_ms, 0.0) / 1000.0
        self._timer_overshoot_s = 0.0
        self.set_faults(faults)

    async def _hold(self, seconds: float) -> None:
        """Sleep so that `seconds` pass on average, learning how late this loop's timers fire.

        asyncio rounds a sleep up to the selector's millisecond and the kernel adds its wake-up
        time: a 20 ms sleep took about 21 ms here, which alone cost a benchmark 5 % of its
        ideal throughput. The overshoot of past sleeps is taken off the next ones.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(max(seconds - self._timer_overshoot_s, 0.0))
        late = loop.time() - start - seconds + self._timer_overshoot_s
        # A slow moving average of the overshoot, bounded: the loop's timers, not the load.
        self._timer_overshoot_s = min(max(0.9 * self._timer_overshoot_s + 0.1 * late, 0.0), 0.002)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration (and restart its random sequence)."""
        self.faults = FaultInjector(faults)
        self._latency_s = self._latency_override_s or faults.latency_ms / 1000.0

    def set_queue_faults(self, faults: QueueFaultsSeed) -> None:
        """Replace the SQS and SMN faults (and restart their random sequences)."""
        self.queue_faults = faults
        self.sqs.set_faults(faults)
        self.smn.set_faults(faults)

    def set_base_url(self, url: str) -> None:
        """The URL clients reach the sandbox at (for queue URLs in the state)."""
        self.sqs.base_url = url

    def snapshot(self) -> dict[str, Any]:
        """The whole state in the seed's format: servers, queues, topics (fresh copies)."""
        data = self.state.snapshot()
        data["aws"] = None if self.aws is None else self.aws.model_dump()
        data["queues"] = self.sqs.snapshot()
        data["topics"] = self.smn.snapshot()
        data["queue_faults"] = self.queue_faults.model_dump()
        return data

    def requests(self) -> list[dict[str, Any]]:
        """A copy of the request log."""
        return [dict(entry) for entry in self.log]

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one HTTP request (aiohttp's low-level handler)."""
        target = request.raw_path
        path, _, query = target.partition("?")
        if path.startswith("/_sandbox/"):
            return self._control(request, path)
        request_id = f"req-{uuid.uuid4()}"
        entry: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "query": query,
            "status": None,
            "fault": None,
            "auth": None,
            "request_id": request_id,
            "at": time.time(),
        }
        self.log.append(entry)
        try:
            response = await self._answer(request, target, path, query, request_id, entry)
        except Exception:
            logger.exception("sandbox: unexpected error answering %s %s", request.method, path)
            response = r.nova_error(500, r.NOVA_500_MESSAGE, request_id)
        if response is None:
            return _drop_connection(request)
        entry["status"] = response.status
        return response

    async def _answer(
        self,
        request: web.BaseRequest,
        target: str,
        path: str,
        query: str,
        request_id: str,
        entry: dict[str, Any],
    ) -> web.Response | None:
        if self._latency_s:
            await self._hold(self._latency_s)
        method = request.method
        sqs = self.sqs.wants(method, path, request.headers)
        try:
            body = await request.read() if request.body_exists else b""
        except web.HTTPRequestEntityTooLarge:
            if sqs:
                return self.sqs.too_large(request_id)
            return r.nova_error(413, "Request is too large.", request_id)
        if sqs:  # SQS: SigV4, its own errors and faults
            return await self.sqs.answer(request, target, body, request_id, entry)
        if path == TOKENS_PATH:  # Keystone: no gateway authentication, no faults
            if self.keystone is None:
                return r.nova_error(404, "The resource could not be found.", request_id)
            return self.keystone.answer(method, body, _base_url(request), request_id)
        auth = self.auth.authenticate(
            method=method,
            raw_target=target,
            headers=request.headers,
            body=body,
            project_id=_path_project(path),
        )
        if auth is None:
            return r.unauthorized(request_id)
        entry["auth"] = auth
        if auth == KEYSTONE and not self._token_scope_fits(request, path):
            return r.nova_error(
                403, "The token is scoped to another project than the request's.", request_id
            )
        faults = self.faults
        if faults.config.rate_limit_rps is not None and faults.over_rate_limit(time.monotonic()):
            entry["fault"] = RATE_LIMIT_FAULT
            return r.throttled(faults.throttle_limit, request_id, faults.throttle_retry_after())
        publish = self.smn.match(path)
        if publish is not None:
            return self.smn.answer(method, publish, body, request_id, entry)
        route = match_route(path)
        if route is None:
            return r.nova_error(404, "The resource could not be found.", request_id)
        if method not in ALLOWED_METHODS[route.kind]:
            return r.nova_error(
                405, "The method specified is not allowed for this resource.", request_id
            )
        if method == "DELETE":
            return await self._delete(route, request_id, entry)
        try:
            return self._read_or_write(request, route, method, query, body, request_id)
        except BadRequest as exc:
            if route.kind in (Kind.V1_DETAIL, Kind.V1_METADATA):
                return r.ecs_error(400, r.ECS_BAD_REQUEST, str(exc), request_id)
            return r.nova_error(400, str(exc), request_id)

    async def _delete(
        self, route: Route, request_id: str, entry: dict[str, Any]
    ) -> web.Response | None:
        faults = self.faults
        fault = faults.draw()
        if fault is not None:
            entry["fault"] = fault
            if fault == "429":
                return r.throttled(faults.throttle_limit, request_id, faults.retry_after())
            status = _INJECTED_STATUS.get(fault)
            if status is not None:
                return r.injected_error(status, request_id)
            if fault == "drop":
                return None
            if fault == "slow":
                await asyncio.sleep(faults.config.slow_ms / 1000.0)
        problem = self.state.delete_item(route.project_id, route.server_id, route.key)
        if fault == "lost_response":
            return None
        if problem is None:
            return r.empty_response(204, request_id)
        return self._problem(route, problem, request_id)

    def _read_or_write(
        self,
        request: web.BaseRequest,
        route: Route,
        method: str,
        query: str,
        body: bytes,
        request_id: str,
    ) -> web.Response:
        state = self.state
        kind = route.kind
        project, server_id = route.project_id, route.server_id
        if kind in (Kind.SERVERS, Kind.SERVERS_DETAIL, Kind.V1_DETAIL):
            params = dict(parse_qsl(query, keep_blank_values=True))
            limit = _limit(params.get("limit"))
            page = state.page(project, limit, params.get("marker"))
            if isinstance(page, Problem):
                raise BadRequest(page.message)
            return self._listing(request, route, params, page, request_id)
        result: Problem | dict[str, str] | Server
        if kind is Kind.SERVER:
            result = state.server(project, server_id)
            if isinstance(result, Server):
                view = _detail(result, _base_url(request))
                return r.json_response(200, {"server": view}, request_id)
            return self._problem(route, result, request_id)
        if method == "GET":
            if kind is Kind.ITEM:
                result = state.item(project, server_id, route.key)
                wrapper = "meta"
            else:
                result = state.metadata(project, server_id)
                wrapper = "metadata"
        elif kind is Kind.ITEM:  # PUT .../metadata/{key}
            items = _metadata_body(body, "meta")
            if len(items) > 1:
                raise BadRequest("Request body contains too many items")
            if route.key not in items:
                raise BadRequest("Request body and URI mismatch")
            result = state.update(project, server_id, items)
            if not isinstance(result, Problem):
                result = {route.key: result[route.key]}
            wrapper = "meta"
        else:  # POST (merge) or PUT (replace) .../metadata
            items = _metadata_body(body, "metadata")
            result = state.update(project, server_id, items, replace=method == "PUT")
            wrapper = "metadata"
        if isinstance(result, Problem):
            return self._problem(route, result, request_id)
        return r.json_response(200, {wrapper: result}, request_id)

    def _listing(
        self,
        request: web.BaseRequest,
        route: Route,
        params: dict[str, str],
        page: Page,
        request_id: str,
    ) -> web.Response:
        base = _base_url(request)
        project = route.project_id
        if route.kind is Kind.V1_DETAIL:
            servers = [_detail(server, base) for server in page.servers]
            next_marker = page.servers[-1].id if page.more and page.servers else None
            payload: dict[str, Any] = {
                "count": page.total,
                "servers": servers,
                "page_info": {"current_count": len(servers), "next_marker": next_marker},
            }
            return r.json_response(200, payload, request_id)
        if route.kind is Kind.SERVERS_DETAIL:
            servers = [_detail(server, base) for server in page.servers]
            collection = "servers/detail"
        else:
            servers = [_summary(server, base) for server in page.servers]
            collection = "servers"
        payload = {"servers": servers}
        if page.limit and len(page.servers) == page.limit:
            # Nova links the next page whenever a page is full, even when it is the last one.
            next_params = dict(params)
            next_params["marker"] = page.servers[-1].id
            href = f"{base}/v2.1/{project}/{collection}?{urlencode(next_params)}"
            payload["servers_links"] = [{"rel": "next", "href": href}]
        return r.json_response(200, payload, request_id)

    def _token_scope_fits(self, request: web.BaseRequest, path: str) -> bool:
        """True when a Keystone token's project is the path's (or the path names none)."""
        assert self.keystone is not None  # a `keystone` authentication implies it
        project = _path_project(path)
        scoped = self.keystone.project_of(request.headers.get("X-Auth-Token", ""))
        return project is None or scoped == project

    @staticmethod
    def _problem(route: Route, problem: Problem, request_id: str) -> web.Response:
        if problem.kind == "server_not_found" and route.kind in (Kind.V1_ITEM, Kind.V1_METADATA):
            message = f"Instance[{route.server_id}] could not be found."
            return r.ecs_error(404, r.ECS_SERVER_NOT_FOUND, message, request_id)
        return r.nova_error(problem.status, problem.message, request_id)

    def _control(self, request: web.BaseRequest, path: str) -> web.Response:
        request_id = f"req-{uuid.uuid4()}"
        if request.method != "GET":
            return r.nova_error(405, "Only GET is allowed on /_sandbox/ routes.", request_id)
        if path == "/_sandbox/state":
            return r.json_response(200, self.snapshot(), request_id)
        if path == "/_sandbox/requests":
            return r.json_response(200, self.requests(), request_id)
        return r.nova_error(404, "The resource could not be found.", request_id)


def _drop_connection(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection without an answer; aiohttp then gives up writing the response."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    return limit


def _metadata_body(body: bytes, wrapper: str) -> dict[str, str]:
    """Validate a `{"meta": {...}}` or `{"metadata": {...}}` body like Nova's schema."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body") from None
    if not isinstance(data, dict) or not isinstance(data.get(wrapper), dict):
        raise BadRequest(f"Invalid input for field/attribute {wrapper}: an object is required")
    items: dict[str, Any] = data[wrapper]
    for key, value in items.items():
        if not _KEY_PATTERN.match(key):
            raise BadRequest(
                f"Invalid input for field/attribute {wrapper}: key {key!r} does not match "
                "'^[a-zA-Z0-9-_:. ]{1,255}$'"
            )
        if not isinstance(value, str) or len(value) > 255:
            raise BadRequest(
                f"Invalid input for field/attribute {wrapper}: the value of {key!r} must be "
                "a string of at most 255 characters"
            )
    return items


def _base_url(request: web.BaseRequest) -> str:
    host = request.headers.get("Host") or request.host
    return f"http://{host}"


def _summary(server: Server, base: str) -> dict[str, Any]:
    return {
        "id": server.id,
        "name": server.name,
        "links": [
            {"rel": "self", "href": f"{base}/v2.1/{server.project_id}/servers/{server.id}"},
            {"rel": "bookmark", "href": f"{base}/{server.project_id}/servers/{server.id}"},
        ],
    }


def _detail(server: Server, base: str) -> dict[str, Any]:
    view = _summary(server, base)
    view.update(
        {
            "status": STATUS_BY_VM_STATE.get(server.vm_state, server.vm_state.upper()),
            "OS-EXT-STS:vm_state": server.vm_state,
            "OS-EXT-STS:task_state": None,
            "locked": server.locked,
            "tenant_id": server.project_id,
            "metadata": dict(server.metadata),
        }
    )
    return view
