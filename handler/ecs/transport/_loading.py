"""What is loaded ahead of a request: aiohttp on demand, h11 and the TLS context at warm-up."""

from __future__ import annotations

from handler.ecs.transport._common import _ssl_context


class _AiohttpState:
    """Whether aiohttp has been imported by `load_aiohttp` or a transport's background load."""

    loaded = False


_AIOHTTP = _AiohttpState()


def _import_aiohttp() -> None:
    import aiohttp  # noqa: F401
    import yarl  # noqa: F401

    _AIOHTTP.loaded = True


def load_aiohttp() -> None:
    """Import aiohttp now; adaptive transports that may switch then use it at their next request."""
    _import_aiohttp()


def preload(url: str) -> None:
    """Load what the first request to `url` needs (h11; the TLS context for https): warm-up."""
    import h11  # noqa: F401

    if url.lower().startswith("https:"):
        _ssl_context()
