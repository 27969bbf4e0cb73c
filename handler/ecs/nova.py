"""OpenStack Nova's v2.1 metadata API (Huawei ECS answers it too): paths and error bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from handler.ecs.reply import (
    RETRYABLE_STATUSES,
    Reply,
    detail_of,
    parse_retry_after,
    request_id_of,
)
from handler.ecs.reply import path_segment as _segment
from handler.outcomes import Outcome, Pair

_KEY_MISSING = "metadata item was not found"
_SERVER_MISSING = ("could not be found", "ecs.0114")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server as a listing shows it: id, name, vm_state and its metadata."""

    id: str
    name: str = ""
    vm_state: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServerPage:
    """One page of a server listing and the marker of the next page (None: the last one)."""

    servers: list[ServerInfo]
    next_marker: str | None


def servers_path(project_id: str, *, limit: int, marker: str | None = None) -> str:
    """Return the path of one page of `GET /servers/detail`."""
    query = {"limit": str(limit)} | ({"marker": marker} if marker else {})
    return f"/v2.1/{_segment(project_id)}/servers/detail?{urlencode(query)}"


def read_servers_page(body: Any) -> ServerPage:
    """Read a `servers/detail` page; the next page is the one `servers_links` names.

    A real Nova clamps `limit` to its `[api]max_limit`, so a page may hold fewer servers than
    asked and still have a next one: only the link says. Raises ValueError on a body of
    another shape.
    """
    servers = read_servers(body)
    next_marker = None
    links = body.get("servers_links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next":
            markers = parse_qs(urlsplit(str(link.get("href", ""))).query).get("marker")
            next_marker = markers[0] if markers else None
    return checked_page(servers, next_marker)


def read_servers(body: Any) -> list[ServerInfo]:
    """Read the `servers` list of a detailed listing (Nova's or Huawei's native one).

    Raises ValueError on a body of another shape.
    """
    if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
        raise ValueError("not a server listing: no 'servers' list")
    servers = []
    for entry in body["servers"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ValueError("not a server listing: a server without an id")
        metadata = entry.get("metadata")
        name, vm_state = entry.get("name"), entry.get("OS-EXT-STS:vm_state")
        servers.append(
            ServerInfo(
                id=entry["id"],
                name=name if isinstance(name, str) else "",
                vm_state=vm_state if isinstance(vm_state, str) else None,
                metadata={str(k): str(v) for k, v in metadata.items()}
                if isinstance(metadata, dict)
                else {},
            )
        )
    return servers


def checked_page(servers: list[ServerInfo], next_marker: str | None) -> ServerPage:
    """A page whose next marker, if any, must be its last server (else ValueError)."""
    if next_marker is not None and servers and next_marker != servers[-1].id:
        raise ValueError("the next link's marker is not the page's last server")
    return ServerPage(servers, next_marker if servers else None)


def metadata_path(pair: Pair, *, with_key: bool = True) -> str:
    """Return the Nova path of a pair's metadata key (or of the server's whole metadata)."""
    path = f"/v2.1/{_segment(pair.project_id)}/servers/{_segment(pair.server_id)}/metadata"
    return f"{path}/{_segment(pair.key)}" if with_key else path


def classify_delete(response: httpx.Response) -> Reply:
    """Read the response to a metadata DELETE."""
    status = response.status_code
    detail = detail_of(response) if status >= 300 else None
    request_id = request_id_of(response)
    if 200 <= status < 300:
        return Reply(status, Outcome.DELETED, request_id=request_id)
    if status == 404:
        lowered = (detail or "").lower()
        if _KEY_MISSING in lowered:
            outcome: Outcome | None = Outcome.ABSENT
        elif any(marker in lowered for marker in _SERVER_MISSING):
            outcome = Outcome.SERVER_NOT_FOUND
        else:
            outcome = None
        return Reply(status, outcome, detail=detail, request_id=request_id)
    if status in (401, 403):
        return Reply(status, Outcome.FORBIDDEN, detail=detail, request_id=request_id)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in RETRYABLE_STATUSES or (status == 413 and retry_after is not None):
        outcome = Outcome.CONFLICT if status == 409 else Outcome.RETRIES_EXHAUSTED
        return Reply(status, outcome, True, retry_after, detail, request_id)
    if status >= 500:
        return Reply(status, Outcome.RETRIES_EXHAUSTED, True, retry_after, detail, request_id)
    return Reply(status, Outcome.REJECTED, detail=detail, request_id=request_id)


def classify_probe(response: httpx.Response, first: Reply, key: str) -> Reply:
    """Decide an ambiguous 404 from `GET …/metadata`: absent only if the key is not listed."""
    status = response.status_code
    if status == 200:
        try:
            listed = response.json().get("metadata")
        except (ValueError, AttributeError, RecursionError):
            listed = None
        if isinstance(listed, dict) and key not in listed:
            return Reply(
                first.status, Outcome.ABSENT, detail=first.detail, request_id=first.request_id
            )
        why = "is still listed" if isinstance(listed, dict) else "could not be checked"
        detail = f"DELETE answered 404 ({first.detail}) but the key {why} by GET …/metadata"
        return Reply(first.status, Outcome.REJECTED, detail=detail, request_id=first.request_id)
    if status == 404:
        return Reply(
            first.status, Outcome.SERVER_NOT_FOUND, detail=first.detail, request_id=first.request_id
        )
    probe = classify_delete(response)
    if probe.retry or probe.outcome is Outcome.FORBIDDEN:
        return probe
    return Reply(status, Outcome.REJECTED, detail=probe.detail, request_id=probe.request_id)


class NovaApi:
    """The compute API as Nova v2.1 speaks it: `/v2.1/{project}/servers/{id}/metadata/{key}`."""

    name = "nova"

    def delete_path(self, pair: Pair) -> str:
        """The path that deletes one key."""
        return metadata_path(pair)

    def metadata_path(self, pair: Pair) -> str:
        """The path that reads one server's metadata."""
        return metadata_path(pair, with_key=False)

    def servers_path(self, project_id: str, *, limit: int, marker: str | None) -> str:
        """The path of one page of the project's servers, with details and metadata."""
        return servers_path(project_id, limit=limit, marker=marker)

    def read_servers_page(self, body: Any) -> ServerPage:
        """Read one page of servers and the marker of the next."""
        return read_servers_page(body)

    def classify_delete(self, response: httpx.Response) -> Reply:
        """Read the response to a DELETE."""
        return classify_delete(response)

    def classify_probe(self, response: httpx.Response, first: Reply, key: str) -> Reply:
        """Settle an ambiguous 404 with the server's metadata listing."""
        return classify_probe(response, first, key)
