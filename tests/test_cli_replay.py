"""`ecs-metadata-janitor replay` (issue 9 §4): dead letters re-driven, the file rewritten with only
what is still unsettled, atomically, so that an interrupted replay loses nothing."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handler import cli
from handler.commands.replay import DeadLetterFile, directory_lock, read_lines
from handler.deadletter import make_record
from handler.outcomes import Outcome, Pair, Result
from handler.runtime import Runtime
from handler.sandbox import Sandbox
from tests.conftest import configure_for, metadata_of
from tests.sandbox._demo import DB1, MISSING, PROJECT, WEB1, WEB2

GARBAGE = b"this line is not a record\n"
WHEN = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def _record(server: str, key: str, reason: str = "retries_exhausted", n: int = 1) -> bytes:
    result = Result(Outcome(reason), pair=Pair(PROJECT, server, key), detail="x", attempts=n)
    record = make_record(
        result, source_kind="sqs", source_id=f"m-{n}", invocation_id="inv-1", now=WHEN
    )
    return (json.dumps(record) + "\n").encode("ascii")


def _raw_record() -> bytes:
    result = Result(Outcome.INVALID, raw='{"server_id": "nope"}', detail="server_id: bad")
    record = make_record(
        result, source_kind="sqs", source_id="m-9", invocation_id="inv-1", now=WHEN
    )
    return (json.dumps(record) + "\n").encode("ascii")


def _deletes(sb: Sandbox) -> Counter[str]:
    return Counter(r["path"] for r in sb.requests() if r["method"] == "DELETE")


@pytest.fixture
def replaying(
    sandbox: Sandbox, dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., int]:
    """Run `replay` on the dead-letter file against the test's sandbox."""
    # DEAD_LETTER_URL is the very file replayed: replay must never append to it.
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")

    def run(*extra: str) -> int:
        return cli.main(["replay", str(dead_letters), "--progress", "none", *extra])

    return run


# The file of the first tests: what settles (A, F, G) goes, the rest stays, bytes unchanged.
A = _record(WEB1, "lease-owner")
B = GARBAGE
C = _record(WEB2, "lease-owner", "conflict")  # WEB2 is locked: still a conflict
D = _record(MISSING, "k")  # no such server: server_not_found
E = _raw_record()  # no pair: never re-sent
F = _record(WEB1, "lease-owner", "deadline", 2)  # the same pair as A
G = _record(DB1, "nothing-here")  # absent: settled


def test_replay_settles_some_and_keeps_the_others_byte_for_byte(
    replaying: Callable[..., int],
    sandbox: Sandbox,
    dead_letters: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead_letters.write_bytes(A + B + C + D + E + F + G)
    dead_letters.chmod(0o640)
    assert replaying() == 1  # something stays unsettled
    assert dead_letters.read_bytes() == B + C + D + E
    assert stat.S_IMODE(dead_letters.stat().st_mode) == 0o640
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    # A and F name one pair: it is sent once.
    assert _deletes(sandbox)[f"/v2.1/{PROJECT}/servers/{WEB1}/metadata/lease-owner"] == 1
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:4]) for line in out.splitlines()}
    assert (WEB1, "lease-owner", "deadline,retries_exhausted", "x2") in rows
    assert (WEB2, "lease-owner", "conflict", "conflict") in rows
    assert (MISSING, "k", "retries_exhausted", "server_not_found") in rows
    assert (DB1, "nothing-here", "retries_exhausted", "absent") in rows
    assert "line 2: not JSON: kept as it is" in out
    assert "line 5: a record without a pair" in out
    assert (
        "replayed 4 pair(s) in 5 record(s): 2 settled (3 record(s) removed), 2 still unsettled "
        "(kept); kept as they are: 1 unreadable line(s), 1 record(s) without a pair"
    ) in out
    assert out.rstrip().endswith("now holds 4 line(s)")
    # Nothing new was appended to the file it reads, though DEAD_LETTER_URL names it.
    assert dead_letters.read_bytes().count(b"\n") == 4


