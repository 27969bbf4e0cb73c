"""Keystone v3 password authentication (plain OpenStack, Huawei IAM) as an httpx.Auth flow.

A token is taken with `POST {auth_url}/v3/auth/tokens` (the password method, scoped to one
project), read from `X-Subject-Token`, and sent as `X-Auth-Token` on every request. It lives as
long as the warm container: it is renewed when less than `min(5 min, 10 % of its lifetime)` is
left (the lifetime is `expires_at - issued_at` as Keystone states both, so a skewed local clock
does not matter), and once after a 401, when the request is re-sent once, within its attempt
budget. One token request is in flight at a time, as a task of its own bounded by the timeout:
requests needing a token meanwhile wait for it (each within its own time limit, which never
cancels the token request) and share its result, success or failure. A renewal due while the
current token still lives is waited for a moment only (a fifth of the timeout, at most 1 s);
the request then goes with the live token and the renewal carries on. A renewal that fails
while the current token still lives leaves that token in use until it expires.

A rejected password is not tried again for a minute (Huawei IAM locks a user after a few failed
logins); a Keystone that cannot be reached is asked again after a second at the earliest, or
after its Retry-After (at most 30 s); a failure answered from memory says so, and until when.
When the compute API refuses a token issued moments ago to replace a refused one, its 401s
renew nothing for a minute (no login per pair): the pairs are `forbidden`.

Each token issued is a secret from the moment it is read: it is added to the process's
redactor (the last few tokens are kept) before any request carries it, so an API echoing
`X-Auth-Token` leaks it nowhere.

The token request goes straight to the function's transport: it is no DELETE of any pair, so
it counts against no attempt budget.

The catalog gives the compute endpoint: the entry of the first service type found (by ECS_API,
`compute` or `ecs`), its region (`OS_REGION_NAME`, when set; `*` matches any) and interface.
Catalog URLs end with the API version and usually the project (`…/v2.1/{project_id}`,
`…/v1/{project_id}`); the client builds its paths from a base URL, so a trailing
`/v1`, `/v1.1`, `/v2` or `/v2.1` (and the segment after it) is taken off. A catalog URL must
be usable as ECS_ENDPOINT must (http(s), a valid host and port, no user info, query or
fragment): an unusable one is skipped, and said in the catalog problem if nothing else fits.

Cleartext is warned about: OS_AUTH_URL over plain http to a host that is not the loopback (at
cold start, once), and a catalog endpoint over plain http elsewhere than an http Keystone's host.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import structlog

from handler import redaction
from handler.config import http_url_problem, is_loopback_host
from handler.ecs.reply import message_of, parse_retry_after
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
#: How long a Keystone that could not be reached is not asked again (longer if its Retry-After
#: says so, up to handler.ecs.reply's 30 s cap).
UNREACHABLE_FOR_S = 1.0
#: How long a request waits for a renewal while its token still lives: at most this, and at
#: most this share of the timeout; then it goes with the live token.
RENEW_WAIT_S = 1.0
RENEW_WAIT_SHARE = 0.2
#: A token refused within this time of its issue, itself issued to replace a refused one,
#: means the API refuses fresh tokens: its 401s renew nothing for REJECTED_FOR_S.
FRESH_S = 60.0
#: How many of the last tokens issued stay known to the redactor (a request in flight, or an
#: answer still being read, may carry the one before).
KEPT_TOKENS = 3
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

    def again(self, message: str | None = None) -> KeystoneError:
        """A fresh copy to raise once more (raising one object twice grows its traceback),
        with the same cause (`check` reads it), and another message if given."""
        error = copy.copy(self)
        if message is not None:
            error.args = (message,)
        error.__cause__ = self.__cause__
        error.__suppress_context__ = self.__suppress_context__
        return error


class KeystoneUnavailableError(httpx.TransportError, KeystoneError):
    """Keystone unreachable or failing (5xx, 429): transient, retried as a network error."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.outcome = Outcome.RETRIES_EXHAUSTED
        self.reason = "unavailable"
        self.status = status
        #: Keystone's Retry-After, in seconds (capped), when it gave one.
        self.retry_after = retry_after


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
    #: When (monotonic) the token request was sent.
    obtained_at: float = 0.0
    #: True when it was taken because the API refused the token before it (a 401).
    after_refusal: bool = False


