"""infra/huaweicloud/ (Terraform, huaweicloud provider) agrees with the code (issue 11 §3)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from handler.config import Config
from tests._infra import load_terraform

hcl2 = pytest.importorskip(
    "hcl2", reason="python-hcl2 is not installed: pip install python-hcl2 (the dev extra)"
)

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra" / "huaweicloud"
ECS_ACTIONS = {
    "ecs:cloudServers:deleteMetadata",
    "ecs:cloudServers:list",
    "ecs:cloudServers:get",
}
SECRET_VARIABLES = {"webhook_secret"}


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    """Every .tf file merged: resources by type and name, variables, locals."""
    return load_terraform(INFRA)


def _function(tf: dict[str, Any]) -> dict[str, Any]:
    functions = tf["resource"]["huaweicloud_fgs_function"]
    assert len(functions) == 1
    return next(iter(functions.values()))


def _local(tf: dict[str, Any], reference: str) -> Any:
    """The value of `${jsonencode(local.NAME)}` or `${local.NAME}`."""
    match = re.fullmatch(r"\$\{(?:jsonencode\()?local\.(\w+)\)?\}", reference)
    assert match, f"expected a reference to a local, got {reference!r}"
    return tf["locals"][match.group(1)]


def test_handler_string_matches_the_code(tf: dict[str, Any]) -> None:
    assert _function(tf)["handler"] == "index.handler"
    tree = ast.parse((ROOT / "handler" / "app.py").read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "handler" in names
    # index.py at the zip's root re-exports it (infra/package.sh writes it).
    assert "index.py" in (ROOT / "infra" / "package.sh").read_text(encoding="utf-8")


def test_runtime_is_python_312(tf: dict[str, Any]) -> None:
    function = _function(tf)
    assert function["runtime"] == "Python3.12"
    assert function["code_type"] == "zip"
    assert "var.zip_path" in function["func_code"]


def test_environment_names_are_config_fields(tf: dict[str, Any]) -> None:
    function = _function(tf)
    fields = {name.upper() for name in Config.model_fields}
    plain = _local(tf, function["user_data"])
    secret = _local(tf, function["encrypted_user_data"])
    assert set(plain) <= fields, set(plain) - fields
    assert set(secret) <= fields, set(secret) - fields
    assert not set(plain) & set(secret)
    assert {"HUAWEICLOUD_SDK_PROJECT_ID", "HUAWEICLOUD_SDK_REGION"} <= set(plain)
    # The agency grants the native v1 actions, so the function must speak the native API.
    assert plain["ECS_API"] == "native"
    # Every secret the function reads travels encrypted, never as plain user_data.
    assert "WEBHOOK_SECRET" in secret
    for name in plain:
        assert not re.search(r"SECRET|PASSWORD|_SK$|TOKEN|AUTH_HEADER", name), name


def _triggers(tf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["type"]: t for t in tf["resource"]["huaweicloud_fgs_function_trigger"].values()}


def test_timer_apig_and_kafka_triggers(tf: dict[str, Any]) -> None:
    triggers = _triggers(tf)
    assert "TIMER" in triggers
    assert {"APIG", "DEDICATEDGATEWAY"} & set(triggers)
    assert {"KAFKA", "DMS"} & set(triggers)
    for trigger in triggers.values():
        assert "huaweicloud_fgs_function.janitor.urn" in trigger["function_urn"]


def test_timer_is_disabled_and_a_dry_run_by_default(tf: dict[str, Any]) -> None:
    timer = _triggers(tf)["TIMER"]
    assert timer["status"] == '${var.cleanup_enabled ? "ACTIVE" : "DISABLED"}'
    assert tf["variable"]["cleanup_enabled"]["default"] is False
    assert "user_event = var.cleanup_user_event" in timer["event_data"]
    event = json.loads(tf["variable"]["cleanup_user_event"]["default"])
    assert event["cleanup"]["dry_run"] is True
    assert event["cleanup"]["key_patterns"]


def test_execution_agency_grants_only_the_ecs_metadata_actions(tf: dict[str, Any]) -> None:
    function = _function(tf)
    assert function["app_agency"] == "${huaweicloud_identity_agency.ecs_metadata.name}"
    agency = tf["resource"]["huaweicloud_identity_agency"]["ecs_metadata"]
    assert agency["delegated_service_name"] == "op_svc_cff"
    assert "all_resources_roles" not in agency and "domain_roles" not in agency
    (project_role,) = agency["project_role"]
    assert project_role["roles"] == ["${huaweicloud_identity_role.ecs_metadata.name}"]
    policy = tf["resource"]["huaweicloud_identity_role"]["ecs_metadata"]["policy"]
    assert policy.count("Action") == 1 and "Action = local.ecs_actions" in policy
    assert "Deny" not in policy and '"*"' not in policy
    assert set(tf["locals"]["ecs_actions"]) == ECS_ACTIONS


def test_async_failure_destination(tf: dict[str, Any]) -> None:
    (config,) = tf["resource"]["huaweicloud_fgs_async_invoke_configuration"].values()
    (on_failure,) = config["on_failure"]
    assert on_failure["destination"] == "SMN"
    assert "huaweicloud_smn_topic.async_failures.topic_urn" in on_failure["param"]


def test_secret_variables_are_sensitive_without_default(tf: dict[str, Any]) -> None:
    for name in SECRET_VARIABLES:
        variable = tf["variable"][name]
        assert variable.get("sensitive") is True, name
        assert "default" not in variable, name
    for name in ("region", "project_id", "zip_path"):
        assert "default" not in tf["variable"][name], name


def test_terraform_fmt_check() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed: `terraform fmt -check` not run")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
