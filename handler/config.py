"""The function's configuration, read once per process from the environment (SPEC §6)."""

from __future__ import annotations

import base64
import os
import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from handler.model import PROJECT_PATTERN

if TYPE_CHECKING:
    from collections.abc import Mapping

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

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

#: POWERTOOLS_LOG_LEVEL's accepted names (any case), as Powertools and `logging` spell them.
_LOG_LEVELS: dict[str, LogLevel] = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
}
_LOG_LEVEL_RULE = (
    "must be one of DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL), in any case"
)

#: Kept exactly as given (never stripped, never echoed); a blank one is still "unset".
_SECRET_FIELDS = frozenset(
    {
        "huaweicloud_sdk_ak",
        "huaweicloud_sdk_sk",
        "huaweicloud_sdk_security_token",
        "ecs_auth_token",
        "webhook_secret",
        "os_password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "dead_letter_secret",
        "dead_letter_auth_header",
    }
)
_COMMA_FIELDS = frozenset({"allowed_project_ids", "protected_keys"})

_ENDPOINT_RULE = "must be an http(s) base URL such as https://ecs.cn-north-4.myhuaweicloud.com"
_AUTH_URL_RULE = (
    "must be the http(s) Keystone v3 URL, such as https://iam.cn-north-4.myhuaweicloud.com/v3"
)
#: What a Keystone URL may end with: the API version (and the token path of Huawei's docs).
_AUTH_URL_SUFFIXES = ("/v3/auth/tokens", "/v3")
#: OS_INTERFACE's accepted values; `publicURL` and the like (the clients' older spelling) too.
_INTERFACES = frozenset({"public", "internal", "admin"})
_SINK_RULE = (
    "must be 'log', a file path, file:///path, an http(s) URL, sqs://<queue URL> or "
    "smn://<topic URN>"
)
_SMN_ENDPOINT_RULE = "must be an http(s) base URL such as https://smn.cn-north-4.myhuaweicloud.com"
_WHSEC_RULE = "must be a Standard Webhooks secret: whsec_ followed by base64"
_HEADER_RULE = "must be one header as `Name: value`, e.g. `Authorization: Bearer <token>`"
#: An HTTP field name (RFC 9110's token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the HTTP sink (or httpx) sets itself, or that change how the request is framed.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class ConfigError(ValueError):
    """The environment does not make a usable configuration; the message names the variable."""


def log_level_name(value: str | None) -> str:
    """The standard name of a POWERTOOLS_LOG_LEVEL value, or INFO for an unknown or empty one."""
    if not isinstance(value, str):
        return "INFO"
    return _LOG_LEVELS.get(value.strip().upper(), "INFO")


def _host_problem(host: str) -> str | None:
    """Why a URL's host (as urlsplit gives it: lower case, no brackets) is unusable, or None."""
    import ipaddress  # already loaded by urllib.parse: free

    if ":" in host:  # only a bracketed IPv6 literal gets here with a colon
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            return "the host is not a valid [IPv6] address"
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return "the host is not a valid host name"
    labels = host.removesuffix(".").split(".")
    if labels[-1].isdigit():  # a DNS name never ends in a numeric label: IPv4 or nothing
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "the host is not a valid IPv4 address"
        return None
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "the host is not a valid host name, IPv4 or [IPv6] address"
    return None


