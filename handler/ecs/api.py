"""The compute API behind the client: each flavour (Nova, native, OpenStack) owns its paths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import httpx

from handler.ecs.reply import Reply
from handler.outcomes import Pair

if TYPE_CHECKING:
    from handler.ecs.nova import ServerPage


class ComputeApi(Protocol):
    """One API flavour: where a key is deleted, metadata read, and what the answers mean."""

    name: str

    def delete_path(self, pair: Pair) -> str:
        """The path (already percent-encoded) whose DELETE removes the pair's key."""
        ...

    def metadata_path(self, pair: Pair) -> str:
        """The path whose GET lists the server's metadata (to settle an ambiguous 404)."""
        ...

    def servers_path(self, project_id: str, *, limit: int, marker: str | None) -> str:
        """The path of one page of the project's servers (with their metadata)."""
        ...

    def read_servers_page(self, body: Any) -> ServerPage:
        """Read one page of servers and where the next starts (ValueError if not a listing)."""
        ...

    def classify_delete(self, response: httpx.Response) -> Reply:
        """Read a DELETE's response; a Reply whose outcome is None asks for the metadata probe."""
        ...

    def classify_probe(self, response: httpx.Response, first: Reply, key: str) -> Reply:
        """Read the metadata listing that settles the first, ambiguous reply."""
        ...
