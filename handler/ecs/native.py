"""Huawei ECS's native v1 API: `/v1/{project}/cloudservers/...` paths and its error bodies.

Huawei deprecates the Nova-compatible `/v2.1` metadata calls; this flavour speaks only the
native routes. Its error bodies are `{"error": {"code": "Ecs.xxxx", "message": ...}}`: a missing
server is `Ecs.0114` (settled from the body alone, no probe); a missing key is answered with
Nova's `itemNotFound` body ("Metadata item was not found"). Everything else reads as Nova's
replies do, so the classification is Nova's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from handler.ecs import nova
from handler.ecs.nova import ServerPage
from handler.ecs.reply import path_segment as _segment
from handler.outcomes import Pair

#: The most servers one `cloudservers/detail` page may ask for.
MAX_PAGE_SIZE = 1000


def metadata_path(pair: Pair, *, with_key: bool = True) -> str:
    """Return the native path of a pair's metadata key (or of the server's whole metadata)."""
    server = _segment(pair.server_id)
    path = f"/v1/{_segment(pair.project_id)}/cloudservers/{server}/metadata"
    return f"{path}/{_segment(pair.key)}" if with_key else path


def servers_path(project_id: str, *, limit: int, marker: str | None = None) -> str:
    """Return the path of one page of `GET /v1/{project}/cloudservers/detail` (limit ≤ 1000)."""
    size = min(max(limit, 1), MAX_PAGE_SIZE)
    query = {"limit": str(size)} | ({"marker": marker} if marker else {})
    return f"/v1/{_segment(project_id)}/cloudservers/detail?{urlencode(query)}"


def read_servers_page(body: Any) -> ServerPage:
    """Read a `cloudservers/detail` page; the next page starts after `page_info.next_marker`.

    Raises ValueError on a body of another shape.
    """
    servers = nova.read_servers(body)
    page_info = body.get("page_info")
    next_marker = page_info.get("next_marker") if isinstance(page_info, dict) else None
    if next_marker is not None and not isinstance(next_marker, str):
        raise ValueError("not a server listing: page_info.next_marker is not a string")
    return nova.checked_page(servers, next_marker or None)


class NativeApi(nova.NovaApi):
    """The compute API as Huawei ECS v1 speaks it: `/v1/{project}/cloudservers/{id}/metadata`.

    Only the paths and the listing's paging differ from Nova; the answers are read as Nova's
    (`Ecs.0114` is a missing server, from the body alone).
    """

    name = "native"

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
        """Read one page of servers and the marker of `page_info.next_marker`."""
        return read_servers_page(body)
