"""`serve`: the function's webhook and CloudEvents doors on an HTTP port, under uvicorn.

The runtime is built (and the configuration checked) before the port is opened, so a bad
configuration is one `error:` line and exit status 2, never a server that answers 503. SIGTERM
(or Ctrl-C) stops taking connections, lets the requests in flight finish — each is bounded by
SERVE_TIMEOUT_S, and the server waits that long and a little more — then closes the runtime.

Exit status: 0 stopped by SIGTERM; 2 bad arguments, configuration, or a port that cannot be
listened on; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import socket
import sys
from types import FrameType
from typing import Any

from handler.commands import common

INTERRUPTED = 130
#: The port when neither --port nor PORT (Knative, Cloud Run) says one.
DEFAULT_PORT = 8080
#: Seconds the server waits for requests in flight beyond SERVE_TIMEOUT_S at shutdown.
GRACE_MARGIN_S = 5
_NO_UVICORN = (
    "serve needs uvicorn, an optional dependency: pip install 'ecs-metadata-janitor[serve]'"
)


def default_port() -> int:
    """PORT from the environment (as Knative sets it), else 8080; ValueError when unusable."""
    value = os.environ.get("PORT", "").strip()
    if not value:
        return DEFAULT_PORT
    if value.isascii() and value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise ValueError(f"PORT must be a port number from 1 to 65535, not {value[:20]!r}")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (OSError when it cannot be had)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Stop:
    """SIGTERM and SIGINT from the moment the runtime exists until it is closed: a signal before
    uvicorn took over, or after it gave the handlers back, stops the server instead of killing
    the process (or being lost); a second SIGINT forces the stop, as uvicorn's own does."""

    def __init__(self) -> None:
        self.server: Any = None
        self.signals: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        server = self.server
        if server is not None:
            if server.should_exit and signum == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C (SIGINT) stopped it."""
        return signal.SIGINT in self.signals


class _ServerLog(logging.Handler):
    """uvicorn's own warnings and errors as one plain line each on stderr, never a traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        common.error(f"server: {record.getMessage()}")


def run(args: argparse.Namespace) -> int:
    """Build the runtime, open the port, serve until SIGTERM or Ctrl-C."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        common.error(_NO_UVICORN)
        return 2
    from handler import app as entry
    from handler import logs
    from handler.asgi import App, servable_problem
    from handler.config import ConfigError
    from handler.runtime import Runtime

    if not 0 <= args.port <= 65535:
        common.error(f"--port must be a port number from 0 to 65535, not {args.port}")
        return 2
    overrides: dict[str, str] = {}
    if args.timeout is not None:
        overrides["SERVE_TIMEOUT_S"] = str(args.timeout)
    stop = _Stop()
    with contextlib.ExitStack() as stack:
        # Installed first, given back last: the runtime is closed with the signals still ours.
        for signum in (signal.SIGTERM, signal.SIGINT):
            stack.callback(signal.signal, signum, signal.signal(signum, stop))
        try:
            config, _ = common.load(
                stack, sandbox=args.sandbox, seed=args.seed, quiet=False, **overrides
            )
            runtime = Runtime(config)
        except ConfigError as exc:
            common.error(str(exc))
            return 2
        stack.callback(entry.set_runtime, None)
        stack.callback(runtime.close)
        problem = servable_problem(runtime)
        if problem is not None:
            common.error(problem)
            return 2
        try:
            sock = listen(args.host, args.port)
        except (OSError, UnicodeError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            common.error(f"cannot listen on {args.host}:{args.port}: {reason}")
            return 2
        stack.callback(sock.close)
        entry.set_runtime(runtime)  # handler.app.handler, in this process, is the same function
        logs.set_stream(sys.stdout)
        server_log = logging.getLogger("uvicorn.error")
        quiet = _ServerLog(logging.WARNING)
        server_log.addHandler(quiet)
        server_log.propagate = False
        stack.callback(server_log.removeHandler, quiet)
        server = uvicorn.Server(
            uvicorn.Config(
                App(runtime),
                lifespan="on",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=math.ceil(config.serve_timeout_s + GRACE_MARGIN_S),
                server_header=False,
            )
        )
        stop.server = server
        if stop.signals:  # stopped before it started
            server.should_exit = True
        host, port = sock.getsockname()[:2]
        print(
            f"serving on http://{_url_host(host)}:{port} (POST /, GET /healthz; "
            f"SERVE_TIMEOUT_S={config.serve_timeout_s:g}; Ctrl-C or SIGTERM stops)",
            file=sys.stderr,
            flush=True,
        )
        if not server.should_exit:
            server.run(sockets=[sock])
    if stop.interrupted:
        common.error("interrupted")
        return INTERRUPTED
    print("stopped", file=sys.stderr, flush=True)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
