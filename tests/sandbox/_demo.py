"""The demo seed's identifiers and credentials, as the tests use them (from the seed itself)."""

from __future__ import annotations

from handler.sandbox import DEMO_SEED
from handler.sandbox import seed as _seed

BUILD1 = _seed.DEMO_BUILD1
DB1 = _seed.DEMO_DB1
OTHER1 = _seed.DEMO_OTHER1
OTHER_PROJECT = _seed.DEMO_OTHER_PROJECT_ID
WEB1 = _seed.DEMO_WEB1
WEB2 = _seed.DEMO_WEB2
PROJECT = DEMO_SEED["project_id"]
MISSING = "00000000-0000-4000-8000-0000000000ff"
AK = DEMO_SEED["credentials"]["ak"]
SK = DEMO_SEED["credentials"]["sk"]
TOKEN = DEMO_SEED["credentials"]["token"]


def item_path(server_id: str, key: str, project: str = PROJECT) -> str:
    """The v2.1 path of one metadata item (`key` already percent-encoded)."""
    return f"/v2.1/{project}/servers/{server_id}/metadata/{key}"
