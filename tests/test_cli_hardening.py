"""The operator commands under Ctrl-C at every phase, text from answers that would drive the
terminal, and the dead-letter file shared by `replay` and the function's FileSink."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from handler import cli, deadletter
from handler.commands import common
from handler.commands.check import Diagnosis, Verdict
from handler.commands.progress import ProgressDisplay
from handler.commands.replay import DeadLetterFile
from handler.commands.table import printable, printable_json, render
from handler.deadletter import DeadLetterError, FileSink, make_record
from handler.outcomes import Outcome, Pair, Result
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import configure_for
from tests.sandbox._demo import PROJECT, WEB1

WHEN = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
#: What a terminal acts on: C0 (newline and tab aside), DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
#: An answer's text meant for the terminal, not the operator: title, bell, clear, 8-bit CSI.
HOSTILE = "boom \x1b]0;pwned\x07\x1b[2J\x9b31m\x7f\r\u202egnp.exe"


def _record(server: str, key: str, n: int = 1) -> bytes:
    result = Result(Outcome.RETRIES_EXHAUSTED, pair=Pair(PROJECT, server, key), attempts=n)
    record = make_record(
        result, source_kind="sqs", source_id=f"m-{n}", invocation_id="inv", now=WHEN
    )
    return (json.dumps(record) + "\n").encode("ascii")


def _main(*argv: str) -> int:
    """cli.main, failing the test (not the session) when KeyboardInterrupt escapes it."""
    try:
        return cli.main(list(argv))
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the command: a traceback on the terminal")


def _one_interrupted_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
    assert "Traceback" not in err


class _Interrupt:
    """Raise KeyboardInterrupt the first time it is called (Ctrl-C at that point)."""

    def __init__(self, real: Callable[..., Any] | None = None) -> None:
        self.real = real
        self.pressed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt
        return None if self.real is None else self.real(*args, **kwargs)


# --- Ctrl-C, wherever it lands ------------------------------------------------------------


def test_ctrl_c_while_check_starts_its_sandbox_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Sandbox, "start", _Interrupt(Sandbox.start))
    assert _main("check", "--sandbox") == 130
    _one_interrupted_line(capsys.readouterr().err)


def test_ctrl_c_while_check_stops_its_sandbox_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_stop = Sandbox.stop
    interrupt = _Interrupt()

    def stop(self: Sandbox) -> None:
        real_stop(self)  # stopped, then the Ctrl-C lands
        interrupt()

    monkeypatch.setattr(Sandbox, "stop", stop)
    assert _main("check", "--sandbox") == 130
    out, err = capsys.readouterr()
    _one_interrupted_line(err)
    assert out == ""


def test_ctrl_c_during_invoke_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"items": [{"server_id": WEB1, "key": "lease-owner"}]}))
    monkeypatch.setattr(Runtime, "invoke", _Interrupt())
    assert _main("invoke", str(event), "--sandbox") == 130
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    # The function's log lines (invoke sends them to stderr), then one line.
    assert err.strip().splitlines()[-1] == "error: interrupted"


def test_ctrl_c_during_demo_or_while_the_sandbox_command_starts_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import handler.demo
    import handler.sandbox

    monkeypatch.setattr(handler.demo, "run_demo", _Interrupt())
    assert _main("demo") == 130
    _one_interrupted_line(capsys.readouterr().err)
    monkeypatch.setattr(handler.sandbox, "serve_forever", _Interrupt())
    assert _main("sandbox", "--port", "0") == 130
    _one_interrupted_line(capsys.readouterr().err)


def test_ctrl_c_while_cleanup_starts_its_sandbox_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Sandbox, "start", _Interrupt(Sandbox.start))
    code = _main("cleanup", "--pattern", "lease-*", "--sandbox", "--progress", "none")
    assert code == 130
    err = capsys.readouterr().err
    assert "sandbox at" not in err
    _one_interrupted_line(err)


def test_ctrl_c_while_cleanup_closes_its_runtime_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_close = Runtime.close
    interrupt = _Interrupt()

    def close(self: Runtime) -> None:
        real_close(self)
        interrupt()

    monkeypatch.setattr(Runtime, "close", close)
    log = ["--log-file", str(tmp_path / "log.jsonl")]
    code = _main("cleanup", "--pattern", "lease-*", "--sandbox", "--progress", "none", *log)
    assert code == 130
    _one_interrupted_line(capsys.readouterr().err.split("\n", 1)[1])


def test_ctrl_c_while_replay_starts_its_sandbox_keeps_the_file(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = _record(WEB1, "lease-owner")
    dead_letters.write_bytes(original)
    monkeypatch.setattr(Sandbox, "start", _Interrupt(Sandbox.start))
    code = _main("replay", str(dead_letters), "--sandbox", "--progress", "none")
    assert code == 130
    _one_interrupted_line(capsys.readouterr().err)
    assert dead_letters.read_bytes() == original


def test_ctrl_c_while_replay_reads_the_file_is_one_line(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(_record(WEB1, "lease-owner"))
    monkeypatch.setattr(DeadLetterFile, "open", _Interrupt())
    code = _main("replay", str(dead_letters), "--sandbox", "--progress", "none")
    assert code == 130
    _one_interrupted_line(capsys.readouterr().err)


def test_ctrl_c_while_replay_syncs_its_copy_loses_nothing_and_leaves_no_copy(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = _record(WEB1, "lease-owner") + _record(WEB1, "gone")
    dead_letters.write_bytes(original)
    configure_for(monkeypatch, sandbox, dead_letters)
    monkeypatch.setattr(os, "fsync", _Interrupt(os.fsync))
    assert _main("replay", str(dead_letters), "--progress", "none") == 130
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert "interrupted after 0 of 1 chunk(s)" in out
    assert dead_letters.read_bytes() == original  # the rename never happened
    assert sorted(p.name for p in dead_letters.parent.iterdir()) == [dead_letters.name]


# --- control characters from answers --------------------------------------------------------


def test_printable_escapes_what_a_terminal_acts_on_and_keeps_the_rest() -> None:
    text = printable(HOSTILE + " é ü 中 \ud800")
    assert not CONTROL.search(text) and "\n" not in text and "\u202e" not in text
    assert text == (
        "boom \\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x7f\\x0d\\u202egnp.exe é ü 中 \\ud800"
    )
    text.encode("utf-8")  # the lone surrogate is escaped: nothing fails to print


def test_printable_json_is_the_same_json_without_control_characters() -> None:
    value = {"detail": HOSTILE, "key": "k\x85\u2028", "lone": "\udc80"}
    text = printable_json(json.dumps(value, indent=2, ensure_ascii=False))
    assert not CONTROL.search(text) and "\u2028" not in text and "\u202e" not in text
    assert json.loads(text) == value
    text.encode("utf-8")


def test_common_out_and_error_escape_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    common.out(f"line {HOSTILE}\nforged: line")
    common.error(f"failed: {HOSTILE}")
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and err.count("\n") == 1  # one line each, nothing forged
    assert not CONTROL.search(out + err) and "\u202e" not in out + err
    assert err.startswith("error: failed: boom \\x1b]0;pwned")


def test_table_cells_are_escaped_and_the_columns_still_line_up() -> None:
    lines = render(["KEY", "WHAT"], [["k\x1b[2J", "x"], ["plain", "y"]])
    assert lines == ["KEY       WHAT", "k\\x1b[2J  x", "plain     y"]


def test_check_prints_its_line_without_control_characters(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import handler.commands.check

    configure_for(monkeypatch, sandbox, dead_letters)
    line = f"unexpected answer: HTTP 500 ({HOSTILE})"
    monkeypatch.setattr(
        handler.commands.check, "run_check", lambda config: Diagnosis(Verdict.API, line)
    )
    assert cli.main(["check"]) == Diagnosis(Verdict.API, line).exit_code
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and not CONTROL.search(err)
    assert "HTTP 500 (boom \\x1b]0;pwned\\x07" in err


def test_invoke_prints_the_same_json_without_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"items": [{"server_id": WEB1, "key": "lease-owner"}]}))
    response = {"summary": {"detail": HOSTILE}, "keys": ["k\x9b2J"]}
    monkeypatch.setattr(Runtime, "invoke", lambda self, event, context: response)
    assert cli.main(["invoke", str(event), "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert not CONTROL.search(out) and "\u202e" not in out
    assert json.loads(out) == response


def test_log_lines_above_the_progress_are_escaped_and_stay_json() -> None:
    stream = StringIO()
    logs = ProgressDisplay("none", stream).log_stream()
    line = json.dumps({"message": "dead letter", "detail": HOSTILE}, ensure_ascii=False)
    logs.write(line + "\n")
    written = stream.getvalue()
    assert written.endswith("\n") and written.count("\n") == 1
    assert not CONTROL.search(written)
    assert json.loads(written)["detail"] == HOSTILE


# --- the dead-letter file: replay and the function's FileSink --------------------------------


def _write(sink: FileSink, records: list[dict[str, Any]], wait_s: float | None = None) -> None:
    async def go() -> None:
        deadline = None if wait_s is None else asyncio.get_running_loop().time() + wait_s
        await sink.write(records, deadline=deadline)

    asyncio.run(go())


def _records(*keys: str) -> list[dict[str, Any]]:
    return [json.loads(_record(WEB1, key)) for key in keys]


def test_file_sink_appends_to_the_file_that_replaced_the_one_it_opened(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letters.write_bytes(b"old\n")
    sink = FileSink(dead_letters)
    real_lock = deadletter._lock_shared
    calls: list[int] = []

    def lock(fd: int, until: float) -> None:
        if not calls:  # a replay renamed its copy into place while this append waited
            copy = dead_letters.with_name("copy")
            copy.write_bytes(b"kept\n")
            copy.replace(dead_letters)
        calls.append(fd)
        real_lock(fd, until)

    monkeypatch.setattr(deadletter, "_lock_shared", lock)
    _write(sink, _records("lease-owner"))
    assert len(calls) == 2  # opened again
    assert dead_letters.read_bytes() == b"kept\n" + _record(WEB1, "lease-owner")


def test_file_sink_waits_for_the_lock_only_as_long_as_the_invocation_may(
    dead_letters: Path,
) -> None:
    fcntl = pytest.importorskip("fcntl")
    dead_letters.write_bytes(b"")
    sink = FileSink(dead_letters)
    with dead_letters.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a replay rewriting it, stuck
        started = time.monotonic()
        with pytest.raises(DeadLetterError, match="for too long"):
            _write(sink, _records("lease-owner"), wait_s=0.1)
        assert time.monotonic() - started < 1.0
    assert dead_letters.read_bytes() == b""  # nothing half-written: the platform retries


def test_a_file_sink_append_waiting_on_the_rewrite_lands_in_the_new_file(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fcntl")
    dead_letters.write_bytes(_record(WEB1, "gone-1") + _record(WEB1, "gone-2"))
    configure_for(monkeypatch, sandbox, dead_letters)
    original = dead_letters.stat().st_ino
    sink = FileSink(dead_letters)
    newcomer = _records("lease-owner")
    real_lock, real_fsync = deadletter._lock_shared, os.fsync
    waiting = threading.Event()
    locks: list[int] = []
    appenders: list[threading.Thread] = []

    def lock(fd: int, until: float) -> None:
        locks.append(os.fstat(fd).st_ino)
        waiting.set()
        real_lock(fd, until)

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino not in (original, *locks) and not appenders:
            # The function appends while replay syncs its copy, holding the file's lock.
            thread = threading.Thread(target=_write, args=(sink, newcomer))
            appenders.append(thread)
            thread.start()
            assert waiting.wait(5)
            time.sleep(0.05)  # it is waiting on the lock now
        real_fsync(fd)

    monkeypatch.setattr(deadletter, "_lock_shared", lock)
    monkeypatch.setattr(os, "fsync", fsync)
    assert cli.main(["replay", str(dead_letters), "--progress", "none"]) == 0
    appenders[0].join(5)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert locks[0] == original and len(locks) == 2  # it waited, then opened the new file
    assert dead_letters.read_bytes() == _record(WEB1, "lease-owner")


def test_a_full_disk_during_the_rewrite_is_one_line_and_the_file_is_kept(
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = _record(WEB1, "gone-1") + _record(WEB1, "gone-2")
    dead_letters.write_bytes(original)
    configure_for(monkeypatch, sandbox, dead_letters)

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    assert cli.main(["replay", str(dead_letters), "--progress", "none"]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot rewrite {dead_letters}: No space left on device: stopped, nothing "
        "rewritten (the records not settled are still in it)\n"
    )
    assert dead_letters.read_bytes() == original
    assert sorted(p.name for p in dead_letters.parent.iterdir()) == [dead_letters.name]


def test_replay_of_a_device_or_through_a_dangling_or_looping_link_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def replay(path: Path) -> str:
        code = cli.main(["replay", str(path), "--dry-run", "--sandbox", "--progress", "none"])
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        return err

    assert "is not a regular file" in replay(Path(os.devnull))
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere.jsonl")
    assert replay(dangling) == f"error: no dead-letter file {dangling}\n"
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    assert str(loop) in replay(loop)


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def test_replay_names_the_file_as_it_was_given(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "real.jsonl").write_bytes(_record(WEB1, "gone-1"))
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    configure_for(monkeypatch, sandbox, tmp_path / "real.jsonl")
    with _cwd(tmp_path):
        assert cli.main(["replay", "link.jsonl", "--progress", "none"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("; link.jsonl now holds 0 line(s)")
    assert (tmp_path / "link.jsonl").is_symlink()