def test_a_dry_run_sends_nothing_and_leaves_the_file_byte_identical(
    replaying: Callable[..., int],
    sandbox: Sandbox,
    dead_letters: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = A + B + C + D + E + F + G
    dead_letters.write_bytes(original)
    before = dead_letters.stat()
    assert replaying("--dry-run") == 0
    assert dead_letters.read_bytes() == original
    after = dead_letters.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sandbox.requests() == []
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"{WEB1} "))
    assert row.split()[2:] == [
        "deadline,retries_exhausted", "x2", "dry_run", "would", "be", "sent", "again"
    ]  # fmt: skip
    assert (
        "dry run: 4 pair(s) in 5 record(s) would be replayed; kept as they are: 1 unreadable "
        f"line(s), 1 record(s) without a pair; nothing was sent and {dead_letters} is untouched"
    ) in out


def _absent_records(count: int) -> list[bytes]:
    return [_record(WEB1, f"gone-{n}", n=n) for n in range(count)]


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, call: int, *, after: bool) -> list[int]:
    """Make Runtime.run raise KeyboardInterrupt on its `call`-th call (before or after it ran)."""
    real = Runtime.run
    calls: list[int] = []

    def run(self: Runtime, event: Any, context: Any) -> Any:
        calls.append(len(event["items"]))
        if len(calls) == call and not after:
            raise KeyboardInterrupt
        done = real(self, event, context)
        if len(calls) == call:
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(Runtime, "run", run)
    return calls


@pytest.mark.parametrize("after", [False, True], ids=["before-the-chunk", "after-its-deletes"])
def test_an_interrupted_replay_loses_nothing_and_resumes(
    replaying: Callable[..., int],
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    after: bool,
) -> None:
    records = _absent_records(7)
    dead_letters.write_bytes(records[0] + GARBAGE + b"".join(records[1:]))
    calls = _interrupt_on_call(monkeypatch, 2, after=after)
    assert replaying("--chunk-size", "2") == 130
    assert calls == [2, 2]
    out = capsys.readouterr().out
    assert "interrupted after 1 of 4 chunk(s)" in out and "run replay again" in out
    # The first chunk settled and is gone; every other record is there, once, unchanged.
    lines = dead_letters.read_bytes().splitlines(keepends=True)
    assert lines == [GARBAGE, *records[2:]]
    monkeypatch.undo()  # Runtime.run as it is; the environment too: configure again
    configure_for(monkeypatch, sandbox, dead_letters, MAX_ATTEMPTS="2")
    assert replaying("--chunk-size", "2") == 1  # the garbage line stays
    assert dead_letters.read_bytes() == GARBAGE
    sent = _deletes(sandbox)
    for n in range(7):
        path = f"/v2.1/{PROJECT}/servers/{WEB1}/metadata/gone-{n}"
        # Each pair went once; those of the chunk cut off after its deletes went again.
        assert sent[path] == (2 if after and n in (2, 3) else 1), path


