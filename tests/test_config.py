"""Configuration from the environment (SPEC §6): defaults, parsing, one-line errors, no secrets."""

from __future__ import annotations

import os

import pytest

from handler.config import DEFAULT_PROTECTED_KEYS, Config, ConfigError, load_config

PROJECT = "0123456789abcdef0123456789abcdef"
SECRET_SK = "SK-Very-Recognisable-Secret-9f8e7d"
SECRET_TOKEN = "TOKEN-Very-Recognisable-Secret-1a2b3c"
FIELDS = {name.lower() for name in Config.model_fields}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower() in FIELDS:
            monkeypatch.delenv(name)


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGION", "cn-north-4")
    return monkeypatch


def _error(*names: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    assert info.value.__cause__ is None
    return message


def test_defaults(base: pytest.MonkeyPatch) -> None:
    config = load_config()
    assert config.huaweicloud_sdk_project_id == PROJECT
    assert config.endpoint == "https://ecs.cn-north-4.myhuaweicloud.com"
    assert config.max_concurrency == 16
    assert config.max_attempts == 6
    assert config.request_timeout_s == 10.0
    assert config.dead_letter_url == "log"
    assert config.dry_run is False
    assert config.allowed_project_ids == ()
    assert config.protected_keys == DEFAULT_PROTECTED_KEYS
    assert config.powertools_service_name == "ecs-metadata-janitor"
    assert config.powertools_log_level == "INFO"
    assert config.secrets() == []


def test_endpoint_given_wins_and_loses_trailing_slash(base: pytest.MonkeyPatch) -> None:
    base.setenv("ECS_ENDPOINT", "http://127.0.0.1:8080/")
    assert load_config().endpoint == "http://127.0.0.1:8080"


def test_endpoint_without_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("ECS_ENDPOINT", "https://ecs.example.com")
    assert load_config().endpoint == "https://ecs.example.com"


def test_comma_lists_parsed(base: pytest.MonkeyPatch) -> None:
    base.setenv("ALLOWED_PROJECT_IDS", " aaaa1111 , bbbb2222,,")
    base.setenv("PROTECTED_KEYS", "keep-*, exact ,")
    config = load_config()
    assert config.allowed_project_ids == ("aaaa1111", "bbbb2222")
    assert config.protected_keys == ("keep-*", "exact")


def test_bad_allowed_project_id(base: pytest.MonkeyPatch) -> None:
    base.setenv("ALLOWED_PROJECT_IDS", "good,../bad")
    _error("ALLOWED_PROJECT_IDS")


def test_numbers_and_flags_parsed(base: pytest.MonkeyPatch) -> None:
    base.setenv("MAX_CONCURRENCY", "4")
    base.setenv("MAX_ATTEMPTS", "3")
    base.setenv("REQUEST_TIMEOUT_S", "2.5")
    base.setenv("DRY_RUN", "true")
    base.setenv("POWERTOOLS_LOG_LEVEL", "debug")
    config = load_config()
    assert (config.max_concurrency, config.max_attempts, config.request_timeout_s) == (4, 3, 2.5)
    assert config.dry_run is True
    assert config.powertools_log_level == "DEBUG"


def test_missing_project_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGION", "cn-north-4")
    message = _error("HUAWEICLOUD_SDK_PROJECT_ID")
    assert "required" in message


@pytest.mark.parametrize("value", ["0", "x", "-3", "99999"])
def test_bad_max_concurrency(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("MAX_CONCURRENCY", value)
    _error("MAX_CONCURRENCY")


def test_ak_without_sk(base: pytest.MonkeyPatch) -> None:
    base.setenv("HUAWEICLOUD_SDK_AK", "AKIDEXAMPLE")
    _error("HUAWEICLOUD_SDK_SK")


def test_sk_without_ak(base: pytest.MonkeyPatch) -> None:
    base.setenv("HUAWEICLOUD_SDK_SK", SECRET_SK)
    message = _error("HUAWEICLOUD_SDK_AK")
    assert SECRET_SK not in message


def test_neither_endpoint_nor_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    message = _error("ECS_ENDPOINT")
    assert "HUAWEICLOUD_SDK_REGION" in message


@pytest.mark.parametrize("value", ["ftp://ecs.example.com", "ecs.example.com", "https://e/?q=1"])
def test_bad_endpoint_scheme(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("ECS_ENDPOINT", value)
    _error("ECS_ENDPOINT")


def test_bad_log_level(base: pytest.MonkeyPatch) -> None:
    base.setenv("POWERTOOLS_LOG_LEVEL", "LOUD")
    _error("POWERTOOLS_LOG_LEVEL")


def test_bad_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGION", "Not A Region!")
    _error("HUAWEICLOUD_SDK_REGION")


def test_secrets_never_in_error_message(base: pytest.MonkeyPatch) -> None:
    base.setenv("HUAWEICLOUD_SDK_AK", "AKIDEXAMPLE")
    base.setenv("HUAWEICLOUD_SDK_SK", SECRET_SK)
    base.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", SECRET_TOKEN)
    base.setenv("ECS_AUTH_TOKEN", SECRET_TOKEN)
    base.setenv("MAX_ATTEMPTS", "lots")
    message = _error("MAX_ATTEMPTS")
    assert SECRET_SK not in message
    assert SECRET_TOKEN not in message


def test_secrets_never_in_repr(base: pytest.MonkeyPatch) -> None:
    base.setenv("HUAWEICLOUD_SDK_AK", "AKIDEXAMPLE")
    base.setenv("HUAWEICLOUD_SDK_SK", SECRET_SK)
    base.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", SECRET_TOKEN)
    config = load_config()
    for text in (repr(config), str(config), str(config.model_dump())):
        assert SECRET_SK not in text
        assert SECRET_TOKEN not in text
    assert config.huaweicloud_sdk_sk is not None
    assert config.huaweicloud_sdk_sk.get_secret_value() == SECRET_SK
    assert set(config.secrets()) == {"AKIDEXAMPLE", SECRET_SK, SECRET_TOKEN}


def test_token_in_secrets(base: pytest.MonkeyPatch) -> None:
    base.setenv("ECS_AUTH_TOKEN", SECRET_TOKEN)
    config = load_config()
    assert SECRET_TOKEN not in repr(config)
    assert config.secrets() == [SECRET_TOKEN]


def test_lower_case_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("huaweicloud_sdk_project_id", PROJECT)
    monkeypatch.setenv("ecs_endpoint", "https://ecs.example.com")
    assert load_config().huaweicloud_sdk_project_id == PROJECT


def test_empty_credentials_are_unset_so_an_empty_token_does_not_win(
    base: pytest.MonkeyPatch,
) -> None:
    monkeypatch = base
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK-VALUE-1234")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK-VALUE-1234")
    monkeypatch.setenv("ECS_AUTH_TOKEN", "")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", " ")
    config = load_config()
    assert config.ecs_auth_token is None
    assert config.huaweicloud_sdk_security_token is None
    assert config.huaweicloud_sdk_ak is not None


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("ECS_ENDPOINT", "http://[::1", "ECS_ENDPOINT: must be an http(s) base URL"),
        ("ECS_ENDPOINT", "https://", "ECS_ENDPOINT: must be an http(s) base URL"),
        ("DEAD_LETTER_URL", "ftp://x/y", "DEAD_LETTER_URL: must be 'log'"),
        ("DEAD_LETTER_URL", "https:///nohost", "DEAD_LETTER_URL: must be 'log'"),
        (
            "HUAWEICLOUD_SDK_SECURITY_TOKEN",
            "tok-123456",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN: goes with",
        ),
    ],
)
def test_values_that_would_only_fail_later_fail_at_cold_start(
    base: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    base.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_log_sink_name_is_case_insensitive(base: pytest.MonkeyPatch) -> None:
    base.setenv("DEAD_LETTER_URL", "LOG")
    assert load_config().dead_letter_url == "log"
