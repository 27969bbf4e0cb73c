"""The sandbox's Nova and Huawei routes over real loopback HTTP: statuses, bodies, paging."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from handler.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.sandbox._demo import (
    BUILD1,
    DB1,
    MISSING,
    OTHER1,
    OTHER_PROJECT,
    PROJECT,
    TOKEN,
    WEB1,
    WEB2,
    item_path,
)

REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


def metadata_of(sandbox: Sandbox, server_id: str) -> dict[str, str]:
    servers = {s["id"]: s for s in sandbox.state()["servers"]}
    metadata: dict[str, str] = servers[server_id]["metadata"]
    return metadata


def assert_request_id(response: httpx.Response) -> None:
    assert REQUEST_ID.match(response.headers["X-Openstack-Request-Id"])


# --- DELETE: every outcome, in Nova's order -------------------------------------------------


def test_delete_existing_key_answers_204_with_empty_body(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    response = client.delete(item_path(WEB1, "lease-owner"))
    assert response.status_code == 204
    assert response.content == b""
    assert_request_id(response)
    assert "lease-owner" not in metadata_of(sandbox, WEB1)
    assert metadata_of(sandbox, WEB1)["owner"] == "ops"


def test_delete_missing_key_answers_404_metadata_item(client: httpx.Client) -> None:
    response = client.delete(item_path(WEB1, "no-such-key"))
    assert response.status_code == 404
    assert response.json() == {
        "itemNotFound": {"code": 404, "message": "Metadata item was not found"}
    }
    assert_request_id(response)


def test_second_delete_of_same_key_is_404_key_missing(client: httpx.Client) -> None:
    assert client.delete(item_path(DB1, "backup-policy")).status_code == 204
    again = client.delete(item_path(DB1, "backup-policy"))
    assert again.status_code == 404
    assert again.json()["itemNotFound"]["message"] == "Metadata item was not found"


@pytest.mark.parametrize("server_id", [MISSING, OTHER1])
def test_delete_on_missing_or_foreign_server_answers_404_instance(
    sandbox: Sandbox, client: httpx.Client, server_id: str
) -> None:
    response = client.delete(item_path(server_id, "lease-owner"))
    assert response.status_code == 404
    assert response.json() == {
        "itemNotFound": {"code": 404, "message": f"Instance {server_id} could not be found."}
    }
    assert_request_id(response)
    assert metadata_of(sandbox, OTHER1) == {"lease-owner": "batch-2"}


def test_server_is_found_in_its_own_project(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.url, headers={"X-Auth-Token": TOKEN}) as http:
        response = http.delete(item_path(OTHER1, "lease-owner", project=OTHER_PROJECT))
    assert response.status_code == 204


def test_delete_on_locked_server_answers_409(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.delete(item_path(WEB2, "lease-owner"))
    assert response.status_code == 409
    assert response.json() == {
        "conflictingRequest": {"code": 409, "message": f"Instance {WEB2} is locked"}
    }
    assert_request_id(response)
    assert "lease-owner" in metadata_of(sandbox, WEB2)


def test_missing_key_is_reported_before_lock(client: httpx.Client) -> None:
    response = client.delete(item_path(WEB2, "no-such-key"))
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == "Metadata item was not found"


def test_delete_while_building_answers_409_vm_state(client: httpx.Client) -> None:
    response = client.delete(item_path(BUILD1, "lease-owner"))
    assert response.status_code == 409
    assert response.json() == {
        "conflictingRequest": {
            "code": 409,
            "message": (
                f"Cannot 'delete metadata' instance {BUILD1} while it is in vm_state building"
            ),
        }
    }


def test_lock_is_reported_before_vm_state(make_sandbox: SandboxFactory) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"token": TOKEN},
        "servers": [
            {"id": MISSING, "vm_state": "error", "locked": True, "metadata": {"k": "v"}},
        ],
    }
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url, headers={"X-Auth-Token": TOKEN}) as c:
        response = c.delete(item_path(MISSING, "k"))
    assert response.status_code == 409
    assert response.json()["conflictingRequest"]["message"] == f"Instance {MISSING} is locked"


@pytest.mark.parametrize("vm_state", ["active", "stopped", "paused", "suspended"])
def test_delete_allowed_in_writable_vm_states(make_sandbox: SandboxFactory, vm_state: str) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"token": TOKEN},
        "servers": [{"id": MISSING, "vm_state": vm_state, "metadata": {"k": "v"}}],
    }
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url, headers={"X-Auth-Token": TOKEN}) as c:
        assert c.delete(item_path(MISSING, "k")).status_code == 204


def test_transient_state_becomes_active_after_delay(make_sandbox: SandboxFactory) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"token": TOKEN},
        "servers": [
            {"id": MISSING, "vm_state": "building", "active_after_s": 0.3, "metadata": {"k": "v"}}
        ],
    }
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url, headers={"X-Auth-Token": TOKEN}) as c:
        first = c.delete(item_path(MISSING, "k"))
        assert first.status_code == 409
        assert "vm_state building" in first.json()["conflictingRequest"]["message"]
        server = sb.state()["servers"][0]
        assert server["vm_state"] == "building"
        assert 0 < server["active_after_s"] <= 0.3
        time.sleep(0.35)
        assert c.delete(item_path(MISSING, "k")).status_code == 204
        server = sb.state()["servers"][0]
        assert server["vm_state"] == "active"
        assert server["active_after_s"] is None


def test_unlock_after_delay(make_sandbox: SandboxFactory) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"token": TOKEN},
        "servers": [{"id": MISSING, "locked": True, "unlock_after_s": 0.2, "metadata": {"k": "v"}}],
    }
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url, headers={"X-Auth-Token": TOKEN}) as c:
        assert c.delete(item_path(MISSING, "k")).status_code == 409
        time.sleep(0.25)
        assert c.delete(item_path(MISSING, "k")).status_code == 204


def test_upper_case_server_id_finds_the_server(client: httpx.Client) -> None:
    assert client.delete(item_path(WEB1.upper(), "owner")).status_code == 204


# --- the key is one path segment, percent-decoded once ---------------------------------------


@pytest.mark.parametrize(
    ("encoded", "key"),
    [("env%3Astage", "env:stage"), ("team%20name", "team name"), ("lease-owner", "lease-owner")],
)
def test_key_is_percent_decoded_once(
    sandbox: Sandbox, client: httpx.Client, encoded: str, key: str
) -> None:
    assert client.delete(item_path(WEB1, encoded)).status_code == 204
    assert key not in metadata_of(sandbox, WEB1)


def test_double_encoded_key_is_decoded_only_once(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.delete(item_path(WEB1, "env%253Astage"))
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == "Metadata item was not found"
    assert "env:stage" in metadata_of(sandbox, WEB1)


def test_encoded_slash_stays_inside_the_key(make_sandbox: SandboxFactory) -> None:
    seed = {
        "project_id": PROJECT,
        "credentials": {"token": TOKEN},
        "servers": [{"id": MISSING, "metadata": {"a/b": "1", "a": "2", "50%": "3"}}],
    }
    sb = make_sandbox(seed)
    with httpx.Client(base_url=sb.url, headers={"X-Auth-Token": TOKEN}) as c:
        assert c.delete(item_path(MISSING, "a%2Fb")).status_code == 204
        assert c.delete(item_path(MISSING, "50%25")).status_code == 204
        assert sb.state()["servers"][0]["metadata"] == {"a": "2"}
        log = sb.requests()
    assert log[0]["path"].endswith("/metadata/a%2Fb")


def test_unencoded_slash_or_empty_segment_is_no_route(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    for path in (item_path(WEB1, "a/b"), item_path(WEB1, ""), item_path(WEB1, "/owner")):
        response = client.delete(path)
        assert response.status_code == 404
        assert response.json() == {
            "itemNotFound": {"code": 404, "message": "The resource could not be found."}
        }
    assert metadata_of(sandbox, WEB1)["owner"] == "ops"


# --- other metadata routes ----------------------------------------------------------------------


def test_get_metadata_and_one_item(client: httpx.Client) -> None:
    response = client.get(f"/v2.1/{PROJECT}/servers/{DB1}/metadata")
    assert response.status_code == 200
    assert response.json() == {
        "metadata": {
            "lease-owner": "batch-1",
            "lease-expires": "2026-11-27T09:00:00Z",
            "backup-policy": "daily",
        }
    }
    assert_request_id(response)
    item = client.get(item_path(WEB1, "team%20name"))
    assert item.status_code == 200
    assert item.json() == {"meta": {"team name": "core"}}
    missing = client.get(item_path(WEB1, "nope"))
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "Metadata item was not found"
    gone = client.get(f"/v2.1/{PROJECT}/servers/{MISSING}/metadata")
    assert gone.status_code == 404
    assert gone.json()["itemNotFound"]["message"] == f"Instance {MISSING} could not be found."


def test_reading_metadata_of_building_or_locked_server_is_allowed(client: httpx.Client) -> None:
    assert client.get(f"/v2.1/{PROJECT}/servers/{BUILD1}/metadata").status_code == 200
    assert client.get(f"/v2.1/{PROJECT}/servers/{WEB2}/metadata").status_code == 200


def test_put_item_creates_or_replaces_it(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.put(item_path(WEB1, "env%3Astage"), json={"meta": {"env:stage": "green"}})
    assert response.status_code == 200
    assert response.json() == {"meta": {"env:stage": "green"}}
    created = client.put(item_path(WEB1, "new%20key"), json={"meta": {"new key": "1"}})
    assert created.status_code == 200
    metadata = metadata_of(sandbox, WEB1)
    assert metadata["env:stage"] == "green"
    assert metadata["new key"] == "1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"meta": {"other": "x"}}, "Request body and URI mismatch"),
        ({"meta": {"owner": "x", "b": "y"}}, "Request body contains too many items"),
        ({"metadata": {"owner": "x"}}, "Invalid input for field/attribute meta"),
        ({"meta": {"owner": 3}}, "Invalid input for field/attribute meta"),
    ],
)
def test_put_item_rejects_bad_bodies(client: httpx.Client, body: Any, message: str) -> None:
    response = client.put(item_path(WEB1, "owner"), json=body)
    assert response.status_code == 400
    assert response.json()["badRequest"]["code"] == 400
    assert response.json()["badRequest"]["message"].startswith(message)


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(f"/v2.1/{PROJECT}/servers/{WEB1}/metadata", content=b"{not json")
    assert response.status_code == 400
    assert response.json() == {"badRequest": {"code": 400, "message": "Malformed request body"}}


def test_post_metadata_merges_and_returns_everything(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    response = client.post(
        f"/v2.1/{PROJECT}/servers/{DB1}/metadata",
        json={"metadata": {"backup-policy": "weekly", "tier": "gold"}},
    )
    assert response.status_code == 200
    assert response.json() == {
        "metadata": {
            "lease-owner": "batch-1",
            "lease-expires": "2026-11-27T09:00:00Z",
            "backup-policy": "weekly",
            "tier": "gold",
        }
    }
    assert metadata_of(sandbox, DB1)["tier"] == "gold"


def test_put_metadata_replaces_everything(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.put(f"/v2.1/{PROJECT}/servers/{DB1}/metadata", json={"metadata": {"a": "1"}})
    assert response.status_code == 200
    assert response.json() == {"metadata": {"a": "1"}}
    assert metadata_of(sandbox, DB1) == {"a": "1"}


def test_post_metadata_rejects_invalid_key(client: httpx.Client) -> None:
    response = client.post(
        f"/v2.1/{PROJECT}/servers/{DB1}/metadata", json={"metadata": {"a/b": "1"}}
    )
    assert response.status_code == 400
    assert "Invalid input for field/attribute metadata" in response.json()["badRequest"]["message"]


def test_writes_on_locked_or_building_server_are_409(client: httpx.Client) -> None:
    locked = client.post(f"/v2.1/{PROJECT}/servers/{WEB2}/metadata", json={"metadata": {"a": "1"}})
    assert locked.status_code == 409
    assert locked.json()["conflictingRequest"]["message"] == f"Instance {WEB2} is locked"
    building = client.put(item_path(BUILD1, "a"), json={"meta": {"a": "1"}})
    assert building.status_code == 409
    assert building.json()["conflictingRequest"]["message"] == (
        f"Cannot 'update metadata' instance {BUILD1} while it is in vm_state building"
    )


def test_show_server(client: httpx.Client) -> None:
    response = client.get(f"/v2.1/{PROJECT}/servers/{WEB2}")
    assert response.status_code == 200
    server = response.json()["server"]
    assert server["id"] == WEB2
    assert server["name"] == "web-2"
    assert server["locked"] is True
    assert client.get(f"/v2.1/{PROJECT}/servers/{OTHER1}").status_code == 404


def test_wrong_method_is_405_and_unknown_route_is_404(client: httpx.Client) -> None:
    response = client.patch(item_path(WEB1, "owner"))
    assert response.status_code == 405
    assert response.json()["badMethod"]["code"] == 405
    assert_request_id(response)
    unknown = client.get(f"/v2.1/{PROJECT}/flavors")
    assert unknown.status_code == 404
    assert unknown.json()["itemNotFound"]["message"] == "The resource could not be found."


# --- listings and paging --------------------------------------------------------------------


def test_servers_detail_lists_the_project_with_nova_fields(client: httpx.Client) -> None:
    response = client.get(f"/v2.1/{PROJECT}/servers/detail")
    assert response.status_code == 200
    body = response.json()
    assert "servers_links" not in body
    servers = body["servers"]
    assert [s["name"] for s in servers] == ["web-1", "web-2", "build-1", "db-1"]
    build = servers[2]
    assert build["id"] == BUILD1
    assert build["status"] == "BUILD"
    assert build["OS-EXT-STS:vm_state"] == "building"
    assert build["metadata"] == {"lease-owner": "batch-3"}
    assert servers[0]["status"] == "ACTIVE"


def test_servers_list_has_ids_names_and_links_only(client: httpx.Client) -> None:
    servers = client.get(f"/v2.1/{PROJECT}/servers").json()["servers"]
    assert {frozenset(s) for s in servers} == {frozenset({"id", "name", "links"})}


@pytest.mark.parametrize("collection", ["servers", "servers/detail"])
def test_paging_follows_next_links_to_an_empty_page(
    sandbox: Sandbox, client: httpx.Client, collection: str
) -> None:
    url = f"/v2.1/{PROJECT}/{collection}?limit=2"
    pages: list[list[str]] = []
    while True:
        body = client.get(url).json()
        pages.append([s["id"] for s in body["servers"]])
        links = body.get("servers_links")
        if not links:
            break
        assert links[0]["rel"] == "next"
        href = links[0]["href"]
        assert href.startswith(f"{sandbox.url}/v2.1/{PROJECT}/{collection}?")
        url = href
    # Nova links the next page whenever a page is full, so the last page is empty.
    assert pages == [[WEB1, WEB2], [BUILD1, DB1], []]
    assert "limit=2" in url
    assert f"marker={DB1}" in url


def test_paging_with_marker_and_bigger_limit(client: httpx.Client) -> None:
    body = client.get(f"/v2.1/{PROJECT}/servers/detail", params={"marker": WEB2, "limit": 5}).json()
    assert [s["id"] for s in body["servers"]] == [BUILD1, DB1]
    assert "servers_links" not in body


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"marker": MISSING}, f"marker [{MISSING}] not found"),
        ({"marker": OTHER1}, f"marker [{OTHER1}] not found"),
        ({"limit": "abc"}, "limit param must be an integer"),
        ({"limit": "-1"}, "limit param must be positive"),
    ],
)
def test_bad_paging_parameters_are_400(
    client: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = client.get(f"/v2.1/{PROJECT}/servers/detail", params=params)
    assert response.status_code == 400
    assert response.json() == {"badRequest": {"code": 400, "message": message}}


def test_other_project_lists_only_its_servers(client: httpx.Client) -> None:
    body = client.get(f"/v2.1/{OTHER_PROJECT}/servers/detail").json()
    assert [s["id"] for s in body["servers"]] == [OTHER1]


# --- Huawei native /v1 routes ---------------------------------------------------------------


def test_v1_delete(sandbox: Sandbox, client: httpx.Client) -> None:
    path = f"/v1/{PROJECT}/cloudservers/{WEB1}/metadata/env%3Astage"
    response = client.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_request_id(response)
    assert "env:stage" not in metadata_of(sandbox, WEB1)
    again = client.delete(path)
    assert again.status_code == 404
    assert "Metadata item was not found" in again.text


@pytest.mark.parametrize("server_id", [MISSING, OTHER1])
def test_v1_missing_server_uses_huawei_body(client: httpx.Client, server_id: str) -> None:
    response = client.delete(f"/v1/{PROJECT}/cloudservers/{server_id}/metadata/lease-owner")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "Ecs.0114", "message": f"Instance[{server_id}] could not be found."}
    }
    assert_request_id(response)
    listing = client.get(f"/v1/{PROJECT}/cloudservers/{server_id}/metadata")
    assert listing.json()["error"]["code"] == "Ecs.0114"


def test_v1_delete_on_locked_server_is_409(client: httpx.Client) -> None:
    response = client.delete(f"/v1/{PROJECT}/cloudservers/{WEB2}/metadata/lease-owner")
    assert response.status_code == 409
    assert response.json()["conflictingRequest"]["message"] == f"Instance {WEB2} is locked"


def test_v1_detail_pages_with_marker_and_limit(client: httpx.Client) -> None:
    first = client.get(f"/v1/{PROJECT}/cloudservers/detail", params={"limit": 3}).json()
    assert first["count"] == 4
    assert [s["id"] for s in first["servers"]] == [WEB1, WEB2, BUILD1]
    assert first["page_info"] == {"current_count": 3, "next_marker": BUILD1}
    assert first["servers"][2]["OS-EXT-STS:vm_state"] == "building"
    second = client.get(
        f"/v1/{PROJECT}/cloudservers/detail", params={"limit": 3, "marker": BUILD1}
    ).json()
    assert [s["id"] for s in second["servers"]] == [DB1]
    assert second["page_info"] == {"current_count": 1, "next_marker": None}
    bad = client.get(f"/v1/{PROJECT}/cloudservers/detail", params={"marker": MISSING})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "Ecs.0005"


# --- the request log and the state endpoint -------------------------------------------------


def test_request_log_records_method_raw_path_and_status(
    sandbox: Sandbox, client: httpx.Client, anonymous: httpx.Client
) -> None:
    client.delete(item_path(WEB1, "env%3Astage"))
    client.delete(item_path(WEB1, "env%3Astage"))
    anonymous.get(f"/v2.1/{PROJECT}/servers?limit=1")
    log = sandbox.requests()
    assert [(e["method"], e["path"], e["status"], e["fault"]) for e in log] == [
        ("DELETE", item_path(WEB1, "env%3Astage"), 204, None),
        ("DELETE", item_path(WEB1, "env%3Astage"), 404, None),
        ("GET", f"/v2.1/{PROJECT}/servers", 401, None),
    ]
    assert log[2]["query"] == "limit=1"
    assert log[0]["auth"] == "token"
    assert log[2]["auth"] is None
    assert all(REQUEST_ID.match(e["request_id"]) for e in log)
    over_http = client.get("/_sandbox/requests")
    assert over_http.status_code == 200
    assert [e["status"] for e in over_http.json()] == [204, 404, 401]
    sandbox.clear_requests()
    assert sandbox.requests() == []


def test_state_endpoint_returns_seed_format(sandbox: Sandbox, anonymous: httpx.Client) -> None:
    with httpx.Client(base_url=sandbox.url, headers={"X-Auth-Token": TOKEN}) as http:
        http.delete(item_path(WEB1, "owner"))
    response = anonymous.get("/_sandbox/state")
    assert response.status_code == 200
    state = response.json()
    direct = sandbox.state()
    for snapshot in (state, direct):  # build-1's countdown moves between the two reads
        snapshot["servers"][2]["active_after_s"] = None
    assert state == direct
    assert state["credentials"]["ak"] == "SANDBOXACCESSKEY0001"
    web1 = state["servers"][0]
    assert web1["id"] == WEB1
    assert web1["project_id"] == PROJECT
    assert "owner" not in web1["metadata"]
    assert set(web1) >= {"id", "project_id", "name", "vm_state", "locked", "metadata"}
    assert anonymous.get("/_sandbox/nothing").status_code == 404
    assert anonymous.post("/_sandbox/state").status_code == 405
    # control routes are not logged
    assert [e["method"] for e in sandbox.requests()] == ["DELETE"]


def test_state_is_a_copy(sandbox: Sandbox, client: httpx.Client) -> None:
    state = sandbox.state()
    state["servers"][0]["metadata"].clear()
    assert client.get(item_path(WEB1, "owner")).status_code == 200


def test_state_can_seed_a_new_sandbox(sandbox: Sandbox, client: httpx.Client) -> None:
    client.delete(item_path(WEB1, "owner"))
    with Sandbox(sandbox.state()) as copy:
        assert copy.state()["servers"][0]["metadata"] == metadata_of(sandbox, WEB1)


def test_oversized_body_is_413(client: httpx.Client) -> None:
    big = {"metadata": {"k": "v" * 2_000_000}}
    response = client.post(f"/v2.1/{PROJECT}/servers/{DB1}/metadata", json=big)
    assert response.status_code == 413
    assert response.json() == {"overLimit": {"code": 413, "message": "Request is too large."}}
