"""What the command line and the demo share: a local context, event files, a sandboxed Config."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from handler.config import Config, load_config

#: Variables the sandbox provides in place of the environment's own.
SANDBOX_VARIABLES = frozenset(
    {
        "ECS_ENDPOINT",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "ECS_AUTH_TOKEN",
        # The sandbox's SQS, for an sqs:// DEAD_LETTER_URL.
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL_SQS",
        # Keystone password authentication: the sandbox is reached with its AK/SK instead.
        "OS_AUTH_URL",
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_PROJECT_ID",
        "OS_PROJECT_NAME",
        "OS_USER_DOMAIN_NAME",
        "OS_PROJECT_DOMAIN_NAME",
        "OS_REGION_NAME",
        "OS_INTERFACE",
    }
)


class FakeContext:
    """A Lambda-like context for local runs: a request id and, optionally, a time limit."""

    def __init__(self, remaining_ms: float | None, *, request_id: str | None = None) -> None:
        self.aws_request_id = request_id or f"local-{uuid.uuid4()}"
        self.function_name = "ecs-metadata-janitor-local"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:local"
        self._end = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Return the time left, or 15 minutes when no limit was given."""
        if self._end is None:
            return 900_000
        return max(int((self._end - time.monotonic()) * 1000), 0)


def read_event(path: Path) -> Any:
    """Read an event file or exit with one clear line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: no event file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc.__class__.__name__}") from None
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not JSON: {exc}") from None
    except RecursionError:
        raise SystemExit(f"error: {path} nests too deeply to read") from None


def sandbox_variables(sandbox: Any, seed: Mapping[str, Any]) -> dict[str, str]:
    """The variables that point the function at a running sandbox, with its credentials."""
    creds = sandbox.credentials
    projects = Counter(server["project_id"] for server in seed["servers"])
    variables = {
        "ECS_ENDPOINT": sandbox.url,
        "HUAWEICLOUD_SDK_PROJECT_ID": sandbox.project_id or projects.most_common(1)[0][0],
    }
    if creds.get("ak") and creds.get("sk"):
        variables["HUAWEICLOUD_SDK_AK"] = creds["ak"]
        variables["HUAWEICLOUD_SDK_SK"] = creds["sk"]
        if creds.get("security_token"):
            variables["HUAWEICLOUD_SDK_SECURITY_TOKEN"] = creds["security_token"]
    else:
        variables["ECS_AUTH_TOKEN"] = creds["token"]
    aws = sandbox.aws
    if aws is not None:  # the sandbox's SQS, for an sqs:// DEAD_LETTER_URL
        variables["AWS_ACCESS_KEY_ID"] = aws["access_key_id"]
        variables["AWS_SECRET_ACCESS_KEY"] = aws["secret_access_key"]
        if aws.get("session_token"):
            variables["AWS_SESSION_TOKEN"] = aws["session_token"]
        variables["AWS_REGION"] = aws.get("region") or "us-east-1"
        variables["AWS_ENDPOINT_URL_SQS"] = sandbox.url
    return variables


def sandbox_config(sandbox: Any, seed: Mapping[str, Any], **overrides: str) -> Config:
    """The environment's configuration, pointed at the sandbox (the environment is not touched)."""
    environ = {k: v for k, v in os.environ.items() if k.upper() not in SANDBOX_VARIABLES}
    environ.update(sandbox_variables(sandbox, seed))
    environ.update({name.upper(): value for name, value in overrides.items()})
    return load_config(environ)


@contextlib.contextmanager
def local_sandbox(seed_path: Path | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Start an in-process sandbox on 127.0.0.1 (the demo seed unless a file is given)."""
    from handler.sandbox import DEMO_SEED, Sandbox, SandboxConfigError, load_seed

    try:
        seed: dict[str, Any] = dict(load_seed(seed_path)) if seed_path else dict(DEMO_SEED)
    except SandboxConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    with Sandbox(seed) as sandbox:
        yield sandbox, seed
