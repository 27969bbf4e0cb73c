"""The `ecs-metadata-janitor` command line: sandbox, invoke and demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path


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

    demo = sub.add_parser("demo", help="walk through the sample events against a sandbox")
    demo.add_argument("--events", type=Path, default=Path("events"), help="folder of events")
    demo.add_argument(
        "--out", type=Path, default=Path(".demo"), help="folder for dead letters/logs"
    )
    return parser


def _error(text: str) -> None:
    """One `error:` line on stderr, whatever characters it holds."""
    line = f"error: {text}".encode("utf-8", "backslashreplace").decode("utf-8")
    print(line, file=sys.stderr)


def _invoke(args: argparse.Namespace) -> int:
    from handler import logs, redaction
    from handler.config import ConfigError, load_config
    from handler.ecs.signing import CredentialsUnavailableError
    from handler.local import FakeContext, local_sandbox, read_event, sandbox_config
    from handler.runtime import DeadLetterWriteError, Runtime
    from handler.sources import UnknownEventError

    event = read_event(args.event)
    use_sandbox = args.sandbox
    if use_sandbox is None:
        use_sandbox = not (
            os.environ.get("ECS_ENDPOINT", "").strip()
            or os.environ.get("HUAWEICLOUD_SDK_REGION", "").strip()
        )
        if use_sandbox:
            print(
                "no ECS_ENDPOINT configured: running against an in-process sandbox", file=sys.stderr
            )
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
        except (UnknownEventError, DeadLetterWriteError, CredentialsUnavailableError) as exc:
            _error(redaction.current().text(str(exc)))
            return 1
    text = json.dumps(redaction.current().value(response), indent=2, ensure_ascii=False)
    # A lone surrogate (valid in JSON text, not in UTF-8) is printed as its escape.
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = _build_parser().parse_args(argv)
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
    from handler.demo import run_demo

    return run_demo(args.events, args.out)
