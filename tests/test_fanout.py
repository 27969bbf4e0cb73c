"""Fan-out (issue 10 §2): a selector's matches sent as one work item per server, not deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from handler.engine import Deps, Job, settle, summarise
from handler.fanout import messages_of
from handler.model import CleanupSelector, WorkItem
from handler.plan import Policy
from handler.redaction import Redactor
from handler.sources.base import OnTransient, Unit
from tests.sandbox._demo import DB1, WEB1, WEB2
from tests.test_cleanup import FLEET, FakeLister
from tests.test_engine import PROJECT, FakeDeleter, FakeSink, FakeSource


class Target:
    """A fan-out target that keeps what it is sent; `fail` names indices it does not send."""

    description = "a fake queue"

    def __init__(self, fail: dict[int, str] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail or {}

    async def send(self, bodies: Sequence[str], *, deadline: float | None) -> dict[int, str]:
        self.sent += [json.loads(b) for i, b in enumerate(bodies) if i not in self.fail]
        return {i: why for i, why in self.fail.items() if i < len(bodies)}


class Scheduled(FakeSource):
    accepts_cleanup = True

    def __init__(self) -> None:
        super().__init__(on_transient=OnTransient.DEAD_LETTER)


def _run(
    selector: dict[str, Any], target: Target | None, *, dry_run: bool = False
) -> tuple[dict[str, Any], FakeDeleter, list[Any]]:
    deleter = FakeDeleter()
    factory = None if target is None else (lambda url: target)
    deps = Deps(
        deleter=deleter,
        sink=FakeSink(),
        policy=Policy(default_project=PROJECT, dry_run=dry_run),
        redactor=Redactor(),
        workers=4,
        lister=FakeLister(FLEET),
        fan_out=factory,
    )
    unit = Unit(id="u1", body={"cleanup": selector}, ref="u1")
    reports = asyncio.run(settle(Job(source=Scheduled(), units=[unit], invocation_id="i"), deps))
    return summarise(reports), deleter, reports


def test_each_matched_server_becomes_one_work_item_and_nothing_is_deleted() -> None:
    target = Target()
    summary, deleter, _ = _run({"key_patterns": ["lease-*"], "fan_out": "sqs://q"}, target)
    assert deleter.calls == []
    by_server = {m["server_id"]: sorted(m["keys"]) for m in target.sent}
    assert by_server == {
        WEB1: ["lease-owner"],
        WEB2: ["lease-expires"],
        DB1: ["lease-lock", "lease-owner"],
    }
    assert all(m["project_id"] == PROJECT for m in target.sent)
    fan = summary["cleanup"]["fan_out"]
    assert (fan["messages"], fan["sent"], fan["unsent_servers"]) == (3, 3, [])
    assert summary["pairs"] == 0 and summary["cleanup"]["pairs_matched"] == 4


def test_the_work_items_are_payloads_the_function_accepts() -> None:
    items = [WorkItem(None, WEB1, "a", False), WorkItem("p2", WEB1, "b", False)]
    messages = messages_of(items, PROJECT)
    assert [json.loads(body)["project_id"] for _, body in messages] == [PROJECT, "p2"]
    from handler.model import parse_payload

    for _, body in messages:
        assert not parse_payload(json.loads(body)).invalid


def test_unsent_work_is_reported_by_server() -> None:
    target = Target(fail={1: "Failed InternalError"})
    summary, _, reports = _run({"key_patterns": ["lease-*"], "fan_out": "sqs://q"}, target)
    fan = summary["cleanup"]["fan_out"]
    assert fan["sent"] == 2 and len(fan["unsent_servers"]) == 1
    assert reports[0].cleanup.fan_out.unsent == {fan["unsent_servers"][0]: "Failed InternalError"}


@pytest.mark.parametrize("how", ["selector", "config"])
def test_a_dry_run_fan_out_sends_nothing_and_says_what_would_go(how: str) -> None:
    target = Target()
    selector = {"key_patterns": ["lease-*"], "fan_out": "sqs://q"}
    if how == "selector":
        selector["dry_run"] = True
    summary, deleter, _ = _run(selector, target, dry_run=how == "config")
    assert target.sent == [] and deleter.calls == []
    fan = summary["cleanup"]["fan_out"]
    assert fan["dry_run"] is True and fan["messages"] == 3 and fan["sent"] == 0


def test_past_the_cap_nothing_is_sent() -> None:
    target = Target()
    summary, _, _ = _run(
        {"key_patterns": ["lease-*"], "fan_out": "sqs://q", "max_deletions": 2}, target
    )
    assert target.sent == [] and summary["cleanup"]["capped"] is True


def test_without_a_target_factory_a_fan_out_is_invalid_and_nothing_is_deleted() -> None:
    summary, deleter, reports = _run({"key_patterns": ["lease-*"], "fan_out": "sqs://q"}, None)
    assert deleter.calls == [] and summary["invalid"] == 1
    assert "fan_out" in (reports[0].results[0].detail or "")


@pytest.mark.parametrize("url", ["ftp://x", "queue", "file:///tmp/q"])
def test_a_fan_out_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="fan_out must be"):
        CleanupSelector.model_validate({"key_patterns": ["x"], "fan_out": url})
