"""The SMN client (handler/queues/smn.py): URNs, endpoints, publishing against the sandbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Generator
from typing import Any

import httpx
import pytest

from handler.ecs.signing import (
    AkSkAuth,
    Credentials,
    CredentialsUnavailableError,
    StaticCredentials,
    TokenAuth,
)
from handler.queues.smn import (
    ATTEMPTS,
    MAX_MESSAGE_BYTES,
    SmnClient,
    SmnTopic,
    is_smn_url,
    parse_topic,
)
from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT

TOPIC = "janitor-dlq-topic"
URN = f"urn:smn:cn-north-4:{DEMO_PROJECT}:janitor-dlq"


def test_a_topic_urn_gives_the_project_region_and_public_endpoint() -> None:
    topic = parse_topic(f"smn://{URN}")
    assert topic == SmnTopic(
        urn=URN,
        region="cn-north-4",
        project_id=DEMO_PROJECT,
        name="janitor-dlq",
        endpoint="https://smn.cn-north-4.myhuaweicloud.com",
    )
    assert topic.publish_url == (
        f"https://smn.cn-north-4.myhuaweicloud.com/v2/{DEMO_PROJECT}/notifications/topics/"
        f"{URN}/publish"
    )
    assert topic.description == "smn cn-north-4/janitor-dlq"  # no project id
    given = parse_topic(f"SMN://{URN}", endpoint="http://127.0.0.1:9/")
    assert given.endpoint == "http://127.0.0.1:9"
    assert is_smn_url(f"smn://{URN}") and not is_smn_url("https://smn.example.com/x")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("smn://janitor-dlq", r"an SMN topic is smn://urn:smn:<region>:<project id>:<topic"),
        (f"smn://urn:sns:cn-north-4:{DEMO_PROJECT}:t", "<topic name>, e.g."),
        (f"smn://urn:smn:cn-north-4:{DEMO_PROJECT}:t:extra", "<topic name>, e.g."),
        (f"smn://urn:smn:cn north:{DEMO_PROJECT}:t", "the region must be"),
        ("smn://urn:smn:cn-north-4:proj/ect:t", "the project id must be"),
        (f"smn://urn:smn:cn-north-4:{DEMO_PROJECT}:-t", "the topic name must be"),
        (f"smn://urn:smn:cn-north-4:{DEMO_PROJECT}:" + "t" * 256, "the topic name must be"),
        (f"smn://urn:smn:cn-north-4:{DEMO_PROJECT}:", "the topic name must be"),
    ],
)
def test_a_urn_that_cannot_be_used_says_why_in_one_line(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        parse_topic(url)
    assert "\n" not in str(raised.value)


# --- against the sandbox ------------------------------------------------------------------


def _aksk(sb: Sandbox, sk: str | None = None) -> httpx.Auth:
    creds = sb.credentials
    return AkSkAuth(StaticCredentials(Credentials(creds["ak"], sk or creds["sk"])))


def _publish(
    sb: Sandbox,
    messages: list[str],
    *,
    urn: str | None = None,
    auth: httpx.Auth | None = None,
    subjects: list[str | None] | None = None,
    ttl: int | None = None,
    concurrency: int = 4,
) -> dict[int, str]:
    topic = parse_topic(f"smn://{urn or sb.topic_urn(TOPIC)}", endpoint=sb.url)

    async def main() -> dict[int, str]:
        async with httpx.AsyncClient() as http:
            client = SmnClient(
                topic,
                http=http,
                auth=auth or _aksk(sb),
                concurrency=concurrency,
                time_to_live_s=ttl,
            )
            deadline = asyncio.get_running_loop().time() + 10.0
            return await client.publish(messages, deadline=deadline, subjects=subjects)

    return asyncio.run(main())


def _published(sb: Sandbox, name: str = TOPIC) -> list[dict[str, Any]]:
    topic = next(t for t in sb.state()["topics"] if t["name"] == name)
    return list(topic["messages"])


def _smn_requests(sb: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sb.requests() if "/notifications/topics/" in r["path"]]


def test_published_messages_are_recorded_in_the_topic(sandbox: Sandbox) -> None:
    failed = _publish(
        sandbox, ["one", '[{"a": 1}]', "three"], subjects=["s1", None, "s3"], ttl=604_800
    )
    assert failed == {}
    published = _published(sandbox)
    assert sorted(m["message"] for m in published) == sorted(["one", '[{"a": 1}]', "three"])
    by_message = {m["message"]: m for m in published}
    assert by_message["one"]["subject"] == "s1" and by_message['[{"a": 1}]']["subject"] is None
    assert all(m["time_to_live"] == "604800" and m["auth"] == "aksk" for m in published)


def test_an_iam_token_publishes_too(sandbox: Sandbox) -> None:
    token = sandbox.credentials["token"]
    assert _publish(sandbox, ["by token"], auth=TokenAuth(lambda: token)) == {}
    assert [m["auth"] for m in _published(sandbox)] == ["token"]


def test_a_wrong_key_is_a_failure_of_every_message_and_stops_the_sending(
    sandbox: Sandbox,
) -> None:
    failed = _publish(
        sandbox, [f"m{i}" for i in range(20)], auth=_aksk(sandbox, "not-the-key"), concurrency=1
    )
    assert sorted(failed) == list(range(20))
    assert all(why.startswith("HTTP 401") for why in failed.values())
    # The signer re-signs once after a 401 (fresh credentials), then the topic is given up.
    assert len(_smn_requests(sandbox)) == 2
    assert _published(sandbox) == []


def test_throttling_is_retried_until_the_message_is_published(sandbox: Sandbox) -> None:
    sandbox.set_queue_faults({"seed": 1, "smn_throttle": 0.3})
    messages = [f"m{i}" for i in range(12)]
    assert _publish(sandbox, messages, concurrency=1) == {}
    assert sorted(m["message"] for m in _published(sandbox)) == sorted(messages)
    statuses = [r["status"] for r in _smn_requests(sandbox)]
    assert 429 in statuses and statuses.count(200) == 12


def test_a_topic_that_always_throttles_is_reported_after_the_attempts(sandbox: Sandbox) -> None:
    sandbox.set_queue_faults({"seed": 1, "smn_throttle": 1.0})
    failed = _publish(sandbox, ["m"])
    assert list(failed) == [0] and failed[0].startswith("HTTP 429")
    assert len(_smn_requests(sandbox)) == ATTEMPTS


def test_an_unknown_topic_is_a_failure_reported_not_retried(sandbox: Sandbox) -> None:
    urn = f"urn:smn:sandbox-1:{DEMO_PROJECT}:no-such-topic"
    failed = _publish(sandbox, ["a", "b", "c"], urn=urn, concurrency=1)
    assert failed == dict.fromkeys(range(3), "HTTP 404 SMN.0006 Topic not found.")
    assert len(_smn_requests(sandbox)) == 1  # the others are not sent to a missing topic


def test_a_message_smn_would_refuse_for_its_size_is_reported_not_sent(sandbox: Sandbox) -> None:
    failed = _publish(sandbox, ["", "x" * (MAX_MESSAGE_BYTES + 1), "fits"])
    assert sorted(failed) == [0, 1] and "as SMN requires" in failed[1]
    assert [m["message"] for m in _published(sandbox)] == ["fits"]


# --- error paths, scripted ------------------------------------------------------------------


def _scripted(
    *steps: httpx.Response | type[httpx.TransportError], messages: int = 1
) -> tuple[dict[int, str], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    script = list(steps)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script.pop(0) if script else httpx.Response(200, json={"message_id": "m"})
        if isinstance(step, type):
            raise step("scripted", request=request)
        return step

    async def main() -> dict[int, str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            client = SmnClient(parse_topic(f"smn://{URN}"), http=http, auth=httpx.Auth())
            deadline = asyncio.get_running_loop().time() + 5.0
            return await client.publish([f"m{i}" for i in range(messages)], deadline=deadline)

    return asyncio.run(main()), seen


def test_5xx_and_network_errors_are_retried() -> None:
    failed, seen = _scripted(httpx.Response(503), httpx.ConnectError, httpx.ReadTimeout)
    assert failed == {} and len(seen) == 4
    request = seen[0]
    assert request.url.path == f"/v2/{DEMO_PROJECT}/notifications/topics/{URN}/publish"
    assert request.headers["x-project-id"] == DEMO_PROJECT
    assert json.loads(request.content) == {"message": "m0"}


def test_what_still_fails_is_reported_with_its_last_reason() -> None:
    busy = httpx.Response(500, json={"code": "SMN.0001", "message": "Internal error."})
    failed, seen = _scripted(*[busy] * ATTEMPTS)
    assert failed == {0: "HTTP 500 SMN.0001 Internal error."} and len(seen) == ATTEMPTS


def test_a_gateway_refusal_names_its_error_code() -> None:
    refused = httpx.Response(403, json={"error_code": "APIGW.0305", "error_msg": "No permission"})
    failed, seen = _scripted(refused, messages=3)
    assert set(failed.values()) == {"HTTP 403 APIGW.0305 No permission"} and len(failed) == 3
    assert len(seen) <= 3  # in flight when the refusal came, at most; none sent after it


def test_a_bad_request_fails_that_message_only() -> None:
    bad = httpx.Response(400, json={"code": "SMN.0024", "message": "Parameter: x is invalid."})
    failed, seen = _scripted(bad, messages=3)
    assert list(failed) == [0] and len(seen) == 3


def test_no_time_left_is_a_failure_not_a_hang() -> None:
    async def main() -> dict[int, str]:
        never: Callable[[httpx.Request], httpx.Response] = lambda _: httpx.Response(200)  # noqa: E731
        async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as http:
            client = SmnClient(parse_topic(f"smn://{URN}"), http=http, auth=httpx.Auth())
            deadline = asyncio.get_running_loop().time() - 1.0
            return await client.publish(["late"], deadline=deadline)

    failed = asyncio.run(main())
    assert list(failed) == [0] and "deadline" in failed[0]


class _NoCredentials(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise CredentialsUnavailableError("no credentials: set HUAWEICLOUD_SDK_AK …")
        yield request  # pragma: no cover - a generator that never sends


def test_no_credentials_to_sign_with_is_a_failure_of_every_message() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async def main() -> dict[int, str]:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(transport=transport) as http:
            client = SmnClient(parse_topic(f"smn://{URN}"), http=http, auth=_NoCredentials())
            return await client.publish(["a", "b", "c", "d", "e", "f"], deadline=None)

    failed = asyncio.run(main())
    assert sorted(failed) == list(range(6)) and not sent
    assert all(why.startswith("no credentials") for why in failed.values())
