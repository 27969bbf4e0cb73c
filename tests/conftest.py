from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import stamina

from handler import app, logs, redaction
from handler.config import Config
from handler.sandbox import DEMO_SEED, Sandbox

EVENTS = Path(__file__).resolve().parent.parent / "events"
DEMO_PROJECT = "0123456789abcdef0123456789abcdef"

#: Every variable the function reads, so no test inherits one from the shell.
_ENV = tuple(name.upper() for name in Config.model_fields)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no configuration, no runtime, no known secrets, no retry sleeps."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    app.set_runtime(None)
    with stamina.set_testing(True, attempts=100, cap=True):
        yield
    app.reset_runtime()
    redaction.reset()
    logs.set_stream(None)


def demo_seed() -> dict[str, Any]:
    return copy.deepcopy(DEMO_SEED)


SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """The one way tests start sandboxes: `make_sandbox(seed=None, faults=None, latency_ms=0)`.

    The demo seed (a fresh copy) unless a seed is given; every sandbox started is stopped at
    the end of the test.
    """
    started: list[Sandbox] = []

    def start(
        seed: Mapping[str, Any] | None = None,
        faults: Mapping[str, Any] | None = None,
        latency_ms: float = 0.0,
    ) -> Sandbox:
        sb = Sandbox(
            dict(seed) if seed is not None else demo_seed(),
            dict(faults) if faults is not None else None,
            latency_ms=latency_ms,
        )
        sb.__enter__()
        started.append(sb)
        return sb

    yield start
    for sb in reversed(started):
        sb.__exit__(None, None, None)


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """A sandbox running the demo seed, without faults."""
    return make_sandbox()


@pytest.fixture
def dead_letters(tmp_path: Path) -> Path:
    return tmp_path / "dead-letters.jsonl"


def configure_for(
    monkeypatch: pytest.MonkeyPatch, sb: Sandbox, dead_letters: Path, **extra: str
) -> None:
    """Point the function's environment at a sandbox, AK/SK-signed, dead letters to a file."""
    creds = sb.credentials
    monkeypatch.setenv("ECS_ENDPOINT", sb.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", DEMO_PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", creds["ak"])
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", creds["sk"])
    monkeypatch.setenv("DEAD_LETTER_URL", str(dead_letters))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def metadata_of(sb: Sandbox, server_id: str) -> dict[str, str]:
    for server in sb.state()["servers"]:
        if server["id"] == server_id:
            return dict(server["metadata"])
    raise KeyError(server_id)


def python312() -> str | None:
    """A Python 3.12 interpreter (the function's runtime): this one, on PATH, or pyenv's."""
    import shutil
    import sys

    if sys.version_info[:2] == (3, 12):
        return sys.executable
    found = shutil.which("python3.12")
    candidates = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3"))
    return found or (str(candidates[-1]) if candidates else None)


@pytest.fixture(scope="session")
def package_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both zips and SHA256SUMS, built once per run from this checkout by infra/package.sh into
    a fresh folder (a zip left in dist/ by another commit is never what is tested); skipped
    when the wheels cannot be fetched or no Python 3.12 is here."""
    import os
    import subprocess

    python = python312()
    if python is None:
        pytest.skip("no Python 3.12 on this machine to build the 3.12 zips with")
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        ["bash", "infra/package.sh"],
        cwd=EVENTS.parent,
        env={**os.environ, "PY": python, "DIST": str(dist)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        if "lacks pinned packages" in done.stderr or "Python 3.12" in done.stderr:
            pytest.fail(done.stderr[-500:])
        pytest.skip(f"make package could not fetch the wheels: {done.stderr[-300:]}")
    return dist


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`pytest.mark.anyio`) run on asyncio, as the function does."""
    return "asyncio"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The function's log lines, captured (read them with `lines_of`)."""
    stream = io.StringIO()
    logs.set_stream(stream)
    yield stream
    logs.set_stream(None)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON log lines captured in `stream`."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class FakeClock:
    """A monotonic clock the test moves (`clock.now += 5`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
