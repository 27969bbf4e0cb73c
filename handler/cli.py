"""The `ecs-metadata-janitor` command line: sandbox, invoke and demo."""

from __future__ import annotations

import argparse
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
    return parser


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
    print(f"unknown command {args.command!r}", file=sys.stderr)  # pragma: no cover
    return 2  # pragma: no cover
