"""`ecs-metadata-janitor cleanup` (issue 9 §4): the selector from a terminal, a table, a bar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from handler import cli
from handler.engine import PROGRESS, Progress
from handler.local import FakeContext
from handler.outcomes import Result
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory, configure_for, metadata_of
from tests.sandbox._demo import BUILD1, DB1, OTHER1, WEB1, WEB2

LEASES = ("lease-owner", "lease-expires")
UUID_START = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")


def _deletes(sb: Sandbox) -> list[str]:
    return [r["path"] for r in sb.requests() if r["method"] == "DELETE"]


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    """The table's rows by (server, key): [outcome, what became of it]."""
    lines = out.splitlines()
    assert lines[0].split() == ["SERVER", "KEY", "OUTCOME", "WHAT", "BECAME", "OF", "IT"]
    rows = {}
    for line in lines[1:]:
        if not UUID_START.match(line):
            break
        server, key, outcome, *what = line.split(maxsplit=3)
        rows[(server, key)] = [outcome, what[0] if what else ""]
    return rows


@pytest.fixture
def configured(sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    return sandbox


def test_a_dry_run_lists_every_match_and_sends_no_delete(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cleanup", "--pattern", "lease-*", "--dry-run", "--progress", "none"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    expected = {(s, k) for s in (WEB1, WEB2, DB1) for k in LEASES} | {(BUILD1, "lease-owner")}
    assert set(rows) == expected
    assert all(row == ["dry_run", "would be deleted (dry run)"] for row in rows.values())
    assert (OTHER1, "lease-owner") not in rows  # another project: not listed
    assert _deletes(configured) == []
    assert "servers scanned 4, list pages 1, matched 7 (protected skipped 0)" in out
    assert "dry run: 7 pair(s) would be deleted; nothing was sent" in out
    assert metadata_of(configured, WEB1)["lease-owner"] == "batch-7"


def test_a_clean_run_deletes_the_matches_and_exits_0(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "none"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert _rows(out) == {
        (DB1, "lease-owner"): ["deleted", ""],
        (DB1, "lease-expires"): ["deleted", ""],
    }
    assert "matched 2 (protected skipped 0): deleted 2, absent 0, dead-lettered 0" in out
    assert not set(LEASES) & set(metadata_of(configured, DB1))
    assert metadata_of(configured, WEB1)["lease-owner"] == "batch-7"  # not db-: left alone


def test_a_run_with_dead_letters_shows_them_and_exits_1(
    configured: Sandbox, dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cleanup", "--pattern", "lease-*", "--server", WEB1, WEB2, "--progress", "none"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows[(WEB1, "lease-owner")] == ["deleted", ""]
    assert rows[(WEB2, "lease-owner")][0] == "conflict"
    assert rows[(WEB2, "lease-owner")][1].startswith("dead-lettered: HTTP 409")
    assert "deleted 2, absent 0, dead-lettered 2" in out
    assert f"dead letters went to the file {dead_letters}" in out
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert {(x["item"]["server_id"], x["item"]["key"]) for x in letters} == {
        (WEB2, key) for key in LEASES
    }


def test_above_max_deletions_nothing_is_deleted_and_it_says_capped(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cleanup", "--pattern", "lease-*", "--max-deletions", "6", "--progress", "none"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert _deletes(configured) == []
    assert out.splitlines()[0] == "no key matched"
    assert (
        "capped: 7 pairs matched, more than --max-deletions 6: nothing was deleted "
        "(raise --max-deletions or narrow --pattern)"
    ) in out


def test_a_listing_that_runs_out_of_time_says_stopped(
    make_sandbox: SandboxFactory,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = make_sandbox(latency_ms=400)
    configure_for(monkeypatch, sb, dead_letters)
    argv = ["cleanup", "--pattern", "lease-*", "--remaining-ms", "600", "--progress", "none"]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert _deletes(sb) == []
    assert "stopped: the server listing stopped" in out and "run it again" in out


def test_protected_keys_are_counted_not_sent(
    configured: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROTECTED_KEYS", "lease-owner")
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "none"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert set(_rows(out)) == {(DB1, "lease-expires")}
    assert "matched 1 (protected skipped 1)" in out
    assert metadata_of(configured, DB1)["lease-owner"] == "batch-1"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--pattern", "lease-*", "--max-deletions", "0"], "error: --max-deletions: "),
        (["--pattern", "lease-*", "--server", "not-a-uuid"], "error: --server: "),
        (["--pattern", "x" * 256], "error: --pattern: "),
        (["--pattern", "a", "--project", "a/b"], "error: --project: "),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    configured: Sandbox, argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cleanup", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(complaint)
    assert configured.requests() == []


def test_a_missing_pattern_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["cleanup", "--dry-run"])
    assert exited.value.code == 2
    assert "--pattern" in capsys.readouterr().err


def test_without_configuration_and_without_sandbox_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["cleanup", "--pattern", "lease-*", "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration: HUAWEICLOUD_SDK_PROJECT_ID")
    assert "Traceback" not in err


def test_without_an_endpoint_it_runs_against_a_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEAD_LETTER_URL", str(tmp_path / "dl.jsonl"))
    assert cli.main(["cleanup", "--pattern", "lease-*", "--dry-run", "--progress", "none"]) == 0
    out, err = capsys.readouterr()
    assert "running against an in-process sandbox" in err
    assert "matched 7" in out


def test_progress_lines_tell_pages_and_pairs(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "lines"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "… listed 1 page(s), 4 server(s)" in err
    assert "… listed 1 page(s), settled 2/2 pairs" in err


def test_progress_bar_is_drawn_with_tqdm(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "bar"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "deleting:" in captured.err and "0/2" in captured.err
    assert "deleting" not in captured.out  # the table alone on stdout


def test_auto_progress_draws_nothing_off_a_terminal(
    configured: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cleanup", "--pattern", "lease-*", "--name-prefix", "db-"]) == 0
    assert capsys.readouterr().err == ""


def test_without_tqdm_a_bar_falls_back_to_lines(
    configured: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from handler.commands import progress

    monkeypatch.setattr(progress, "_tqdm", lambda: None)
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "bar"]
    assert cli.main(argv) == 0
    assert "… listed 1 page(s)" in capsys.readouterr().err


def test_the_progress_hooks_reach_the_runtime_loop(configured: Sandbox) -> None:
    # The CLI sets engine.PROGRESS around Runtime.run: the invocation, on the runtime's own
    # thread, must see it (and a run without it must not).
    from handler.config import load_config

    pages: list[int] = []
    planned: list[int] = []
    settled: list[Result] = []
    hooks = Progress(page_read=pages.append, pairs_planned=planned.append,
                     pair_settled=settled.append)  # fmt: skip
    runtime = Runtime(load_config())
    try:
        event: dict[str, Any] = {"cleanup": {"key_patterns": ["lease-*"], "name_prefix": "db-"}}
        token = PROGRESS.set(hooks)
        try:
            runtime.run(event, FakeContext(30_000))
        finally:
            PROGRESS.reset(token)
        assert pages == [4] and planned == [2]
        assert sorted(r.pair.key for r in settled if r.pair) == sorted(LEASES)
        runtime.run({"server_id": WEB1, "key": "lease-owner"}, FakeContext(30_000))
        assert len(settled) == 2 and planned == [2]  # not told any more
    finally:
        runtime.close()


def test_the_function_path_imports_neither_the_commands_nor_tqdm() -> None:
    import subprocess
    import sys

    code = (
        "import sys, handler.app, handler.runtime, handler.engine, handler.cleanup\n"
        "loaded = [m for m in sys.modules if m == 'tqdm' or m.startswith('handler.commands')]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_log_file_gets_the_function_logs_and_a_bad_one_is_one_line(
    configured: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    log = tmp_path / "function.log"
    argv = ["cleanup", "--pattern", "lease-*", "--name-prefix", "db-", "--progress", "none"]
    assert cli.main([*argv, "--log-file", str(log)]) == 0
    messages = [json.loads(line)["message"] for line in log.read_text().splitlines()]
    assert messages.count("pair settled") == 2 and "invocation summary" in messages
    assert capsys.readouterr().err == ""
    assert cli.main([*argv, "--log-file", str(tmp_path / "no" / "such" / "dir.log")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open --log-file ") and "Traceback" not in err
