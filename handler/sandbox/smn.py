"""The sandbox's SMN (Huawei Simple Message Notification): publishing to seeded topics.

`POST /v2/{project_id}/notifications/topics/{topic_urn}/publish`, authenticated as the ECS
routes are (the caller checks that first), with a JSON body `{"subject", "message",
"message_structure", "message_template_name", "tags", "time_to_live"}`; the answer is
`200 {"request_id", "message_id"}`. Errors have SMN's shape `{"request_id", "code",
"message"}`. What was published is kept per topic, for GET /_sandbox/state.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from aiohttp import web

from handler.sandbox import responses as r

if TYPE_CHECKING:
    from handler.sandbox.seed import QueueFaultsSeed, Seed

MAX_MESSAGE_BYTES = 262_144
"""SMN's limit on a message: 256 KB of UTF-8."""
MAX_SUBJECT_BYTES = 512
MAX_TTL_S = 604_800

_PATH = re.compile(r"^/v2/([^/]+)/notifications/topics/([^/]+)/publish$")
_URN = re.compile(
    r"^urn:smn:([A-Za-z0-9-]{1,64}):([A-Za-z0-9_-]{1,64}):([A-Za-z0-9][A-Za-z0-9_-]{0,254})$"
)

TOPIC_NOT_FOUND = ("SMN.0006", "Topic not found.")
"""SMN's documented error for an unknown topic (its API reference's error example)."""
INVALID_URN = ("SMN.0005", "Parameter: TopicUrn is invalid.")
INVALID_STRUCTURE = ("SMN.0021", "MessageStructure is invalid.")
INVALID_CONTENT = "SMN.0024"
"""The sandbox's code for an unusable body field (SMN documents `Parameter: content is
invalid.` under it); the message names the field."""


class Publish(NamedTuple):
    """A matched publish route: the path's project and the topic URN, percent-decoded."""

    project_id: str
    topic_urn: str


class Topic:
    """One topic and what was published to it."""

    __slots__ = ("messages", "name", "project_id", "region", "urn")

    def __init__(self, name: str, project_id: str, region: str, messages: list[dict[str, Any]]):
        self.name = name
        self.project_id = project_id
        self.region = region
        self.urn = f"urn:smn:{region}:{project_id}:{name}"
        self.messages = messages


def _smn_request_id() -> str:
    return uuid.uuid4().hex


def smn_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """SMN's error body: `{"request_id", "code", "message"}`."""
    body = {"request_id": request_id, "code": code, "message": message}
    return r.json_response(status, body, request_id, {"X-Request-Id": request_id})


