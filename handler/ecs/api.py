"""The compute API behind the client: each flavour (Nova, native, OpenStack) owns its paths."""

from __future__ import annotations

from typing import Protocol

import httpx

from handler.ecs.reply import Reply
from handler.outcomes import Pair


class ComputeApi(Protocol):
    """One API flavour: where a key is deleted, metadata read, and what the answers mean."""

    name: str

    def delete_path(self, pair: Pair) -> str:
        """The path (already percent-encoded) whose DELETE removes the pair's key."""
        ...

    def metadata_path(self, pair: Pair) -> str:
        """The path whose GET lists the server's metadata (to settle an ambiguous 404)."""
        ...

    def classify_delete(self, response: httpx.Response) -> Reply:
        """Read a DELETE's response; a Reply whose outcome is None asks for the metadata probe."""
        ...

    def classify_probe(self, response: httpx.Response, first: Reply, key: str) -> Reply:
        """Read the metadata listing that settles the first, ambiguous reply."""
        ...
