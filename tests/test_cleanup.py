"""Cleanup selectors (issue 9 §1): parsing, expansion over a listing, and end to end."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from handler import app, cleanup
from handler.cleanup import CleanupPlan, expand
from handler.ecs.client import ComputeApiError
from handler.ecs.nova import ServerInfo
from handler.local import FakeContext
from handler.model import CleanupSelector, parse_payload
from handler.outcomes import Outcome
from handler.plan import Policy
from handler.sandbox import DEMO_SEED, Sandbox
from tests.conftest import EVENTS, SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import BUILD1, DB1, OTHER1, OTHER_PROJECT, PROJECT, WEB1, WEB2

LEASES = ("lease-owner", "lease-expires")


def _deletes(sb: Sandbox) -> list[str]:
    return [r["path"] for r in sb.requests() if r["method"] == "DELETE"]


def _listings(sb: Sandbox) -> list[str]:
    return [r["path"] for r in sb.requests() if "/servers/detail" in r["path"]]


def _run(event: Any, remaining_ms: float = 30_000) -> dict[str, Any]:
    response = app.handler(event, FakeContext(remaining_ms))
    assert isinstance(response, dict)
    return response


def _cleanup(**selector: Any) -> dict[str, Any]:
    return {"cleanup": {"key_patterns": ["lease-*"], **selector}}


# --- the selector as a payload ------------------------------------------------------------


def test_a_selector_is_read_with_its_defaults() -> None:
    parsed = parse_payload({"cleanup": {"key_patterns": ["lease-*", "tmp.*"]}})
    assert parsed.invalid == [] and parsed.items == []
    selector = parsed.cleanup
    assert selector is not None
    assert selector.key_patterns == ["lease-*", "tmp.*"]
    assert selector.servers == "all" and selector.max_deletions == 1000
    assert selector.dry_run is False and selector.project_id is None


@pytest.mark.parametrize(
    ("selector", "complaint"),
    [
        ({}, "key_patterns"),
        ({"key_patterns": []}, "key_patterns"),
        ({"key_patterns": [""]}, "key_patterns"),
        ({"key_patterns": ["x" * 256]}, "key_patterns"),
        ({"key_patterns": ["a"] * 51}, "key_patterns"),
        ({"key_patterns": ["a"], "servers": "some"}, "servers"),
        ({"key_patterns": ["a"], "servers": ["not-a-uuid"]}, "servers"),
        ({"key_patterns": ["a"], "max_deletions": 0}, "max_deletions"),
        ({"key_patterns": ["a"], "max_deletions": 100_001}, "max_deletions"),
        ({"key_patterns": ["a"], "max_deletions": True}, "max_deletions"),
        ({"key_patterns": ["a"], "dry_run": "yes"}, "dry_run"),
        ({"key_patterns": ["a"], "project_id": "a/b"}, "project_id"),
        ({"key_patterns": ["a"], "surprise": 1}, "surprise"),
        ("lease-*", "cleanup"),
    ],
)
def test_a_bad_selector_is_one_invalid_result_saying_what_is_wrong(
    selector: Any, complaint: str
) -> None:
    parsed = parse_payload({"cleanup": selector})
    assert parsed.cleanup is None and parsed.items == []
    [result] = parsed.invalid
    assert result.outcome is Outcome.INVALID
    assert result.detail is not None and "cleanup selector" in result.detail
    assert complaint in result.detail or complaint == "cleanup"


def test_a_selector_must_be_alone_at_the_top_level() -> None:
    [beside] = parse_payload({"cleanup": {"key_patterns": ["a"]}, "items": [1]}).invalid
    assert beside.detail is not None and "alone" in beside.detail
    nested = parse_payload({"items": [{"cleanup": {"key_patterns": ["a"]}}]})
    assert nested.cleanup is None
    assert [r.detail for r in nested.invalid] == [
        "a cleanup selector is accepted only alone at the top level"
    ]
    assert parse_payload([{"cleanup": {"key_patterns": ["a"]}}]).cleanup is None


# --- expand() with a fake lister ----------------------------------------------------------


def _server(ident: str, name: str, metadata: dict[str, str], state: str = "active") -> ServerInfo:
    return ServerInfo(ident, name, state, metadata)


FLEET = [
    _server(WEB1, "web-1", {"lease-owner": "a", "Lease-big": "b", "owner": "ops"}),
    _server(WEB2, "web-2", {"lease-expires": "t"}, "stopped"),
    _server(DB1, "db-1", {"lease-owner": "c", "lease-lock": "d"}),
]


class FakeLister:
    """Serves a fixed fleet in pages of `page` servers; may fail after `fail_after` pages."""

    def __init__(
        self,
        servers: list[ServerInfo],
        page: int = 2,
        fail_after: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.servers = servers
        self.page = page
        self.fail_after = fail_after
        self.error = error or TimeoutError()
        self.projects: list[str] = []

    async def list_servers(
        self,
        project_id: str,
        *,
        page_size: int = 1000,
        deadline: float | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncIterator[ServerInfo]:
        self.projects.append(project_id)
        for number, start in enumerate(range(0, len(self.servers), self.page)):
            if self.fail_after is not None and number >= self.fail_after:
                raise self.error
            chunk = self.servers[start : start + self.page]
            if on_page is not None:
                on_page(len(chunk))
            for server in chunk:
                yield server


def _expand(
    selector: dict[str, Any], lister: FakeLister, policy: Policy | None = None
) -> CleanupPlan:
    chosen = CleanupSelector.model_validate(selector)
    return asyncio.run(expand(chosen, lister, policy or Policy(PROJECT), None))


def _pairs(plan: CleanupPlan) -> set[tuple[str, str]]:
    return {(item.server_id, item.key) for item in plan.items}


def test_expand_matches_keys_case_sensitively_on_every_page() -> None:
    lister = FakeLister(FLEET, page=2)
    plan = _expand({"key_patterns": ["lease-*"]}, lister)
    assert _pairs(plan) == {(WEB1, "lease-owner"), (WEB2, "lease-expires"), (DB1, "lease-owner"),
                            (DB1, "lease-lock")}  # fmt: skip
    assert all(item.project_id == PROJECT and not item.dry_run for item in plan.items)
    assert plan.results == []
    assert plan.stats.as_dict() == {
        "servers_scanned": 3,
        "list_pages": 2,
        "pairs_matched": 4,
        "protected_skipped": 0,
        "invalid_skipped": 0,
        "capped": False,
        "stopped": None,
    }


def test_expand_filters_by_ids_name_prefix_and_vm_states() -> None:
    by_ids = _expand({"key_patterns": ["lease-*"], "servers": [DB1.upper()]}, FakeLister(FLEET))
    assert {s for s, _ in _pairs(by_ids)} == {DB1}
    by_prefix = _expand({"key_patterns": ["*"], "name_prefix": "web-"}, FakeLister(FLEET))
    assert {s for s, _ in _pairs(by_prefix)} == {WEB1, WEB2}
    by_state = _expand({"key_patterns": ["*"], "vm_states": ["STOPPED"]}, FakeLister(FLEET))
    assert _pairs(by_state) == {(WEB2, "lease-expires")}
    assert by_state.stats.servers_scanned == 3


def test_expand_never_returns_a_protected_key_and_counts_it() -> None:
    policy = Policy(PROJECT, protected_keys=("lease-owner",))
    plan = _expand({"key_patterns": ["lease-*"]}, FakeLister(FLEET), policy)
    assert all(item.key != "lease-owner" for item in plan.items)
    assert plan.stats.protected_skipped == 2 and plan.stats.pairs_matched == 2


def test_expand_above_the_cap_returns_nothing_and_says_capped() -> None:
    plan = _expand({"key_patterns": ["lease-*"], "max_deletions": 3}, FakeLister(FLEET))
    assert plan.items == [] and plan.stats.capped and plan.stats.pairs_matched == 4
    exact = _expand({"key_patterns": ["lease-*"], "max_deletions": 4}, FakeLister(FLEET))
    assert len(exact.items) == 4 and not exact.stats.capped


def test_expand_dry_run_from_the_selector_or_the_policy() -> None:
    plan = _expand({"key_patterns": ["lease-*"], "dry_run": True}, FakeLister(FLEET))
    assert plan.items and all(item.dry_run for item in plan.items)
    policy = Policy(PROJECT, dry_run=True)
    assert all(i.dry_run for i in _expand({"key_patterns": ["*"]}, FakeLister(FLEET), policy).items)


@pytest.mark.parametrize("error", [TimeoutError(), ComputeApiError("HTTP 500 after the retries")])
def test_a_listing_that_does_not_finish_returns_nothing_and_says_how_far(error: Exception) -> None:
    lister = FakeLister(FLEET, page=1, fail_after=2, error=error)
    plan = _expand({"key_patterns": ["lease-*"]}, lister)
    assert plan.items == [] and plan.results == []
    assert plan.stats.servers_scanned == 2 and plan.stats.list_pages == 2
    assert plan.stats.stopped is not None and "nothing was deleted" in plan.stats.stopped


def test_a_project_not_allowed_is_one_result_and_is_not_listed() -> None:
    lister = FakeLister(FLEET)
    plan = _expand({"key_patterns": ["*"], "project_id": OTHER_PROJECT}, lister)
    assert lister.projects == [] and plan.items == []
    assert [r.outcome for r in plan.results] == [Outcome.PROJECT_NOT_ALLOWED]
    allowed = Policy(PROJECT, allowed_projects=frozenset({OTHER_PROJECT}))
    _expand({"key_patterns": ["*"], "project_id": OTHER_PROJECT}, lister, allowed)
    assert lister.projects == [OTHER_PROJECT]


# --- end to end against the sandbox -------------------------------------------------------


@pytest.fixture
def configured(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Sandbox]:
    def configure(**extra: str) -> Sandbox:
        configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2", **extra)
        return sandbox

    return configure


def test_a_direct_cleanup_deletes_every_matching_key_of_the_default_project(
    configured: Callable[..., Sandbox],
) -> None:
    sb = configured()
    response = _run(_cleanup())
    summary = response["summary"]
    assert summary["cleanup"] == {
        "servers_scanned": 4,
        "list_pages": 1,
        "pairs_matched": 7,  # web-1 2, web-2 2, build-1 1, db-1 2
        "protected_skipped": 0,
        "invalid_skipped": 0,
        "capped": False,
        "stopped": None,
    }
    for server in (WEB1, DB1):
        assert not set(LEASES) & set(metadata_of(sb, server))
    assert metadata_of(sb, WEB1)["owner"] == "ops"  # not matched, left alone
    assert metadata_of(sb, OTHER1) == {"lease-owner": "batch-2"}  # another project
    # web-2 is locked and build-1 still building: their pairs go the usual way (dead letters).
    assert summary["deleted"] == 4 and summary["pairs"] == 7
    assert summary["deleted"] + summary["absent"] + summary["dead_lettered"] == 7
    assert all(f"/{PROJECT}/" in path for path in _deletes(sb))


def test_a_dry_run_cleanup_sends_no_delete(configured: Callable[..., Sandbox]) -> None:
    sb = configured()
    summary = _run(_cleanup(dry_run=True))["summary"]
    assert _deletes(sb) == [] and len(_listings(sb)) == 1
    assert summary["dry_run"] == 7 and summary["cleanup"]["pairs_matched"] == 7
    assert metadata_of(sb, WEB1)["lease-owner"] == "batch-7"


def test_above_max_deletions_nothing_is_deleted_and_the_summary_says_capped(
    configured: Callable[..., Sandbox],
) -> None:
    sb = configured()
    summary = _run(_cleanup(max_deletions=6))["summary"]
    assert _deletes(sb) == []
    assert summary["cleanup"]["capped"] is True and summary["cleanup"]["pairs_matched"] == 7
    assert summary["pairs"] == 0


def test_protected_keys_are_never_sent(configured: Callable[..., Sandbox]) -> None:
    sb = configured(PROTECTED_KEYS="lease-owner")
    summary = _run(_cleanup(name_prefix="db-"))["summary"]
    assert _deletes(sb) == [f"/v2.1/{PROJECT}/servers/{DB1}/metadata/lease-expires"]
    assert summary["cleanup"]["protected_skipped"] == 1
    assert summary["cleanup"]["pairs_matched"] == 1 and summary["protected"] == 0
    assert metadata_of(sb, DB1)["lease-owner"] == "batch-1"


def test_name_prefix_and_vm_states_choose_the_servers(configured: Callable[..., Sandbox]) -> None:
    sb = configured()
    _run(_cleanup(name_prefix="web-", vm_states=["active"], servers=[WEB1, DB1, BUILD1]))
    assert {path.split("/")[4] for path in _deletes(sb)} == {WEB1}
    assert metadata_of(sb, DB1)["lease-owner"] == "batch-1"
    assert metadata_of(sb, WEB2)["lease-owner"] == "batch-9"


def test_every_page_is_walked_whatever_the_page_size(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["servers"] = [
        {"id": f"00000000-0000-4000-8000-00000000000{n}", "name": f"n-{n}",
         "metadata": {"lease-owner": f"b{n}", "keep": "x"}}
        for n in range(7)
    ]  # fmt: skip
    sb = make_sandbox(seed=seed)
    configure_for(monkeypatch, sb, dead_letters)
    monkeypatch.setattr(cleanup, "LIST_PAGE_SIZE", 3)
    summary = _run(_cleanup())["summary"]
    assert summary["deleted"] == 7 and summary["cleanup"]["servers_scanned"] == 7
    assert summary["cleanup"]["list_pages"] == len(_listings(sb)) == 3
    assert all(server["metadata"] == {"keep": "x"} for server in sb.state()["servers"])


def test_a_deadline_during_the_listing_deletes_nothing_and_says_stopped(
    make_sandbox: SandboxFactory, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(latency_ms=400)
    configure_for(monkeypatch, sb, dead_letters)
    summary = _run(_cleanup(), remaining_ms=600)["summary"]
    assert _deletes(sb) == []
    assert summary["cleanup"]["stopped"] is not None and summary["pairs"] == 0
    assert metadata_of(sb, WEB1)["lease-owner"] == "batch-7"


def _sqs(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "sqs-batch.json").read_text(encoding="utf-8"))
    event["Records"] = event["Records"][:1]
    event["Records"][0]["body"] = body
    return event


def _webhook(body: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "function-url.json").read_text(encoding="utf-8"))
    event["body"] = body
    return event


def test_a_queue_message_carrying_a_selector_is_invalid_and_nothing_is_listed(
    configured: Callable[..., Sandbox], dead_letters: Path
) -> None:
    sb = configured()
    response = _run(_sqs(json.dumps(_cleanup())))
    assert response == {"batchItemFailures": []}  # invalid: dead-lettered, not redelivered
    assert sb.requests() == []
    [letter] = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert letter["reason"] == "invalid"
    assert (
        letter["detail"]
        == "a cleanup selector is accepted from schedules and direct invocations only"
    )


def test_a_webhook_carrying_a_selector_is_refused_and_nothing_is_listed(
    configured: Callable[..., Sandbox],
) -> None:
    # Refused whole, saying why, before anything is listed (a webhook must not wipe a fleet).
    sb = configured(WEBHOOK_AUTH="none")
    response = _run(_webhook(json.dumps(_cleanup())))
    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert "schedules and direct invocations only" in json.dumps(body)
    assert "cleanup" not in body.get("summary", {})
    assert sb.requests() == []


def test_a_schedule_carries_a_selector(configured: Callable[..., Sandbox]) -> None:
    sb = configured()
    event = json.loads((EVENTS / "eventbridge-scheduled.json").read_text(encoding="utf-8"))
    event["detail"] = _cleanup(name_prefix="db-")
    timer = json.loads((EVENTS / "fg-timer.json").read_text(encoding="utf-8"))
    timer["user_event"] = json.dumps({"cleanup": {"key_patterns": ["owner"]}})
    assert _run(event)["summary"]["deleted"] == 2
    assert _run(timer)["summary"]["deleted"] == 1
    assert metadata_of(sb, WEB1).get("owner") is None
    assert not set(LEASES) & set(metadata_of(sb, DB1))