class BadBody(Exception):
    """A publish body SMN would refuse with 400; its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadBody(INVALID_CONTENT, f"Parameter: {name} is invalid. It must be a string.")
    return value


def read_publish(raw: bytes) -> dict[str, Any]:
    """Validate a publish body; return what is recorded (raise BadBody)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody(INVALID_CONTENT, "Parameter: the request body is not JSON.") from None
    if not isinstance(body, dict):
        raise BadBody(INVALID_CONTENT, "Parameter: the request body must be a JSON object.")
    subject = _text(body, "subject")
    message = _text(body, "message")
    structure = _text(body, "message_structure")
    template = _text(body, "message_template_name")
    ttl = body.get("time_to_live")
    tags = body.get("tags")
    if subject is not None and len(subject.encode("utf-8", "surrogatepass")) > MAX_SUBJECT_BYTES:
        raise BadBody(
            INVALID_CONTENT,
            f"Parameter: subject is invalid. It must be at most {MAX_SUBJECT_BYTES} bytes.",
        )
    effective = message
    if structure is not None:
        try:
            parsed = json.loads(structure)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("default"), str):
            raise BadBody(*INVALID_STRUCTURE)
        effective = parsed["default"]
    elif template is not None:
        if tags is not None and not isinstance(tags, dict):
            raise BadBody(INVALID_CONTENT, "Parameter: tags is invalid. It must be an object.")
        effective = message
    if effective is None and template is None:
        raise BadBody(
            INVALID_CONTENT,
            "Parameter: message is invalid. Give message, message_structure or "
            "message_template_name.",
        )
    if effective is not None:
        try:
            size = len(effective.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadBody(
                INVALID_CONTENT, "Parameter: message is invalid. It must be UTF-8 text."
            ) from None
        if size == 0 or size > MAX_MESSAGE_BYTES:
            raise BadBody(
                INVALID_CONTENT,
                f"Parameter: message is invalid. It must be 1 to {MAX_MESSAGE_BYTES} bytes "
                f"of UTF-8 (it is {size}).",
            )
    if ttl is not None:
        text = str(ttl) if isinstance(ttl, int) and not isinstance(ttl, bool) else ttl
        if not isinstance(text, str) or not text.isdigit() or not 0 < int(text) <= MAX_TTL_S:
            raise BadBody(
                INVALID_CONTENT,
                f"Parameter: time_to_live is invalid. It must be 1 to {MAX_TTL_S} seconds.",
            )
        ttl = text
    return {
        "subject": subject,
        "message": effective,
        "message_structure": structure,
        "message_template_name": template,
        "tags": tags,
        "time_to_live": ttl,
    }


class SmnService:
    """The SMN endpoint of the sandbox: its topics and what was published to them."""

    def __init__(self, seed: Seed) -> None:
        self.topics: dict[str, Topic] = {}
        for entry in seed.topics:
            assert entry.project_id is not None  # filled in by Seed validation
            topic = Topic(entry.name, entry.project_id, entry.region, list(entry.messages))
            self.topics[topic.urn] = topic
        self.set_faults(seed.queue_faults)

    def set_faults(self, faults: QueueFaultsSeed) -> None:
        """Replace the fault configuration (and restart its random sequence)."""
        self.faults = faults
        seed = None if faults.seed is None else faults.seed + 1
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test faults

    @staticmethod
    def match(path: str) -> Publish | None:
        """The publish route's parts, or None for another path."""
        found = _PATH.match(path)
        if found is None:
            return None
        return Publish(unquote(found.group(1)), unquote(found.group(2)))

    def answer(
        self,
        method: str,
        route: Publish,
        body: bytes,
        sandbox_request_id: str,
        entry: dict[str, Any],
    ) -> web.Response:
        """Publish to a topic (the request is already authenticated)."""
        request_id = _smn_request_id()
        entry["service"] = "smn"
        if method != "POST":
            return r.gateway_error(
                404,
                "APIGW.0101",
                "The API does not exist or has not been published in the environment",
                sandbox_request_id,
            )
        parsed = _URN.match(route.topic_urn)
        if parsed is None:
            return smn_error(400, *INVALID_URN, request_id)
        topic = self.topics.get(route.topic_urn)
        if topic is None or topic.project_id != route.project_id:
            return smn_error(404, *TOPIC_NOT_FOUND, request_id)
        if self.faults.smn_throttle and self._rng.random() < self.faults.smn_throttle:
            entry["fault"] = "smn_throttle"
            return r.throttled(20, sandbox_request_id, None)
        try:
            record = read_publish(body)
        except BadBody as exc:
            return smn_error(400, exc.code, exc.message, request_id)
        message_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        record = {
            "message_id": message_id,
            "request_id": request_id,
            **record,
            "published_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "auth": entry.get("auth"),
        }
        topic.messages.append(record)
        payload = {"request_id": request_id, "message_id": message_id}
        return r.json_response(200, payload, request_id, {"X-Request-Id": request_id})

    def snapshot(self) -> list[dict[str, Any]]:
        """The topics and what was published, for GET /_sandbox/state (the seed's format)."""
        return [
            {
                "name": topic.name,
                "project_id": topic.project_id,
                "region": topic.region,
                "urn": topic.urn,
                "messages": [dict(message) for message in topic.messages],
            }
            for topic in self.topics.values()
        ]
