"""Configuration of Keystone password authentication (OS_* variables): rules and one-line
errors that name the variable and never quote the password."""

from __future__ import annotations

import pytest

from handler.config import ConfigError, load_config

PROJECT = "0123456789abcdef0123456789abcdef"
PASSWORD = "Os-Password-Very-Recognisable-5e6f"
IAM = "https://iam.cn-north-4.myhuaweicloud.com/v3"


def env(**changes: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "OS_AUTH_URL": "https://keystone.example.com:5000/v3",
        "OS_USERNAME": "janitor",
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_ID": PROJECT,
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def error(environ: dict[str, str], *names: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(environ)
    message = str(info.value)
    assert "\n" not in message
    assert PASSWORD not in message
    for name in names:
        assert name in message
    return message


def test_the_openstack_variables_are_enough() -> None:
    config = load_config(env())
    assert config.password_auth
    assert config.os_auth_url == "https://keystone.example.com:5000"
    assert config.os_username == "janitor"
    assert config.os_password is not None
    assert config.os_password.get_secret_value() == PASSWORD
    assert config.project_id == PROJECT
    assert config.huaweicloud_sdk_project_id is None
    assert config.endpoint is None  # from the catalog
    assert (config.os_user_domain_name, config.os_project_domain_name) == ("Default", "Default")
    assert (config.os_region_name, config.os_interface) == (None, "public")


def test_the_password_is_a_secret() -> None:
    config = load_config(env(OS_PASSWORD=f"  {PASSWORD} "))
    assert config.os_password is not None
    assert config.os_password.get_secret_value() == f"  {PASSWORD} "  # kept exactly
    assert f"  {PASSWORD} " in config.secrets()
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config.model_dump())


@pytest.mark.parametrize("bad", [f"{PASSWORD}\n", f"a\tb{PASSWORD}", f"{PASSWORD}\x7f"])
def test_a_password_must_be_one_line(bad: str) -> None:
    message = error(env(OS_PASSWORD=bad), "OS_PASSWORD")
    assert "one line" in message


def test_a_unicode_password_is_fine() -> None:
    config = load_config(env(OS_PASSWORD="pässwörd-密码"))
    assert config.os_password is not None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://keystone.example.com:5000/v3", "https://keystone.example.com:5000"),
        ("https://keystone.example.com:5000/v3/", "https://keystone.example.com:5000"),
        ("https://keystone.example.com:5000", "https://keystone.example.com:5000"),
        ("http://10.0.0.5/identity/v3", "http://10.0.0.5/identity"),
        (IAM, "https://iam.cn-north-4.myhuaweicloud.com"),
        (f"{IAM}/auth/tokens", "https://iam.cn-north-4.myhuaweicloud.com"),
        ("  https://IAM.example.com/V3  ", "https://IAM.example.com"),
    ],
)
def test_auth_url_with_or_without_v3(given: str, kept: str) -> None:
    assert load_config(env(OS_AUTH_URL=given)).os_auth_url == kept


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://keystone.example.com/v3", "the scheme is not http or https"),
        ("https://user:secret-in-url@keystone.example.com/v3", "no user info"),
        ("https://keystone.example.com/v3?x=1", "no query string"),
        ("https://keystone.example.com:99999/v3", "the port must be"),
        ("https://keystone.example.com/v2.0", "Keystone v2 is not supported"),
        ("keystone.example.com/v3", "the scheme is not http or https"),
    ],
)
def test_auth_url_is_checked_like_the_endpoint(url: str, why: str) -> None:
    message = error(env(OS_AUTH_URL=url), "OS_AUTH_URL")
    assert why in message
    assert "secret-in-url" not in message


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("OS_USERNAME", "OS_USERNAME: is required with OS_AUTH_URL"),
        ("OS_PASSWORD", "OS_PASSWORD: is required with OS_AUTH_URL"),
        ("OS_PROJECT_ID", "OS_PROJECT_ID: is required with OS_AUTH_URL, or OS_PROJECT_NAME"),
    ],
)
def test_what_password_authentication_requires(missing: str, named: str) -> None:
    assert named in error(env(**{missing: None}))


def test_a_blank_password_is_a_missing_one() -> None:
    error(env(OS_PASSWORD="   "), "OS_PASSWORD: is required")


def test_a_project_name_alone_will_do() -> None:
    config = load_config(env(OS_PROJECT_ID=None, OS_PROJECT_NAME="cn-north-4"))
    assert config.project_id is None  # the token's, learnt at the first invocation
    assert config.os_project_name == "cn-north-4"


