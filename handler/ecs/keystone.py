"""Keystone v3 password authentication (plain OpenStack, Huawei IAM) as an httpx.Auth flow.

A token is taken with `POST {auth_url}/v3/auth/tokens` (the password method, scoped to one
project), read from `X-Subject-Token`, and sent as `X-Auth-Token` on every request. It lives as
long as the warm container: it is renewed when less than `min(5 min, 10 % of its lifetime)` is
left (the lifetime is `expires_at - issued_at` as Keystone states both, so a skewed local clock
does not matter), and once after a 401, when the request is re-sent once, within its attempt
budget. One token request is in flight at a time: requests arriving meanwhile wait for it and
share its result, success or failure. A rejected password is not tried again for a minute
(Huawei IAM locks a user after a few failed logins); a Keystone that cannot be reached is asked
again after a second at the earliest. A renewal that fails while the current token still lives
leaves that token in use until it expires.

The token request goes straight to the function's transport: it is no DELETE of any pair, so
it counts against no attempt budget.

The catalog gives the compute endpoint: the entry of the first service type found (by ECS_API,
`compute` or `ecs`), its region (`OS_REGION_NAME`, when set; `*` matches any) and interface.
Catalog URLs end with the API version and usually the project (`…/v2.1/{project_id}`,
`…/v1/{project_id}`); the client builds its paths from a base URL, so a trailing
`/v1`, `/v1.1`, `/v2` or `/v2.1` (and the segment after it) is taken off.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import structlog

from handler.ecs.reply import message_of
from handler.ecs.retry import BUDGET_EXTENSION
from handler.ecs.signing import CredentialsUnavailableError
from handler.outcomes import Outcome

__all__ = [
    "CATALOG_TYPES",
    "KeystoneAuth",
    "KeystoneError",
    "KeystoneUnavailableError",
    "PasswordSettings",
    "base_of",
]

_log = structlog.get_logger("handler.ecs.keystone")

#: The catalog's service types for each compute API, in order of preference. Huawei's catalog
#: lists Nova's v2.1 as `compute` and ECS's native v1 as `ecs` (huaweicloud-sdk-python,
#: `openstack/ecs/ecs_service.py`); both live on the same host there, so each API falls back
#: to the other's entry (a plain OpenStack has only `compute`).
CATALOG_TYPES: dict[str, tuple[str, ...]] = {
    "nova": ("compute", "ecs"),
    "native": ("ecs", "compute"),
}
#: Renew a token when less than this is left of it (or 10 % of its lifetime, if less).
RENEW_BEFORE_S = 300.0
RENEW_SHARE = 0.1
#: How long a rejected password (or another answer that will not change) is answered from
#: memory, without asking Keystone again.
REJECTED_FOR_S = 60.0
#: How long a Keystone that could not be reached is not asked again.
UNREACHABLE_FOR_S = 1.0
#: The longest detail of Keystone's answer kept in an error.
_DETAIL_LIMIT = 200
_VERSION_SUFFIX = re.compile(r"/v(?:1|1\.1|2|2\.1)(?:/[^/]+)?$", re.IGNORECASE)
_HEADERS = {
    "User-Agent": "ecs-metadata-janitor",
    "Accept": "application/json",
    "Content-Type": "application/json",
}

Reason = Literal["password", "refused", "answer", "catalog", "unavailable"]


class KeystoneError(CredentialsUnavailableError):
    """Keystone gave no usable token, or its catalog no endpoint: the message says which.

    `outcome` is what a pair that needed it becomes; `reason` says what failed and `status`
    what Keystone answered, if it did (for `check`).
    """

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome = Outcome.FORBIDDEN,
        reason: Reason = "answer",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.reason: Reason = reason
        self.status = status

    def again(self) -> KeystoneError:
        """A fresh copy to raise once more (raising one object twice grows its traceback)."""
        return copy.copy(self)


class KeystoneUnavailableError(httpx.TransportError, KeystoneError):
    """Keystone unreachable or failing (5xx, 429): transient, retried as a network error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.outcome = Outcome.RETRIES_EXHAUSTED
        self.reason = "unavailable"
        self.status = status


