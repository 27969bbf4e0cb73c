"""Dead-letter records (SPEC §7) and the log, file and HTTP sinks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from handler import deadletter, redaction
from handler.deadletter import (
    SCHEMA,
    DeadLetterError,
    FileSink,
    HttpSink,
    LogSink,
    make_record,
    make_sink,
)
from handler.outcomes import Outcome, Pair, Result

PAIR = Pair("0123456789abcdef0123456789abcdef", "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f", "k")
SPEC_KEYS = {
    "schema",
    "item",
    "raw",
    "reason",
    "detail",
    "status",
    "attempts",
    "request_id",
    "source",
    "invocation_id",
    "dead_lettered_at",
}
SECRET = "Dead-Letter-Secret-5e6f7a8b"
NOW = dt.datetime(2026, 11, 27, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _clear_redactor() -> Iterator[None]:
    redaction.reset()
    yield
    redaction.reset()


def _record(result: Result, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("source_kind", "sqs")
    kwargs.setdefault("source_id", "msg-1")
    kwargs.setdefault("invocation_id", "inv-1")
    kwargs.setdefault("now", NOW)
    return make_record(result, **kwargs)


def test_record_has_exactly_the_spec_keys() -> None:
    result = Result(
        Outcome.SERVER_NOT_FOUND,
        pair=PAIR,
        detail="Instance 6a4e could not be found.",
        status=404,
        attempts=1,
        request_id="req-1",
    )
    record = _record(result)
    assert set(record) == SPEC_KEYS
    assert record == {
        "schema": "ecs-metadata-janitor/dead-letter/1",
        "item": {"project_id": PAIR.project_id, "server_id": PAIR.server_id, "key": "k"},
        "raw": None,
        "reason": "server_not_found",
        "detail": "Instance 6a4e could not be found.",
        "status": 404,
        "attempts": 1,
        "request_id": "req-1",
        "source": {"kind": "sqs", "id": "msg-1"},
        "invocation_id": "inv-1",
        "dead_lettered_at": record["dead_lettered_at"],
    }
    assert SCHEMA == "ecs-metadata-janitor/dead-letter/1"
    assert record["dead_lettered_at"].startswith("2026-11-27T10:00:00")
    assert record["dead_lettered_at"].endswith("Z")
    json.dumps(record)


def test_record_time_is_utc() -> None:
    tz = dt.timezone(dt.timedelta(hours=8))
    record = _record(Result(Outcome.REJECTED, pair=PAIR), now=dt.datetime(2026, 1, 1, 8, tzinfo=tz))
    assert record["dead_lettered_at"].startswith("2026-01-01T00:00:00")


def test_record_of_invalid_payload_has_raw_and_no_item() -> None:
    result = Result(Outcome.INVALID, raw='{"server_id": 1}', detail="server_id: bad")
    record = _record(result, source_kind="direct", source_id=None)
    assert set(record) == SPEC_KEYS
    assert record["item"] is None
    assert record["raw"] == '{"server_id": 1}'
    assert record["reason"] == "invalid"
    assert record["source"] == {"kind": "direct", "id": None}


def test_record_redacts_secrets() -> None:
    redaction.set_process_secrets([SECRET])
    result = Result(Outcome.INVALID, raw=f'{{"sk": "{SECRET}"}}', detail=f"bad value {SECRET}")
    record = _record(result, source_id=f"id-{SECRET}")
    text = json.dumps(record)
    assert SECRET not in text
    assert record["detail"] == "bad value ***"


# --- file sink ---------------------------------------------------------------------------------


def _write(sink: Any, records: list[dict[str, Any]]) -> None:
    asyncio.run(sink.write(records))


def test_file_sink_appends_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "dl" / "letters.jsonl"
    sink = FileSink(path)
    first = _record(Result(Outcome.REJECTED, pair=PAIR, detail="one"))
    second = _record(Result(Outcome.FORBIDDEN, pair=PAIR, detail="two\nlines é"))
    _write(sink, [first])
    _write(sink, [second])
    _write(sink, [])
    data = path.read_text(encoding="utf-8")
    assert data.endswith("\n")
    lines = data.splitlines()
    assert len(lines) == 2
    assert [json.loads(line) for line in lines] == [first, second]


def test_file_sink_batch_is_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "letters.jsonl"
    records = [_record(Result(Outcome.REJECTED, pair=PAIR, detail=str(i))) for i in range(3)]
    _write(FileSink(path), records)
    assert [json.loads(line)["detail"] for line in path.read_text().splitlines()] == ["0", "1", "2"]


def test_make_sink_path_and_file_url(tmp_path: Path) -> None:
    plain = make_sink(str(tmp_path / "a.jsonl"))
    url = make_sink((tmp_path / "b c.jsonl").as_uri())
    assert isinstance(plain, FileSink)
    assert isinstance(url, FileSink)
    assert plain.path == tmp_path / "a.jsonl"
    assert url.path == tmp_path / "b c.jsonl"
    record = _record(Result(Outcome.REJECTED, pair=PAIR))
    _write(plain, [record])
    _write(url, [record])
    assert json.loads((tmp_path / "a.jsonl").read_text()) == record
    assert json.loads((tmp_path / "b c.jsonl").read_text()) == record


def test_file_sink_under_a_regular_file_fails_when_built(tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"DEAD_LETTER_URL: .*regular-file is not a directory"):
        FileSink(blocker / "sub" / "letters.jsonl")
    with pytest.raises(ValueError, match="is not a regular file"):
        FileSink(tmp_path)


def test_file_sink_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    sink = FileSink(blocker / "sub" / "letters.jsonl")
    blocker.write_text("not a directory")  # the place became unusable after the cold start
    with pytest.raises(DeadLetterError) as info:
        _write(sink, [_record(Result(Outcome.REJECTED, pair=PAIR))])
    message = str(info.value)
    assert str(blocker / "sub" / "letters.jsonl") in message
    assert "cannot write dead letters" in message
    assert "\n" not in message
    assert "Traceback" not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


# --- HTTP sink ---------------------------------------------------------------------------------


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        waited.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(deadletter.asyncio, "sleep", fake_sleep)
    return waited


def _post(statuses: list[int]) -> tuple[respx.Route, HttpSink]:
    router = respx.Router(assert_all_called=False)
    route = router.post("https://dl.example.com/letters")
    route.side_effect = [httpx.Response(s) for s in statuses]
    sink = make_sink(
        "https://dl.example.com/letters", transport=httpx.MockTransport(router.handler)
    )
    assert isinstance(sink, HttpSink)
    return route, sink


def _http_write(sink: HttpSink, records: list[dict[str, Any]]) -> None:
    async def main() -> None:
        try:
            await sink.write(records)
        finally:
            await sink.aclose()

    asyncio.run(main())


def test_http_sink_posts_json_array(sleeps: list[float]) -> None:
    route, sink = _post([204])
    records = [_record(Result(Outcome.REJECTED, pair=PAIR, detail=str(i))) for i in range(2)]
    _http_write(sink, records)
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == records
    assert sleeps == []


def test_http_sink_retries_503_then_succeeds(sleeps: list[float]) -> None:
    route, sink = _post([503, 200])
    _http_write(sink, [_record(Result(Outcome.REJECTED, pair=PAIR))])
    assert route.call_count == 2
    assert len(sleeps) == 1


def test_http_sink_persistent_500_raises(sleeps: list[float]) -> None:
    route, sink = _post([500, 500, 500, 500])
    with pytest.raises(DeadLetterError) as info:
        _http_write(sink, [_record(Result(Outcome.REJECTED, pair=PAIR))])
    assert route.call_count == 3
    assert "HTTP 500" in str(info.value)
    assert "dl.example.com" in str(info.value)


def test_http_sink_400_raises_immediately(sleeps: list[float]) -> None:
    route, sink = _post([400, 200])
    with pytest.raises(DeadLetterError) as info:
        _http_write(sink, [_record(Result(Outcome.REJECTED, pair=PAIR))])
    assert route.call_count == 1
    assert sleeps == []
    assert "HTTP 400" in str(info.value)


def test_http_sink_network_error_raises_after_retries(sleeps: list[float]) -> None:
    router = respx.Router(assert_all_called=False)
    route = router.post("https://dl.example.com/letters")
    route.side_effect = httpx.ConnectError
    sink = HttpSink("https://dl.example.com/letters", transport=httpx.MockTransport(router.handler))
    with pytest.raises(DeadLetterError) as info:
        _http_write(sink, [_record(Result(Outcome.REJECTED, pair=PAIR))])
    assert route.call_count == 3
    assert "ConnectError" in str(info.value)


def test_http_sink_description_hides_credentials_and_query() -> None:
    sink = make_sink("https://user:pa55word@dl.example.com/letters?token=abcdef")
    assert isinstance(sink, HttpSink)
    assert "pa55word" not in sink.description
    assert "abcdef" not in sink.description
    asyncio.run(sink.aclose())


# --- make_sink ---------------------------------------------------------------------------------


def test_make_sink_log() -> None:
    assert isinstance(make_sink("log"), LogSink)


@pytest.mark.parametrize("url", ["ftp://x", "s3://bucket/key"])
def test_make_sink_unsupported_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="DEAD_LETTER_URL"):
        make_sink(url)
