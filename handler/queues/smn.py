"""Huawei Cloud SMN over HTTP: messages published to a topic, signed as the ECS calls are."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from handler import retrying
from handler.ecs.reply import parse_retry_after
from handler.ecs.signing import CredentialsUnavailableError

__all__ = [
    "ATTEMPTS",
    "MAX_MESSAGE_BYTES",
    "MAX_TTL_S",
    "SmnClient",
    "SmnTopic",
    "is_smn_url",
    "parse_topic",
]

#: The most one message may hold, in bytes of UTF-8. SMN documents "at most 256 KB": read the
#: smaller way (256,000 rather than 262,144), so no reading of the limit refuses a message.
MAX_MESSAGE_BYTES = 256_000
#: SMN's limit on a subject (512 characters; the sink's subjects are ASCII).
MAX_SUBJECT_CHARS = 512
#: The longest SMN keeps a message for its subscribers (7 days; its default is one hour).
MAX_TTL_S = 604_800
#: Attempts per message (network errors, 429, 5xx), within the invocation's time.
ATTEMPTS = 4
#: The longest one request may take (less when the invocation's time is short).
REQUEST_TIMEOUT_S = 10.0
#: Publishes in flight at once (SMN has no batch publish; a topic takes 3,000 a minute).
CONCURRENCY = 4

_PREFIX = "smn://"
_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")
_PROJECT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
_URN_SHAPE = "DEAD_LETTER_URL: an SMN topic is smn://urn:smn:<region>:<project id>:<topic name>"
_URN_RULE = (
    f"{_URN_SHAPE}, e.g. smn://urn:smn:cn-north-4:0123456789abcdef0123456789abcdef:janitor-dlq"
)
#: Answers that say the topic cannot be published to at all: the messages after are not sent.
_TOPIC_REFUSED = frozenset({401, 403, 404})


@dataclass(frozen=True, slots=True)
class SmnTopic:
    """A topic: its URN's parts, and the endpoint its publishes go to."""

    urn: str
    region: str
    project_id: str
    name: str
    endpoint: str

    @property
    def description(self) -> str:
        """The topic without its project: `smn <region>/<name>`."""
        return f"smn {self.region}/{self.name}"

    @property
    def publish_url(self) -> str:
        """`{endpoint}/v2/{project_id}/notifications/topics/{urn}/publish`."""
        return f"{self.endpoint}/v2/{self.project_id}/notifications/topics/{self.urn}/publish"


def is_smn_url(url: str) -> bool:
    """True for `smn://…` (any case)."""
    return url[: len(_PREFIX)].lower() == _PREFIX


def parse_topic(url: str, *, endpoint: str | None = None) -> SmnTopic:
    """The topic `smn://urn:smn:{region}:{project_id}:{name}` names, and where to publish.

    The endpoint is `endpoint` (SMN_ENDPOINT) when given, else the URN's region's public one,
    `https://smn.{region}.myhuaweicloud.com`. Raises ValueError saying what is wrong, never
    quoting the value.
    """
    if not is_smn_url(url):
        raise ValueError(_URN_RULE)
    urn = url[len(_PREFIX) :]
    parts = urn.split(":")
    if len(parts) != 5 or parts[0].lower() != "urn" or parts[1].lower() != "smn":
        raise ValueError(_URN_RULE)
    _, _, region, project_id, name = parts
    if not _REGION.fullmatch(region):
        raise ValueError(f"{_URN_SHAPE}; the region must be letters, digits and -")
    if not _PROJECT.fullmatch(project_id):
        raise ValueError(f"{_URN_SHAPE}; the project id must be 1 to 64 letters, digits, - or _")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{_URN_SHAPE}; the topic name must be 1 to 255 letters, digits, - or _, starting "
            "with a letter or digit"
        )
    base = (endpoint or f"https://smn.{region.lower()}.myhuaweicloud.com").rstrip("/")
    return SmnTopic(
        urn=f"urn:smn:{region}:{project_id}:{name}",
        region=region,
        project_id=project_id,
        name=name,
        endpoint=base,
    )