@dataclass(frozen=True, slots=True)
class PasswordSettings:
    """What a password token request needs: the Keystone URL, user, password and scope."""

    #: The Keystone base URL, without `/v3`.
    auth_url: str
    username: str
    password: str = field(repr=False)
    user_domain_name: str = "Default"
    project_id: str | None = None
    project_name: str | None = None
    project_domain_name: str = "Default"
    region: str | None = None
    interface: str = "public"
    #: The catalog service types to take the compute endpoint from, in order.
    service_types: tuple[str, ...] = CATALOG_TYPES["nova"]

    @property
    def tokens_url(self) -> str:
        """Where tokens are requested: `{auth_url}/v3/auth/tokens`."""
        return f"{self.auth_url.rstrip('/')}/v3/auth/tokens"

    @property
    def host(self) -> str:
        """Keystone's host (and port), for messages."""
        return urlsplit(self.auth_url).netloc

    def body(self) -> dict[str, Any]:
        """The token request: the password method, scoped to the project by id or by name."""
        if self.project_id is not None:
            project: dict[str, Any] = {"id": self.project_id}
        else:
            project = {"name": self.project_name, "domain": {"name": self.project_domain_name}}
        user = {
            "name": self.username,
            "password": self.password,
            "domain": {"name": self.user_domain_name},
        }
        return {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": project},
            }
        }


@dataclass(frozen=True, slots=True)
class Token:
    """A token as Keystone issued it, with when (on the monotonic clock) to renew it."""

    value: str = field(repr=False)
    project_id: str
    catalog: tuple[dict[str, Any], ...]
    renew_at: float
    expires_at: float
    expires_text: str


@dataclass(frozen=True, slots=True)
class _Failure:
    error: KeystoneError
    #: Monotonic time until which the failure is answered without asking Keystone again.
    until: float


def base_of(url: str) -> str:
    """A catalog URL without its API version and project: `…/v2.1/{project}` -> `…`."""
    return _VERSION_SUFFIX.sub("", url.strip().rstrip("/"))


def _may_send_again(request: httpx.Request) -> bool:
    """False when the request's attempt budget (see handler.ecs.retry) is spent."""
    budget = request.extensions.get(BUDGET_EXTENSION)
    return budget is None or not budget.exhausted


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _detail(body: bytes) -> str:
    message = message_of(body)
    if not message:
        return ""
    flat = " ".join(message.split()).rstrip(".")
    return f": {flat}" if len(flat) <= _DETAIL_LIMIT else f": {flat[: _DETAIL_LIMIT - 3]}..."


