"""The `ecs-metadata-janitor` command line: each subcommand's arguments, and what runs it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

#: Exit status when a command is interrupted (Ctrl-C), as a shell reports SIGINT.
INTERRUPTED = 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecs-metadata-janitor",
        description="Delete metadata keys from ECS servers; run locally against a sandbox.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="run the local ECS emulator in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8774, help="port to bind (8774; 0 picks one)")
    sandbox.add_argument("--seed", type=Path, help="seed file with credentials and servers")
    sandbox.add_argument("--faults", type=Path, help="fault file (JSON) for DELETE requests")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency per request")

    invoke = sub.add_parser("invoke", help="run the function on an event file, print its response")
    invoke.add_argument("event", type=Path, help="a JSON event file (see events/)")
    where = invoke.add_mutually_exclusive_group()
    where.add_argument(
        "--sandbox",
        action="store_true",
        default=None,
        help="run against an in-process sandbox (default when ECS_ENDPOINT is not set)",
    )
    where.add_argument(
        "--no-sandbox", dest="sandbox", action="store_false", help="use ECS_ENDPOINT from the env"
    )
    invoke.add_argument("--seed", type=Path, help="sandbox seed file (default: the demo seed)")
    invoke.add_argument(
        "--remaining-ms", type=int, help="pretend the platform gives the invocation this much time"
    )

    check = sub.add_parser(
        "check",
        help="check the configuration and credentials with one read-only call",
        description="Validate the configuration, then list the first server of the project "
        "(one read-only call) and say in one line what is wrong. Exit status: 0 ok, 2 config "
        "invalid, 3 endpoint unreachable, 4 signature/token rejected, 5 token expired, "
        "6 project mismatch, 7 clock skew, 8 permission denied, 9 unexpected answer.",
    )
    check.add_argument(
        "--sandbox",
        action="store_true",
        help="check against an in-process sandbox instead of the environment's endpoint",
    )
    check.add_argument("--seed", type=Path, help="sandbox seed file (default: the demo seed)")

    cleanup = sub.add_parser(
        "cleanup",
        help="delete the keys matching patterns on the project's servers (a cleanup selector)",
        description="Run a cleanup selector through the function, as a schedule would, and "
        "print a table of what matched and what became of it. Exit status: 0 every match "
        "settled (or a dry run), 1 something was dead-lettered or the run stopped or was "
        "capped, 2 bad arguments or configuration, 130 interrupted.",
    )
    cleanup.add_argument(
        "--pattern",
        action="extend",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="key glob, case-sensitive (e.g. 'lease-*'); repeat for more",
    )
    cleanup.add_argument("--name-prefix", metavar="P", help="only servers whose name starts so")
    cleanup.add_argument(
        "--server", action="extend", nargs="+", metavar="ID", help="only these server ids"
    )
    cleanup.add_argument(
        "--vm-state",
        action="extend",
        nargs="+",
        metavar="S",
        help="only servers in these vm states (active, stopped, ...)",
    )
    cleanup.add_argument(
        "--max-deletions",
        type=int,
        metavar="N",
        help="delete nothing if more than N pairs match (the function's default: 1000)",
    )
    cleanup.add_argument("--project", metavar="ID", help="another allowed project to clean")
    cleanup.add_argument(
        "--dry-run", action="store_true", help="list and match, report, delete nothing"
    )
    _add_sandbox_flags(cleanup, implicit=True)
    cleanup.add_argument(
        "--remaining-ms", type=int, help="the time the run may take (default: 15 minutes)"
    )
    _add_output_flags(cleanup)

    replay = sub.add_parser(
        "replay",
        help="re-drive a dead-letter file through the function; keep only what is unsettled",
        description="Send the pairs of a dead-letter file (JSON Lines, as DEAD_LETTER_URL=file "
        "writes it) through the function again, in chunks, and rewrite the file after each "
        "chunk with only the records still unsettled (a temporary file, then an atomic rename: "
        "an interrupted replay loses nothing). Lines that are not records are kept as they "
        "are. Exit status: 0 the file holds nothing unsettled (or a dry run), 1 something "
        "stays in it, 2 bad arguments, file or configuration, 130 interrupted.",
    )
    replay.add_argument("file", type=Path, help="the dead-letter file (JSON Lines)")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be replayed; send no DELETE and leave the file untouched",
    )
    replay.add_argument(
        "--chunk-size",
        type=int,
        default=100,
        metavar="N",
        help="pairs per invocation; the file is rewritten after each (100)",
    )
    _add_sandbox_flags(replay, implicit=False)
    _add_output_flags(replay)

    drain = sub.add_parser(
        "drain",
        help="feed a queue's messages to the function as SQS events; delete what it settles",
        description="Receive messages from an SQS queue, invoke the function with an SQS event "
        "of each batch (as Lambda's poller does), and delete the messages not in the answer's "
        "batchItemFailures; those stay and come back after the queue's visibility timeout. "
        "Stops when the queue gives nothing more. With the sandbox, QUEUE may be a queue name; "
        "otherwise a full queue URL, signed for with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_SESSION_TOKEN and AWS_REGION (endpoint: AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL, "
        "else the URL's host). Exit status: 0 the queue is empty and every message received "
        "was deleted, 1 messages were handed back (or more may be left), 2 bad arguments, "
        "configuration or queue, 130 interrupted.",
    )
    drain.add_argument("queue", metavar="QUEUE", help="a queue name (sandbox) or a queue URL")
    drain.add_argument(
        "--batch-size",
        type=int,
        default=10,
        metavar="N",
        help="messages per receive and per invocation, 1 to 10 (10)",
    )
    drain.add_argument(
        "--max-batches", type=int, metavar="N", help="stop after N batches (default: no limit)"
    )
    _add_sandbox_flags(drain, implicit=True)
    drain.add_argument(
        "--remaining-ms",
        type=int,
        help="the time each invocation may take (default: the queue's visibility timeout)",
    )
    drain.add_argument(
        "--log-file",
        type=Path,
        help="append the function's JSON log lines here (default: stderr; the level is "
        "WARNING unless POWERTOOLS_LOG_LEVEL is set)",
    )

    serve = sub.add_parser(
        "serve",
        help="serve the webhook and CloudEvents doors over HTTP (containers; needs uvicorn)",
        description="Serve POST / (also /webhook, /cloudevents) and GET /healthz with uvicorn "
        "(the `serve` extra), every request run by the function as a webhook or a CloudEvent. "
        "The configuration is the environment's, as for the function; credentials must be in "
        "it (a container has no platform context). SIGTERM or Ctrl-C stops taking requests "
        "and finishes those in flight first. Exit status: 0 stopped, 2 bad arguments, "
        "configuration or port, 130 interrupted.",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1; 0.0.0.0 in a container)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to listen on (default: $PORT, else 8080; 0 picks a free one)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds a request may take, as a function's timeout (SERVE_TIMEOUT_S, 60)",
    )
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="run the ECS calls against an in-process sandbox (to try it locally)",
    )
    serve.add_argument("--seed", type=Path, help="sandbox seed file (default: the demo seed)")

    demo = sub.add_parser("demo", help="walk through the sample events against a sandbox")
    demo.add_argument("--events", type=Path, default=Path("events"), help="folder of events")
    demo.add_argument(
        "--out", type=Path, default=Path(".demo"), help="folder for dead letters/logs"
    )
    return parser


def _add_sandbox_flags(parser: argparse.ArgumentParser, *, implicit: bool) -> None:
    where = parser.add_mutually_exclusive_group()
    default = "default when ECS_ENDPOINT is not set" if implicit else "never implied"
    where.add_argument(
        "--sandbox",
        action="store_true",
        default=None,
        help=f"run against an in-process sandbox ({default})",
    )
    where.add_argument(
        "--no-sandbox", dest="sandbox", action="store_false", help="use ECS_ENDPOINT from the env"
    )
    parser.add_argument("--seed", type=Path, help="sandbox seed file (default: the demo seed)")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress on stderr: auto (a bar on a terminal), bar, lines or none",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        help="append the function's JSON log lines here (default: stderr; the level is "
        "WARNING unless POWERTOOLS_LOG_LEVEL is set)",
    )


def _error(text: str) -> None:
    """One `error:` line on stderr, its control characters escaped."""
    from handler.commands.table import printable

    print(printable(f"error: {text}"), file=sys.stderr)


def _invoke(args: argparse.Namespace) -> int:
    from handler import logs, redaction
    from handler.commands import common
    from handler.commands.table import printable_json
    from handler.config import ConfigError, load_config
    from handler.ecs.signing import CredentialsUnavailableError
    from handler.local import FakeContext, local_sandbox, read_event, sandbox_config
    from handler.runtime import DeadLetterWriteError, FanOutError, Runtime
    from handler.sources import UnknownEventError

    event = read_event(args.event)
    use_sandbox = common.use_sandbox(args.sandbox)
    logs.set_stream(sys.stderr)
    with contextlib.ExitStack() as stack:
        try:
            if use_sandbox:
                sandbox, seed = stack.enter_context(local_sandbox(args.seed))
                print(f"sandbox at {sandbox.url}", file=sys.stderr)
                config = sandbox_config(sandbox, seed)
            else:
                config = load_config()
            runtime = Runtime(config)
            stack.callback(runtime.close)
            response = runtime.invoke(event, FakeContext(args.remaining_ms))
        except ConfigError as exc:
            _error(redaction.current().text(str(exc)))
            return 2
        except (
            UnknownEventError,
            DeadLetterWriteError,
            FanOutError,
            CredentialsUnavailableError,
        ) as exc:
            _error(redaction.current().text(str(exc)))
            return 1
    text = json.dumps(redaction.current().value(response), indent=2, ensure_ascii=False)
    # Control characters json.dumps leaves raw (DEL, C1, bidi overrides) and lone surrogates
    # (valid in JSON text, not in UTF-8) are printed as their \u escapes: the same JSON.
    print(printable_json(text))
    return 0


def _check(args: argparse.Namespace) -> int:
    from handler import logs
    from handler.commands.check import config_diagnosis, run_check
    from handler.commands.table import printable
    from handler.config import ConfigError, load_config
    from handler.local import local_sandbox, sandbox_config

    try:
        with contextlib.ExitStack() as stack:
            # The runtime's own log lines are not the answer: the one line below is.
            logs.set_stream(stack.enter_context(Path(os.devnull).open("w", encoding="utf-8")))
            stack.callback(logs.set_stream, None)
            try:
                if args.sandbox:
                    sandbox, seed = stack.enter_context(local_sandbox(args.seed))
                    config = sandbox_config(sandbox, seed)
                else:
                    config = load_config()
            except ConfigError as exc:
                diagnosis = config_diagnosis(exc)
            else:
                diagnosis = run_check(config)
    except KeyboardInterrupt:  # Ctrl-C while waiting for the endpoint, or the sandbox
        _error("interrupted")
        return INTERRUPTED
    # Text from the answer is in the line: its control characters must not reach the terminal.
    print(printable(diagnosis.line), file=sys.stdout if diagnosis.exit_code == 0 else sys.stderr)
    return diagnosis.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (130 when interrupted by Ctrl-C)."""
    args = _build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # wherever a command did not catch it: one line, no traceback
        _error("interrupted")
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        from handler.sandbox import serve_forever

        return serve_forever(
            host=args.host,
            port=args.port,
            seed_path=args.seed,
            faults_path=args.faults,
            latency_ms=args.latency_ms,
        )
    if args.command == "invoke":
        return _invoke(args)
    if args.command == "check":
        return _check(args)
    if args.command == "cleanup":
        from handler.commands import cleanup

        return cleanup.run(args)
    if args.command == "replay":
        from handler.commands import replay

        return replay.run(args)
    if args.command == "drain":
        from handler.commands import drain

        return drain.run(args)
    if args.command == "serve":
        from handler.commands import serve

        if args.port is None:
            try:
                args.port = serve.default_port()
            except ValueError as exc:
                _error(str(exc))
                return 2
        return serve.run(args)
    from handler.demo import run_demo

    return run_demo(args.events, args.out)
