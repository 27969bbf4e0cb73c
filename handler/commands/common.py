"""What `cleanup` and `replay` share: where they run (sandbox or the environment), their logs,
the progress hooks around a run, and one-line errors."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handler import logs, redaction
from handler.commands.progress import ProgressDisplay
from handler.commands.table import printable
from handler.config import Config, ConfigError, load_config
from handler.engine import PROGRESS

if TYPE_CHECKING:
    from handler.deadletter import DeadLetterSink
    from handler.runtime import Runtime

#: The function's log level for operator commands when POWERTOOLS_LOG_LEVEL is not set: the
#: table says what became of each pair; warnings, errors and dead letters are still logged.
QUIET_LEVEL = "WARNING"


def error(text: str) -> None:
    """One `error:` line on stderr, redacted, its control characters escaped."""
    print(printable(f"error: {redaction.current().text(text)}"), file=sys.stderr)


def out(line: str) -> None:
    """One line on stdout, redacted, its control characters escaped."""
    print(printable(redaction.current().text(line)), file=sys.stdout)


def endpoint_configured() -> bool:
    """True when the environment names an endpoint: ECS_ENDPOINT, a region or OS_AUTH_URL."""
    return any(
        os.environ.get(name, "").strip()
        for name in ("ECS_ENDPOINT", "HUAWEICLOUD_SDK_REGION", "OS_AUTH_URL")
    )


def use_sandbox(choice: bool | None) -> bool:
    """Whether to run against an in-process sandbox: as asked (--sandbox / --no-sandbox), else
    when the environment names no endpoint, saying so on stderr."""
    if choice is not None:
        return choice
    if endpoint_configured():
        return False
    print("no ECS_ENDPOINT configured: running against an in-process sandbox", file=sys.stderr)
    return True


def load(
    stack: contextlib.ExitStack,
    *,
    sandbox: bool,
    seed: Path | None,
    quiet: bool = True,
    **overrides: str,
) -> tuple[Config, Any]:
    """The configuration to run with: the environment's, or pointed at a new in-process
    sandbox (closed with the stack); with the log level quietened unless it was set (or
    `quiet` is false: a server logs as the function does).

    Returns the config and the sandbox (None when the environment's endpoint is used).
    Raises ConfigError.
    """
    from handler.local import local_sandbox, sandbox_config

    if quiet and not os.environ.get("POWERTOOLS_LOG_LEVEL", "").strip():
        overrides.setdefault("POWERTOOLS_LOG_LEVEL", QUIET_LEVEL)
    if sandbox:
        running, seed_data = stack.enter_context(local_sandbox(seed))
        print(f"sandbox at {running.url}", file=sys.stderr)
        return sandbox_config(running, seed_data, **overrides), running
    environ = {**os.environ, **overrides}
    return load_config(environ), None


class CommandError(Exception):
    """A command cannot start (an argument it cannot use); the message is one line."""


def start(
    stack: contextlib.ExitStack,
    display: ProgressDisplay,
    *,
    sandbox: bool,
    seed: Path | None,
    log_file: Path | None,
    sink: DeadLetterSink | None = None,
) -> Runtime:
    """A runtime for a command (closed with the stack), its logs sent where asked.

    Raises CommandError for a configuration that cannot be used or a log file that cannot be
    opened.
    """
    from handler.runtime import Runtime

    try:
        config, _sandbox = load(stack, sandbox=sandbox, seed=seed)
        runtime = Runtime(config, sink=sink)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    stack.callback(runtime.close)
    send_logs(stack, log_file, display)
    return runtime


def send_logs(stack: contextlib.ExitStack, log_file: Path | None, display: ProgressDisplay) -> None:
    """Send the function's log lines to `log_file` (appended), else to stderr above the bars.

    Raises CommandError when the log file cannot be opened.
    """
    if log_file is not None:
        try:
            stream = stack.enter_context(log_file.open("a", encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot open --log-file {log_file}: {exc.strerror}") from None
        logs.set_stream(stream)
    else:
        logs.set_stream(display.log_stream())
    stack.callback(logs.set_stream, None)


@contextlib.contextmanager
def reporting(display: ProgressDisplay) -> Iterator[ProgressDisplay]:
    """Make the display's hooks the engine's progress hooks for runs started inside."""
    token = PROGRESS.set(display.hooks())
    try:
        yield display
    finally:
        PROGRESS.reset(token)
        display.close()
