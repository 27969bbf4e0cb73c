"""The sandbox's Keystone v3: password tokens with a catalog, accepted until they expire.

`POST /v3/auth/tokens` checks the seed's users (name, password, domain) and scopes the token to
a seeded project, by id or by name in its domain; it answers 201 with the token in
`X-Subject-Token` and a body stating `expires_at`, `issued_at`, the project and a catalog:
`compute` at `{sandbox}/v2.1/{project_id}`, `ecs` at `{sandbox}/v1/{project_id}` and `identity`
at `{sandbox}/v3`, each with a public and an internal endpoint in the seed's region. A token is
accepted as `X-Auth-Token` until it expires (`token_ttl_s`) or is revoked.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from handler.sandbox import responses as r
from handler.sandbox.seed import KeystoneProjectSeed, KeystoneSeed, KeystoneUserSeed

TOKENS_PATH = "/v3/auth/tokens"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: Keystone's answer to any authentication failure (it never says which part was wrong).
UNAUTHORIZED_MESSAGE = "The request you have made requires authentication."
_TITLES = {400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}


@dataclass(frozen=True, slots=True)
class Issued:
    """A token the sandbox issued: its project and when it expires (wall clock)."""

    project_id: str
    expires_at: float


class BadAuthRequest(Exception):
    """A token request Keystone would refuse with 400."""


def keystone_error(status: int, message: str, request_id: str) -> web.Response:
    """Keystone's error body: `{"error": {"code", "message", "title"}}`."""
    body = {"error": {"code": status, "message": message, "title": _TITLES.get(status, "Error")}}
    return r.json_response(status, body, request_id)


def _when(seconds: float, plus_s: float = 0.0) -> str:
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(seconds=plus_s)
    return moment.strftime(_TIME_FORMAT)


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadAuthRequest(f"Invalid input for field '{where}': an object is required")
    return data


def _is_unicode(text: str) -> bool:
    """False for a string with lone surrogates (which cannot be encoded as UTF-8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _domain_matches(given: Any, domain: str) -> bool:
    """A `{"name": …}` or `{"id": …}` domain reference naming `domain` (ids compare lower)."""
    if not isinstance(given, dict):
        return False
    if isinstance(given.get("name"), str):
        return bool(given["name"] == domain)
    return isinstance(given.get("id"), str) and given["id"].lower() == domain.lower()


class KeystoneTokens:
    """Issues and checks tokens; only ever touched from the sandbox's event loop."""

    def __init__(self, seed: KeystoneSeed, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self._clock = clock
        self._tokens: dict[str, Issued] = {}

    def project_of(self, token: str) -> str | None:
        """The project of a live token the sandbox issued, or None (unknown or expired)."""
        issued = self._tokens.get(token.strip())
        if issued is None:
            return None
        if self._clock() >= issued.expires_at:
            del self._tokens[token.strip()]
            return None
        return issued.project_id

    def revoke_all(self) -> int:
        """Forget every token (they are refused from now on); return how many there were."""
        count = len(self._tokens)
        self._tokens.clear()
        return count

    def answer(self, method: str, body: bytes, base_url: str, request_id: str) -> web.Response:
        """Answer `POST /v3/auth/tokens`: 201 with a token, or Keystone's 400/401/405."""
        if method != "POST":
            return keystone_error(405, "The method specified is not allowed.", request_id)
        try:
            user, project = self._authenticate(body)
        except BadAuthRequest as exc:
            return keystone_error(400, str(exc), request_id)
        if user is None or project is None:
            return keystone_error(401, UNAUTHORIZED_MESSAGE, request_id)
        now = self._clock()
        expires = now + self.seed.token_ttl_s
        token = "gAAAAA" + secrets.token_urlsafe(48)
        self._tokens[token] = Issued(project.id, expires)
        payload = {
            "token": {
                "methods": ["password"],
                "user": {
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, f"user:{user.name}").hex,
                    "name": user.name,
                    "domain": {"id": user.domain.lower(), "name": user.domain},
                    "password_expires_at": None,
                },
                "project": {
                    "id": project.id,
                    "name": project.name,
                    "domain": {"id": project.domain.lower(), "name": project.domain},
                },
                "roles": [
                    {"id": uuid.uuid5(uuid.NAMESPACE_URL, "role:member").hex, "name": "member"}
                ],
                "issued_at": _when(now),
                # The stated life is exactly the TTL (two roundings of floats could differ by 1 µs).
                "expires_at": _when(now, plus_s=self.seed.token_ttl_s),
                "catalog": self._catalog(base_url, project.id),
            }
        }
        return r.json_response(201, payload, request_id, {"X-Subject-Token": token})

    def _authenticate(
        self, body: bytes
    ) -> tuple[KeystoneUserSeed | None, KeystoneProjectSeed | None]:
        """The user and project a token request names, None for either that does not match."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError too), too deep
            raise BadAuthRequest("Expecting to find valid JSON in the request body.") from None
        auth = _object(_object(data, "body").get("auth"), "auth")
        identity = _object(auth.get("identity"), "identity")
        methods = identity.get("methods")
        if not isinstance(methods, list) or "password" not in methods:
            raise BadAuthRequest("Invalid input for field 'identity/methods': password expected")
        user_ref = _object(_object(identity.get("password"), "password").get("user"), "user")
        user = self._user(user_ref)
        scope = _object(auth.get("scope"), "scope")
        project = self._project(_object(scope.get("project"), "scope/project"))
        return user, project

    def _user(self, ref: dict[str, Any]) -> KeystoneUserSeed | None:
        password = ref.get("password")
        if not isinstance(password, str) or not isinstance(ref.get("name"), str):
            raise BadAuthRequest("Invalid input for field 'user': name and password expected")
        if not _is_unicode(password) or not _is_unicode(ref["name"]):
            # A lone surrogate (`\udcff`) is valid JSON but no text: Keystone's schema refuses it.
            raise BadAuthRequest("Invalid input for field 'user': not valid Unicode text")
        for user in self.seed.users:
            if (
                user.name == ref["name"]
                and _domain_matches(ref.get("domain"), user.domain)
                and hmac.compare_digest(password.encode(), user.password.encode())
            ):
                return user
        return None

    def _project(self, ref: dict[str, Any]) -> KeystoneProjectSeed | None:
        if not isinstance(ref.get("id"), str) and not isinstance(ref.get("domain"), dict):
            raise BadAuthRequest("Expecting to find domain in project")
        for project in self.seed.projects:
            if isinstance(ref.get("id"), str):
                if ref["id"] == project.id:
                    return project
            elif ref.get("name") == project.name and _domain_matches(
                ref.get("domain"), project.domain
            ):
                return project
        return None

    def _catalog(self, base_url: str, project_id: str) -> list[dict[str, Any]]:
        region = self.seed.region
        services = (
            ("compute", "nova", f"{base_url}/v2.1/{project_id}"),
            ("ecs", "ecs", f"{base_url}/v1/{project_id}"),
            ("identity", "keystone", f"{base_url}/v3"),
        )
        return [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"service:{kind}").hex,
                "type": kind,
                "name": name,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{interface}").hex,
                        "interface": interface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }
                    for interface in ("public", "internal")
                ],
            }
            for kind, name, url in services
        ]
