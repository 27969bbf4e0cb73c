"""The work-item payload (SPEC §3), validated with pydantic into pairs or `invalid` results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handler import redaction
from handler.outcomes import Outcome, Result

#: Nova's metadata key pattern: 1 to 255 of letters, digits, `-`, `_`, `:`, `.` and space.
KEY_PATTERN = r"^[A-Za-z0-9_:. -]{1,255}$"
#: Project ids are 32 hex characters on Huawei Cloud; Nova allows any id safe in a path segment.
PROJECT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: How much of an unreadable payload a dead letter keeps.
RAW_LIMIT = 8192
#: How long the `detail` of an invalid payload may be.
DETAIL_LIMIT = 512
#: How deep `items` may nest inside arrays and batches.
_MAX_DEPTH = 4
#: Past this many invalid parts, a payload is one invalid result for the whole payload (one
#: dead letter with its raw text cut), not one per part: `[0, 0, …]` in a 256 KB message was
#: 128,000 dead letters and log lines.
MAX_INVALID_PARTS = 100

UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
ProjectId = Annotated[str, Field(pattern=PROJECT_PATTERN)]


class WorkItemModel(BaseModel):
    """One server with one key (`key`) or several (`keys`), optionally in another project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_id: UUID
    key: Key | None = None
    keys: list[Key] | None = Field(default=None, min_length=1)
    project_id: ProjectId | None = None
    dry_run: bool = False

    @field_validator("server_id", mode="before")
    @classmethod
    def _uuid_text_only(cls, value: object) -> object:
        if not isinstance(value, str) or not UUID_TEXT.fullmatch(value):
            raise ValueError("server_id must be a UUID: 8-4-4-4-12 hexadecimal digits")
        return value

    @model_validator(mode="after")
    def _one_of_key_or_keys(self) -> WorkItemModel:
        if (self.key is None) == (self.keys is None):
            raise ValueError("exactly one of 'key' or 'keys' is required")
        return self


