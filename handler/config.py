"""The function's configuration, read once per process from the environment (SPEC §6)."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from handler.model import PROJECT_PATTERN

#: Keys never deleted unless PROTECTED_KEYS says otherwise: what Huawei Cloud ECS itself
#: writes and reads (billing, networking, image, lock and agent markers) and anything `__`.
DEFAULT_PROTECTED_KEYS: tuple[str, ...] = (
    "__*",
    "charging_mode",
    "metering.*",
    "vpc_id",
    "os_type",
    "os_bit",
    "image_name",
    "virtual_env_type",
    "agency_name",
    "EcmResStatus",
    "lockCheckEndpoint",
    "lockScene",
    "lockSource",
    "lockSourceId",
    "cascaded.*",
    "resource_type",
    "resource_spec_code",
)

CommaList = Annotated[tuple[str, ...], NoDecode]


class ConfigError(ValueError):
    """The environment does not make a usable configuration; the message names the variable."""


class Config(BaseSettings):
    """Every setting of the function, validated; secrets are SecretStr and never printed."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    ecs_endpoint: str | None = None
    huaweicloud_sdk_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,40}$")
    huaweicloud_sdk_project_id: str = Field(pattern=PROJECT_PATTERN)
    huaweicloud_sdk_ak: SecretStr | None = None
    huaweicloud_sdk_sk: SecretStr | None = None
    huaweicloud_sdk_security_token: SecretStr | None = None
    ecs_auth_token: SecretStr | None = None
    allowed_project_ids: CommaList = ()
    protected_keys: CommaList = DEFAULT_PROTECTED_KEYS
    dead_letter_url: str = "log"
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    max_attempts: int = Field(default=6, ge=1, le=20)
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    dry_run: bool = False
    powertools_service_name: str = "ecs-metadata-janitor"
    powertools_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("allowed_project_ids", "protected_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_project_ids")
    @classmethod
    def _project_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for project in value:
            if not re.fullmatch(PROJECT_PATTERN, project):
                raise ValueError(f"{project!r} is not a project id (letters, digits, - and _)")
        return value

    @field_validator("powertools_log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "huaweicloud_sdk_region",
        "huaweicloud_sdk_ak",
        "huaweicloud_sdk_sk",
        "huaweicloud_sdk_security_token",
        "ecs_auth_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (an optional deployment parameter left blank) means "not set":
        # an empty ECS_AUTH_TOKEN must not take over from a valid AK/SK.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ecs_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        example = "an http(s) base URL such as https://ecs.cn-north-4.myhuaweicloud.com"
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"must be {example} ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
            raise ValueError(f"must be {example}")
        return value

    @field_validator("dead_letter_url")
    @classmethod
    def _sink(cls, value: str) -> str:
        value = value.strip()
        rule = "must be 'log', a file path, file:///path or an http(s) URL"
        if not value:
            raise ValueError(rule)
        if value.lower() == "log":
            return "log"
        scheme = urlsplit(value).scheme.lower()
        if len(scheme) > 1 and scheme not in ("http", "https", "file"):
            raise ValueError(f"{rule}, not {scheme}://")
        if scheme in ("http", "https") and not urlsplit(value).hostname:
            raise ValueError(f"{rule}: the URL has no host")
        return value

    @model_validator(mode="after")
    def _credentials_and_endpoint(self) -> Config:
        if (self.huaweicloud_sdk_ak is None) != (self.huaweicloud_sdk_sk is None):
            missing = (
                "HUAWEICLOUD_SDK_SK" if self.huaweicloud_sdk_sk is None else "HUAWEICLOUD_SDK_AK"
            )
            raise ValueError(f"{missing}: must be set together with its pair (AK and SK)")
        if self.huaweicloud_sdk_security_token is not None and self.huaweicloud_sdk_ak is None:
            raise ValueError(
                "HUAWEICLOUD_SDK_SECURITY_TOKEN: goes with temporary HUAWEICLOUD_SDK_AK and "
                "HUAWEICLOUD_SDK_SK, which are not set"
            )
        if self.ecs_endpoint is None and self.huaweicloud_sdk_region is None:
            raise ValueError("ECS_ENDPOINT: set it, or set HUAWEICLOUD_SDK_REGION to derive it")
        return self

    @property
    def endpoint(self) -> str:
        """The ECS base URL, given or derived from the region."""
        if self.ecs_endpoint:
            return self.ecs_endpoint
        return f"https://ecs.{self.huaweicloud_sdk_region}.myhuaweicloud.com"

    def secrets(self) -> list[str]:
        """Every secret value configured, for the log and dead-letter redaction."""
        values = [
            self.huaweicloud_sdk_ak,
            self.huaweicloud_sdk_sk,
            self.huaweicloud_sdk_security_token,
            self.ecs_auth_token,
        ]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        if loc:
            parts.append(f"{loc[0].upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def load_config() -> Config:
    """Read and validate the environment; raise ConfigError with one line on a bad value."""
    try:
        return Config()
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
