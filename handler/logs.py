"""Structured logs: structlog processors that give Powertools-compatible JSON, secrets redacted."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

#: The Powertools Logger key order; everything else follows in the order it was added.
POWERTOOLS_ORDER = (
    "level",
    "location",
    "message",
    "timestamp",
    "service",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "correlation_id",
)
REDACTED = "***"
_CONTAINERS = frozenset({dict, list, tuple})
_SECRET_FIELD = re.compile(
    r"(^|[_-])(sk|ak|secret|secret_key|access_key|token|password|authorization|signature)$",
    re.IGNORECASE,
)
_SKIP_FRAMES = ("structlog", "logging", "handler/logs.py", "handler\\logs.py")

EventDict = MutableMapping[str, Any]


class Redactor:
    """The secrets the process knows of; replaces each where it appears in a value."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._static: set[str] = set()
        self._rotating: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        """Remember more secret values for good (short values under 4 characters are ignored)."""
        with self._lock:
            self._static |= _forms(values)
            self._refresh()

    def rotate(self, values: Iterable[str | None]) -> None:
        """Replace the rotating secrets (credentials that change per invocation) with these."""
        with self._lock:
            self._rotating = _forms(values)
            self._refresh()

    def clear(self) -> None:
        """Forget every secret (tests)."""
        with self._lock:
            self._static, self._rotating = set(), set()
            self._refresh()

    def _refresh(self) -> None:
        known = self._static | self._rotating
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def text(self, value: str) -> str:
        """Return the text with every known secret replaced by ***."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        """Return a JSON-like value with secrets and secret-named fields replaced by ***."""
        if key is not None and _is_secret_field(key) and value is not None and value != "":
            return REDACTED
        kind = type(value)
        if kind is str:
            return self.text(value) if self._secrets else value
        if value is None or kind is int or kind is bool or kind is float:
            return value
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, str | int | float):
            return self.text(str(value)) if isinstance(value, str) else value
        return self.text(str(value))


def _forms(values: Iterable[str | None]) -> set[str]:
    """Each secret as it is, and as it appears inside a JSON string (for rendered lines)."""
    forms: set[str] = set()
    for value in values:
        if value and len(value) >= 4:
            forms.update({value, json.dumps(value, ensure_ascii=False)[1:-1]})
    return forms


@functools.lru_cache(maxsize=1024)
def _is_secret_field(key: str) -> bool:
    return _SECRET_FIELD.search(key) is not None


REDACTOR = Redactor()


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Processor: replace secret-named fields (at any depth) with ***.

    Secret values inside text are replaced in the rendered line (see `render_json`): one scan
    of one string instead of one per field.
    """
    for key, value in event_dict.items():
        if _is_secret_field(key) and value is not None and value != "":
            event_dict[key] = REDACTED
        elif type(value) in _CONTAINERS:
            event_dict[key] = REDACTOR.value(value, key)
    return event_dict


def add_level(_: Any, method: str, event_dict: EventDict) -> EventDict:
    """Processor: the level in upper case, as Powertools writes it."""
    event_dict["level"] = "WARNING" if method == "warn" else method.upper()
    return event_dict


def add_location(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Processor: `function:line` of the caller, as Powertools' `location`."""
    frame = sys._getframe(1)  # the cheap way to find the caller
    while frame is not None:
        if not _is_logging_frame(frame.f_code.co_filename):
            event_dict["location"] = f"{frame.f_code.co_name}:{frame.f_lineno}"
            break
        frame = frame.f_back  # type: ignore[assignment]
    return event_dict


@functools.lru_cache(maxsize=256)
def _is_logging_frame(filename: str) -> bool:
    return any(part in filename for part in _SKIP_FRAMES)


def add_timestamp(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Processor: Powertools' timestamp, e.g. `2021-05-03 11:47:12,494+0000`."""
    now = dt.datetime.now(dt.UTC)
    event_dict["timestamp"] = f"{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d}+0000"
    return event_dict


def powertools_order(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Processor: rename `event` to `message` and put keys in Powertools Logger order."""
    if "event" in event_dict:
        event_dict["message"] = event_dict.pop("event")
    ordered: dict[str, Any] = {}
    for key in POWERTOOLS_ORDER:
        if key in event_dict:
            value = event_dict.pop(key)
            if value is not None:
                ordered[key] = value
    for key, value in event_dict.items():
        if value is not None:
            ordered[key] = value
    return ordered


def render_json(_: Any, __: str, event_dict: EventDict) -> str:
    """Processor: one compact JSON object, with every known secret replaced by ***."""
    line = json.dumps(event_dict, separators=(",", ":"), ensure_ascii=False, default=str)
    return REDACTOR.text(line)


_STREAM: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Send log lines to a stream (the CLI uses stderr); None means the current sys.stdout."""
    global _STREAM
    _STREAM = stream


class StdoutLogger:
    """Writes each rendered line to the chosen stream, by default the current sys.stdout."""

    def msg(self, message: str) -> None:
        """Write one line (a text the stream cannot encode is written with escapes)."""
        stream = _STREAM or sys.stdout
        try:
            stream.write(message + "\n")
        except UnicodeEncodeError:
            stream.write(message.encode("ascii", "backslashreplace").decode("ascii") + "\n")

    log = debug = info = warning = warn = error = critical = exception = msg


def _logger_factory(*_: Any) -> StdoutLogger:
    return StdoutLogger()


def configure(service: str, level: str = "INFO") -> None:
    """Configure structlog once per process: Powertools JSON on stdout at the given level."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_level,
            add_location,
            add_timestamp,
            structlog.processors.format_exc_info,
            redact,
            powertools_order,
            render_json,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_logger_factory,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def unfiltered_logger() -> Any:
    """Return a logger with the configured processors that no level filters (dead letters)."""
    return structlog.wrap_logger(
        _logger_factory(),
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        context_class=dict,
    )
