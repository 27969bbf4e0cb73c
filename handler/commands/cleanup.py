"""`cleanup`: a cleanup selector from the terminal, run through the function like `invoke`,
with a progress bar and a table of what matched and what became of it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from pydantic import ValidationError

from handler.commands import common
from handler.commands.progress import ProgressDisplay, resolve_mode
from handler.commands.table import one_line, render
from handler.outcomes import Outcome, Result

#: Exit status when the run was interrupted (Ctrl-C), as a shell reports SIGINT.
INTERRUPTED = 130
#: The function's cap when --max-deletions is not given (CleanupSelector's default).
DEFAULT_MAX_DELETIONS = 1000


def selector_of(args: argparse.Namespace) -> dict[str, Any]:
    """The `cleanup` object the arguments describe (only what was given: defaults are the
    function's)."""
    selector: dict[str, Any] = {"key_patterns": list(args.pattern)}
    if args.server:
        selector["servers"] = list(args.server)
    if args.name_prefix is not None:
        selector["name_prefix"] = args.name_prefix
    if args.vm_state:
        selector["vm_states"] = list(args.vm_state)
    if args.max_deletions is not None:
        selector["max_deletions"] = args.max_deletions
    if args.dry_run:
        selector["dry_run"] = True
    if args.project is not None:
        selector["project_id"] = args.project
    return selector


def _selector_problem(selector: dict[str, Any]) -> str | None:
    """What is wrong with the selector, in one line, or None (checked before anything runs)."""
    from handler.model import CleanupSelector

    flags = {
        "key_patterns": "--pattern",
        "servers": "--server",
        "name_prefix": "--name-prefix",
        "vm_states": "--vm-state",
        "max_deletions": "--max-deletions",
        "project_id": "--project",
    }
    try:
        CleanupSelector.model_validate(selector)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False, include_input=False)[:3]:
            loc = [str(p) for p in err["loc"]]
            flag = flags.get(loc[0], loc[0]) if loc else "selector"
            parts.append(f"{flag}: {err['msg']}")
        return "; ".join(parts)
    return None


def _what(result: Result) -> str:
    """What became of a pair, in words."""
    outcome = result.outcome
    if outcome is Outcome.DRY_RUN:
        return "would be deleted (dry run)"
    if outcome.settled:
        return ""
    detail = result.detail or ""
    if result.status is not None and not detail.startswith(("HTTP", "the ")):
        detail = f"HTTP {result.status}" + (f": {detail}" if detail else "")
    return one_line(f"dead-lettered: {detail}" if detail else "dead-lettered", 110)


def table_lines(results: list[Result]) -> list[str]:
    """One row per pair (or per result without one): server, key, outcome, what became of it."""
    rows = []
    for result in results:
        pair = result.pair
        server = pair.server_id if pair else "(selector)"
        key = pair.key if pair else ""
        rows.append([server, key, result.outcome.value, _what(result)])
    return render(["SERVER", "KEY", "OUTCOME", "WHAT BECAME OF IT"], rows)


def summary_lines(summary: dict[str, Any], sink: str, max_deletions: int) -> list[str]:
    """The summary: what was listed and matched, what was deleted, and why the run stopped."""
    stats = summary.get("cleanup") or {}
    counts = (
        f"servers scanned {stats.get('servers_scanned', 0)}, "
        f"list pages {stats.get('list_pages', 0)}, "
        f"matched {stats.get('pairs_matched', 0)} "
        f"(protected skipped {stats.get('protected_skipped', 0)}): "
        f"deleted {summary.get('deleted', 0)}, absent {summary.get('absent', 0)}, "
        f"dead-lettered {summary.get('dead_lettered', 0)}"
    )
    lines = [counts]
    if summary.get("dry_run"):
        lines.append(f"dry run: {summary['dry_run']} pair(s) would be deleted; nothing was sent")
    if summary.get("dead_lettered"):
        lines.append(f"dead letters went to {sink}")
    if summary.get("dead_letter_failures"):
        lines.append("some dead letters could not be written: see the log")
    if stats.get("capped"):
        lines.append(
            f"capped: {stats.get('pairs_matched', 0)} pairs matched, more than --max-deletions "
            f"{max_deletions}: nothing was deleted (raise --max-deletions or narrow --pattern)"
        )
    if stats.get("stopped"):
        lines.append(f"stopped: {stats['stopped']} (deletes are idempotent: run it again)")
    return lines


def failed(summary: dict[str, Any]) -> bool:
    """True when something matched was not settled, or the run stopped or was capped."""
    stats = summary.get("cleanup") or {}
    return bool(
        summary.get("dead_lettered")
        or summary.get("dead_letter_failures")
        or stats.get("capped")
        or stats.get("stopped")
        or any(summary.get(o.value) for o in Outcome if not o.settled)
    )


def run(args: argparse.Namespace) -> int:
    """Run `ecs-metadata-janitor cleanup`; return the exit status (130 on Ctrl-C, any time)."""
    try:
        return _run(args)
    except KeyboardInterrupt:  # listing, deleting, or starting or stopping the sandbox
        common.error(
            "interrupted: deletes already sent stand, nothing more is sent; deletes are "
            "idempotent, so running the same cleanup again finishes the job"
        )
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from handler.ecs.signing import CredentialsUnavailableError
    from handler.local import FakeContext
    from handler.runtime import DeadLetterWriteError, FanOutError

    selector = selector_of(args)
    problem = _selector_problem(selector)
    if problem is not None:
        common.error(problem)
        return 2
    use_sandbox = common.use_sandbox(args.sandbox)
    display = ProgressDisplay(resolve_mode(args.progress, sys.stderr), sys.stderr)
    with contextlib.ExitStack() as stack:
        try:
            runtime = common.start(
                stack, display, sandbox=use_sandbox, seed=args.seed, log_file=args.log_file
            )
        except common.CommandError as exc:
            common.error(str(exc))
            return 2
        event = {"cleanup": selector}
        try:
            with common.reporting(display):
                done = runtime.run(event, FakeContext(args.remaining_ms))
        except CredentialsUnavailableError as exc:
            common.error(str(exc))
            return 2
        except (DeadLetterWriteError, FanOutError) as exc:
            common.error(str(exc))
            return 1
        sink = runtime.sink.description
    results = [result for report in done.reports for result in report.results]
    for line in table_lines(results) if results else ["no key matched"]:
        common.out(line)
    cap = selector.get("max_deletions", DEFAULT_MAX_DELETIONS)
    for line in summary_lines(done.summary, sink, cap):
        common.out(line)
    return 1 if failed(done.summary) else 0
