"""The SAM template (issue 11 §2) agrees with the code: handler, runtime, environment, queues,
schedule and secrets; and cfn-lint finds no error in it (when cfn-lint is installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from handler.config import Config
from tests._infra import load_template

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "aws" / "template.yaml"

#: Variables the README documents that are not Config fields (read by the HTTP stack).
DOCUMENTED_EXTRA = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"})
#: Names of the secret configuration fields: never a template literal or a parameter default.
SECRET_VARIABLES = ("HUAWEICLOUD_SDK_SK", "WEBHOOK_SECRET")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    functions = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert len(functions) == 1
    return functions[0]


def _default(template: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a `Ref` names."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _events(function: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["Properties"] for e in function["Events"].values() if e["Type"] == kind]


def _render_sub(template: dict[str, Any], sub: Any) -> str:
    """An Fn::Sub rendered with the parameters' defaults (Join and CommaDelimitedList too)."""
    text, names = (sub, {}) if isinstance(sub, str) else (sub[0], dict(sub[1]))

    def value_of(name: str) -> str:
        if name in names:
            value = names[name]
            if isinstance(value, dict) and "Fn::Join" in value:
                sep, items = value["Fn::Join"]
                return str(sep).join(_list_default(template, items))
            return str(_default(template, value))
        return str(template["Parameters"][name]["Default"])

    return re.sub(r"\$\{([^}!]+)\}", lambda m: value_of(m.group(1)), text)


def _list_default(template: dict[str, Any], value: Any) -> list[str]:
    parameter = template["Parameters"][value["Ref"]]
    assert parameter["Type"] == "CommaDelimitedList"
    return [item.strip() for item in str(parameter["Default"]).split(",")]


