"""Fault configuration and the seeded fault injector for DELETE requests."""

from __future__ import annotations

import collections
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from handler.sandbox.config_io import read_json_file
from handler.sandbox.errors import SandboxConfigError, describe_validation_error

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

FAULT_NAMES: tuple[str, ...] = ("429", "500", "502", "503", "504", "slow", "drop", "lost_response")
"""The per-DELETE faults, in the order their probabilities are stacked on one draw."""

RATE_LIMIT_FAULT = "rate_limit"
"""The fault name logged for requests refused by the global requests-per-second limit."""


class FaultRates(BaseModel):
    """Per-DELETE probabilities of each fault; they must add up to at most 1."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    throttled: Probability = Field(0.0, alias="429")
    internal_error: Probability = Field(0.0, alias="500")
    bad_gateway: Probability = Field(0.0, alias="502")
    unavailable: Probability = Field(0.0, alias="503")
    gateway_timeout: Probability = Field(0.0, alias="504")
    slow: Probability = 0.0
    drop: Probability = 0.0
    lost_response: Probability = 0.0

    @model_validator(mode="after")
    def _total(self) -> FaultRates:
        total = sum(self.by_name().values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"the rates add up to {total:g}, more than 1")
        return self

    def by_name(self) -> dict[str, float]:
        """Return the rates keyed by fault name, in FAULT_NAMES order."""
        return dict(zip(FAULT_NAMES, self.model_dump().values(), strict=True))


class FaultConfig(BaseModel):
    """The fault file: rates, Retry-After policy, delays and the global rate limit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    seed: int | None = None
    rates: FaultRates = Field(default_factory=FaultRates)
    retry_after_s: Annotated[int, Field(ge=0)] | None = 1
    retry_after_ratio: Probability = 0.5
    slow_ms: Annotated[float, Field(ge=0)] = 1500.0
    rate_limit_rps: Annotated[int, Field(ge=1)] | None = None
    latency_ms: Annotated[float, Field(ge=0)] = 0.0


def parse_faults(data: Mapping[str, Any] | None, *, source: str = "faults") -> FaultConfig:
    """Validate fault data (None means no faults) or raise SandboxConfigError."""
    try:
        return FaultConfig.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise SandboxConfigError(f"{source}: {describe_validation_error(exc)}") from None


def read_faults(path: Path | str) -> FaultConfig:
    """Read and validate a fault file or raise SandboxConfigError naming the file."""
    data = read_json_file(path, "faults")
    if not isinstance(data, dict):
        raise SandboxConfigError(f"faults file {path}: must be a JSON object")
    return parse_faults(data, source=f"faults file {path}")


def load_faults(path: Path | str) -> dict[str, Any]:
    """Read and validate a fault file; return it with defaults or raise SandboxConfigError."""
    return faults_to_dict(read_faults(path))


def faults_to_dict(config: FaultConfig) -> dict[str, Any]:
    """Return a fault configuration in the fault file format, defaults filled in."""
    return config.model_dump(mode="json", by_alias=True)


class FaultInjector:
    """Draws faults from a seeded random generator: same seed and requests, same faults."""

    __slots__ = ("_bounds", "_limit_window", "_rng", "config")

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 - reproducible test faults, not crypto
        bounds: list[tuple[float, str]] = []
        total = 0.0
        for name, rate in config.rates.by_name().items():
            if rate > 0.0:
                total += rate
                bounds.append((total, name))
        self._bounds = tuple(bounds)
        self._limit_window: collections.deque[float] = collections.deque()

    def draw(self) -> str | None:
        """Return the fault for the next DELETE, or None for a normal answer."""
        if not self._bounds:
            return None
        roll = self._rng.random()
        for bound, name in self._bounds:
            if roll < bound:
                return name
        return None

    def retry_after(self) -> str | None:
        """Return the Retry-After value for an injected 429, or None to omit the header."""
        seconds = self.config.retry_after_s
        if seconds is None:
            return None
        if self._rng.random() < self.config.retry_after_ratio:
            return str(seconds)
        return None

    def throttle_retry_after(self) -> str | None:
        """Return the Retry-After value for a 429 from the global rate limit, or None."""
        seconds = self.config.retry_after_s
        return None if seconds is None else str(seconds)

    def over_rate_limit(self, now: float) -> bool:
        """Count one request at monotonic time `now`; True when it exceeds the global limit."""
        limit = self.config.rate_limit_rps
        if limit is None:
            return False
        window = self._limit_window
        horizon = now - 1.0
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            return True
        window.append(now)
        return False

    @property
    def throttle_limit(self) -> int:
        """The `limit:N` figure quoted in throttling bodies."""
        return self.config.rate_limit_rps or DEFAULT_THROTTLE_LIMIT


DEFAULT_THROTTLE_LIMIT = 20
"""The `limit:N` quoted by injected 429s when no rate_limit_rps is configured."""
