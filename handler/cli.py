"""The `ecs-metadata-janitor` command line: sandbox, invoke and demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: Variables the sandbox replaces while `invoke --sandbox` runs.
_SANDBOX_ENV = (
    "ECS_ENDPOINT",
    "HUAWEICLOUD_SDK_REGION",
    "HUAWEICLOUD_SDK_PROJECT_ID",
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "ECS_AUTH_TOKEN",
)


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


class FakeContext:
    """A Lambda-like context for local runs: a request id and, optionally, a time limit."""

    def __init__(self, remaining_ms: int | None) -> None:
        import time
        import uuid

        self.aws_request_id = f"local-{uuid.uuid4()}"
        self.function_name = "ecs-metadata-janitor-local"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:local"
        self._end = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000
        self._time = time.monotonic

    def get_remaining_time_in_millis(self) -> int:
        """Return the time left, or 15 minutes when no limit was given."""
        if self._end is None:
            return 900_000
        return max(int((self._end - self._time()) * 1000), 0)


def read_event(path: Path) -> Any:
    """Read an event file or exit with one clear line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: no event file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not JSON: {exc}") from None


@contextlib.contextmanager
def sandbox_environment(seed_path: Path | None = None) -> Iterator[Any]:
    """Start an in-process sandbox and point the function's environment at it."""
    from handler import app
    from handler.sandbox import DEMO_SEED, Sandbox, SandboxConfigError, load_seed

    try:
        seed = load_seed(seed_path) if seed_path else DEMO_SEED
    except SandboxConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    saved = {name: os.environ.get(name) for name in _SANDBOX_ENV}
    with Sandbox(seed) as sandbox:
        creds = sandbox.credentials
        projects = Counter(server["project_id"] for server in seed["servers"])
        default_project = sandbox.project_id or projects.most_common(1)[0][0]
        for name in _SANDBOX_ENV:
            os.environ.pop(name, None)
        os.environ["ECS_ENDPOINT"] = sandbox.url
        os.environ["HUAWEICLOUD_SDK_PROJECT_ID"] = default_project
        if creds.get("ak") and creds.get("sk"):
            os.environ["HUAWEICLOUD_SDK_AK"] = creds["ak"]
            os.environ["HUAWEICLOUD_SDK_SK"] = creds["sk"]
            if creds.get("security_token"):
                os.environ["HUAWEICLOUD_SDK_SECURITY_TOKEN"] = creds["security_token"]
        else:
            os.environ["ECS_AUTH_TOKEN"] = creds["token"]
        app.reset_runtime()
        try:
            yield sandbox
        finally:
            app.reset_runtime()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _invoke(args: argparse.Namespace) -> int:
    from handler import app, logs
    from handler.config import ConfigError
    from handler.runtime import DeadLetterWriteError
    from handler.sources import UnknownEventError

    event = read_event(args.event)
    use_sandbox = args.sandbox
    if use_sandbox is None:
        use_sandbox = not (
            os.environ.get("ECS_ENDPOINT") or os.environ.get("HUAWEICLOUD_SDK_REGION")
        )
        if use_sandbox:
            print(
                "no ECS_ENDPOINT configured: running against an in-process sandbox", file=sys.stderr
            )
    logs.set_stream(sys.stderr)
    stack = contextlib.ExitStack()
    with stack:
        if use_sandbox:
            sandbox = stack.enter_context(sandbox_environment(args.seed))
            print(f"sandbox at {sandbox.url}", file=sys.stderr)
        try:
            response = app.handler(event, FakeContext(args.remaining_ms))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (UnknownEventError, DeadLetterWriteError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(response, indent=2, ensure_ascii=False))
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