def test_lines_appended_while_replaying_are_kept(
    replaying: Callable[..., int],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = _absent_records(4)
    dead_letters.write_bytes(b"".join(records))
    newcomer = _record(WEB2, "lease-expires", "conflict", n=99)
    real = Runtime.run

    def run(self: Runtime, event: Any, context: Any) -> Any:
        with dead_letters.open("ab") as handle:  # the function writing a new dead letter
            handle.write(newcomer)
        return real(self, event, context)

    monkeypatch.setattr(Runtime, "run", run)
    assert replaying("--chunk-size", "2") == 0
    assert dead_letters.read_bytes() == newcomer + newcomer
    assert "2 line(s) appended meanwhile" in capsys.readouterr().out


def test_a_file_replaced_during_the_replay_is_left_alone(
    replaying: Callable[..., int],
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead_letters.write_bytes(b"".join(_absent_records(2)))
    rotated = b"a new file\n"
    real = Runtime.run

    def run(self: Runtime, event: Any, context: Any) -> Any:
        elsewhere = dead_letters.with_name("rotated")
        elsewhere.write_bytes(rotated)
        elsewhere.replace(dead_letters)  # logrotate, or someone else
        return real(self, event, context)

    monkeypatch.setattr(Runtime, "run", run)
    assert replaying() == 1
    assert dead_letters.read_bytes() == rotated
    assert "was replaced or truncated during the replay" in capsys.readouterr().err


def test_an_empty_or_pairless_file_has_nothing_to_replay(
    replaying: Callable[..., int], dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(b"")
    assert replaying() == 0
    dead_letters.write_bytes(GARBAGE + _raw_record())
    assert replaying() == 1
    out = capsys.readouterr().out
    assert "nothing to replay" in out and "2 line(s) kept" in out
    assert dead_letters.read_bytes() == GARBAGE + _raw_record()


def test_a_missing_file_is_one_line_and_exit_2(
    replaying: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", str(tmp_path / "nope.jsonl"), "--progress", "none"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: no dead-letter file {tmp_path / 'nope.jsonl'}\n"
    assert cli.main(["replay", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_replay_needs_an_endpoint_or_the_sandbox_flag(
    dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(_record(WEB1, "lease-owner"))
    assert cli.main(["replay", str(dead_letters)]) == 2
    assert "pass --sandbox" in capsys.readouterr().err
    assert dead_letters.read_bytes() == _record(WEB1, "lease-owner")


def test_replay_against_the_in_process_sandbox(
    dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(_record(WEB1, "lease-owner") + _record(MISSING, "k"))
    assert cli.main(["replay", str(dead_letters), "--sandbox", "--progress", "none"]) == 1
    assert dead_letters.read_bytes() == _record(MISSING, "k")
    assert "server_not_found" in capsys.readouterr().out


def test_a_second_replay_in_the_same_directory_is_refused(
    replaying: Callable[..., int], dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(_record(WEB1, "lease-owner"))
    with directory_lock(dead_letters):
        assert replaying() == 2
    assert "another replay is running" in capsys.readouterr().err
    assert dead_letters.read_bytes() == _record(WEB1, "lease-owner")


def test_progress_lines_count_the_pairs(
    replaying: Callable[..., int], dead_letters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters.write_bytes(b"".join(_absent_records(3)))
    assert cli.main(["replay", str(dead_letters), "--progress", "lines"]) == 0
    assert "… settled 3/3 pairs" in capsys.readouterr().err


def test_lines_are_read_whole_and_blank_ones_dropped(tmp_path: Path) -> None:
    lines = read_lines(b"\n" + GARBAGE + b"  \n" + _record(WEB1, "k").rstrip(b"\n"))
    assert [line.number for line in lines] == [1, 2, 3, 4]
    assert [line.blank for line in lines] == [True, False, True, False]
    assert lines[3].pair == Pair(PROJECT, WEB1, "k") and lines[3].reason == "retries_exhausted"
    path = tmp_path / "dl.jsonl"
    path.write_bytes(b"\n" + GARBAGE + b"  \n" + _record(WEB1, "k").rstrip(b"\n"))
    file = DeadLetterFile.open(path)
    file.rewrite()  # nothing settled: blank lines go, the last line gains its newline
    assert path.read_bytes() == GARBAGE + _record(WEB1, "k")
    assert not list(tmp_path.glob(".dl.jsonl.*"))  # no temporary file left


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"project_id": PROJECT, "server_id": "not-a-uuid", "key": "k"}, "not a valid pair"),
        ({"project_id": PROJECT, "server_id": WEB1, "key": "a/b"}, "not a valid pair"),
        ({"server_id": WEB1, "key": "k"}, "no project_id"),
        ("a string", "not an object"),
    ],
)
def test_records_whose_item_cannot_be_sent_are_kept(item: Any, problem: str) -> None:
    record = json.loads(_record(WEB1, "k"))
    record["item"] = item
    [line] = read_lines(json.dumps(record).encode() + b"\n")
    assert line.record and line.pair is None and problem in (line.problem or "")


def test_a_dry_run_configuration_settles_nothing(
    replaying: Callable[..., int],
    sandbox: Sandbox,
    dead_letters: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DRY_RUN=true answers every pair `dry_run`: that is no reason to drop a dead letter.
    monkeypatch.setenv("DRY_RUN", "true")
    dead_letters.write_bytes(A + G)
    assert replaying() == 1
    assert dead_letters.read_bytes() == A + G
    assert _deletes(sandbox) == Counter()
