"""Request authentication: SDK-HMAC-SHA256 (AK/SK) signing and IAM token, as httpx.Auth flows."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

import httpx

from handler.ecs.retry import BUDGET_EXTENSION

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, with the security token of temporary credentials."""

    ak: str
    sk: str
    security_token: str | None = None

    def __repr__(self) -> str:
        token = "***" if self.security_token else None
        return f"Credentials(ak={self.ak[:4]}…, sk=***, security_token={token})"


class CredentialsProvider(Protocol):
    """Where an AK/SK signer gets its credentials; `refresh` is called once after a 401."""

    def get(self) -> Credentials:
        """Return the credentials to sign with now."""
        ...

    def refresh(self) -> Credentials:
        """Re-read the credentials after the cloud rejected them."""
        ...


class StaticCredentials:
    """Credentials fixed for the life of the process (environment variables)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def get(self) -> Credentials:
        """Return the configured credentials."""
        return self._credentials

    def refresh(self) -> Credentials:
        """Return the same credentials: a retry re-signs them with a fresh date."""
        return self._credentials


class SwappableCredentials:
    """Credentials set per invocation (FunctionGraph's context), re-read through a callback."""

    def __init__(self, read: Callable[[], Credentials | None]) -> None:
        self._read = read
        self._current: Credentials | None = None

    def get(self) -> Credentials:
        """Return the credentials read most recently, reading them first if needed."""
        if self._current is None:
            return self.refresh()
        return self._current

    def refresh(self) -> Credentials:
        """Read the credentials again from their source."""
        current = self._read()
        if current is None:
            raise CredentialsUnavailableError(NO_CREDENTIALS)
        self._current = current
        return current

    def invalidate(self) -> None:
        """Forget the current credentials so the next request reads them anew."""
        self._current = None


NO_CREDENTIALS = (
    "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or ECS_AUTH_TOKEN, or give "
    "the FunctionGraph function an agency so its context carries temporary credentials"
)


class CredentialsUnavailableError(RuntimeError):
    """No credentials could be found to sign a request with."""


def _quote_segment(segment: str) -> str:
    return quote(segment, safe="")


def canonical_uri(raw_path: str) -> str:
    """Return the canonical URI of a wire path: each segment re-encoded, always ending in '/'."""
    if _PLAIN_PATH.fullmatch(raw_path) and raw_path.startswith("/"):
        # Nothing to decode or encode: the segments are canonical already.
        return raw_path if raw_path.endswith("/") else raw_path + "/"
    segments = [_quote_segment(unquote(part)) for part in raw_path.split("/")]
    path = "/".join(segments)
    if not path.startswith("/"):
        path = "/" + path
    return path if path.endswith("/") else path + "/"


def canonical_query(raw_query: str) -> str:
    """Return the canonical query string: parameters sorted by key, each side re-encoded."""
    if not raw_query:
        return ""
    params = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.append((_quote_segment(unquote(name)), _quote_segment(unquote(value))))
    params.sort()
    return "&".join(f"{name}={value}" for name, value in params)


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")
_ALWAYS_SIGNED = frozenset({b"host", b"content-type"})
_EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def _should_sign(name: bytes) -> bool:
    return b"_" not in name and (name in _ALWAYS_SIGNED or name.startswith(b"x-"))


def string_to_sign(request: httpx.Request, date: str) -> tuple[str, str]:
    """Return the signed header list and the string to sign for a request."""
    headers: dict[str, str] = {}
    encoding = request.headers.encoding
    for raw_name, raw_value in request.headers.raw:
        lower = raw_name.lower()
        if _should_sign(lower):
            headers[lower.decode("ascii")] = raw_value.decode(encoding).strip()
    signed = sorted(headers)
    raw_path = request.url.raw_path.decode("ascii")
    path, _, query = raw_path.partition("?")
    body = request.content
    canonical = "\n".join(
        [
            request.method.upper(),
            canonical_uri(path),
            canonical_query(query),
            "".join(f"{name}:{headers[name]}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(body).hexdigest() if body else _EMPTY_BODY_SHA256,
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return ";".join(signed), f"{ALGORITHM}\n{date}\n{digest}"


def sign_request(request: httpx.Request, credentials: Credentials, now: dt.datetime) -> None:
    """Add X-Sdk-Date, the security token and the Authorization header to a request."""
    if DATE_HEADER not in request.headers:
        request.headers[DATE_HEADER] = now.strftime(DATE_FORMAT)
    if credentials.security_token:
        request.headers["X-Security-Token"] = credentials.security_token
    else:
        request.headers.pop("X-Security-Token", None)
    signed, to_sign = string_to_sign(request, request.headers[DATE_HEADER])
    signature = hmac.new(credentials.sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    request.headers["Authorization"] = (
        f"{ALGORITHM} Access={credentials.ak}, SignedHeaders={signed}, Signature={signature}"
    )


def _may_send_again(request: httpx.Request) -> bool:
    """False when the request's attempt budget (see handler.ecs.retry) is spent."""
    budget = request.extensions.get(BUDGET_EXTENSION)
    return budget is None or not budget.exhausted


class AkSkAuth(httpx.Auth):
    """Sign each request SDK-HMAC-SHA256 as it is sent; after a 401, refresh once and re-sign."""

    def __init__(self, provider: CredentialsProvider, *, clock: Clock = _utcnow) -> None:
        self._provider = provider
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign, send, and on 401 sign again with refreshed credentials and a fresh date."""
        request.headers.pop(DATE_HEADER, None)
        sign_request(request, self._provider.get(), self._clock())
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED and _may_send_again(request):
            request.headers.pop(DATE_HEADER, None)
            sign_request(request, self._provider.refresh(), self._clock())
            yield request


class TokenAuth(httpx.Auth):
    """Send an IAM (Keystone) token as X-Auth-Token; after a 401, re-read it once and retry."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the token, send, and on 401 send once more with the token read again."""
        request.headers["X-Auth-Token"] = self._token()
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED and _may_send_again(request):
            request.headers["X-Auth-Token"] = self._token()
            yield request