@dataclass(slots=True)
class _Failure:
    error: KeystoneError
    #: Monotonic time until which the failure is answered without asking Keystone again.
    until: float
    #: The same two times on the wall clock, for the messages (`10:02:03 UTC`).
    since_text: str = ""
    until_text: str = ""
    #: True once a request was answered from memory (that is logged once).
    told: bool = False


def _cleartext(url: str) -> bool:
    """True for a plain http URL to a host that is not the loopback."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname)


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
        self._renew_wait_s = min(RENEW_WAIT_S, RENEW_WAIT_SHARE * timeout_s)
        self._clock = clock
        self._wall_clock = wall_clock
        self._token: Token | None = None
        self._failure: _Failure | None = None
        #: The token request in flight, if any (a task: its waiters' time limits never cancel it).
        self._pending: asyncio.Task[Token] | None = None
        #: Monotonic time until which the API's 401s renew nothing (it refuses fresh tokens).
        self._refusing_until = float("-inf")
        #: The last tokens issued, known to the redactor.
        self._issued: deque[str] = deque()
        #: Token requests sent so far.
        self.requests_sent = 0
        self._endpoint: tuple[Token, str] | None = None
        if _cleartext(settings.auth_url):
            _log.warning(
                "OS_AUTH_URL is plain http to a host that is not this machine: OS_PASSWORD and "
                "the tokens cross the network in cleartext; use its https URL",
                keystone=settings.host,
            )

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
        if response.status_code == httpx.codes.UNAUTHORIZED:
            if self._refuses_fresh_tokens(token) or not _may_send_again(request):
                return
            fresh = await self.token(stale=token)
            request.headers["X-Auth-Token"] = fresh.value
            response = yield request
            if response.status_code == httpx.codes.UNAUTHORIZED:
                self._refuses_fresh_tokens(fresh)

    def _refuses_fresh_tokens(self, refused: Token) -> bool:
        """After a 401 with `refused`: True when no new token should be asked for it.

        That is for a while once the API refused a token issued moments ago to replace one it
        had refused: a token of another cloud or region, or without the role, is refused
        whatever its age, and a new login per pair would only hammer Keystone (and IAM).
        """
        now = self._clock()
        if now < self._refusing_until:
            return True
        if refused.after_refusal and now - refused.obtained_at < FRESH_S:
            self._refusing_until = now + REJECTED_FOR_S
            _log.warning(
                "the compute API refuses fresh Keystone tokens (HTTP 401 on a token just issued "
                "to replace a refused one): its 401s are not renewed for a while",
                keystone=self.settings.host,
                not_renewed_for_s=REJECTED_FOR_S,
            )
            return True
        return False

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
            self._warn_cleartext(base)
        self._endpoint = (token, base)
        return base

    def _warn_cleartext(self, base: str) -> None:
        """Warn when the catalog sends the token over plain http to another host."""
        if not _cleartext(base):
            return
        keystone = urlsplit(self.settings.auth_url)
        if keystone.scheme.lower() == "http" and keystone.hostname == urlsplit(base).hostname:
            return  # the same host as an http OS_AUTH_URL: warned about at cold start
        _log.warning(
            "the Keystone catalog's compute endpoint is plain http: the token crosses the network "
            "in cleartext; set ECS_ENDPOINT to its https URL",
            endpoint=base,
            keystone=self.settings.host,
        )

    async def token(self, *, stale: Token | None = None) -> Token:
        """A token to send: the current one while fresh, else a new one (one request at a time).

        Requests waiting meanwhile share that request's result; `stale` is a token just refused.
        """
        token = self._token
        if token is not None and token is not stale:
            now = self._clock()
            if now < token.renew_at:
                return token
            if now < token.expires_at:
                return await self._renew_live(token, now)
        return await self._fresh(after_refusal=stale is not None)

    async def _renew_live(self, token: Token, now: float) -> Token:
        """Renew a token that still lives, waiting a moment at most: else the live one."""
        if self._pending is not None:
            return token  # another request is renewing it; this one still lives
        failure = self._failure
        if failure is not None and now < failure.until:
            return token  # a renewal just failed: Keystone is not asked again yet
        task = self._start(after_refusal=False)
        done, _ = await asyncio.wait((task,), timeout=self._renew_wait_s)
        if done and not task.cancelled() and task.exception() is None:
            return task.result()
        return token  # failed (logged), or still waited for: it carries on without this request

    async def _fresh(self, *, after_refusal: bool) -> Token:
        """A new token, when none lives: the request in flight's, or one asked now."""
        task = self._pending
        if task is None:
            failure = self._failure
            if failure is not None and self._clock() < failure.until:
                raise self._remembered(failure)
            task = self._start(after_refusal=after_refusal)
        try:
            # Shielded: a waiter running out of time leaves the request to the others.
            return await asyncio.shield(task)
        except KeystoneError as exc:
            error = exc.again()
        raise error

    def _start(self, *, after_refusal: bool) -> asyncio.Task[Token]:
        task = asyncio.get_running_loop().create_task(self._run(after_refusal))
        self._pending = task
        task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task[Token]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved: its waiters may all have gone

    async def _run(self, after_refusal: bool) -> Token:
        try:
            return await self._request_token(after_refusal=after_refusal)
        except KeystoneError as exc:
            token = self._token
            if token is not None and self._clock() < token.expires_at:
                _log.warning(
                    "keystone token renewal failed; the current token is used until it expires",
                    error=str(exc),
                    expires_at=token.expires_text,
                )
            raise
        finally:
            if self._pending is asyncio.current_task():
                self._pending = None

    def _remembered(self, failure: _Failure) -> KeystoneError:
        """The failure again, saying that Keystone was not asked, and when it will be."""
        memory = (
            f"remembered from {failure.since_text}; Keystone is asked again after "
            f"{failure.until_text}"
        )
        if not failure.told:
            failure.told = True
            log = _log.info if isinstance(failure.error, KeystoneUnavailableError) else _log.warning
            log(
                "keystone failure remembered: Keystone is not asked again until then",
                keystone=self.settings.host,
                error=str(failure.error),
                asked_again_after=failure.until_text,
            )
        return failure.error.again(f"{failure.error} ({memory})")

    # --- the token request --------------------------------------------------------------

    async def _request_token(self, *, after_refusal: bool = False) -> Token:
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
            # The runtime is closing (its tasks are cancelled): the next one asks again.
            _log.warning("keystone token request cancelled before Keystone answered")
            raise
        try:
            token = self._read(response, body, started, after_refusal)
        except KeystoneError as exc:
            raise self._failed(exc) from None
        self._remember_secret(token.value)  # before any request carries it
        self._token = token
        self._failure = None
        _log.info(
            "keystone token obtained",
            keystone=settings.host,
            project_id=token.project_id,
            expires_at=token.expires_text,
        )
        return token

    def _remember_secret(self, value: str) -> None:
        """Make a token a secret of the process's redactor; forget those long replaced."""
        issued = self._issued
        if value in issued:
            return
        issued.append(value)
        dropped = [issued.popleft() for _ in range(len(issued) - KEPT_TOKENS)]
        redaction.rotate_process_secrets([value], dropped)

    def _unreachable(self, why: str) -> KeystoneUnavailableError:
        return KeystoneUnavailableError(
            f"Keystone unreachable at {self.settings.host} (OS_AUTH_URL): {why}"
        )

    def _failed(self, error: KeystoneError) -> KeystoneError:
        """Remember a failure for the requests waiting, and longer if it will not change."""
        if isinstance(error, KeystoneUnavailableError):
            hold = max(UNREACHABLE_FOR_S, error.retry_after or 0.0)
        else:
            hold = REJECTED_FOR_S
        since = self._wall_clock().astimezone(dt.UTC)
        self._failure = _Failure(
            error,
            self._clock() + hold,
            since_text=f"{since:%H:%M:%S} UTC",
            until_text=f"{since + dt.timedelta(seconds=hold):%H:%M:%S} UTC",
        )
        _log.error("keystone authentication failed", keystone=self.settings.host, error=str(error))
        return error

    def _read(
        self, response: httpx.Response, body: bytes, started: float, after_refusal: bool = False
    ) -> Token:
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
            wait = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock())
            raise KeystoneUnavailableError(
                f"Keystone at {host} answered HTTP {status}{_detail(body)}", status, wait
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
        return Token(
            value, project_id, services, renew_at, expires_at, expires_text, started, after_refusal
        )

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
                    # Checked as ECS_ENDPOINT is (the reason never quotes the URL: it may
                    # carry a password): an unusable URL is skipped, never sent to.
                    problem = http_url_problem(url)
                    if problem is not None:
                        seen[-1] += f" (its URL is unusable: {problem})"
                        continue
                    return service_type, url.strip()
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
