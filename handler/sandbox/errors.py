"""The error raised for a bad seed or fault configuration."""

from __future__ import annotations

from pydantic import ValidationError


class SandboxConfigError(ValueError):
    """A seed or fault configuration that cannot be used, with a one-line reason."""


def describe_validation_error(exc: ValidationError) -> str:
    """Render a pydantic validation error as one line: `where: what; where: what`."""
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