class BatchModel(BaseModel):
    """A batch: `{"items": [...], "dry_run": bool}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Any] = Field(min_length=1)
    dry_run: bool = False


Pattern = Annotated[str, Field(min_length=1, max_length=255)]


class CleanupSelector(BaseModel):
    """A selector: delete the keys matching globs on a project's servers (issue 9)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_patterns: list[Pattern] = Field(min_length=1, max_length=50)
    servers: Literal["all"] | Annotated[list[UUID], Field(min_length=1)] = "all"
    name_prefix: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    vm_states: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = (
        None
    )
    max_deletions: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 1000
    dry_run: Annotated[bool, Field(strict=True)] = False
    project_id: ProjectId | None = None
    #: Instead of deleting, send one work item per server there (sqs://, smn://, http(s)://):
    #: the function's own queue trigger then deletes them (issue 10 §2).
    fan_out: Annotated[str, Field(min_length=1, max_length=2048)] | None = None

    @field_validator("fan_out")
    @classmethod
    def _fan_out(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower()
        if scheme not in ("sqs", "smn", "http", "https") or "://" not in value:
            raise ValueError("fan_out must be an sqs://, smn:// or http(s):// URL")
        return value.strip()


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One requested deletion, before the project default and the policies are applied."""

    project_id: str | None
    server_id: str
    key: str
    dry_run: bool


@dataclass(slots=True)
class ParsedPayload:
    """What one payload asked for: the valid work items and a result for each invalid part."""

    items: list[WorkItem] = field(default_factory=list)
    invalid: list[Result] = field(default_factory=list)
    #: Invalid parts past MAX_INVALID_PARTS: counted, not kept one by one.
    more_invalid: int = 0
    #: A cleanup selector (`{"cleanup": {...}}`, alone at the top level), expanded by the engine.
    cleanup: CleanupSelector | None = None


def truncate_raw(text: str) -> str:
    """Redact, then cut a raw payload to the size a dead letter keeps, in encodable text."""
    return encodable(redaction.current().cut(text, RAW_LIMIT))


def encodable(text: str) -> str:
    """Return text that encodes as UTF-8: a lone surrogate (valid in JSON's \\u escapes, not
    in UTF-8) becomes its escape sequence instead of failing the sink that writes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _raw_of(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    except RecursionError:
        text = "<payload nests too deeply to keep>"
    except (TypeError, ValueError):
        text = repr(value)
    return truncate_raw(text)


#: At most this many validation errors are named in one result's detail.
_MAX_ERRORS = 5


def _summarise(error: ValidationError) -> str:
    errors = error.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:_MAX_ERRORS]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more errors")
    return "; ".join(parts)


def _invalid(value: object, detail: str) -> Result:
    # A detail is bounded like a response's (redacted, then cut): a payload of 12,000 unknown
    # fields must not make a 600 KB dead letter and log line.
    detail = redaction.current().cut(detail, DETAIL_LIMIT)
    return Result(Outcome.INVALID, raw=_raw_of(value), detail=detail)


def _add_invalid(out: ParsedPayload, value: object, detail: str) -> None:
    if len(out.invalid) < MAX_INVALID_PARTS:
        out.invalid.append(_invalid(value, detail))
    else:
        out.more_invalid += 1


def _walk(value: object, dry_run: bool, depth: int, out: ParsedPayload) -> None:
    if depth > _MAX_DEPTH:
        _add_invalid(out, value, f"items nest deeper than {_MAX_DEPTH} levels")
        return
    if isinstance(value, list):
        if not value and depth == 0:
            _add_invalid(out, value, "the payload is an empty array")
        for element in value:
            _walk(element, dry_run, depth + 1, out)
        return
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        _add_invalid(out, value, f"expected an object or an array, got {kind}")
        return
    if "cleanup" in value:
        _add_invalid(out, value, "a cleanup selector is accepted only alone at the top level")
        return
    if "items" in value:
        try:
            batch = BatchModel.model_validate(value)
        except ValidationError as exc:
            _add_invalid(out, value, _summarise(exc))
            return
        for element in batch.items:
            _walk(element, dry_run or batch.dry_run, depth + 1, out)
        return
    try:
        item = WorkItemModel.model_validate(value)
    except ValidationError as exc:
        _add_invalid(out, value, _summarise(exc))
        return
    server_id = str(item.server_id)
    keys = item.keys if item.keys is not None else [item.key] if item.key is not None else []
    for key in keys:
        out.items.append(WorkItem(item.project_id, server_id, key, dry_run or item.dry_run))


def parse_payload(payload: object) -> ParsedPayload:
    """Read a decoded payload (object or array) into work items; never raises."""
    if isinstance(payload, dict) and "cleanup" in payload:
        return _parse_cleanup(payload)
    out = ParsedPayload()
    try:
        _walk(payload, False, 0, out)
    except RecursionError:  # pragma: no cover - bounded by _MAX_DEPTH, kept as a last guard
        out = ParsedPayload(invalid=[_invalid(payload, "payload nests too deeply")])
    if out.more_invalid:
        total = len(out.invalid) + out.more_invalid
        first = out.invalid[0].detail
        detail = f"{total} parts of the payload are invalid (the first: {first})"
        out.invalid = [_invalid(payload, detail)]
        out.more_invalid = 0
    return out


def _parse_cleanup(payload: dict[Any, Any]) -> ParsedPayload:
    """Read `{"cleanup": {...}}`: the selector, or one invalid result saying what is wrong."""
    others = sorted(str(key) for key in payload if key != "cleanup")
    if others:
        detail = f"a cleanup selector must be alone in the payload; also found {others[:12]}"
        return ParsedPayload(invalid=[_invalid(payload, detail)])
    try:
        selector = CleanupSelector.model_validate(payload["cleanup"])
    except ValidationError as exc:
        detail = f"invalid cleanup selector: {_summarise(exc)}"
        return ParsedPayload(invalid=[_invalid(payload, detail)])
    return ParsedPayload(cleanup=selector)


def parse_body(body: object) -> ParsedPayload:
    """Read a message body: JSON text is parsed; anything else is invalid, kept as it came."""
    if body is None or isinstance(body, str | bytes):
        return parse_text(body)
    kind = type(body).__name__
    return ParsedPayload(invalid=[_invalid(body, f"the body is not text (got {kind})")])


def parse_text(text: str | bytes | None) -> ParsedPayload:
    """Read a payload from its JSON text (a message or webhook body); never raises."""
    if text is None:
        return ParsedPayload(invalid=[Result(Outcome.INVALID, raw="", detail="the body is empty")])
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raw = truncate_raw(data.decode("utf-8", errors="replace"))
            return ParsedPayload(
                invalid=[Result(Outcome.INVALID, raw=raw, detail="the body is not UTF-8")]
            )
    if not text.strip():
        return ParsedPayload(
            invalid=[Result(Outcome.INVALID, raw=text, detail="the body is empty")]
        )
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f"the body is not JSON: {exc}" if isinstance(exc, ValueError) else "too deep"
        return ParsedPayload(
            invalid=[Result(Outcome.INVALID, raw=truncate_raw(text), detail=detail)]
        )
    return parse_payload(payload)
