"""Readers of the infrastructure code for tests: the SAM template and the Terraform module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "aws" / "template.yaml"
TERRAFORM = ROOT / "infra" / "huaweicloud"


class _CfnLoader(yaml.SafeLoader):
    """A safe loader that reads CloudFormation's short tags (`!Ref x` -> {"Ref": "x"})."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(text: str | None = None) -> dict[str, Any]:
    """The SAM template (or `text`) as data, short tags in their long forms."""
    loaded = yaml.load(text if text is not None else TEMPLATE.read_text("utf-8"), _CfnLoader)
    assert isinstance(loaded, dict)
    return loaded


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels; drop them everywhere."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__comments__"}
    return value


def load_terraform(folder: Path = TERRAFORM) -> dict[str, Any]:
    """Every .tf file of the folder merged: resources by type and name, variables, locals."""
    files = sorted(folder.glob("*.tf"))
    assert files, f"no .tf file in {folder}"
    merged: dict[str, Any] = {"resource": {}, "variable": {}, "locals": {}}
    for path in files:
        with path.open(encoding="utf-8") as handle:
            doc = _unquote(hcl2.load(handle))
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for block in doc.get("variable", []):
            merged["variable"].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged
