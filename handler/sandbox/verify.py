"""SDK-HMAC-SHA256 signature verification, written from Huawei's published algorithm."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_HEADER = "X-Sdk-Date"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
DATE_WINDOW_S = 15 * 60
"""How far X-Sdk-Date may be from the server's clock, either way."""

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class SignedAuthorization:
    """The parts of an `Authorization: SDK-HMAC-SHA256 ...` header."""

    access: str
    signed_headers: str
    signature: str


def parse_authorization(value: str) -> SignedAuthorization | None:
    """Parse an SDK-HMAC-SHA256 Authorization header; None when it is not one or incomplete."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    access = fields.get("Access")
    signed = fields.get("SignedHeaders")
    signature = fields.get("Signature")
    if not access or not signed or not signature:
        return None
    return SignedAuthorization(access, signed, signature)


def canonical_uri(raw_path: str) -> str:
    """Percent-decode the path, re-encode each segment keeping unreserved characters, end in `/`."""
    segments = unquote_to_bytes(raw_path).split(b"/")
    uri = "/".join([quote_from_bytes(segment, safe="") for segment in segments])
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """Sort the query parameters by name (then value) and encode them like the path segments."""
    if not raw_query:
        return ""
    params: dict[bytes, list[bytes]] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if name:
            params.setdefault(unquote_to_bytes(name), []).append(unquote_to_bytes(value))
    pairs: list[str] = []
    for raw_name in sorted(params):
        encoded = quote_from_bytes(raw_name, safe="")
        pairs.extend(
            f"{encoded}={quote_from_bytes(value, safe='')}" for value in sorted(params[raw_name])
        )
    return "&".join(pairs)


def body_sha256(body: bytes) -> str:
    """Hex SHA-256 of a request body."""
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256


def canonical_request(
    *,
    method: str,
    raw_target: str,
    headers: Mapping[str, str],
    signed_headers: str,
    payload_hash: str,
) -> str | None:
    """Build the canonical request; None when a signed header is missing from the request.

    `headers` must look names up case-insensitively (aiohttp's and multidict's mappings do).
    """
    raw_path, _, raw_query = raw_target.partition("?")
    lines = [method.upper(), canonical_uri(raw_path), canonical_query(raw_query)]
    for name in signed_headers.split(";"):
        value = headers.get(name)
        if value is None:
            return None
        lines.append(f"{name.lower()}:{value.strip()}")
    lines.append("")
    lines.append(signed_headers.lower())
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(sdk_date: str, canonical: str) -> str:
    """The string the signature covers: algorithm, date and hash of the canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def compute_signature(secret_key: str, sdk_date: str, canonical: str) -> str:
    """Hex HMAC-SHA256 of the string to sign, keyed with the secret key."""
    message = string_to_sign(sdk_date, canonical).encode("utf-8", "surrogateescape")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify_signature(
    *,
    method: str,
    raw_target: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
) -> bool:
    """Check an SDK-HMAC-SHA256 signed request against one AK/SK pair (the date is not judged).

    `raw_target` is the request target as received (path and query, percent-encoded);
    `headers` must look names up case-insensitively.
    """
    authorization = headers.get("Authorization")
    sdk_date = headers.get(SDK_DATE_HEADER)
    if authorization is None or sdk_date is None:
        return False
    parsed = parse_authorization(authorization)
    if parsed is None or not hmac.compare_digest(parsed.access, access_key):
        return False
    payload_hash = body_sha256(body)
    declared = headers.get(CONTENT_SHA256_HEADER)
    if declared is not None:
        declared = declared.strip()
        if declared != UNSIGNED_PAYLOAD and declared != payload_hash:
            return False
        payload_hash = declared
    canonical = canonical_request(
        method=method,
        raw_target=raw_target,
        headers=headers,
        signed_headers=parsed.signed_headers,
        payload_hash=payload_hash,
    )
    if canonical is None:
        return False
    expected = compute_signature(secret_key, sdk_date.strip(), canonical)
    return hmac.compare_digest(expected, parsed.signature.lower())


def parse_sdk_date(value: str) -> float | None:
    """Parse an X-Sdk-Date value (`YYYYMMDDTHHMMSSZ`, UTC) to a POSIX timestamp; None if invalid."""
    text = value.strip()
    if len(text) != 16 or text[8] != "T" or text[15] != "Z":
        return None
    digits = text[:8] + text[9:15]
    if not digits.isascii() or not digits.isdigit():
        return None
    try:
        moment = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return moment.timestamp()


def sdk_date_is_fresh(value: str, now: float, window_s: float = DATE_WINDOW_S) -> bool:
    """True when an X-Sdk-Date value parses and lies within `window_s` of `now` (POSIX time)."""
    moment = parse_sdk_date(value)
    return moment is not None and abs(now - moment) <= window_s
