"""The invocation context of AWS Lambda and Huawei FunctionGraph, and FunctionGraph credentials."""

from __future__ import annotations

import uuid
from typing import Any

from handler.context import functiongraph_credentials, read_invocation
from handler.ecs.signing import Credentials


class LambdaContext:
    aws_request_id = "req-lambda-1"
    function_name = "janitor"
    memory_limit_in_mb = "256"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:janitor"

    def __init__(self, remaining: list[int]) -> None:
        self._remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining.pop(0)


class FunctionGraphContext:
    def __init__(self, **overrides: Any) -> None:
        self.values: dict[str, Any] = {
            "getRequestID": "req-fg-1",
            "getFunctionName": "janitor-fg",
            "getMemorySize": 512,
            "getFunctionURN": "urn:fss:cn-north-4:0123:function:default:janitor-fg:latest",
            "getRemainingTimeInMilliSeconds": 30_000,
            "getSecurityAccessKey": "FG-AK-1",
            "getSecuritySecretKey": "FG-SK-1",
            "getSecurityToken": "FG-TOKEN-1",
        }
        self.values.update(overrides)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name not in values:
            raise AttributeError(name)
        value = values[name]
        if isinstance(value, Exception):

            def fail() -> Any:
                raise value

            return fail
        return lambda: value


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def test_lambda_context() -> None:
    context = LambdaContext([12_000, 11_500])
    invocation = read_invocation(context)
    assert invocation.platform == "aws-lambda"
    assert invocation.request_id == "req-lambda-1"
    assert invocation.function_name == "janitor"
    assert invocation.function_memory_size == 256
    assert invocation.function_arn == LambdaContext.invoked_function_arn
    # The remaining time is read each time it is asked for.
    assert invocation.remaining_s() == 12.0
    assert invocation.remaining_s() == 11.5
    assert invocation.log_fields() == {
        "function_name": "janitor",
        "function_memory_size": 256,
        "function_arn": LambdaContext.invoked_function_arn,
        "function_request_id": "req-lambda-1",
    }


def test_lambda_context_without_remaining_time() -> None:
    class Bare:
        aws_request_id = "req-bare"

    invocation = read_invocation(Bare())
    assert invocation.request_id == "req-bare"
    assert invocation.function_name is None
    assert invocation.remaining_s() is None


def test_functiongraph_context() -> None:
    invocation = read_invocation(FunctionGraphContext())
    assert invocation.platform == "functiongraph"
    assert invocation.request_id == "req-fg-1"
    assert invocation.function_name == "janitor-fg"
    assert invocation.function_memory_size == 512
    assert invocation.function_arn is not None
    assert invocation.function_arn.startswith("urn:fss:")
    assert invocation.remaining_s() == 30.0


def test_functiongraph_context_failing_accessors_do_not_fail() -> None:
    context = FunctionGraphContext(
        getFunctionName=RuntimeError("boom"),
        getRemainingTimeInMilliSeconds=RuntimeError("boom"),
        getMemorySize="lots",
    )
    invocation = read_invocation(context)
    assert invocation.request_id == "req-fg-1"
    assert invocation.function_name is None
    assert invocation.function_memory_size is None
    assert invocation.remaining_s() is None


def test_functiongraph_empty_request_id_gets_a_uuid() -> None:
    invocation = read_invocation(FunctionGraphContext(getRequestID=""))
    assert _is_uuid(invocation.request_id)


def test_no_context() -> None:
    first = read_invocation(None)
    second = read_invocation(None)
    assert first.platform == "local"
    assert _is_uuid(first.request_id)
    assert first.request_id != second.request_id
    assert first.remaining_s() is None
    assert first.function_name is None


def test_unknown_context() -> None:
    invocation = read_invocation(object())
    assert invocation.platform == "unknown"
    assert _is_uuid(invocation.request_id)


def test_functiongraph_credentials() -> None:
    credentials = functiongraph_credentials(FunctionGraphContext())
    assert credentials == Credentials("FG-AK-1", "FG-SK-1", "FG-TOKEN-1")


def test_functiongraph_credentials_read_each_time() -> None:
    context = FunctionGraphContext()
    assert functiongraph_credentials(context) == Credentials("FG-AK-1", "FG-SK-1", "FG-TOKEN-1")
    context.values.update(
        getSecurityAccessKey="FG-AK-2", getSecuritySecretKey="FG-SK-2", getSecurityToken="T2"
    )
    assert functiongraph_credentials(context) == Credentials("FG-AK-2", "FG-SK-2", "T2")


def test_functiongraph_credentials_without_token() -> None:
    credentials = functiongraph_credentials(FunctionGraphContext(getSecurityToken=""))
    assert credentials == Credentials("FG-AK-1", "FG-SK-1", None)


def test_functiongraph_credentials_missing() -> None:
    assert functiongraph_credentials(None) is None
    assert functiongraph_credentials(LambdaContext([1])) is None
    assert functiongraph_credentials(FunctionGraphContext(getSecurityAccessKey="")) is None
    assert functiongraph_credentials(FunctionGraphContext(getSecuritySecretKey=None)) is None
    failing = FunctionGraphContext(getSecuritySecretKey=RuntimeError("no agency"))
    assert functiongraph_credentials(failing) is None