def test_sam_transform(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_handler_and_runtime_match_the_code(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    assert function["Handler"] == "index.handler"
    assert function["Runtime"] == "python3.12"
    assert function["MemorySize"] == 256
    assert _default(template, function["Timeout"]) == 60
    import handler.app

    assert callable(handler.app.handler)
    # The zip's index.py re-exports it (infra/package.sh writes it).
    assert "handler" in (ROOT / "infra" / "package.sh").read_text(encoding="utf-8")


def test_architecture_is_a_parameter(template: dict[str, Any], function: dict[str, Any]) -> None:
    (arch,) = function["Architectures"]
    parameter = template["Parameters"][arch["Ref"]]
    assert set(parameter["AllowedValues"]) == {"x86_64", "arm64"}


def test_every_variable_is_a_config_field(function: dict[str, Any]) -> None:
    names = set(function["Environment"]["Variables"])
    known = {field.upper() for field in Config.model_fields} | DOCUMENTED_EXTRA
    assert names <= known, names - known
    assert {"ECS_ENDPOINT", "HUAWEICLOUD_SDK_PROJECT_ID", "HUAWEICLOUD_SDK_AK"} <= names
    assert {"DEAD_LETTER_URL", *SECRET_VARIABLES} <= names


def test_secrets_come_from_secrets_manager(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    variables = function["Environment"]["Variables"]
    for name in SECRET_VARIABLES:
        value = variables[name]
        assert isinstance(value, dict), f"{name} is inline"
        (sub,) = value.values()
        text = sub if isinstance(sub, str) else sub[0]
        # Lambda's environment takes no ssm-secure reference; Secrets Manager's works.
        assert text.startswith("{{resolve:secretsmanager:"), name
        assert text.endswith("}}")
    raw = TEMPLATE.read_text(encoding="utf-8")
    assert "whsec_" not in raw.replace("(whsec_...)", "")
    assert "resolve:ssm-secure" not in raw
    for name, parameter in template["Parameters"].items():
        if parameter.get("NoEcho") or re.search(r"secret|password|token", name, re.I):
            assert "Default" not in parameter, f"{name} has a default"
    assert template["Parameters"]["AccessKeyId"].get("NoEcho") is True


def test_work_queue_redrives_to_the_dead_letter_queue(template: dict[str, Any]) -> None:
    queue = template["Resources"]["WorkQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_visibility_timeout_is_six_times_the_function_timeout(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    queue = template["Resources"]["WorkQueue"]["Properties"]
    # Derived from the function's timeout, for every timeout the template allows.
    name, mapping, key = queue["VisibilityTimeout"]["Fn::FindInMap"]
    assert name == "VisibilityTimeout" and key == "Seconds"
    assert mapping == function["Timeout"] == {"Ref": "FunctionTimeout"}
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    table = template["Mappings"]["VisibilityTimeout"]
    assert sorted(table, key=int) == sorted(map(str, allowed), key=int)
    for timeout in allowed:
        assert table[str(timeout)]["Seconds"] == 6 * int(timeout)


def test_sqs_event_reports_batch_item_failures(function: dict[str, Any]) -> None:
    (sqs,) = _events(function, "SQS")
    assert sqs["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["BatchSize"] <= 10


def test_webhook_on_an_http_api(function: dict[str, Any]) -> None:
    (api,) = _events(function, "HttpApi")
    assert api["Method"] == "POST"


def test_schedule_is_disabled_and_a_dry_run_by_default(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    (schedule,) = _events(function, "ScheduleV2")
    assert _default(template, schedule["State"]) == "DISABLED"
    payload = json.loads(_render_sub(template, schedule["Input"]["Fn::Sub"]))
    assert payload == {"cleanup": {"key_patterns": ["lease-*"], "dry_run": True}}
    # The payload the user turns on is the one the function accepts.
    from handler.model import CleanupSelector

    CleanupSelector.model_validate(payload["cleanup"])


def test_dead_letters_go_to_the_dead_letter_queue(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    url = function["Environment"]["Variables"]["DEAD_LETTER_URL"]["Fn::Sub"]
    assert url == (
        "sqs://sqs.${AWS::Region}.${AWS::URLSuffix}/${AWS::AccountId}/"
        "${DeadLetterRecordsQueue.QueueName}"
    )
    policies = {next(iter(p)): next(iter(p.values())) for p in function["Policies"]}
    assert policies["SQSSendMessagePolicy"]["QueueName"] == {
        "Fn::GetAtt": ["DeadLetterRecordsQueue", "QueueName"]
    }
    assert policies["SQSPollerPolicy"]["QueueName"] == {"Fn::GetAtt": ["WorkQueue", "QueueName"]}
    # The function starts with the environment the template renders to.
    from handler.config import load_config

    rendered = "sqs://sqs.eu-west-1.amazonaws.com/123456789012/janitor-DeadLetterRecordsQueue-abc"
    environment = {
        "ECS_ENDPOINT": "https://ecs.cn-north-4.myhuaweicloud.com",
        "HUAWEICLOUD_SDK_PROJECT_ID": "0" * 32,
        "HUAWEICLOUD_SDK_AK": "AK",
        "HUAWEICLOUD_SDK_SK": "SK",
        "WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "DEAD_LETTER_URL": rendered,
        "POWERTOOLS_LOG_LEVEL": _default(template, {"Ref": "LogLevel"}),
    }
    assert set(environment) == set(function["Environment"]["Variables"])
    config = load_config(environment)
    assert config.dead_letter_url == rendered


def test_permissions_boundary_is_least_privilege(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    boundary = template["Resources"][function["PermissionsBoundary"]["Ref"]]
    statements = {s["Sid"]: s for s in boundary["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {"Logs", "PollWorkQueue", "SendDeadLetters"}
    assert statements["PollWorkQueue"]["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert statements["SendDeadLetters"]["Action"] == "sqs:SendMessage"
    for statement in statements.values():
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        assert all(
            not a.endswith("*") for a in ([actions] if isinstance(actions, str) else actions)
        )


def test_async_failures_have_a_destination(function: dict[str, Any]) -> None:
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert on_failure["Destination"] == {"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]}


def test_cfn_lint_finds_no_error() -> None:
    pytest.importorskip("cfnlint")
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE)
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(str(m) for m in errors)
