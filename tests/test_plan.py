"""From work items to pairs: default project, allow-list, protected keys, dry runs, duplicates."""

from __future__ import annotations

import pytest

from handler.config import DEFAULT_PROTECTED_KEYS
from handler.model import WorkItem
from handler.outcomes import Outcome, Pair
from handler.plan import Policy, make_plan

DEFAULT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
SERVER = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
SERVER_2 = "11111111-2222-4333-8444-555555555555"


def _item(
    key: str = "lease-owner", *, project: str | None = None, dry_run: bool = False
) -> WorkItem:
    return WorkItem(project, SERVER, key, dry_run)


def _policy(**kwargs: object) -> Policy:
    kwargs.setdefault("protected_keys", DEFAULT_PROTECTED_KEYS)
    return Policy(DEFAULT, **kwargs)  # type: ignore[arg-type]


def test_default_project_applied() -> None:
    plan = make_plan([_item()], _policy())
    assert plan.to_delete == [Pair(DEFAULT, SERVER, "lease-owner")]
    assert plan.decided == []


def test_explicit_default_project_is_allowed() -> None:
    plan = make_plan([_item(project=DEFAULT)], _policy())
    assert plan.to_delete == [Pair(DEFAULT, SERVER, "lease-owner")]


def test_other_project_not_allowed_by_default() -> None:
    plan = make_plan([_item(project=OTHER)], _policy())
    assert plan.to_delete == []
    [result] = plan.decided
    assert result.outcome is Outcome.PROJECT_NOT_ALLOWED
    assert result.pair == Pair(OTHER, SERVER, "lease-owner")
    assert result.detail is not None
    assert OTHER in result.detail


def test_other_project_allowed_when_listed() -> None:
    plan = make_plan([_item(project=OTHER)], _policy(allowed_projects=frozenset({OTHER})))
    assert plan.to_delete == [Pair(OTHER, SERVER, "lease-owner")]
    assert plan.decided == []


def test_allow_list_does_not_open_unlisted_projects() -> None:
    policy = _policy(allowed_projects=frozenset({OTHER}))
    plan = make_plan([_item(project="aaaabbbbccccdddd0000111122223333")], policy)
    assert [r.outcome for r in plan.decided] == [Outcome.PROJECT_NOT_ALLOWED]


def test_project_not_allowed_wins_over_dry_run_and_protection() -> None:
    plan = make_plan([_item("__system", project=OTHER, dry_run=True)], _policy())
    assert [r.outcome for r in plan.decided] == [Outcome.PROJECT_NOT_ALLOWED]


@pytest.mark.parametrize(
    "key",
    [
        "__system",
        "__anything",
        "metering.foo",
        "metering.order_id",
        "charging_mode",
        "vpc_id",
        "os_type",
        "lockScene",
        "cascaded.instance_extrainfo",
    ],
)
def test_default_protected_keys(key: str) -> None:
    plan = make_plan([_item(key)], _policy())
    assert plan.to_delete == []
    [result] = plan.decided
    assert result.outcome is Outcome.PROTECTED
    assert result.pair == Pair(DEFAULT, SERVER, key)
    assert key in (result.detail or "")


@pytest.mark.parametrize(
    "key", ["lease-owner", "env:stage", "team name", "metering", "my__key", "charging_mode2"]
)
def test_normal_keys_not_protected(key: str) -> None:
    plan = make_plan([_item(key)], _policy())
    assert plan.to_delete == [Pair(DEFAULT, SERVER, key)]
    assert plan.decided == []


def test_protected_globs_are_case_sensitive() -> None:
    assert _policy().is_protected("charging_mode")
    assert not _policy().is_protected("CHARGING_MODE")


def test_custom_protected_globs() -> None:
    policy = Policy(DEFAULT, protected_keys=("keep-*", "exact"))
    assert policy.is_protected("keep-me")
    assert policy.is_protected("exact")
    assert not policy.is_protected("exactly")
    assert not policy.is_protected("__system")


def test_no_protected_globs_protects_nothing() -> None:
    policy = Policy(DEFAULT)
    assert not policy.is_protected("__system")
    assert make_plan([_item("__system")], policy).to_delete == [Pair(DEFAULT, SERVER, "__system")]


def test_protection_wins_over_dry_run() -> None:
    plan = make_plan([_item("__system", dry_run=True)], _policy(dry_run=True))
    assert [r.outcome for r in plan.decided] == [Outcome.PROTECTED]


def test_dry_run_from_policy() -> None:
    plan = make_plan([_item("a"), _item("b")], _policy(dry_run=True))
    assert plan.to_delete == []
    assert [r.outcome for r in plan.decided] == [Outcome.DRY_RUN, Outcome.DRY_RUN]
    assert [r.pair for r in plan.decided] == [
        Pair(DEFAULT, SERVER, "a"),
        Pair(DEFAULT, SERVER, "b"),
    ]


def test_dry_run_from_item() -> None:
    plan = make_plan([_item("a", dry_run=True), _item("b")], _policy())
    assert plan.to_delete == [Pair(DEFAULT, SERVER, "b")]
    [result] = plan.decided
    assert result.outcome is Outcome.DRY_RUN
    assert result.pair == Pair(DEFAULT, SERVER, "a")


def test_duplicates_collapse() -> None:
    items = [
        _item("a"),
        _item("a"),
        _item("a", project=DEFAULT),
        _item("b"),
        WorkItem(None, SERVER_2, "a", False),
    ]
    plan = make_plan(items, _policy())
    assert plan.to_delete == [
        Pair(DEFAULT, SERVER, "a"),
        Pair(DEFAULT, SERVER, "b"),
        Pair(DEFAULT, SERVER_2, "a"),
    ]
    assert plan.decided == []


def test_duplicate_decided_pairs_collapse() -> None:
    plan = make_plan(
        [_item("__x"), _item("__x"), _item(project=OTHER), _item(project=OTHER)], _policy()
    )
    assert [r.outcome for r in plan.decided] == [Outcome.PROTECTED, Outcome.PROJECT_NOT_ALLOWED]


def test_keys_differing_in_case_are_different_pairs() -> None:
    plan = make_plan([_item("Key"), _item("key")], _policy())
    assert len(plan.to_delete) == 2


def test_a_real_request_wins_over_a_dry_run_of_the_same_pair() -> None:

    server = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
    policy = Policy("p")
    for order in ([True, False], [False, True]):
        items = [WorkItem(None, server, "owner", dry_run) for dry_run in order]
        plan = make_plan(items, policy)
        assert [p.key for p in plan.to_delete] == ["owner"]
        assert plan.decided == []
    only_dry = make_plan([WorkItem(None, server, "owner", True)] * 2, policy)
    assert [r.outcome.value for r in only_dry.decided] == ["dry_run"]
