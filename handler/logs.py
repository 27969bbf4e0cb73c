"""Structured logs: structlog processors that give Powertools-compatible JSON, secrets redacted."""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from handler import redaction
from handler.config import log_level_name
from handler.redaction import REDACTED, is_secret_field

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
    "xray_trace_id",
)
_CONTAINERS = frozenset({dict, list, tuple})
_SKIP_FRAMES = ("structlog", "logging", "handler/logs.py", "handler\\logs.py")
#: Characters JSON leaves raw that some readers take for a line break: escaped in every line.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

EventDict = MutableMapping[str, Any]


@functools.lru_cache(maxsize=1024)
def _is_secret_field(key: str) -> bool:
    return is_secret_field(key)


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Processor: replace secret-named fields (at any depth) with ***.

    Secret values inside text are replaced in the rendered line (see `render_json`): one scan
    of one string instead of one per field.
    """
    for key, value in event_dict.items():
        if _is_secret_field(key) and value is not None and value != "":
            event_dict[key] = REDACTED
        elif type(value) in _CONTAINERS:
            event_dict[key] = redaction.current().value(value, key)
    return event_dict


#: The level of the invocation running here when sampling is on (None: the configured one).
_INVOCATION_LEVEL: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "invocation_log_level", default=None
)
_METHOD_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}


def set_invocation_level(level: int | None) -> None:
    """Log this invocation (this task's context) at `level`; used for Powertools' sampling."""
    _INVOCATION_LEVEL.set(level)


def _sampled_level(_: Any, method: str, event_dict: EventDict) -> EventDict:
    """Processor (only with sampling on): drop what is below this invocation's level."""
    level = _INVOCATION_LEVEL.get()
    if level is not None and _METHOD_LEVELS.get(method, 50) < level:
        raise structlog.DropEvent
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
    """Processor: one compact JSON object on one line, with every known secret replaced by ***."""
    line = json.dumps(event_dict, separators=(",", ":"), ensure_ascii=False, default=str)
    if not line.isascii():
        line = line.translate(_LINE_BREAKS)
    return redaction.current().text(line)


_STREAM: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Send log lines to a stream (the CLI uses stderr); None means the current sys.stdout."""
    global _STREAM
    _STREAM = stream


_WRITE_LOCK = threading.Lock()


class StdoutLogger:
    """Writes each rendered line whole to the chosen stream, by default the current sys.stdout.

    One lock for every thread: a text stream is not safe to write from two threads at once
    (lines came out interleaved, once with garbage in them, when invocations overlapped).
    """

    def msg(self, message: str) -> None:
        """Write one line (a text the stream cannot encode is written with escapes)."""
        line = message + "\n"
        with _WRITE_LOCK:
            stream = _STREAM or sys.stdout
            try:
                stream.write(line)
            except UnicodeEncodeError:
                stream.write(line.encode("ascii", "backslashreplace").decode("ascii"))

    log = debug = info = warning = warn = error = critical = exception = msg


def write_line(line: str) -> None:
    """Write one line as it is (an EMF document) where the log lines go, whole."""
    StdoutLogger().msg(line)


def _logger_factory(*_: Any) -> StdoutLogger:
    return StdoutLogger()


def level_number(level: str | None) -> int:
    """The logging number of a level name (any case, WARN and FATAL too); INFO if unknown."""
    return _LEVELS[log_level_name(level)]


_configured: tuple[str, int, bool] | None = None


def configure(service: str, level: str | None = "INFO", *, sampling: bool = False) -> None:
    """Configure structlog: Powertools JSON on stdout at the given level (a no-op when unchanged).

    Every runtime calls it, however it was built: the JSON shape and the redaction of the
    function's logs never depend on which constructor was used.
    """
    global _configured
    # httpx and httpcore log each request's full URL at INFO/DEBUG through the standard logging
    # module: a sink URL's credentials, and lines that are not the function's JSON.
    for library in ("httpx", "httpcore", "hpack"):
        logging.getLogger(library).setLevel(logging.WARNING)
    wanted = (service, level_number(level), sampling)
    if _configured == wanted and structlog.is_configured():
        return
    _configured = wanted
    # With sampling, everything reaches the processors and each invocation's level decides.
    filter_level = logging.DEBUG if sampling else wanted[1]
    structlog.configure(
        processors=[
            *([_sampled_level] if sampling else []),
            structlog.contextvars.merge_contextvars,
            add_level,
            add_location,
            add_timestamp,
            structlog.processors.format_exc_info,
            redact,
            powertools_order,
            render_json,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(filter_level),
        logger_factory=_logger_factory,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def unfiltered_logger() -> Any:
    """Return a logger with the configured processors that no level filters (dead letters)."""
    return structlog.wrap_logger(
        _logger_factory(),
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        context_class=dict,
    )
