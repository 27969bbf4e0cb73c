from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from handler import cli
from tests.conftest import EVENTS


def test_invoke_runs_the_sandbox_when_no_endpoint_is_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEAD_LETTER_URL", str(tmp_path / "dl.jsonl"))
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    assert cli.main(["invoke", str(EVENTS / "sqs-batch.json")]) == 0
    captured = capsys.readouterr()
    assert "running against an in-process sandbox" in captured.err
    response = json.loads(captured.out)  # stdout is the response alone; logs went to stderr
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        "9c5d3c3e-0002-4a5b-8c6d-7e8f9a0b1c2d"
    ]


def test_invoke_reports_a_missing_file_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match=r"error: no event file nope\.json"):
        cli.main(["invoke", "nope.json"])


def test_invoke_reports_a_bad_json_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SystemExit, match="is not JSON"):
        cli.main(["invoke", str(bad)])


def test_invoke_of_an_unknown_event_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "e.json"
    event.write_text('{"detail-type": "Scheduled Event"}')
    assert cli.main(["invoke", str(event), "--sandbox"]) == 1
    assert "unrecognised event" in capsys.readouterr().err


def test_invoke_without_sandbox_and_without_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["invoke", str(EVENTS / "direct-invocation.json"), "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "HUAWEICLOUD_SDK_PROJECT_ID" in err
    assert "Traceback" not in err


def test_demo_walks_through_the_events(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["demo", "--events", str(EVENTS), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== sqs-fifo-batch.json" in out
    assert "batchItemFailures" in out
    assert "server_not_found" in out
    assert "== cleanup, dry run" in out and "== cleanup:" in out
    if importlib.util.find_spec("aws_sdk_signers") is not None:  # SQS: Python 3.12
        assert "sent 2 of 2 work item(s) to sqs 127.0.0.1/janitor-work" in out
        assert "dead letter in janitor-dlq: 00000000…/lease-owner server_not_found" in out
    letters = [
        json.loads(line) for line in (tmp_path / "dead-letters.jsonl").read_text().splitlines()
    ]
    # 6 from the sample events; then the cleanup's locked web-2 (2 keys), and build-1's key if
    # it is still building (it becomes active 2 s after the sandbox starts).
    from_cleanup = [
        letter
        for letter in letters
        if letter["reason"] == "conflict" and letter["source"]["id"] is None
    ]
    assert len(letters) - len(from_cleanup) == 6
    assert {letter["item"]["server_id"][:8] for letter in from_cleanup} <= {"3f1c2b9e", "9b8a7c6d"}
    assert 2 <= len(from_cleanup) <= 3


def test_invoke_with_a_token_only_seed_uses_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import demo_seed

    seed = demo_seed()
    seed["credentials"] = {"ak": None, "sk": None, "security_token": None, "token": "only-token"}
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed))
    event = tmp_path / "e.json"
    event.write_text('{"server_id": "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f", "key": "owner"}')
    monkeypatch.setenv("DEAD_LETTER_URL", str(tmp_path / "dl.jsonl"))
    assert cli.main(["invoke", str(event), "--seed", str(seed_file)]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["results"][0]["outcome"] == "deleted"
