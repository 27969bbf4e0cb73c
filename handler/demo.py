"""`make demo`: the sample events run against an in-process sandbox, each pair's outcome shown."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

DEMO_EVENTS = ("direct-invocation.json", "sqs-batch.json", "sqs-fifo-batch.json")


def _line(result: dict[str, Any]) -> str:
    item = result.get("item")
    what = (
        f"{item['server_id'][:8]}…/{item['key']}" if item else f"raw {result.get('raw', '')[:40]!r}"
    )
    detail = result.get("detail") or ""
    status = result.get("status")
    tail = f"HTTP {status}, {result.get('attempts', 0)} attempt(s)" if status else ""
    return f"    {result['outcome']:<20} {what:<40} {tail:<24} {detail[:70]}"


def _show(response: dict[str, Any], dead_letters: int, sink: Path) -> None:
    if "batchItemFailures" in response:
        ids = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        print(f"  response: batchItemFailures = {ids or 'none'}")
        print("  (those messages go back to the queue; the others are settled or dead-lettered)")
    else:
        for result in response.get("results", []):
            print(_line(result))
        summary = response["summary"]
        counts = ", ".join(f"{k} {v}" for k, v in summary.items() if v and k != "units")
        print(f"  summary: {counts}")
    print(f"  dead letters written: {dead_letters} → {sink}")


def run_demo(events: Path, out: Path) -> int:
    """Run the demo events and print what happened; return an exit status."""
    out.mkdir(parents=True, exist_ok=True)
    sink = out / "dead-letters.jsonl"
    log_file = out / "function.log"
    sink.unlink(missing_ok=True)
    saved = {name: os.environ.get(name) for name in ("DEAD_LETTER_URL", "MAX_ATTEMPTS")}
    os.environ["DEAD_LETTER_URL"] = str(sink)
    os.environ.setdefault("MAX_ATTEMPTS", "3")  # the locked server's retries stay short
    try:
        left = _run_events(events, sink, log_file)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    print("\nmetadata left in the sandbox:")
    for name, keys in left.items():
        print(f"  {name:<8} {', '.join(keys) or '(none)'}")
    print(f"\nEvery pair above ended deleted, absent, dry_run, back on the queue, or in {sink}.")
    sys.stdout.flush()
    return 0


def _run_events(events: Path, sink: Path, log_file: Path) -> dict[str, list[str]]:
    from handler import app, logs
    from handler.cli import FakeContext, read_event, sandbox_environment

    with log_file.open("w", encoding="utf-8") as log_stream:
        logs.set_stream(log_stream)
        with sandbox_environment() as sandbox:
            print(f"sandbox (demo seed) at {sandbox.url}; function logs → {log_file}")
            for name in DEMO_EVENTS:
                before, log_before = _count_lines(sink), _count_lines(log_file)
                response = app.handler(read_event(events / name), FakeContext(30_000))
                log_stream.flush()
                print(f"\n== {name}")
                if "batchItemFailures" in response:
                    _show_sqs_pairs(log_file, log_before)
                _show(response, _count_lines(sink) - before, sink)
            left = {
                server["name"]: sorted(server["metadata"]) for server in sandbox.state()["servers"]
            }
        logs.set_stream(None)
    return left


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _show_sqs_pairs(log_file: Path, start: int) -> None:
    """Print the per-pair log lines the last SQS invocation wrote (SQS answers only with ids)."""
    lines = log_file.read_text(encoding="utf-8").splitlines()
    for text in lines[start:]:
        entry = json.loads(text)
        if not str(entry.get("message", "")).startswith("pair "):
            continue
        result = {
            "outcome": entry["outcome"],
            "item": {"server_id": entry["server_id"], "key": entry["key"]}
            if entry.get("server_id")
            else None,
            "raw": "(see the dead letter)",
            "status": entry.get("status"),
            "attempts": entry.get("attempts"),
            "detail": f"[msg {str(entry.get('source_id'))[:13]}] {entry.get('detail') or ''}",
        }
        print(_line(result))
