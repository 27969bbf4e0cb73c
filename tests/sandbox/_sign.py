"""A test-only SDK-HMAC-SHA256 signer, written from Huawei's signing guide (not the verifier)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import httpx


def _encode(text: str) -> str:
    return quote(text, safe="~")


def _canonical_uri(raw_path: str) -> str:
    uri = "/".join(_encode(part) for part in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(raw_query: str) -> str:
    params: dict[str, list[str]] = {}
    for part in raw_query.split("&") if raw_query else []:
        key, _, value = part.partition("=")
        if key:
            params.setdefault(unquote(key), []).append(unquote(value))
    return "&".join(
        f"{_encode(key)}={_encode(value)}"
        for key in sorted(params)
        for value in sorted(params[key])
    )


def sign(
    request: httpx.Request,
    ak: str,
    sk: str,
    *,
    when: datetime | None = None,
    extra_signed: tuple[str, ...] = (),
) -> httpx.Request:
    """Add X-Sdk-Date and an SDK-HMAC-SHA256 Authorization header to `request` (in place)."""
    moment = when or datetime.now(UTC)
    sdk_date = moment.strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Sdk-Date"] = sdk_date
    names = {"host", "x-sdk-date", *extra_signed}
    for optional in ("content-type", "x-project-id", "x-security-token", "x-sdk-content-sha256"):
        if optional in request.headers:
            names.add(optional)
    signed = sorted(names)
    raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
    # Like Huawei's signers: a declared X-Sdk-Content-Sha256 (e.g. UNSIGNED-PAYLOAD) is used as is.
    payload_hash = (
        request.headers.get("X-Sdk-Content-Sha256") or hashlib.sha256(request.content).hexdigest()
    )
    canonical = "\n".join(
        [
            request.method.upper(),
            _canonical_uri(raw_path),
            _canonical_query(raw_query),
            *(f"{name}:{request.headers[name].strip()}" for name in signed),
            "",
            ";".join(signed),
            payload_hash,
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"SDK-HMAC-SHA256\n{sdk_date}\n{digest}"
    signature = hmac.new(sk.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    request.headers["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return request
