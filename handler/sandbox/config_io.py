"""Reading JSON configuration files for the sandbox, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handler.sandbox.errors import SandboxConfigError


def read_json_file(path: Path | str, what: str) -> Any:
    """Return the parsed JSON content of a configuration file or raise SandboxConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise SandboxConfigError(f"{what} file {path}: cannot read it: {reason}") from None
    except UnicodeDecodeError:
        raise SandboxConfigError(f"{what} file {path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SandboxConfigError(
            f"{what} file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