class KeystoneAuth(httpx.Auth):
    """Keystone v3 password tokens sent as `X-Auth-Token`, kept and renewed; the catalog."""

    def __init__(
        self,
        settings: PasswordSettings,
        *,
        transport: httpx.AsyncBaseTransport,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._timeout_s = timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = asyncio.Lock()
        self._token: Token | None = None
        self._failure: _Failure | None = None
        #: Token requests sent so far (a waiter knows from it whether one ran meanwhile).
        self.requests_sent = 0
        self._endpoint: tuple[Token, str] | None = None

    # --- the httpx flow -----------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Not available: tokens are requested asynchronously (use an httpx.AsyncClient)."""
        raise RuntimeError("KeystoneAuth works with an httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Add the token (renewed first if due), send, and after a 401 renew once and re-send."""
        token = self._token
        if token is None or self._clock() >= token.renew_at:
            token = await self.token()
        request.headers["X-Auth-Token"] = token.value
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED and _may_send_again(request):
            fresh = await self.token(stale=token)
            request.headers["X-Auth-Token"] = fresh.value
            yield request

    # --- what the runtime asks ----------------------------------------------------------

    async def project_id(self) -> str:
        """The project the token is scoped to (as Keystone says: OS_PROJECT_NAME's id)."""
        return (await self.token()).project_id

    async def endpoint(self) -> str:
        """The compute API's base URL from the token's catalog; KeystoneError if it has none."""
        token = await self.token()
        known = self._endpoint
        if known is not None and known[0] is token:
            return known[1]
        service_type, url = self._catalog_endpoint(token)
        base = base_of(url)
        if known is None or known[1] != base:
            _log.info(
                "compute endpoint from the Keystone catalog",
                service_type=service_type,
                region=self.settings.region,
                interface=self.settings.interface,
                catalog_url=url,
                endpoint=base,
            )
        self._endpoint = (token, base)
        return base

    async def token(self, *, stale: Token | None = None) -> Token:
        """A token to send: the current one while fresh, else a new one (one request at a time).

        Requests waiting meanwhile share that request's result; `stale` is a token just refused.
        """
        token = self._token
        if token is not None and token is not stale:
            now = self._clock()
            if now < token.renew_at:
                return token
            if now < token.expires_at and self._lock.locked():
                return token  # another request is renewing it; this one still lives
        sent_before = self.requests_sent
        async with self._lock:
            token = self._token
            now = self._clock()
            live = token is not None and token is not stale and now < token.expires_at
            if live and token is not None and now < token.renew_at:
                return token
            failure = self._failure
            if failure is not None and (self.requests_sent != sent_before or now < failure.until):
                if live and token is not None:
                    return token
                raise failure.error.again()
            try:
                return await self._request_token()
            except KeystoneError as exc:
                if live and token is not None:
                    _log.warning(
                        "keystone token renewal failed; the current token is used until it expires",
                        error=str(exc),
                        expires_at=token.expires_text,
                    )
                    return token
                raise

    # --- the token request --------------------------------------------------------------

    async def _request_token(self) -> Token:
        settings = self.settings
        self.requests_sent += 1
        started = self._clock()
        request = httpx.Request(
            "POST",
            settings.tokens_url,
            headers=_HEADERS,
            content=json.dumps(settings.body()).encode(),
            extensions={"timeout": httpx.Timeout(self._timeout_s).as_dict()},
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(request)
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
        except TimeoutError:
            why = f"no answer within {self._timeout_s:g} s"
            raise self._failed(self._unreachable(why)) from None
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            raise self._failed(self._unreachable(why)) from exc
        except asyncio.CancelledError:
            # The request that needed the token ran out of time (its own timeout, the
            # invocation's deadline): the next one asks again.
            _log.warning("keystone token request cancelled before Keystone answered")
            raise
        try:
            token = self._read(response, body, started)
        except KeystoneError as exc:
            raise self._failed(exc) from None
        self._token = token
        self._failure = None
        _log.info(
            "keystone token obtained",
            keystone=settings.host,
            project_id=token.project_id,
            expires_at=token.expires_text,
        )
        return token

    def _unreachable(self, why: str) -> KeystoneUnavailableError:
        return KeystoneUnavailableError(
            f"Keystone unreachable at {self.settings.host} (OS_AUTH_URL): {why}"
        )

    def _failed(self, error: KeystoneError) -> KeystoneError:
        """Remember a failure for the requests waiting, and longer if it will not change."""
        hold = UNREACHABLE_FOR_S if isinstance(error, KeystoneUnavailableError) else REJECTED_FOR_S
        self._failure = _Failure(error, self._clock() + hold)
        _log.error("keystone authentication failed", keystone=self.settings.host, error=str(error))
        return error

    def _read(self, response: httpx.Response, body: bytes, started: float) -> Token:
        """The token of a 201, or the KeystoneError that says what the answer means."""
        status = response.status_code
        host = self.settings.host
        if status == 401:
            raise KeystoneError(
                f"OS_USERNAME/OS_PASSWORD rejected by Keystone (HTTP 401) at {host}"
                f"{_detail(body)}; check them, OS_USER_DOMAIN_NAME and the project "
                "(OS_PROJECT_ID, or OS_PROJECT_NAME in OS_PROJECT_DOMAIN_NAME)",
                reason="password",
                status=status,
            )
        if status == 403:
            raise KeystoneError(
                f"Keystone at {host} refused a token (HTTP 403){_detail(body)}",
                reason="refused",
                status=status,
            )
        if status == 429 or status >= 500:
            raise KeystoneUnavailableError(
                f"Keystone at {host} answered HTTP {status}{_detail(body)}", status
            )
        if status not in (200, 201):
            raise KeystoneError(
                f"Keystone at {host} answered HTTP {status} to POST /v3/auth/tokens"
                f"{_detail(body)}: is OS_AUTH_URL its v3 URL?",
                outcome=Outcome.REJECTED,
                status=status,
            )
        value = response.headers.get("X-Subject-Token", "").strip()
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if not value or not isinstance(token, dict):
            what = "no X-Subject-Token header" if not value else "no token in its body"
            raise KeystoneError(
                f"Keystone at {host} answered HTTP {status} with {what}: is OS_AUTH_URL its "
                "v3 URL?",
                outcome=Outcome.REJECTED,
            )
        project = token.get("project")
        project_id = project.get("id") if isinstance(project, dict) else None
        if not isinstance(project_id, str) or not project_id:
            raise KeystoneError(
                f"Keystone at {host} issued a token with no project scope: set OS_PROJECT_ID "
                "or OS_PROJECT_NAME to a project of this user",
                outcome=Outcome.REJECTED,
            )
        catalog = token.get("catalog")
        entries = catalog if isinstance(catalog, list) else []
        services = tuple(service for service in entries if isinstance(service, dict))
        renew_at, expires_at, expires_text = self._lifetime(token, started)
        return Token(value, project_id, services, renew_at, expires_at, expires_text)

    def _lifetime(self, token: dict[str, Any], started: float) -> tuple[float, float, str]:
        """When to renew and when the token expires, on the monotonic clock."""
        expires = _parse_time(token.get("expires_at"))
        if expires is None:  # no stated expiry: kept until a 401 says otherwise
            return float("inf"), float("inf"), "unknown"
        issued = _parse_time(token.get("issued_at")) or self._wall_clock()
        life = (expires - issued).total_seconds()
        if life <= 0:
            raise KeystoneError(
                f"Keystone at {self.settings.host} issued a token that has already expired "
                f"(expires_at {token.get('expires_at')})",
                outcome=Outcome.REJECTED,
            )
        expires_at = started + life
        renew_at = expires_at - min(RENEW_BEFORE_S, RENEW_SHARE * life)
        return renew_at, expires_at, str(token.get("expires_at"))

    # --- the catalog --------------------------------------------------------------------

    def _catalog_endpoint(self, token: Token) -> tuple[str, str]:
        """The service type and URL of the catalog's compute endpoint (KeystoneError if none)."""
        settings = self.settings
        wanted = settings.service_types
        found_types: list[str] = []
        seen: list[str] = []
        for service_type in wanted:
            for service in token.catalog:
                if service.get("type") != service_type:
                    continue
                found_types.append(service_type)
                endpoints = service.get("endpoints")
                for entry in endpoints if isinstance(endpoints, list) else []:
                    if not isinstance(entry, dict):
                        continue
                    interface = str(entry.get("interface") or "")
                    region = str(entry.get("region_id") or entry.get("region") or "*")
                    seen.append(f"{service_type} {interface} in {region}")
                    url = entry.get("url")
                    if interface != settings.interface or not isinstance(url, str):
                        continue
                    named = (region, str(entry.get("region") or ""))
                    if (
                        settings.region is not None
                        and "*" not in named
                        and settings.region not in named
                    ):
                        continue
                    if urlsplit(url).scheme.lower() not in ("http", "https"):
                        continue
                    return service_type, url
        names = " or ".join(repr(t) for t in wanted)
        if not found_types:
            types = sorted({str(s.get("type")) for s in token.catalog if s.get("type")})
            has = ", ".join(types) if types else "nothing"
            raise KeystoneError(
                f"the Keystone catalog has no {names} service (it has: {has}): set "
                "ECS_ENDPOINT, or check ECS_API",
                outcome=Outcome.REJECTED,
                reason="catalog",
            )
        region = f" in region {settings.region!r}" if settings.region else ""
        has = "; ".join(seen[:12]) + ("; …" if len(seen) > 12 else "") if seen else "no endpoint"
        raise KeystoneError(
            f"the Keystone catalog has no {settings.interface} http(s) endpoint of {names}"
            f"{region} (it has: {has}): check OS_REGION_NAME and OS_INTERFACE, or set "
            "ECS_ENDPOINT",
            outcome=Outcome.REJECTED,
            reason="catalog",
        )
