"""Configuration from the environment (SPEC §6): defaults, parsing, one-line errors, no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from handler.config import (
    DEFAULT_PROTECTED_KEYS,
    Config,
    ConfigError,
    load_config,
    log_level_name,
)

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


# --- issue 7: configuration hygiene and cold start ---------------------------------------------

#: Every variable but the required project id, with its default.
OPTIONAL = sorted(
    (name.upper(), field.default)
    for name, field in Config.model_fields.items()
    if name != "huaweicloud_sdk_project_id"
)
SECRET_NAMES = (
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "ECS_AUTH_TOKEN",
)


@pytest.mark.parametrize("blank", ["", "  ", " \t "])
@pytest.mark.parametrize(("name", "default"), OPTIONAL, ids=[name for name, _ in OPTIONAL])
def test_a_blank_variable_counts_as_unset(
    base: pytest.MonkeyPatch, name: str, default: object, blank: str
) -> None:
    if name == "HUAWEICLOUD_SDK_REGION":  # without it, the endpoint must be given
        base.setenv("ECS_ENDPOINT", "https://ecs.example.com")
    base.setenv(name, blank)
    config = load_config()
    assert getattr(config, name.lower()) == default


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_endpoint_falls_back_to_the_region(base: pytest.MonkeyPatch, blank: str) -> None:
    base.setenv("ECS_ENDPOINT", blank)
    assert load_config().endpoint == "https://ecs.cn-north-4.myhuaweicloud.com"


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_protected_keys_without_entries_means_the_default_list(
    base: pytest.MonkeyPatch, value: str
) -> None:
    base.setenv("PROTECTED_KEYS", value)
    assert load_config().protected_keys == DEFAULT_PROTECTED_KEYS


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_project_id_is_missing(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_REGION", "cn-north-4")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", blank)
    assert "HUAWEICLOUD_SDK_PROJECT_ID: is required" in _error("HUAWEICLOUD_SDK_PROJECT_ID")


def test_values_around_blanks_are_stripped(base: pytest.MonkeyPatch) -> None:
    base.setenv("DRY_RUN", " true ")
    base.setenv("MAX_ATTEMPTS", " 3 ")
    base.setenv("POWERTOOLS_SERVICE_NAME", " janitor ")
    base.setenv("HUAWEICLOUD_SDK_REGION", " cn-north-4 ")
    config = load_config()
    assert (config.dry_run, config.max_attempts) == (True, 3)
    assert config.powertools_service_name == "janitor"
    assert config.huaweicloud_sdk_region == "cn-north-4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("NO", False),
    ],
)
def test_dry_run_booleans(base: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    base.setenv("DRY_RUN", value)
    assert load_config().dry_run is expected


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_bad_dry_run(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("DRY_RUN", value)
    _error("DRY_RUN")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("DEBUG", "DEBUG"),
        ("debug", "DEBUG"),
        ("Info", "INFO"),
        ("info", "INFO"),
        ("WARNING", "WARNING"),
        ("warning", "WARNING"),
        ("WARN", "WARNING"),
        ("warn", "WARNING"),
        ("Error", "ERROR"),
        ("critical", "CRITICAL"),
        ("FATAL", "CRITICAL"),
        ("fatal", "CRITICAL"),
        (" info ", "INFO"),
    ],
)
def test_log_level_names_in_any_case(base: pytest.MonkeyPatch, value: str, expected: str) -> None:
    base.setenv("POWERTOOLS_LOG_LEVEL", value)
    assert load_config().powertools_log_level == expected
    assert log_level_name(value) == expected


@pytest.mark.parametrize("value", ["LOUD", "NOTSET", "verbose", "10", "WARNINGS", "inf o"])
def test_bad_log_level_lists_the_accepted_names(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("POWERTOOLS_LOG_LEVEL", value)
    message = _error("POWERTOOLS_LOG_LEVEL")
    for name in ("DEBUG", "INFO", "WARNING", "WARN)", "ERROR", "CRITICAL", "FATAL"):
        assert name in message


@pytest.mark.parametrize("value", [None, "", "  ", "LOUD", "NOTSET", "10", "warnings", 10, b"INFO"])
def test_log_level_name_falls_back_to_info(value: object) -> None:
    assert log_level_name(value) == "INFO"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:65536",
        "http://ho st",
        "http://ho st:8080/ecs",
        "http://:80",
        "https://host:0",
        "https://host:00",
        "https://user:pw@host",
        "https://user@host",
        "https://user:pw@host:99999",
        "http://host:abc",
        "http://host:-1",
        "http://host:+80",
        "http://-bad.example.com",
        "http://bad-.example.com",
        "http://a..b",
        "http://ex%41mple.com",
        "http://ex!ample.com",
        "http://999.1.1.1",
        "http://1.2.3.4.5",
        "http://[zz::1]",
        "http://[::1",
        "http://ho\tst",
        "https://" + "a" * 64 + ".example.com",
        "https://e/#frag",
        "https://e?",
    ],
)
def test_bad_endpoint_rejected_at_load(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("ECS_ENDPOINT", value)
    message = _error("ECS_ENDPOINT")
    assert "ECS_ENDPOINT: must be an http(s) base URL" in message
    assert value not in message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("https://host:0", "port"),
        ("http://ho st", "space"),
        ("http://:80", "no host"),
        ("https://user:pw@host", "user info"),
        ("http://-bad.example.com", "host"),
    ],
)
def test_bad_endpoint_says_why(base: pytest.MonkeyPatch, value: str, reason: str) -> None:
    base.setenv("ECS_ENDPOINT", value)
    assert reason in _error("ECS_ENDPOINT")


@pytest.mark.parametrize(
    "value",
    [
        "https://admin:Hunter2-Pa55word@ecs.example.com",
        "https://admin:Hunter2-Pa55word@ecs.example.com:99999",
        "https://admin:Hunter2-Pa55word@ecs.example.com:abc",
        "https://admin:Hunter2-Pa55word@ho st",
    ],
)
def test_endpoint_password_never_echoed(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("ECS_ENDPOINT", value)
    message = _error("ECS_ENDPOINT")
    assert "Hunter2-Pa55word" not in message
    assert "admin" not in message


@pytest.mark.parametrize(
    ("value", "endpoint"),
    [
        ("https://proxy.example.com/ecs", "https://proxy.example.com/ecs"),
        ("https://proxy.example.com/ecs/", "https://proxy.example.com/ecs"),
        ("https://ecs.cn-north-4.myhuaweicloud.com/", "https://ecs.cn-north-4.myhuaweicloud.com"),
        ("http://127.0.0.1:1", "http://127.0.0.1:1"),
        ("http://127.0.0.1:65535/", "http://127.0.0.1:65535"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[2001:db8::1]/v2.1", "http://[2001:db8::1]/v2.1"),
        ("http://ecs_mock:8080", "http://ecs_mock:8080"),
        ("HTTPS://ECS.Example.COM", "HTTPS://ECS.Example.COM"),
        ("https://ecs.example.com.", "https://ecs.example.com."),
        ("https://münchen.example", "https://münchen.example"),
        ("  https://ecs.example.com  ", "https://ecs.example.com"),
    ],
)
def test_good_endpoints(base: pytest.MonkeyPatch, value: str, endpoint: str) -> None:
    base.setenv("ECS_ENDPOINT", value)
    assert load_config().endpoint == endpoint


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1:99999/dl",
        "https://hooks.example.com:0/dl",
        "https://ho st/dl",
        "http://:80/dl",
        "https://hooks.example.com:abc/dl",
        "http://[zz]/dl",
        "http://[::1/dl",
        "https://-bad.example.com/dl",
        "https://hooks.exa\tmple.com/dl",
    ],
)
def test_bad_dead_letter_http_url_rejected_at_load(base: pytest.MonkeyPatch, value: str) -> None:
    base.setenv("DEAD_LETTER_URL", value)
    message = _error("DEAD_LETTER_URL")
    assert "DEAD_LETTER_URL: must be 'log'" in message


def test_dead_letter_password_and_query_never_echoed(base: pytest.MonkeyPatch) -> None:
    base.setenv("DEAD_LETTER_URL", "https://hook:Hunter2-Pa55word@h.example.com:99999/?t=QueryTok")
    message = _error("DEAD_LETTER_URL")
    assert "Hunter2-Pa55word" not in message
    assert "QueryTok" not in message


@pytest.mark.parametrize("scheme", ["ftp", "s3", "kafka", "amqp"])
def test_dead_letter_sinks_are_only_those_of_today(base: pytest.MonkeyPatch, scheme: str) -> None:
    base.setenv("DEAD_LETTER_URL", f"{scheme}://somewhere/x")
    assert f"not {scheme}://" in _error("DEAD_LETTER_URL")


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("log", "log"),
        ("Log", "log"),
        (" LOG ", "log"),
        ("/tmp/dead-letters.jsonl", "/tmp/dead-letters.jsonl"),
        ("dead letters/out.jsonl", "dead letters/out.jsonl"),
        ("file:///tmp/dead-letters.jsonl", "file:///tmp/dead-letters.jsonl"),
        ("https://hooks.example.com/dl?token=abc", "https://hooks.example.com/dl?token=abc"),
        ("https://hook:pw@hooks.example.com/dl", "https://hook:pw@hooks.example.com/dl"),
        ("http://127.0.0.1:8080/dl", "http://127.0.0.1:8080/dl"),
        ("http://[::1]:8080/dl", "http://[::1]:8080/dl"),
        ("C:\\dead-letters.jsonl", "C:\\dead-letters.jsonl"),
    ],
)
def test_good_dead_letter_urls(base: pytest.MonkeyPatch, value: str, stored: str) -> None:
    base.setenv("DEAD_LETTER_URL", value)
    assert load_config().dead_letter_url == stored


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_no_secret_value_in_any_error(base: pytest.MonkeyPatch, secret: str) -> None:
    values = {name: f"{name}-Recognisable-Value-77" for name in SECRET_NAMES}
    for name, value in values.items():
        base.setenv(name, value)
    base.setenv("MAX_ATTEMPTS", "lots")
    base.setenv("ECS_ENDPOINT", "https://ecs.example.com:99999")
    message = _error("MAX_ATTEMPTS", "ECS_ENDPOINT")
    assert values[secret] not in message
    assert "Recognisable" not in message


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_a_secret_alone_is_never_echoed(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    # Alone, each secret makes the configuration fail (no pair, or no endpoint): not with its value.
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv(secret, "Recognisable-Secret-Value-88")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "Recognisable" not in str(info.value)


@pytest.mark.parametrize("secret", SECRET_NAMES)
def test_a_secret_is_never_echoed_by_a_direct_build(secret: str) -> None:
    with pytest.raises(ValidationError) as info:
        Config(
            huaweicloud_sdk_project_id="../bad",
            max_attempts="lots",
            **{secret.lower(): "Recognisable-Secret-Value-99"},
        )
    assert "Recognisable" not in str(info.value)
    assert "Recognisable" not in repr(info.value.errors())


def test_load_config_reads_the_given_mapping_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "not a number")
    monkeypatch.setenv("DRY_RUN", "true")
    config = load_config({"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT, "ECS_ENDPOINT": "http://h:1"})
    assert config.endpoint == "http://h:1"
    assert config.max_attempts == 6
    assert config.dry_run is False


def test_load_config_matches_names_in_any_case() -> None:
    config = load_config(
        {
            "huaweicloud_sdk_project_id": PROJECT,
            "Ecs_Endpoint": "http://h:1",
            "dry_run": "yes",
            "Max_Concurrency": "4",
            "UNRELATED": "x",
        }
    )
    assert (config.endpoint, config.dry_run, config.max_concurrency) == ("http://h:1", True, 4)


def test_load_config_later_spelling_wins() -> None:
    environ = {"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT, "ECS_ENDPOINT": "http://old:1"}
    config = load_config({**environ, "ecs_endpoint": "http://new:1"})
    assert config.endpoint == "http://new:1"


def test_load_config_error_names_the_variable_for_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT, "ECS_ENDPOINT": "http://h:0"})
    assert str(info.value).startswith("invalid configuration: ECS_ENDPOINT: ")


def test_config_builds_directly() -> None:
    config = Config(
        huaweicloud_sdk_project_id=PROJECT,
        ecs_endpoint="http://127.0.0.1:8080/",
        dry_run=True,
        protected_keys=("keep-*",),
        unknown_setting="ignored",
    )
    assert config.endpoint == "http://127.0.0.1:8080"
    assert config.dry_run is True
    assert config.protected_keys == ("keep-*",)
    assert config == load_config(
        {
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
            "ECS_ENDPOINT": "http://127.0.0.1:8080/",
            "DRY_RUN": "true",
            "PROTECTED_KEYS": "keep-*",
        }
    )
    with pytest.raises(ValidationError):
        config.dry_run = False  # type: ignore[misc]


def test_config_direct_build_treats_blanks_as_unset() -> None:
    config = Config(
        huaweicloud_sdk_project_id=PROJECT,
        huaweicloud_sdk_region="cn-north-4",
        ecs_endpoint=" ",
        dead_letter_url="",
        powertools_service_name="",
        ecs_auth_token="",
    )
    assert config.endpoint == "https://ecs.cn-north-4.myhuaweicloud.com"
    assert (config.dead_letter_url, config.ecs_auth_token) == ("log", None)
    assert config.powertools_service_name == "ecs-metadata-janitor"


def test_model_fields_name_every_variable() -> None:
    names = {name.upper() for name in Config.model_fields}
    assert {
        "ECS_ENDPOINT",
        "HUAWEICLOUD_SDK_REGION",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        *SECRET_NAMES,
        "ALLOWED_PROJECT_IDS",
        "PROTECTED_KEYS",
        "DEAD_LETTER_URL",
        "MAX_CONCURRENCY",
        "MAX_ATTEMPTS",
        "REQUEST_TIMEOUT_S",
        "DRY_RUN",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_LOG_LEVEL",
    } <= names


def test_import_is_light() -> None:
    code = (
        "import sys, handler.config; "
        "print(sorted(m for m in ('pydantic_settings', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name",
    [
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "ECS_AUTH_TOKEN",
    ],
)
@pytest.mark.parametrize("bad", ["\n", "\r", "\x1b", "\u2603"])
def test_a_credential_that_cannot_be_a_header_fails_the_cold_start(
    base: pytest.MonkeyPatch, name: str, bad: str
) -> None:
    base.setenv("HUAWEICLOUD_SDK_AK", "AK-FOR-TESTS-0001")
    base.setenv("HUAWEICLOUD_SDK_SK", "sk-for-tests-0001")
    value = f"{SECRET_TOKEN}{bad}"
    base.setenv(name, value)
    message = _error(name, "one line")
    assert SECRET_TOKEN not in message


def test_a_sink_urls_password_and_query_are_secrets(base: pytest.MonkeyPatch) -> None:
    base.setenv("DEAD_LETTER_URL", "https://hook:p4ssw0rd-x@dl.example.com/in?token=t0k3n-abc&x=1")
    secrets = load_config().secrets()
    assert "p4ssw0rd-x" in secrets
    assert "t0k3n-abc" in secrets
    assert "token=t0k3n-abc&x=1" in secrets


def test_webhook_settings_default_and_validate(base: pytest.MonkeyPatch) -> None:
    config = load_config()
    assert (config.webhook_secret, config.webhook_auth, config.max_pairs_per_request) == (
        None,
        "signature",
        1000,
    )
    base.setenv("WEBHOOK_AUTH", " None ")
    base.setenv("MAX_PAIRS_PER_REQUEST", "50")
    base.setenv("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    config = load_config()
    assert (config.webhook_auth, config.max_pairs_per_request) == ("none", 50)
    assert "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" in config.secrets()
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" in config.secrets()


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", "plain-text-secret-!!"])
def test_a_webhook_secret_that_is_not_one_fails_without_quoting_it(
    base: pytest.MonkeyPatch, bad: str
) -> None:
    base.setenv("WEBHOOK_SECRET", bad)
    message = _error("WEBHOOK_SECRET", "whsec_ followed by base64")
    assert bad not in message.replace("whsec_ followed", "")


def test_webhook_auth_is_signature_or_none(base: pytest.MonkeyPatch) -> None:
    base.setenv("WEBHOOK_AUTH", "basic")
    _error("WEBHOOK_AUTH")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "nova"), ("", "nova"), ("  ", "nova"), (" NATIVE ", "native")]
)
def test_ecs_api_is_nova_by_default_or_native_in_any_case(
    base: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    if value is not None:
        base.setenv("ECS_API", value)
    assert load_config().ecs_api == expected


def test_ecs_api_is_nova_or_native(base: pytest.MonkeyPatch) -> None:
    base.setenv("ECS_API", "openstack")
    _error("ECS_API")
