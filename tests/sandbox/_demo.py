"""The demo seed's identifiers and credentials, as the tests use them."""

from __future__ import annotations

from handler.sandbox import DEMO_SEED

PROJECT = DEMO_SEED["project_id"]
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
WEB1 = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
WEB2 = "3f1c2b9e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
BUILD1 = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
DB1 = "c0ffee00-1234-4abc-8def-0123456789ab"
OTHER1 = "0badc0de-0000-4000-8000-000000000001"
MISSING = "00000000-0000-4000-8000-0000000000ff"
AK = DEMO_SEED["credentials"]["ak"]
SK = DEMO_SEED["credentials"]["sk"]
TOKEN = DEMO_SEED["credentials"]["token"]


def item_path(server_id: str, key: str, project: str = PROJECT) -> str:
    """The v2.1 path of one metadata item (`key` already percent-encoded)."""
    return f"/v2.1/{project}/servers/{server_id}/metadata/{key}"
