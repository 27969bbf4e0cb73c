"""Request authentication like the cloud's gateway: a token (the seed's, or one the sandbox's
Keystone issued), or an SDK-HMAC-SHA256 signature."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping

from handler.sandbox.keystone import KeystoneTokens
from handler.sandbox.seed import CredentialsSeed
from handler.sandbox.verify import SDK_DATE_HEADER, sdk_date_is_fresh, verify_signature

TOKEN = "token"  # noqa: S105 - the name of an authentication method, not a secret
AKSK = "aksk"
KEYSTONE = "keystone"


class Authenticator:
    """Checks requests against the seeded credentials."""

    __slots__ = ("_clock", "_credentials", "_keystone")

    def __init__(
        self,
        credentials: CredentialsSeed,
        clock: Callable[[], float] = time.time,
        keystone: KeystoneTokens | None = None,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._keystone = keystone

    def authenticate(
        self,
        *,
        method: str,
        raw_target: str,
        headers: Mapping[str, str],
        body: bytes,
        project_id: str | None,
    ) -> str | None:
        """Return how the request authenticated (`token`, `keystone` or `aksk`), or None to
        answer 401. A Keystone token's project is for the caller to check.

        `headers` must look names up case-insensitively; `project_id` is the path's project.
        """
        if project_id is not None:
            claimed = headers.get("X-Project-Id")
            if claimed is not None and claimed.strip() != project_id:
                return None
        credentials = self._credentials
        token = headers.get("X-Auth-Token")
        if token is not None:
            expected = credentials.token
            if expected is not None and hmac.compare_digest(token.strip(), expected):
                return TOKEN
            keystone = self._keystone
            if keystone is not None and keystone.project_of(token) is not None:
                return KEYSTONE
            return None
        if credentials.ak is None or credentials.sk is None:
            return None
        if credentials.security_token is not None:
            presented = headers.get("X-Security-Token")
            if presented is None or not hmac.compare_digest(
                presented.strip(), credentials.security_token
            ):
                return None
        sdk_date = headers.get(SDK_DATE_HEADER)
        if sdk_date is None or not sdk_date_is_fresh(sdk_date, self._clock()):
            return None
        if verify_signature(
            method=method,
            raw_target=raw_target,
            headers=headers,
            body=body,
            access_key=credentials.ak,
            secret_key=credentials.sk,
        ):
            return AKSK
        return None