def _http_url_problem(value: str, *, allow_userinfo: bool, allow_query: bool) -> str | None:
    """Why an http(s) URL is unusable (never quoting it: it may carry a credential), or None."""
    if _SPACE_OR_CONTROL.search(value):
        return "the URL contains a space or a control character"
    try:
        parts = urlsplit(value)
    except ValueError:  # unbalanced or invalid [IPv6] brackets
        return "the host is not a valid host name, IPv4 or [IPv6] address"
    if parts.scheme not in ("http", "https"):
        return "the scheme is not http or https"
    if "@" in parts.netloc and not allow_userinfo:
        return "no user info (user:password@) is allowed in it"
    if not parts.hostname:
        return "the URL has no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    host = _host_problem(parts.hostname)
    if host is not None:
        return host
    if not allow_query and (parts.query or parts.fragment or "?" in value or "#" in value):
        return "no query string or fragment is allowed in it"
    return None


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses: plain http there never leaves the machine."""
    import ipaddress  # already loaded by urllib.parse: free

    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def http_url_problem(value: str, *, allow_userinfo: bool = False) -> str | None:
    """Why a URL is not a usable http(s) base URL as ECS_ENDPOINT must be (no query string or
    fragment; no user info unless allowed), or None; the reason never quotes the URL."""
    return _http_url_problem(value.strip(), allow_userinfo=allow_userinfo, allow_query=False)


def _not_unicode(text: str) -> bool:
    """True when a value holds lone surrogates: bytes that were not UTF-8 in the environment
    (os.environ keeps them as surrogate escapes), which no JSON body or header can carry."""
    return any("\ud800" <= c <= "\udfff" for c in text)


_NOT_UNICODE = "is not valid UTF-8 text (it holds bytes the environment could not decode)"


class Config(BaseModel):
    """Every setting of the function, validated; secrets are SecretStr and never printed."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    # Every field: a blank (empty or whitespace-only) value counts as unset, i.e. its default.
    ecs_endpoint: str | None = None
    huaweicloud_sdk_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,40}$")
    #: Required, unless OS_AUTH_URL is set (then OS_PROJECT_ID, or the token's project).
    huaweicloud_sdk_project_id: str | None = Field(default=None, pattern=PROJECT_PATTERN)
    huaweicloud_sdk_ak: SecretStr | None = None
    huaweicloud_sdk_sk: SecretStr | None = None
    huaweicloud_sdk_security_token: SecretStr | None = None
    ecs_auth_token: SecretStr | None = None
    # Keystone v3 password authentication (plain OpenStack, Huawei IAM), as the openstack
    # clients read it: OS_AUTH_URL set means a token is taken with OS_USERNAME/OS_PASSWORD.
    #: The Keystone base URL, kept without its trailing `/v3`.
    os_auth_url: str | None = None
    os_username: str | None = None
    os_password: SecretStr | None = None
    os_project_id: str | None = Field(default=None, pattern=PROJECT_PATTERN)
    os_project_name: str | None = None
    os_user_domain_name: str = "Default"
    os_project_domain_name: str = "Default"
    os_region_name: str | None = None
    os_interface: Literal["public", "internal", "admin"] = "public"
    #: `nova`: the `/v2.1` paths; `native`: Huawei's `/v1/{project}/cloudservers` routes.
    ecs_api: Literal["nova", "native"] = "nova"
    # Comma-separated; a value with no entries (blank, or only commas) counts as unset.
    allowed_project_ids: tuple[str, ...] = ()
    # Comma-separated; a value with no entries (blank, or only commas) counts as unset and so
    # means DEFAULT_PROTECTED_KEYS, never "protect nothing".
    protected_keys: tuple[str, ...] = DEFAULT_PROTECTED_KEYS
    dead_letter_url: str = "log"
    #: The SQS sink's identity and endpoints, read as the AWS SDKs read them (Lambda sets the
    #: credentials and the region); the key id is treated as a secret too.
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_region: str | None = None
    aws_default_region: str | None = None
    aws_endpoint_url_sqs: str | None = None
    aws_endpoint_url: str | None = None
    #: The SMN sink's endpoint; unset: `https://smn.{region}.myhuaweicloud.com`, the region
    #: the topic's URN names.
    smn_endpoint: str | None = None
    #: The HTTP sink signs each POST as a Standard Webhook with it (`whsec_` and base64).
    dead_letter_secret: SecretStr | None = None
    #: The HTTP sink sends this header (`Name: value`) with each POST; the value is a secret.
    dead_letter_auth_header: SecretStr | None = None
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    max_attempts: int = Field(default=6, ge=1, le=20)
    #: A ceiling on the requests sent per second, all kinds together; unset: no ceiling (the
    #: rate still adapts after a 429).
    max_requests_per_second: float | None = Field(default=None, ge=0.01, le=100_000)
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    dry_run: bool = False
    #: Standard Webhooks secret (`whsec_` and base64): webhook requests must be signed with it.
    webhook_secret: SecretStr | None = None
    #: `signature`: a webhook without a valid signature gets 401; `none`: a gateway checks.
    webhook_auth: Literal["signature", "none"] = "signature"
    #: A webhook naming more pairs than this is answered 413, nothing processed.
    max_pairs_per_request: int = Field(default=1000, ge=1, le=100_000)
    #: The time a request to `serve` (the ASGI app) may take, as a function's timeout: pairs
    #: not settled by then are answered as transient (207), the caller sends them again.
    serve_timeout_s: float = Field(default=60.0, ge=1, le=3600)
    powertools_service_name: str = "ecs-metadata-janitor"
    powertools_log_level: LogLevel = "INFO"
    #: Log each incoming event (redacted) at INFO, as Powertools' Logger does.
    powertools_logger_log_event: bool = False
    #: `emf`: per-invocation metrics in CloudWatch Embedded Metric Format; `off`: none.
    metrics: Literal["off", "emf"] = "off"
    #: The EMF namespace (as Powertools Metrics); the service name when unset.
    powertools_metrics_namespace: str | None = None
    #: The share of invocations (0 to 1) logged at DEBUG whatever the level, as in Powertools.
    powertools_logger_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        # An empty variable (an optional deployment parameter left blank) means "not set": it
        # gets the default, and an empty ECS_AUTH_TOKEN cannot take over from a valid AK/SK.
        if not isinstance(data, dict):
            return data
        kept: dict[str, Any] = {}
        for name, value in data.items():
            if isinstance(value, str):
                blank = value.replace(",", "") if name in _COMMA_FIELDS else value
                if not blank.strip():
                    continue
                if name not in _SECRET_FIELDS:
                    value = value.strip()
            kept[name] = value
        return kept

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
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            name = _LOG_LEVELS.get(value.strip().upper())
            if name is None:
                raise ValueError(_LOG_LEVEL_RULE)
            return name
        return value

    @field_validator(
        "huaweicloud_sdk_ak",
        "huaweicloud_sdk_sk",
        "huaweicloud_sdk_security_token",
        "ecs_auth_token",
    )
    @classmethod
    def _one_header_line(cls, value: SecretStr | None) -> SecretStr | None:
        # Sent in a header: a newline (a secret file's last line) or a non-Latin-1 character
        # would fail every request; say so now, without quoting the value.
        if value is not None:
            text = value.get_secret_value()
            if any(ord(c) < 0x20 or ord(c) == 0x7F or ord(c) > 0xFF for c in text):
                raise ValueError("must be one line of printable characters (no newline)")
        return value

    @field_validator("os_password")
    @classmethod
    def _one_line(cls, value: SecretStr | None) -> SecretStr | None:
        # Sent in a JSON body (any Unicode character will do), but a newline is a secret
        # file's last line, not part of the password: say so now, without quoting the value.
        if value is not None:
            text = value.get_secret_value()
            if _not_unicode(text):
                raise ValueError(_NOT_UNICODE)
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
                raise ValueError("must be one line of printable characters (no newline)")
        return value

    @field_validator(
        "os_username",
        "os_project_name",
        "os_user_domain_name",
        "os_project_domain_name",
        "os_region_name",
    )
    @classmethod
    def _keystone_text(cls, value: str | None) -> str | None:
        # Sent in the token request's JSON body (or compared with the catalog's): a lone
        # surrogate would be sent as an escape no Keystone can match. Never quoted.
        if value is not None and _not_unicode(value):
            raise ValueError(_NOT_UNICODE)
        return value

    @field_validator("webhook_auth", "metrics", "ecs_api", mode="before")
    @classmethod
    def _auth_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("os_interface", mode="before")
    @classmethod
    def _interface(cls, value: object) -> object:
        # The openstack clients accept `publicURL`, `internalURL` and `adminURL` too.
        if isinstance(value, str):
            name = value.strip().lower()
            name = name.removesuffix("url") if name.removesuffix("url") in _INTERFACES else name
            if name not in _INTERFACES:
                raise ValueError("must be public, internal or admin (publicURL … accepted too)")
            return name
        return value

    @field_validator("webhook_secret", "dead_letter_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Standard Webhooks secrets are `whsec_` and base64; say what is wrong, never the value.
        if value is None:
            return value
        text = value.get_secret_value()
        body = text.removeprefix("whsec_")
        try:
            key = base64.b64decode(body, validate=True)
        except ValueError:
            key = b""
        if not key:
            raise ValueError(_WHSEC_RULE)
        return value

    @field_validator("dead_letter_auth_header")
    @classmethod
    def _auth_header(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked now, so a header httpx cannot send fails the cold start, not every POST.
        if value is not None:
            _split_header(value.get_secret_value())
        return value

    @field_validator("smn_endpoint")
    @classmethod
    def _smn_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        problem = _http_url_problem(value, allow_userinfo=False, allow_query=False)
        if problem is not None:
            raise ValueError(f"{_SMN_ENDPOINT_RULE}: {problem}")
        return value

    @field_validator("ecs_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        problem = _http_url_problem(value, allow_userinfo=False, allow_query=False)
        if problem is not None:
            raise ValueError(f"{_ENDPOINT_RULE}: {problem}")
        return value

    @field_validator("os_auth_url")
    @classmethod
    def _auth_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        problem = _http_url_problem(value, allow_userinfo=False, allow_query=False)
        if problem is not None:
            raise ValueError(f"{_AUTH_URL_RULE}: {problem}")
        lowered = value.lower()
        if lowered.endswith(("/v2.0", "/v2")):
            raise ValueError(f"{_AUTH_URL_RULE}: Keystone v2 is not supported, use the v3 URL")
        for suffix in _AUTH_URL_SUFFIXES:
            if lowered.endswith(suffix):
                return value[: -len(suffix)]
        return value

    @field_validator("dead_letter_url")
    @classmethod
    def _sink(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "log":
            return "log"
        try:
            scheme = urlsplit(value).scheme.lower()
        except ValueError:  # an http(s) URL with bad [IPv6] brackets
            scheme = "http"
        if len(scheme) > 1 and scheme not in ("http", "https", "file", "sqs", "smn"):
            raise ValueError(f"{_SINK_RULE}, not {scheme}://")
        if scheme == "sqs":
            return value  # read (with the AWS_* settings) where the sink is built
        if scheme == "smn":
            from handler.queues.smn import parse_topic

            try:
                parse_topic(value)
            except ValueError as exc:
                raise ValueError(str(exc).removeprefix("DEAD_LETTER_URL: ")) from None
            return value
        if scheme in ("http", "https"):
            # User info stays allowed here: the HTTP sink keeps it out of its description.
            problem = _http_url_problem(value, allow_userinfo=True, allow_query=True)
            if problem is not None:
                raise ValueError(f"{_SINK_RULE}: {problem}")
        return value

    @model_validator(mode="after")
    def _http_sink_auth(self) -> Config:
        if self.dead_letter_secret is None and self.dead_letter_auth_header is None:
            return self
        if not self.dead_letter_url.lower().startswith(("http://", "https://")):
            name = (
                "DEAD_LETTER_SECRET"
                if self.dead_letter_secret is not None
                else "DEAD_LETTER_AUTH_HEADER"
            )
            raise ValueError(
                f"{name}: authenticates the HTTP sink's POSTs, but DEAD_LETTER_URL is not an "
                "http(s) URL: remove it, or send dead letters to an http(s) URL"
            )
        header = self.dead_letter_auth_header
        if header is not None and header.get_secret_value().split(":", 1)[0].strip().lower() == (
            "authorization"
        ):
            try:
                userinfo = "@" in urlsplit(self.dead_letter_url).netloc
            except ValueError:
                userinfo = False
            if userinfo:
                raise ValueError(
                    "DEAD_LETTER_AUTH_HEADER: DEAD_LETTER_URL carries a user and password, whose "
                    "Basic authorization would replace this header: remove one of them"
                )
        return self

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
        if self.os_auth_url is not None:
            return self._password_auth()
        if self.os_username is not None or self.os_password is not None:
            raise ValueError(
                "OS_AUTH_URL: is required with OS_USERNAME and OS_PASSWORD (Keystone password "
                "authentication)"
            )
        if self.huaweicloud_sdk_project_id is None:
            raise ValueError("HUAWEICLOUD_SDK_PROJECT_ID: is required")
        if self.ecs_endpoint is None and self.huaweicloud_sdk_region is None:
            raise ValueError("ECS_ENDPOINT: set it, or set HUAWEICLOUD_SDK_REGION to derive it")
        return self

    def _password_auth(self) -> Config:
        """The rules of OS_AUTH_URL: its user, password and project; no other credentials."""
        if self.huaweicloud_sdk_ak is not None or self.huaweicloud_sdk_security_token is not None:
            raise ValueError(
                "HUAWEICLOUD_SDK_AK: OS_AUTH_URL (password authentication) is set too: remove "
                "HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK (and HUAWEICLOUD_SDK_SECURITY_TOKEN) to "
                "use it, or remove OS_AUTH_URL to sign with AK/SK"
            )
        if self.ecs_auth_token is not None:
            raise ValueError(
                "ECS_AUTH_TOKEN: OS_AUTH_URL (password authentication) is set too: remove "
                "ECS_AUTH_TOKEN to take tokens from Keystone, or OS_AUTH_URL to send that token"
            )
        if self.os_username is None:
            raise ValueError("OS_USERNAME: is required with OS_AUTH_URL")
        if self.os_password is None:
            raise ValueError("OS_PASSWORD: is required with OS_AUTH_URL")
        if self.os_project_id is None and self.os_project_name is None:
            raise ValueError(
                "OS_PROJECT_ID: is required with OS_AUTH_URL, or OS_PROJECT_NAME (the project "
                "the token is scoped to)"
            )
        pinned = self.huaweicloud_sdk_project_id
        if pinned is not None and self.os_project_id is not None and pinned != self.os_project_id:
            raise ValueError(
                "HUAWEICLOUD_SDK_PROJECT_ID: differs from OS_PROJECT_ID, and a Keystone token "
                "is scoped to one project: remove HUAWEICLOUD_SDK_PROJECT_ID or make them equal"
            )
        return self

    @property
    def password_auth(self) -> bool:
        """True when tokens are taken from Keystone with OS_USERNAME/OS_PASSWORD."""
        return self.os_auth_url is not None

    @property
    def project_id(self) -> str | None:
        """The default project (None: only the Keystone token knows it, OS_PROJECT_NAME alone)."""
        return self.huaweicloud_sdk_project_id or self.os_project_id

    @property
    def endpoint(self) -> str | None:
        """The ECS base URL, given or derived; None when the Keystone catalog gives it."""
        if self.ecs_endpoint:
            return self.ecs_endpoint
        if self.os_auth_url is not None:
            return None
        return f"https://ecs.{self.huaweicloud_sdk_region}.myhuaweicloud.com"

    def dead_letter_header(self) -> tuple[str, str] | None:
        """DEAD_LETTER_AUTH_HEADER as (name, value), or None when it is not set."""
        if self.dead_letter_auth_header is None:
            return None
        return _split_header(self.dead_letter_auth_header.get_secret_value())

    def aws_settings(self) -> dict[str, str]:
        """The AWS_* settings (endpoints, region) as the AWS SDKs read them, for the SQS sink."""
        names = ("aws_region", "aws_default_region", "aws_endpoint_url_sqs", "aws_endpoint_url")
        return {name.upper(): value for name in names if (value := getattr(self, name))}

    def aws_credentials(self) -> tuple[str, str, str | None] | None:
        """The AWS access key (with its session token), or None when it is not set."""
        key, secret = self.aws_access_key_id, self.aws_secret_access_key
        if key is None or secret is None:
            return None
        token = self.aws_session_token
        session = token.get_secret_value() if token is not None else None
        return key.get_secret_value(), secret.get_secret_value(), session

    def secrets(self) -> list[str]:
        """Every secret value configured, for the log and dead-letter redaction."""
        values = [
            self.huaweicloud_sdk_ak,
            self.huaweicloud_sdk_sk,
            self.huaweicloud_sdk_security_token,
            self.ecs_auth_token,
            self.os_password,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        for whsec in (self.webhook_secret, self.dead_letter_secret):
            if whsec is not None:
                secret = whsec.get_secret_value()
                found += [secret, secret.removeprefix("whsec_")]
        header = self.dead_letter_header()
        if header is not None:
            value = header[1]
            # `Bearer <token>`, `Basic <credentials>`: the credential alone is a secret too.
            found += [value, value.rsplit(None, 1)[-1]]
        return found + _url_secrets(self.dead_letter_url)


def _split_header(text: str) -> tuple[str, str]:
    """`Name: value` as (name, value); ValueError saying what is wrong, never quoting it."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip(" \t")
    if not colon or not name:
        raise ValueError(_HEADER_RULE)
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            f"{_HEADER_RULE}: the name must be letters, digits and !#$%&'*+-.^_`|~ only"
        )
    if name.lower() in _RESERVED_HEADERS:
        raise ValueError(
            f"{_HEADER_RULE}: the name is one the sink sets itself (Host, Content-Type, "
            "Content-Length, webhook-* and the like)"
        )
    if not value:
        raise ValueError(f"{_HEADER_RULE}: the value is empty")
    if any(not (" " <= c <= "~" or c == "\t") for c in value):
        raise ValueError(
            f"{_HEADER_RULE}: the value must be one line of printable ASCII (no newline)"
        )
    return name, value


def _url_secrets(url: str) -> list[str]:
    """A URL's password and query values: an HTTP sink URL may carry credentials in either."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return []
    found = [parts.password] if parts.password else []
    if parts.query:
        found.append(parts.query)
        found += [value for _, value in parse_qsl(parts.query) if value]
    return found


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required"
        if loc:
            parts.append(f"{loc[0].upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the environment (or `environ`); raise ConfigError with one line."""
    source = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for key, value in source.items():
        # Names match in any case; of two spellings of one name, the later one wins.
        name = key.lower()
        if name in Config.model_fields:
            values[name] = value
    try:
        return Config.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
