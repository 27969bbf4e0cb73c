"""`make demo`: the sample events run against an in-process sandbox, each pair's outcome shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from handler.local import FakeContext, local_sandbox, read_event, sandbox_config
from handler.outcomes import Result
from handler.sources import UnitReport

DEMO_EVENTS = ("direct-invocation.json", "sqs-batch.json", "sqs-fifo-batch.json")
#: A scheduled cleanup of every `lease-*` key left: first a dry run, then for real.
_SELECTOR = {"key_patterns": ["lease-*"]}
CLEANUPS = (
    ("cleanup, dry run", {"cleanup": {**_SELECTOR, "dry_run": True}}),
    ("cleanup", {"cleanup": _SELECTOR}),
)
#: The fan-out part: the work queue, the dead-letter queue, and a server no longer there.
WORK_QUEUE, DEAD_LETTER_QUEUE = "janitor-work", "janitor-dlq"
GONE_SERVER = "00000000-0000-4000-8000-00000000dead"


def _line(result: Result, unit: UnitReport) -> str:
    pair = result.pair
    what = f"{pair.server_id[:8]}…/{pair.key}" if pair else f"raw {(result.raw or '')[:40]!r}"
    tail = f"HTTP {result.status}, {result.attempts} attempt(s)" if result.status else ""
    where = f"[msg {unit.unit.id[:13]}] " if unit.unit.id else ""
    return (
        f"    {result.outcome.value:<20} {what:<40} {tail:<24} {where}{(result.detail or '')[:60]}"
    )


def _show(response: Any, reports: list[UnitReport], dead_letters: int, sink: Path) -> None:
    for report in reports:
        if report.skipped:
            print(f"    {'(skipped)':<20} message {report.unit.id}: its FIFO group stopped")
        for result in report.results:
            print(_line(result, report))
    if isinstance(response, dict) and "batchItemFailures" in response:
        ids = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        print(f"  response: batchItemFailures = {ids or 'none'}")
        print("  (those messages go back to the queue; the others are settled or dead-lettered)")
    elif isinstance(response, dict) and "summary" in response:
        summary = response["summary"]
        counts = ", ".join(f"{k} {v}" for k, v in summary.items() if v and k != "units")
        print(f"  summary: {counts}")
    print(f"  dead letters written: {dead_letters} → {sink}")


def run_demo(events: Path, out: Path) -> int:
    """Run the demo events and print what happened; return an exit status."""
    from handler import logs
    from handler.runtime import Runtime

    out.mkdir(parents=True, exist_ok=True)
    sink = out / "dead-letters.jsonl"
    log_file = out / "function.log"
    sink.unlink(missing_ok=True)
    with log_file.open("w", encoding="utf-8") as log_stream, local_sandbox() as (sandbox, seed):
        logs.set_stream(log_stream)
        # The locked server's retries stay short unless MAX_ATTEMPTS says otherwise.
        overrides = {"DEAD_LETTER_URL": str(sink)}
        if not _env_set("MAX_ATTEMPTS"):
            overrides["MAX_ATTEMPTS"] = "3"
        runtime = Runtime(sandbox_config(sandbox, seed, **overrides))
        try:
            print(f"sandbox (demo seed) at {sandbox.url}; function logs → {log_file}")
            for name in DEMO_EVENTS:
                before = _count_lines(sink)
                done = runtime.run(read_event(events / name), FakeContext(30_000))
                print(f"\n== {name}")
                _show(done.response, done.reports, _count_lines(sink) - before, sink)
            for index, (title, event) in enumerate(CLEANUPS):
                if index == 1:  # after the dry run, before the real sweep: the fan-out way
                    _fan_out(sandbox, seed, runtime)
                before = _count_lines(sink)
                done = runtime.run(event, FakeContext(30_000))
                print(f"\n== {title}: {json.dumps(event)}")
                _show(done.response, done.reports, _count_lines(sink) - before, sink)
            left = {s["name"]: sorted(s["metadata"]) for s in sandbox.state()["servers"]}
        finally:
            runtime.close()
            logs.set_stream(None)
    print("\nmetadata left in the sandbox:")
    for name, keys in left.items():
        print(f"  {name:<8} {', '.join(keys) or '(none)'}")
    print(f"\nEvery pair above ended deleted, absent, dry_run, back on the queue, or in {sink}.")
    sys.stdout.flush()
    return 0


def _sqs_url(sandbox: Any, name: str) -> str:
    url: str = sandbox.queue_url(name)
    return "sqs://" + url.split("://", 1)[1]


def _fan_out(sandbox: Any, seed: dict[str, Any], runtime: Any) -> None:
    """A scheduled cleanup fans out to a queue; the queue is drained through the function."""
    import importlib.util

    import httpx

    from handler.commands import drain
    from handler.queues.sigv4 import AwsCredentials
    from handler.runtime import Runtime

    print(f"\n== fan-out: a schedule sends the work to the {WORK_QUEUE} queue")
    if importlib.util.find_spec("aws_sdk_signers") is None:
        print("  skipped: SQS needs aws-sdk-signers, which needs Python 3.12 or later")
        return
    event = {"cleanup": {**_SELECTOR, "fan_out": _sqs_url(sandbox, WORK_QUEUE)}}
    done = runtime.run(event, FakeContext(30_000))
    fan = done.summary["cleanup"]["fan_out"]
    print(f"  {json.dumps(event)}")
    print(f"  sent {fan['sent']} of {fan['messages']} work item(s) to {fan['to']}; no DELETE yet")
    aws = sandbox.aws
    credentials = AwsCredentials(aws["access_key_id"], aws["secret_access_key"])
    queue = sandbox.queue_url(WORK_QUEUE)
    with httpx.Client() as http:
        client = drain.SqsClient(sandbox.url, "us-east-1", credentials, http=http)
        # A server deleted between the sweep and its work item: a dead letter, in a queue.
        stale = {"server_id": GONE_SERVER, "keys": ["lease-owner"]}
        client.call("SendMessage", {"QueueUrl": queue, "MessageBody": json.dumps(stale)})
        print(f"  (and one stale work item, for {GONE_SERVER[:8]}…, a server no longer there)")
        print(f"\n== drain {WORK_QUEUE}: SQS events through the function, dead letters → SQS")
        overrides = {"DEAD_LETTER_URL": _sqs_url(sandbox, DEAD_LETTER_QUEUE), "MAX_ATTEMPTS": "2"}
        consumer = Runtime(sandbox_config(sandbox, seed, **overrides))
        try:
            drain.drain(
                client,
                queue,
                f"arn:aws:sqs:us-east-1:000000000000:{WORK_QUEUE}",
                lambda sqs_event: consumer.invoke(sqs_event, FakeContext(30_000)),
                batch_size=10,
                max_batches=5,
                out=lambda line: print(f"  {line}"),
            )
        finally:
            consumer.close()
    queues = {q["name"]: q for q in sandbox.state()["queues"]}
    back = [json.loads(m["body"])["server_id"][:8] for m in queues[WORK_QUEUE]["messages"]]
    letters = [json.loads(m["body"]) for m in queues[DEAD_LETTER_QUEUE]["messages"]]
    print(f"  back on {WORK_QUEUE}, to be retried (locked or building): {back or 'none'}")
    for letter in letters:
        item = letter["item"] or {}
        print(
            f"  dead letter in {DEAD_LETTER_QUEUE}: {str(item.get('server_id'))[:8]}…/"
            f"{item.get('key')} {letter['reason']}"
        )


def _env_set(name: str) -> bool:
    import os

    return bool(os.environ.get(name, "").strip())


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle)