class _Retry(Exception):
    """A publish worth another attempt (after `wait` seconds when the service said so)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Refused(Exception):
    """A publish refused for good; `topic`: the topic refuses every publish (401, 403, 404)."""

    def __init__(self, reason: str, *, topic: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.topic = topic


def _retry_wait(exc: Exception) -> bool | float:
    """stamina's `on`: retry a _Retry, after the service's Retry-After when it gave one."""
    if not isinstance(exc, _Retry):
        return False
    return exc.wait if exc.wait is not None else True


class SmnClient:
    """Publishes messages to one topic, over the function's pool, with the ECS calls' auth.

    `auth` is the runtime's own: the SDK-HMAC-SHA256 signer (AK/SK, or the invocation's
    temporary credentials), an IAM token, or the Keystone password flow.
    """

    def __init__(
        self,
        topic: SmnTopic,
        *,
        http: httpx.AsyncClient,
        auth: httpx.Auth,
        concurrency: int = CONCURRENCY,
        time_to_live_s: int | None = None,
    ) -> None:
        if time_to_live_s is not None and not 0 < time_to_live_s <= MAX_TTL_S:
            raise ValueError(f"time_to_live_s must be 1 to {MAX_TTL_S}")
        self.topic = topic
        self.description = topic.description
        self._http = http
        self._auth = auth
        self._concurrency = max(1, concurrency)
        self._ttl = time_to_live_s

    async def send(self, bodies: Sequence[str], *, deadline: float | None) -> dict[int, str]:
        """Publish each body as one message (a fan-out target); see `publish`."""
        return await self.publish(bodies, deadline=deadline)

    async def publish(
        self,
        messages: Sequence[str],
        *,
        deadline: float | None = None,
        subjects: Sequence[str | None] | None = None,
    ) -> dict[int, str]:
        """Publish each message; return those not published after the retries (index: why).

        Each message is one publish, retried on network errors, 429 and 5xx within the
        deadline. Once the topic refuses a publish outright (401, 403, 404), the messages not
        yet sent are reported with that reason rather than sent.
        """
        failed: dict[int, str] = {}
        refused: list[str] = []  # the topic's refusal, once one came
        queue = iter(range(len(messages)))

        async def worker() -> None:
            for index in queue:  # one iterator shared by the workers: each index once
                message = messages[index]
                size = len(message.encode("utf-8", "surrogatepass"))
                if size == 0 or size > MAX_MESSAGE_BYTES:
                    failed[index] = f"not 1 to {MAX_MESSAGE_BYTES:,} bytes, as SMN requires"
                    continue
                if refused:
                    failed[index] = refused[0]
                    continue
                subject = subjects[index] if subjects is not None else None
                try:
                    await self._publish_one(message, subject, deadline)
                except _Refused as exc:
                    failed[index] = exc.reason
                    if exc.topic and not refused:
                        refused.append(exc.reason)
                except _Retry as exc:
                    failed[index] = exc.reason

        workers = min(self._concurrency, len(messages))
        # Every worker runs to its end, whatever another raised: none is left running unseen.
        outcomes = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return dict(sorted(failed.items()))

    async def _publish_one(self, message: str, subject: str | None, deadline: float | None) -> None:
        """One message, retried by stamina within the deadline; raise _Refused or _Retry."""
        body: dict[str, Any] = {"message": message}
        if subject:
            body["subject"] = subject[:MAX_SUBJECT_CHARS]
        if self._ttl is not None:
            body["time_to_live"] = str(self._ttl)
        content = json.dumps(body).encode("ascii")
        last = _Retry("no time left before the invocation's deadline")
        try:
            async with asyncio.timeout_at(deadline):
                async for attempt in retrying.attempts(
                    _retry_wait,
                    max_attempts=ATTEMPTS,
                    deadline=deadline,
                    wait_initial=0.1,
                    wait_max=2.0,
                    wait_jitter=0.1,
                ):
                    with attempt:
                        try:
                            await self._post(content, deadline)
                        except _Retry as exc:
                            last = exc
                            raise
                        return
        except TimeoutError:
            if last.reason.startswith("no time"):
                last = _Retry("no answer before the invocation's deadline")
        raise last

    async def _post(self, content: bytes, deadline: float | None) -> None:
        """One publish request; return when SMN took the message, else raise why not."""
        timeout = retrying.time_left(deadline, REQUEST_TIMEOUT_S)
        if timeout <= 0.0:
            raise TimeoutError
        headers = {
            "Content-Type": "application/json",
            "X-Project-Id": self.topic.project_id,
        }
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.post(
                    self.topic.publish_url,
                    content=content,
                    headers=headers,
                    auth=self._auth,
                    timeout=timeout,
                )
        except (httpx.TimeoutException, TimeoutError):
            raise _Retry(f"no answer within {timeout:.1f} s") from None
        except httpx.TransportError as exc:
            raise _Retry(type(exc).__name__) from None
        except CredentialsUnavailableError as exc:  # none to sign with, a refused Keystone login
            raise _Refused(str(exc), topic=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        why = f"HTTP {status}" + _error_of(response)
        if status == 429 or status >= 500:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retry(why, wait)
        raise _Refused(why, topic=status in _TOPIC_REFUSED)


def _error_of(response: httpx.Response) -> str:
    """` {code} {message}` from SMN's (or the gateway's) error body, short; or nothing."""
    try:
        answer = response.json()
    except (ValueError, RecursionError):
        return ""
    if not isinstance(answer, dict):
        return ""
    code = answer.get("code") or answer.get("error_code")
    message = answer.get("message") or answer.get("error_msg")
    text = " ".join(str(part)[:100] for part in (code, message) if part)
    return f" {text}" if text else ""
