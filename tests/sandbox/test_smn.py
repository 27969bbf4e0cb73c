"""The sandbox's SMN publish endpoint: authentication, topics, bodies, faults and the state."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from handler.sandbox import DEMO_SEED, Sandbox, SandboxConfigError
from handler.sandbox.seed import parse_seed
from tests.conftest import SandboxFactory
from tests.sandbox._demo import AK, OTHER_PROJECT, PROJECT, SK, TOKEN
from tests.sandbox._sign import sign

TOPIC = "janitor-dlq-topic"
URN = f"urn:smn:sandbox-1:{PROJECT}:{TOPIC}"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def publish_path(urn: str = URN, project: str = PROJECT) -> str:
    return f"/v2/{project}/notifications/topics/{urn}/publish"


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers={"X-Auth-Token": TOKEN}) as http:
        yield http


def published(sandbox: Sandbox, urn: str = URN) -> list[dict[str, Any]]:
    [topic] = [t for t in sandbox.state()["topics"] if t["urn"] == urn]
    messages: list[dict[str, Any]] = topic["messages"]
    return messages


def test_publish_with_a_token(sandbox: Sandbox, client: httpx.Client) -> None:
    assert sandbox.topic_urn(TOPIC) == URN
    response = client.post(publish_path(), json={"subject": "dead letter", "message": "{}"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"request_id", "message_id"}
    assert HEX32.match(body["request_id"]) and HEX32.match(body["message_id"])
    assert response.headers["X-Request-Id"] == body["request_id"]
    [record] = published(sandbox)
    assert record["message_id"] == body["message_id"]
    assert (record["subject"], record["message"], record["auth"]) == ("dead letter", "{}", "token")
    assert sandbox.requests()[-1]["service"] == "smn"


def test_publish_signed_with_ak_sk(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        request = http.build_request(
            "POST",
            publish_path(quote(URN, safe="")),  # the URN percent-encoded: %3A for ':'
            json={"message": "signed"},
            headers={"X-Project-Id": PROJECT},
        )
        response = http.send(sign(request, AK, SK))
        assert response.status_code == 200, response.text
        tampered = http.build_request("POST", publish_path(), json={"message": "signed"})
        sign(tampered, AK, SK)
        forged = http.build_request(
            "POST", publish_path(), json={"message": "forged"}, headers=dict(tampered.headers)
        )
        del forged.headers["Content-Length"]
        forged.headers["Content-Length"] = str(len(forged.content))
        assert http.send(forged).status_code == 401
    assert [(r["message"], r["auth"]) for r in published(sandbox)] == [("signed", "aksk")]


def test_authentication_is_the_gateways(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        response = http.post(publish_path(), json={"message": "x"})
        assert response.status_code == 401
        assert response.json()["error_code"] == "APIGW.0301"
        wrong = http.post(publish_path(), json={"message": "x"}, headers={"X-Auth-Token": "nope"})
        assert wrong.status_code == 401
        other_project = http.post(
            publish_path(),
            json={"message": "x"},
            headers={"X-Auth-Token": TOKEN, "X-Project-Id": OTHER_PROJECT},
        )
        assert other_project.status_code == 401
    assert published(sandbox) == []


def test_unknown_topic_is_smns_404(client: httpx.Client) -> None:
    for path in (
        publish_path(f"urn:smn:sandbox-1:{PROJECT}:no-such-topic"),
        publish_path(f"urn:smn:other-region:{PROJECT}:{TOPIC}"),
        publish_path(URN, project=OTHER_PROJECT),
    ):
        response = client.post(path, json={"message": "x"})
        assert response.status_code == 404
        body = response.json()
        assert (body["code"], body["message"]) == ("SMN.0006", "Topic not found.")
        assert HEX32.match(body["request_id"])
    bad = client.post(publish_path("not-a-urn"), json={"message": "x"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "SMN.0005"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "SMN.0024"),
        (b"[]", "SMN.0024"),
        (json.dumps({"subject": "only a subject"}).encode(), "SMN.0024"),
        (json.dumps({"message": ""}).encode(), "SMN.0024"),
        (json.dumps({"message": 42}).encode(), "SMN.0024"),
        (json.dumps({"message": "x" * 262_145}).encode(), "SMN.0024"),
        (json.dumps({"message": "é" * 131_073}).encode(), "SMN.0024"),  # 262,146 bytes
        (json.dumps({"message": "x", "subject": "s" * 513}).encode(), "SMN.0024"),
        (json.dumps({"message_structure": "{}"}).encode(), "SMN.0021"),
        (json.dumps({"message_structure": "not json"}).encode(), "SMN.0021"),
        (json.dumps({"message": "x", "time_to_live": "0"}).encode(), "SMN.0024"),
        (json.dumps({"message": "x", "time_to_live": "604801"}).encode(), "SMN.0024"),
    ],
)
def test_bad_bodies(sandbox: Sandbox, client: httpx.Client, body: bytes, code: str) -> None:
    response = client.post(
        publish_path(), content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"request_id", "code", "message"}
    assert response.json()["code"] == code
    assert published(sandbox) == []


def test_the_limits_themselves_are_allowed(sandbox: Sandbox, client: httpx.Client) -> None:
    big = "x" * 262_144
    assert (
        client.post(publish_path(), json={"message": big, "subject": "s" * 512}).status_code == 200
    )
    structure = json.dumps({"default": "for everyone", "email": "for mail"})
    response = client.post(
        publish_path(), json={"message_structure": structure, "time_to_live": "3600"}
    )
    assert response.status_code == 200
    records = published(sandbox)
    assert len(records[0]["message"]) == 262_144
    assert (records[1]["message"], records[1]["time_to_live"]) == ("for everyone", "3600")
    assert records[1]["message_structure"] == structure


def test_only_post_publishes(client: httpx.Client) -> None:
    response = client.get(publish_path())
    assert response.status_code == 404
    assert response.json()["error_code"] == "APIGW.0101"


def test_throttle_fault(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.set_queue_faults({"smn_throttle": 1.0})
    response = client.post(publish_path(), json={"message": "x"})
    assert response.status_code == 429
    assert response.json()["error_code"] == "APIGW.0308"
    assert sandbox.requests()[-1]["fault"] == "smn_throttle"
    sandbox.set_queue_faults(None)
    assert client.post(publish_path(), json={"message": "x"}).status_code == 200
    assert len(published(sandbox)) == 1


def test_seeded_topics_and_the_state_round_trip(make_sandbox: SandboxFactory) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["topics"].append(
        {"name": "elsewhere", "project_id": OTHER_PROJECT, "region": "cn-north-4"}
    )
    sandbox = make_sandbox(seed)
    urn = f"urn:smn:cn-north-4:{OTHER_PROJECT}:elsewhere"
    assert sandbox.topic_urn("elsewhere", OTHER_PROJECT) == urn
    with httpx.Client(base_url=sandbox.url, headers={"X-Auth-Token": TOKEN}) as http:
        assert http.post(publish_path(urn, OTHER_PROJECT), json={"message": "m"}).status_code == 200
    state = sandbox.state()
    assert [t["urn"] for t in state["topics"]] == [URN, urn]
    with Sandbox(state) as copy_:
        assert copy_.state()["topics"] == state["topics"]


@pytest.mark.parametrize(
    ("topics", "problem"),
    [
        ([{"name": "t"}, {"name": "t"}], "duplicate topic"),
        ([{"name": "-starts-badly"}], "topics.0.name"),
        ([{"name": "t", "colour": "blue"}], "colour"),
    ],
)
def test_bad_topic_seeds(topics: list[dict[str, Any]], problem: str) -> None:
    seed = copy.deepcopy(DEMO_SEED)
    seed["topics"] = topics
    with pytest.raises(SandboxConfigError, match=problem):
        parse_seed(seed)
    seed["project_id"] = None
    seed["topics"] = [{"name": "t"}]
    with pytest.raises(SandboxConfigError, match="no project_id"):
        parse_seed(seed)
