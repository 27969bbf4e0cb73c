"""Hostile probes of the cleanup selectors (issue 9 §1): what must never be deleted."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from handler import app, cleanup
from handler.cleanup import expand
from handler.ecs.nova import ServerInfo
from handler.local import FakeContext
from handler.model import CleanupSelector
from handler.plan import Policy, make_plan
from handler.sandbox import DEMO_SEED, Sandbox
from handler.sandbox.state import Problem
from tests.conftest import EVENTS, SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import DB1, OTHER1, PROJECT, WEB1

A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"


def _deletes(sb: Sandbox) -> list[str]:
    return [r["path"] for r in sb.requests() if r["method"] == "DELETE"]


def _run(event: Any, remaining_ms: float = 30_000) -> dict[str, Any]:
    response = app.handler(event, FakeContext(remaining_ms))
    assert isinstance(response, dict)
    return response


def _cleanup(**selector: Any) -> dict[str, Any]:
    return {"cleanup": {"key_patterns": ["lease-*"], **selector}}


class PagedLister:
    """Serves the given pages as they are (a page may repeat servers of another)."""

    def __init__(self, pages: list[list[ServerInfo]]) -> None:
        self.pages = pages

    async def list_servers(
        self,
        project_id: str,
        *,
        page_size: int = 1000,
        deadline: float | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncIterator[ServerInfo]:
        for page in self.pages:
            if on_page is not None:
                on_page(len(page))
            for server in page:
                yield server


def _expand(selector: dict[str, Any], lister: Any, policy: Policy | None = None) -> Any:
    chosen = CleanupSelector.model_validate(selector)
    return asyncio.run(expand(chosen, lister, policy or Policy(PROJECT), None))


@pytest.fixture
def configured(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Sandbox]:
    def configure(**extra: str) -> Sandbox:
        configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2", **extra)
        return sandbox

    return configure


# --- confirmed problems -------------------------------------------------------------------


def test_a_server_listed_twice_is_counted_once_against_the_cap() -> None:
    a = ServerInfo(A, "a", "active", {"lease-x": "1"})
    b = ServerInfo(B, "b", "active", {"lease-y": "1"})
    plan = _expand({"key_patterns": ["lease-*"], "max_deletions": 2}, PagedLister([[a, b], [b]]))
    # Two distinct pairs match, max_deletions is 2: they must be deleted, and reported as 2.
    assert not plan.stats.capped
    assert plan.stats.pairs_matched == 2
    assert len(make_plan(plan.items, Policy(PROJECT)).to_delete) == 2


def test_a_capped_expansion_does_not_hold_every_match_in_memory() -> None:
    class Fleet:
        async def list_servers(self, project_id: str, **_: Any) -> AsyncIterator[ServerInfo]:
            for i in range(1000):
                ident = f"00000000-0000-4000-8000-{i:012d}"
                keys = {f"lease-{j:03d}-{i}": "v" for j in range(128)}  # Nova's metadata quota
                yield ServerInfo(ident, "n", "active", keys)

    tracemalloc.start()
    try:
        plan = _expand({"key_patterns": ["*"], "max_deletions": 1000}, Fleet())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.stats.capped and plan.stats.pairs_matched == 128_000
    # Only max_deletions + 1 matches are ever needed to decide; a fleet of 20,000 servers at
    # the quota is 2.56 M WorkItems (~350 MB) before the cap says "nothing".
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB"


# --- what held ----------------------------------------------------------------------------


@pytest.mark.parametrize("glob", ["*", "?*", "[!a]*", "**", "own*", "owner"])
def test_no_glob_sends_a_protected_key(configured: Callable[..., Sandbox], glob: str) -> None:
    sb = configured(PROTECTED_KEYS="owner,lease-*,env:*,team name,backup-policy")
    summary = _run({"cleanup": {"key_patterns": [glob], "max_deletions": 100}})["summary"]
    assert _deletes(sb) == []
    assert metadata_of(sb, WEB1)["owner"] == "ops"
    assert summary["cleanup"]["pairs_matched"] == 0


def test_overlapping_patterns_delete_each_key_once(configured: Callable[..., Sandbox]) -> None:
    sb = configured()
    patterns = ["lease-*", "lease-owner", "*-owner", "lease-???????", "l*"]
    summary = _run(_cleanup(key_patterns=patterns, name_prefix="db-"))["summary"]
    assert sorted(_deletes(sb)) == sorted(
        f"/v2.1/{PROJECT}/servers/{DB1}/metadata/{k}" for k in ("lease-owner", "lease-expires")
    )
    assert summary["cleanup"]["pairs_matched"] == 2 and summary["deleted"] == 2


def test_servers_naming_another_projects_server_deletes_nothing(
    configured: Callable[..., Sandbox],
) -> None:
    sb = configured()
    summary = _run(_cleanup(servers=[OTHER1]))["summary"]
    assert _deletes(sb) == [] and summary["cleanup"]["pairs_matched"] == 0
    assert metadata_of(sb, OTHER1) == {"lease-owner": "batch-2"}


def test_a_project_not_allowed_is_not_listed(configured: Callable[..., Sandbox]) -> None:
    sb = configured()
    _run(_cleanup(project_id="ffffffffffffffffffffffffffffffff"))
    assert sb.requests() == []


@pytest.mark.parametrize(("cap", "deletes"), [(7, True), (6, False)])
def test_max_deletions_is_inclusive(
    configured: Callable[..., Sandbox], cap: int, deletes: bool
) -> None:
    sb = configured()
    summary = _run(_cleanup(max_deletions=cap))["summary"]  # 7 pairs match the demo seed
    assert bool(_deletes(sb)) is deletes and summary["cleanup"]["capped"] is not deletes


@pytest.mark.parametrize("env", ["true", "1", "yes"])
def test_dry_run_from_the_environment_wins_over_the_selector(
    configured: Callable[..., Sandbox], env: str
) -> None:
    sb = configured(DRY_RUN=env)
    summary = _run(_cleanup(dry_run=False))["summary"]
    assert _deletes(sb) == [] and summary["dry_run"] == 7


def _kafka(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "kafka-msk.json").read_text(encoding="utf-8"))
    record = event["records"]["janitor-requests-0"][0]
    record["value"] = base64.b64encode(body.encode()).decode()
    event["records"] = {"janitor-requests-0": [record]}
    return event


def _sns(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "sns.json").read_text(encoding="utf-8"))
    event["Records"][0]["Sns"]["Message"] = body
    return event


def _sqs(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "sqs-batch.json").read_text(encoding="utf-8"))
    event["Records"] = event["Records"][:1]
    event["Records"][0]["body"] = body
    return event


def _webhook(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "function-url.json").read_text(encoding="utf-8"))
    event["body"] = body
    return event


_BODIES = [
    json.dumps(_cleanup(key_patterns=["*"])),
    json.dumps({"items": [_cleanup(key_patterns=["*"])]}),
    json.dumps([_cleanup(key_patterns=["*"])]),
    json.dumps({"detail-type": "x", "source": "y", "detail": _cleanup(key_patterns=["*"])}),
]


@pytest.mark.parametrize("wrap", [_sqs, _sns, _kafka, _webhook])
@pytest.mark.parametrize("body", _BODIES)
def test_a_selector_inside_a_message_never_runs(
    configured: Callable[..., Sandbox], wrap: Callable[[str], dict[str, Any]], body: str
) -> None:
    sb = configured(WEBHOOK_AUTH="none")
    _run(wrap(body))
    assert sb.requests() == []


def test_a_selector_nested_in_a_direct_payload_never_runs(
    configured: Callable[..., Sandbox],
) -> None:
    sb = configured()
    for payload in ({"items": [_cleanup()]}, [_cleanup()], {"cleanup": _cleanup()}):
        _run(payload)
    assert sb.requests() == []


def test_a_listing_failing_midway_deletes_nothing(
    configured: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = configured()
    monkeypatch.setattr(cleanup, "LIST_PAGE_SIZE", 2)
    state = sb._app.state  # the emulator's state: fail the second page
    real = state.page
    calls = {"n": 0}

    def page(project_id: str, limit: int | None, marker: str | None) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            return Problem(400, "marker", f"marker [{marker}] not found")
        return real(project_id, limit, marker)

    monkeypatch.setattr(state, "page", page)
    summary = _run(_cleanup())["summary"]
    assert _deletes(sb) == [] and summary["pairs"] == 0
    assert summary["cleanup"]["stopped"] and summary["cleanup"]["servers_scanned"] == 2


def test_the_deadline_during_the_deletes_dead_letters_what_is_left(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(latency_ms=150)
    configure_for(monkeypatch, sb, dead_letters, MAX_CONCURRENCY="1", MAX_ATTEMPTS="1")
    response = _run(_cleanup(), remaining_ms=1200)
    summary = response["summary"]
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert summary["cleanup"]["stopped"] is None and summary["cleanup"]["pairs_matched"] == 7
    assert summary["pairs"] == 7
    assert summary["deleted"] + summary["absent"] + summary["dead_lettered"] == 7
    assert any(letter["reason"] == "deadline" for letter in letters), summary


def test_a_fleet_of_20000_servers_is_listed_in_time(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["servers"] = [
        {"id": f"00000000-0000-4000-8000-{n:012d}", "name": f"n-{n}",
         "metadata": {"lease-owner": "b", "keep": "x"}}
        for n in range(20_000)
    ]  # fmt: skip
    sb = make_sandbox(seed=seed)
    configure_for(monkeypatch, sb, dead_letters)
    started = time.perf_counter()
    summary = _run(_cleanup(dry_run=True, max_deletions=100_000), remaining_ms=60_000)["summary"]
    elapsed = time.perf_counter() - started
    assert summary["cleanup"]["servers_scanned"] == 20_000 and summary["dry_run"] == 20_000
    assert _deletes(sb) == [] and elapsed < 10, elapsed
