"""Fixtures for the sandbox tests: a running demo sandbox and HTTP clients for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.sandbox._demo import TOKEN


@pytest.fixture(autouse=True)
def _no_leaked_sandbox_threads() -> Iterator[None]:
    yield
    leaked = [t for t in threading.enumerate() if t.name == "ecs-sandbox"]
    assert not leaked, f"sandbox threads still running: {leaked}"


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """A sandbox running the demo seed, without faults (from the suite's one factory)."""
    return make_sandbox()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client for `sandbox` authenticating with the demo token."""
    with httpx.Client(base_url=sandbox.url, headers={"X-Auth-Token": TOKEN}) as http:
        yield http


@pytest.fixture
def anonymous(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """An httpx client for `sandbox` without credentials."""
    with httpx.Client(base_url=sandbox.url) as http:
        yield http
