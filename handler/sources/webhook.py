"""What every HTTP door shares: authentication, replays, the body's pairs, and the answer.

A door (API Gateway, Function URL, ALB, FunctionGraph APIG) only says how its event carries the
request and how its platform wants the answer; the rest is here. Order of checks: the body is
read (400 if it cannot be), the Standard Webhooks signature is verified (401: nothing processed,
nothing dead-lettered), a webhook-id already answered by this warm container is answered again
from memory, and the pairs are counted (400 none, 413 too many) before any is touched.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import importlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

from handler import redaction
from handler.model import parse_text
from handler.sources.base import (
    CLEANUP_ONLY_SCHEDULED,
    HttpAnswer,
    HttpRequest,
    OnTransient,
    RejectedEvent,
    Source,
    SourceSettings,
    Unit,
    UnitReport,
    answer_status,
)
from handler.sources.direct import summary_response

_log = structlog.get_logger("handler.sources.webhook")

#: Standard Webhooks' timestamp tolerance (the package's, both ways): a replay window too.
TOLERANCE_S = 300.0
#: How long an id being answered blocks the same id (longer: the first is assumed lost).
PENDING_S = 60.0
#: Statuses whose answer may be kept and replayed (200; 207 when only dead letters made it).
_REPLAYABLE = frozenset({200, 207})
_NOT_CONFIGURED = (
    "webhook authentication is not configured: set WEBHOOK_SECRET, or WEBHOOK_AUTH=none "
    "when a gateway in front authenticates"
)


@dataclass(frozen=True, slots=True)
class _Kept:
    """An answer kept for a webhook id (or a claim on it while the first request runs)."""

    digest: str
    expires: float
    answer: tuple[int, str, tuple[tuple[str, str], ...]] | None = None

    @property
    def size(self) -> int:
        """Bytes the answer holds (roughly)."""
        return 0 if self.answer is None else len(self.answer[1]) + 64


@dataclass(frozen=True, slots=True)
class Claim:
    """What the cache says of a request: new (go on), answered (replay it), or still running."""

    state: str  # "new" | "answered" | "running" | "other-body"
    answer: HttpAnswer | None = None


class ReplayCache:
    """The webhook ids this warm container answered, with their answers (thread-safe, bounded).

    A request is claimed before it is processed; its answer is kept when it is final (200 or
    207) until its timestamp leaves the signature's window, so a resent webhook gets the first
    answer and deletes nothing. It only knows this container's requests: another container,
    or this one after a cold start, processes a resent webhook again (deletions are idempotent).
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Kept] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        """Ids remembered now (answered or running)."""
        with self._lock:
            return len(self._entries)

    def claim(self, webhook_id: str, digest: str) -> Claim:
        """Claim an id for a request whose body has this digest, or say why it cannot be."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            kept = self._entries.get(webhook_id)
            if kept is not None and kept.expires <= now:
                self._drop(webhook_id)
                kept = None
            if kept is None:
                self._put(webhook_id, _Kept(digest, now + PENDING_S))
                return Claim("new")
            if kept.digest != digest:
                return Claim("other-body")
            if kept.answer is None:
                return Claim("running")
            status, body, headers = kept.answer
            return Claim("answered", HttpAnswer(status, json.loads(body), dict(headers)))

    def keep(self, webhook_id: str, digest: str, answer: HttpAnswer, until: float) -> None:
        """Keep the answer to a claimed id until `until` (wall-clock seconds)."""
        text = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":"))
        kept = _Kept(digest, until, (answer.status, text, tuple(answer.headers.items())))
        with self._lock:
            current = self._entries.get(webhook_id)
            if current is None or current.digest != digest or current.answer is not None:
                return
            self._drop(webhook_id)
            if kept.size <= self.max_bytes:
                self._put(webhook_id, kept)

    def release(self, webhook_id: str, digest: str) -> None:
        """Forget a claim whose request ended without an answer worth keeping."""
        with self._lock:
            current = self._entries.get(webhook_id)
            if current is not None and current.digest == digest and current.answer is None:
                self._drop(webhook_id)

    def _put(self, webhook_id: str, kept: _Kept) -> None:
        self._entries[webhook_id] = kept
        self._bytes += kept.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, webhook_id: str) -> None:
        kept = self._entries.pop(webhook_id, None)
        if kept is not None:
            self._bytes -= kept.size

    def _expire(self, now: float) -> None:
        """Drop expired entries from the oldest end (the rest expire when looked up)."""
        while self._entries:
            oldest, kept = next(iter(self._entries.items()))
            if kept.expires > now:
                return
            self._drop(oldest)


class WebhookRejected(RejectedEvent):
    """A webhook refused whole, with what its answer's body says besides the error."""

    def __init__(self, status: int, message: str, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(status, message)
        self.extra = dict(extra or {})
        self.headers: dict[str, str] = {}


def decode_body(body: Any, is_base64: Any) -> bytes:
    """The request body as bytes, base64-decoded when the platform says it is encoded."""
    if body is None:
        return b""
    if not isinstance(body, str):
        raise WebhookRejected(400, "the request body is not text")
    if is_base64 is True or (isinstance(is_base64, str) and is_base64.lower() == "true"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected(400, "the request body is not valid base64") from None
    return body.encode("utf-8", errors="surrogatepass")


def _cloudevent_units(request: HttpRequest) -> list[Unit] | None:
    """The units of a CloudEvent carried by the request, when the CloudEvents source exists."""
    try:
        module = importlib.import_module("handler.sources.cloudevents")
    except ModuleNotFoundError as exc:
        if exc.name == "handler.sources.cloudevents":
            return None
        raise
    http_units = getattr(module, "http_units", None)
    if http_units is None:
        return None
    units: list[Unit] | None = http_units(request)
    return units


class WebhookSource(Source):
    """An HTTP request carrying a work-item payload; answered with a status and a JSON body."""

    on_transient = OnTransient.ANSWER

    def __init__(self, event: Any = None, settings: SourceSettings | None = None) -> None:
        """Nothing is claimed yet."""
        super().__init__(event, settings)
        self._claimed: tuple[str, str, float] | None = None
        self._replayed: HttpAnswer | None = None

    # What a door says.

    @abc.abstractmethod
    def request(self, event: Any) -> HttpRequest:
        """The HTTP request the event carries (RejectedEvent 400 when it cannot be read)."""

    @abc.abstractmethod
    def request_id(self, event: Any, request: HttpRequest) -> str | None:
        """The platform's id of the request (a correlation id when there is no webhook-id)."""

    @abc.abstractmethod
    def render(self, answer: HttpAnswer) -> Any:
        """The answer in the platform's response shape."""

    # What every door does.

    def units(self, event: Any) -> list[Unit]:
        """Read, authenticate, check for a replay, and count the pairs before any is touched."""
        request = self.request(event)
        verified_at = self._authenticate(request)
        webhook_id = request.header("webhook-id") or None
        if webhook_id is not None and self._check_replay(webhook_id, request, verified_at):
            return []
        try:
            units = self._units(request, webhook_id or self.request_id(event, request))
        except BaseException:
            self._release()
            raise
        return units

    def respond(self, reports: list[UnitReport], summary: dict[str, Any]) -> Any:
        """Answer with the status of the pairs and their results (or the first answer again)."""
        if self._replayed is not None:
            return self.render(self._replayed)
        answer = HttpAnswer(answer_status(reports), summary_response(reports, summary))
        if self._claimed is not None:
            webhook_id, digest, until = self._claimed
            cache = self.settings.replays
            # Kept when final: not a 503, nor a 207 whose transient pairs the caller must resend.
            if answer.status in _REPLAYABLE and not any(r.redeliver for r in reports):
                cache.keep(webhook_id, digest, answer, until)
            else:
                cache.release(webhook_id, digest)
        return self.render(answer)

    def reject(self, error: RejectedEvent) -> Any:
        """Answer a request refused whole with its status and the reason."""
        body: dict[str, Any] = {"error": error.message}
        headers = {"Content-Type": "application/json"}
        if isinstance(error, WebhookRejected):
            body.update(redaction.current().value(error.extra))
            headers.update(error.headers)
        return self.render(HttpAnswer(error.status, body, headers))

    def _authenticate(self, request: HttpRequest) -> float | None:
        """Verify the Standard Webhooks signature; return the signed timestamp (None: no check)."""
        settings = self.settings
        if settings.webhook_auth == "none":
            return None
        if not settings.webhook_secret:
            raise WebhookRejected(401, _NOT_CONFIGURED)
        headers = {
            name: value
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            if (value := request.header(name))
        }
        if len(headers) < 3:
            missing = sorted(
                {"webhook-id", "webhook-timestamp", "webhook-signature"} - set(headers)
            )
            raise WebhookRejected(401, f"missing Standard Webhooks header(s): {', '.join(missing)}")
        try:
            Webhook(settings.webhook_secret).verify(request.body, headers, json_parse=False)
        except (WebhookVerificationError, EmptyWebhookSecretError, ValueError, TypeError) as exc:
            raise WebhookRejected(401, f"the webhook signature is not valid: {_why(exc)}") from None
        return float(headers["webhook-timestamp"])

    def _check_replay(
        self, webhook_id: str, request: HttpRequest, verified_at: float | None
    ) -> bool:
        """True when the id was answered already (its answer is kept for respond)."""
        cache = self.settings.replays
        if cache is None:
            return False
        digest = hashlib.sha256(request.body).hexdigest()
        claim = cache.claim(webhook_id, digest)
        if claim.state == "answered" and claim.answer is not None:
            _log.info("webhook replayed", webhook_id=webhook_id, status=claim.answer.status)
            self._replayed = claim.answer
            return True
        if claim.state == "running":
            error = WebhookRejected(409, "a request with this webhook-id is being processed")
            error.headers["Retry-After"] = "5"
            raise error
        if claim.state == "new":
            now = time.time()
            start = max(verified_at, now) if verified_at is not None else now
            self._claimed = (webhook_id, digest, min(start, now + TOLERANCE_S) + TOLERANCE_S)
        else:  # the same id with another body: processed, its answer not kept nor replayed
            _log.warning("webhook-id reused with another body", webhook_id=webhook_id)
        return False

    def _release(self) -> None:
        if self._claimed is not None:
            webhook_id, digest, _ = self._claimed
            self.settings.replays.release(webhook_id, digest)
            self._claimed = None

    def _units(self, request: HttpRequest, unit_id: str | None) -> list[Unit]:
        """The request's units, refused whole when they name no pair or too many."""
        units = _cloudevent_units(request)
        if units is None:
            units = [Unit(id=unit_id, body=request.body, parse=parse_text, ref=unit_id)]
        if any(u.payload.cleanup is not None for u in units):
            # A webhook that can wipe a fleet is a risk no user asked for: schedules only.
            raise RejectedEvent(400, CLEANUP_ONLY_SCHEDULED)
        pairs = sum(len(u.payload.items) for u in units)
        invalid = [r for u in units for r in u.payload.invalid]
        if pairs == 0:
            why = "the request body names no pair"
            if invalid:
                why = f"unreadable request body: {invalid[0].detail or 'no pair'}"
            raise WebhookRejected(400, why, {"results": [r.as_dict() for r in invalid[:10]]})
        limit = self.settings.max_pairs_per_request
        named = pairs + len(invalid)
        if named > limit:
            raise WebhookRejected(
                413, f"the request names {named} pairs; at most {limit} are accepted per request"
            )
        return units


def _why(exc: Exception) -> str:
    """A short reason from the verifier, never a value from the request or the secret."""
    if isinstance(exc, WebhookVerificationError) and str(exc):
        return str(exc)
    return "malformed signature headers or body"


def json_body(answer: HttpAnswer) -> str:
    """An answer's body as the JSON text a response carries."""
    return json.dumps(answer.body, ensure_ascii=False, separators=(",", ":"))


def header_map(answer: HttpAnswer) -> dict[str, str]:
    """An answer's headers as a plain map."""
    return {str(k): str(v) for k, v in answer.headers.items()}


def event_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """An event's request headers: `headers`, else `multiValueHeaders` (each name's last value)."""
    out: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        for name, values in multi.items():
            if isinstance(values, list) and values:
                out[str(name)] = str(values[-1])
            elif isinstance(values, str):
                out[str(name)] = values
    single = event.get("headers")
    if isinstance(single, Mapping):
        out.update({str(k): str(v) for k, v in single.items() if v is not None})
    return out


def request_of(event: Mapping[str, Any], method: Any, path: Any) -> HttpRequest:
    """The HttpRequest of a proxy event: its headers, method, path and (decoded) body."""
    body = decode_body(event.get("body"), event.get("isBase64Encoded"))
    return HttpRequest.of(str(method or "POST"), event_headers(event), body, str(path or "/"))