def test_both_project_id_and_name_as_an_openrc_sets_them() -> None:
    config = load_config(env(OS_PROJECT_NAME="demo"))
    assert config.project_id == PROJECT


def test_the_project_id_is_checked() -> None:
    error(env(OS_PROJECT_ID="not a project"), "OS_PROJECT_ID")


def test_huaweicloud_project_id_may_repeat_os_project_id_but_not_differ() -> None:
    assert load_config(env(HUAWEICLOUD_SDK_PROJECT_ID=PROJECT)).project_id == PROJECT
    message = error(
        env(HUAWEICLOUD_SDK_PROJECT_ID="fedcba9876543210fedcba9876543210"),
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "OS_PROJECT_ID",
    )
    assert "scoped to one project" in message
    named = load_config(
        env(
            OS_PROJECT_ID=None,
            OS_PROJECT_NAME="demo",
            HUAWEICLOUD_SDK_PROJECT_ID="fedcba9876543210fedcba9876543210",
        )
    )
    assert named.project_id == "fedcba9876543210fedcba9876543210"


def test_ak_sk_and_password_authentication_together_is_an_error() -> None:
    sk = "SK-Very-Recognisable-Secret-9f8e7d"
    message = error(
        env(HUAWEICLOUD_SDK_AK="AK0001", HUAWEICLOUD_SDK_SK=sk),
        "HUAWEICLOUD_SDK_AK",
        "remove",
        "OS_AUTH_URL",
    )
    assert sk not in message and "AK0001" not in message


def test_a_security_token_with_password_authentication_is_an_error() -> None:
    message = error(
        env(
            HUAWEICLOUD_SDK_AK="AK0001", HUAWEICLOUD_SDK_SK="s", HUAWEICLOUD_SDK_SECURITY_TOKEN="t"
        ),
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    )
    assert "OS_AUTH_URL" in message


def test_a_token_and_password_authentication_together_is_an_error() -> None:
    token = "TOKEN-Very-Recognisable-Secret-1a2b3c"
    message = error(env(ECS_AUTH_TOKEN=token), "ECS_AUTH_TOKEN", "remove", "OS_AUTH_URL")
    assert token not in message


def test_a_user_without_an_auth_url_is_an_error() -> None:
    environ = env(OS_AUTH_URL=None, HUAWEICLOUD_SDK_PROJECT_ID=PROJECT)
    environ["HUAWEICLOUD_SDK_REGION"] = "cn-north-4"
    error(environ, "OS_AUTH_URL: is required with OS_USERNAME and OS_PASSWORD")


def test_without_an_auth_url_the_project_is_still_required() -> None:
    assert "HUAWEICLOUD_SDK_PROJECT_ID: is required" in error(
        {"HUAWEICLOUD_SDK_REGION": "cn-north-4", "OS_PROJECT_ID": PROJECT}
    )


def test_ecs_endpoint_overrides_the_catalog() -> None:
    config = load_config(env(ECS_ENDPOINT="https://ecs.example.com/"))
    assert config.endpoint == "https://ecs.example.com"


def test_a_region_alone_does_not_override_the_catalog() -> None:
    config = load_config(env(HUAWEICLOUD_SDK_REGION="cn-north-4"))
    assert config.endpoint is None


def test_a_blank_auth_url_is_unset() -> None:
    environ = {"OS_AUTH_URL": " ", "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT, "ECS_ENDPOINT": IAM}
    assert not load_config(environ).password_auth


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("public", "public"),
        ("publicURL", "public"),
        ("internalURL", "internal"),
        ("Internal", "internal"),
        (" adminURL ", "admin"),
        ("admin", "admin"),
    ],
)
def test_interfaces_as_the_clients_spell_them(given: str, kept: str) -> None:
    assert load_config(env(OS_INTERFACE=given)).os_interface == kept


@pytest.mark.parametrize("bad", ["private", "url", "publicurls"])
def test_an_unknown_interface_is_an_error(bad: str) -> None:
    assert "must be public, internal or admin" in error(env(OS_INTERFACE=bad), "OS_INTERFACE")


def test_domains_and_region_are_read() -> None:
    config = load_config(
        env(
            OS_USER_DOMAIN_NAME="acme",
            OS_PROJECT_DOMAIN_NAME="acme-projects",
            OS_REGION_NAME="cn-north-4",
        )
    )
    assert config.os_user_domain_name == "acme"
    assert config.os_project_domain_name == "acme-projects"
    assert config.os_region_name == "cn-north-4"


def test_names_match_in_any_case() -> None:
    environ = {name.lower(): value for name, value in env().items()}
    assert load_config(environ).password_auth
