"""The function's httpx transports: each request sent once, its encoded path kept byte for byte.

`AdaptiveTransport` starts on a lean path, so the first answer waits for neither aiohttp's
import (about 85 ms, half of it TLS contexts aiohttp builds at import) nor httpcore's and
anyio's (about 30 ms): a direct URL goes over a small HTTP/1.1 client of its own, h11 on
asyncio streams (importing h11 costs about 6 ms), and only a URL a proxy carries goes over
httpcore, imported then. After `switch_after` requests it moves to aiohttp, imported on a
worker thread meanwhile. `AiohttpTransport` is the aiohttp path alone.

Every path sends each request at most once: a connection that drops is an
`httpx.TransportError` for the caller's retry logic (aiohttp would otherwise re-send an
idempotent request once on its own; the h11 path drops an idle connection the server has
closed before sending anything on it). Proxies come from `HTTP_PROXY`, `HTTPS_PROXY` and
`ALL_PROXY` (either case) with `NO_PROXY`, read once when a transport is built; `.netrc` is
never read. TLS verification uses `httpx.create_ssl_context()` on every path, built at the first
https request. No path adds a User-Agent or Accept-Encoding of its own.

No path decompresses, and none reads a body whole whatever its size. The ECS API is called
without Accept-Encoding, so a `Content-Encoding` in a reply is the server's choice alone: the
body is handed to httpx as it came, its `Content-Encoding` header renamed `ENCODING_HEADER`
(`x-janitor-content-encoding`, same value) so that httpx does not inflate it (64 KB of gzip
can inflate to gigabytes). A body is read chunk by chunk, each read bounded by the request's
read timeout, up to a limit: an error reply (status >= 300) keeps its first
`MAX_ERROR_BODY_BYTES` (64 KiB; its outcome and detail need no more), marked by a
`TRUNCATED_HEADER` (`x-janitor-body-truncated`) that states the limit; a successful one longer
than `MAX_BODY_BYTES` (32 MiB) is an `httpx.RemoteProtocolError`. Either way the rest is never
read and that connection is closed, never reused.

Where each piece lives: `_adaptive` (AdaptiveTransport and its lean path), `_aiohttp`
(AiohttpTransport), `_h11` (direct connections), `_httpcore` (proxied ones), `_proxies` (the
environment's proxies), `_common` (TLS context, body limits, building a response) and
`_loading` (loading aiohttp, warm-up). This package re-exports the public names.
"""

from handler.ecs.transport._adaptive import DEFAULT_SWITCH_AFTER, AdaptiveTransport
from handler.ecs.transport._aiohttp import AiohttpTransport
from handler.ecs.transport._common import (
    ENCODING_HEADER,
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    TRUNCATED_HEADER,
)
from handler.ecs.transport._loading import load_aiohttp, preload
from handler.ecs.transport._proxies import proxy_configured, proxy_error, proxy_secrets

__all__ = [
    "DEFAULT_SWITCH_AFTER",
    "ENCODING_HEADER",
    "MAX_BODY_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "TRUNCATED_HEADER",
    "AdaptiveTransport",
    "AiohttpTransport",
    "load_aiohttp",
    "preload",
    "proxy_configured",
    "proxy_error",
    "proxy_secrets",
]
