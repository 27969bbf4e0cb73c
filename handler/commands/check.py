"""`check`: the configuration and credentials tried with one read-only call, told in one line.

The call is the first page (limit 1) of the project's server listing, through the same runtime,
signer and transport as the function. `diagnose` is pure: it turns what came back (status,
headers, body, or the exception) into one line and an exit status, so every case is testable
without a cloud.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from handler import redaction
from handler.commands.table import printable
from handler.config import Config, ConfigError
from handler.ecs.reply import http_date, message_of

if TYPE_CHECKING:
    from handler.ecs.api import ComputeApi
    from handler.ecs.client import EcsClient
    from handler.ecs.keystone import KeystoneError

__all__ = ["Diagnosis", "Exchange", "Target", "Verdict", "diagnose", "run_check"]

#: How far X-Sdk-Date may be from the gateway's clock before Huawei refuses the signature.
GATEWAY_SKEW_S = 15 * 60
#: The longest detail from an answer's body kept in the line.
DETAIL_LIMIT = 200

Clock = Callable[[], dt.datetime]


class Verdict(enum.IntEnum):
    """What `check` found; the value is the command's exit status."""

    OK = 0
    CONFIG = 2
    UNREACHABLE = 3
    CREDENTIALS = 4
    TOKEN_EXPIRED = 5
    PROJECT = 6
    CLOCK_SKEW = 7
    FORBIDDEN = 8
    API = 9


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One verdict and the one line that says it."""

    verdict: Verdict
    line: str

    @property
    def exit_code(self) -> int:
        """The command's exit status: 0 for ok, a distinct number per problem."""
        return int(self.verdict)


@dataclass(frozen=True, slots=True)
class Target:
    """What was checked: the endpoint, project, compute API and kind of credentials."""

    endpoint: str
    project_id: str
    api: ComputeApi
    #: `AK/SK`, `token`, `Keystone password` or `credentials` (how requests were authenticated).
    auth: str = "AK/SK"
    timeout_s: float = 10.0


@dataclass(slots=True)
class Exchange:
    """One request as the transport saw it: the answer, or the exception instead."""

    method: str
    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: BaseException | None = None
    received_at: dt.datetime | None = None


def _wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the pure part ------------------------------------------------------------------------

_TOKEN_EXPIRED = re.compile(
    r"token[^.;]{0,40}expire|expired[^.;]{0,20}token|apigw\.0307|token must be updated",
    re.IGNORECASE,
)
_SIGNATURE_EXPIRED = re.compile(r"signature expired|x-sdk-date", re.IGNORECASE)
_PROJECT = re.compile(r"project", re.IGNORECASE)
_CREDENTIAL_CODES = re.compile(r"apigw?\.030[13]\b", re.IGNORECASE)
_CREDENTIAL_MARKERS = re.compile(
    r"apigw\.030[13]|apig\.030[13]|signature|aksk|ak/sk|secretkey|access key|"
    r"authentication|x-auth-token|decrypt token|ak not exist",
    re.IGNORECASE,
)
_NO_SUCH_API = re.compile(r"apigw?\.0101|api does not exist", re.IGNORECASE)
_DNS_TEXT = re.compile(
    r"name or service not known|nodename nor servname|temporary failure in name resolution|"
    r"no address associated|getaddrinfo|name resolution",
    re.IGNORECASE,
)


def _one_line(text: str, limit: int = DETAIL_LIMIT) -> str:
    flat = " ".join(text.split())
    return redaction.current().cut(flat, limit)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _code_of(body: bytes) -> str | None:
    """The error code of a gateway (`error_code`), Huawei (`error.code`) or Nova body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("error_code"), str):
        code: str = data["error_code"]
        return code
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            nested: str = value["code"]
            return nested
    return None


def _answer(status: int, headers: Mapping[str, str], body: bytes) -> str:
    """`HTTP 401 (APIGW.0301: Incorrect IAM …) [request …]`, cut to one short line."""
    message = message_of(body) if body else None
    text = f"HTTP {status}"
    if message:
        text += f" ({_one_line(message)})"
    names = ("x-openstack-request-id", "x-compute-request-id", "x-request-id")
    request_id = next((v for v in (_header(headers, n) for n in names) if v), None)
    if request_id:
        text += f" [request {_one_line(request_id, 80)}]"
    return text


def clock_skew_s(headers: Mapping[str, str], now: dt.datetime) -> float | None:
    """Seconds this machine's clock is ahead (+) or behind (-) the answer's `Date`, or None."""
    value = _header(headers, "date")
    if not value:
        return None
    when = http_date(value)
    return None if when is None else (now - when).total_seconds()


def _duration(seconds: float) -> str:
    seconds = abs(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"


def _skew_text(skew: float) -> str:
    side = "ahead of" if skew > 0 else "behind"
    return f"this machine's clock is {_duration(skew)} {side} the gateway's (its Date header)"


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in seen) and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _unreachable_why(error: BaseException, timeout_s: float) -> str:
    chain = _chain(error)
    text = " ".join(str(e) for e in chain)
    if isinstance(error, httpx.ConnectTimeout):
        return f"no connection within {timeout_s:g} s"
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, httpx.ProxyError):
        return f"the proxy failed ({_one_line(str(error), 120)})"
    if any(isinstance(e, socket.gaierror) for e in chain) or _DNS_TEXT.search(text):
        return "its host name does not resolve (DNS)"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "certificate" in text.lower():
        return f"the TLS handshake failed ({_one_line(text, 120)})"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text.lower():
        return "connection refused"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({_one_line(text, 120) or type(error).__name__})"
    detail = _one_line(str(error), 120)
    return f"the connection failed ({type(error).__name__}{': ' + detail if detail else ''})"


def _where(url: str | None, target: Target) -> str:
    """The host that answered, when it is not the endpoint (an IAM token endpoint)."""
    if not url:
        return ""
    host = urlsplit(url).netloc
    return "" if host == urlsplit(target.endpoint).netloc else f" (answered by {host})"


def _ok(body: bytes, headers: Mapping[str, str], target: Target, now: dt.datetime) -> Diagnosis:
    try:
        page = target.api.read_servers_page(json.loads(body))
    except (ValueError, RecursionError):
        return Diagnosis(
            Verdict.API,
            f"unexpected answer: {target.endpoint} answered HTTP 200 with no server listing: "
            "is ECS_ENDPOINT (or HUAWEICLOUD_SDK_REGION) the ECS endpoint, and ECS_API right?",
        )
    count = len(page.servers)
    if count:
        servers = f"{count} server(s) visible on the first page"
        if page.next_marker is not None:
            servers += " (limit 1; more follow)"
    else:
        servers = (
            "no server in this project (if you expected some: is HUAWEICLOUD_SDK_PROJECT_ID "
            "the project of your servers, in this region?)"
        )
    line = (
        f"ok: {target.endpoint} project {target.project_id}, {target.api.name} API, "
        f"{target.auth} accepted, {servers}"
    )
    skew = clock_skew_s(headers, now)
    if skew is not None and abs(skew) > GATEWAY_SKEW_S:
        line += f"; warning: {_skew_text(skew)}: AK/SK signatures would be refused"
    return Diagnosis(Verdict.OK, line)


def _credentials_hint(target: Target) -> str:
    if target.auth == KEYSTONE_AUTH:
        return (
            "the compute API refused a Keystone token just taken: is the endpoint (ECS_ENDPOINT, "
            "or the catalog's) in the cloud and region of OS_AUTH_URL?"
        )
    if target.auth == "token":
        return "ECS_AUTH_TOKEN is not a valid token here: take a new one for this region"
    if target.auth == "AK/SK":
        return (
            "check HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (the SK of this AK, no stray "
            "spaces; temporary keys need their HUAWEICLOUD_SDK_SECURITY_TOKEN); five failures "
            "in a row lock an AK for 5 minutes"
        )
    return "check the configured credentials"


def _refused(
    status: int, headers: Mapping[str, str], body: bytes, target: Target, now: dt.datetime
) -> Diagnosis:
    """A 401 or 403: expired token, clock skew, project, credentials or permission."""
    answer = _answer(status, headers, body)
    text = f"{_code_of(body) or ''} {message_of(body) or ''}"
    signed = target.auth == "AK/SK"
    if _SIGNATURE_EXPIRED.search(text) and "expire" in text.lower():
        return Diagnosis(
            Verdict.CLOCK_SKEW,
            f"clock skew: the gateway says the signature expired: {answer}; X-Sdk-Date must "
            "be within 15 min of its clock: set this machine's clock right (NTP)",
        )
    if _TOKEN_EXPIRED.search(text):
        if target.auth == KEYSTONE_AUTH:
            what = (
                "the Keystone token was renewed and still refused as expired: check this "
                "machine's clock, and that the endpoint trusts the Keystone of OS_AUTH_URL"
            )
        elif signed:
            what = (
                "the temporary credentials expired: take new HUAWEICLOUD_SDK_AK/SK and "
                "HUAWEICLOUD_SDK_SECURITY_TOKEN"
            )
        else:
            what = "take a new ECS_AUTH_TOKEN (IAM tokens last 24 hours)"
        return Diagnosis(Verdict.TOKEN_EXPIRED, f"token expired: {answer}: {what}")
    skew = clock_skew_s(headers, now)
    if signed and skew is not None and abs(skew) > GATEWAY_SKEW_S:
        return Diagnosis(
            Verdict.CLOCK_SKEW,
            f"clock skew: {_skew_text(skew)}; the gateway refuses signatures whose X-Sdk-Date "
            f"is more than 15 min off ({answer}): set this machine's clock right (NTP)",
        )
    # The gateway's own credential codes first: its message may echo the signed headers,
    # `x-project-id` among them, which is no project mismatch.
    credentials = _CREDENTIAL_CODES.match(_code_of(body) or "") is not None
    if not credentials and _PROJECT.search(text):
        return Diagnosis(Verdict.PROJECT, _project_line(answer, target))
    if credentials or status == 401 or _CREDENTIAL_MARKERS.search(text):
        label = {
            "AK/SK": "signature rejected",
            "token": "token rejected",
            KEYSTONE_AUTH: "token rejected",
        }.get(target.auth, "credentials rejected")
        return Diagnosis(Verdict.CREDENTIALS, f"{label}: {answer}: {_credentials_hint(target)}")
    return Diagnosis(
        Verdict.FORBIDDEN,
        f"permission denied: {answer}: the credentials are valid but may not list the "
        "project's servers (grant ECS read access, e.g. ECS ReadOnlyAccess, and the right to "
        "delete metadata)",
    )


def _project_line(answer: str, target: Target) -> str:
    if target.auth == KEYSTONE_AUTH:
        return (
            f"project mismatch: {answer}: project {target.project_id} is not one the Keystone "
            "token may use here (it is scoped to OS_PROJECT_ID or OS_PROJECT_NAME; "
            "HUAWEICLOUD_SDK_PROJECT_ID must be that project)"
        )
    return (
        f"project mismatch: {answer}: HUAWEICLOUD_SDK_PROJECT_ID {target.project_id} is not a "
        "project these credentials may use in this region (take the project id of the "
        "region from the console's My Credentials, or scope the token to it)"
    )


def diagnose(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes,
    error: BaseException | None,
    *,
    target: Target,
    now: dt.datetime,
    url: str | None = None,
) -> Diagnosis:
    """Turn one answer (or the exception instead) into a verdict and one line; pure."""
    diagnosis = _diagnose(status, headers, body, error, target, now)
    where = _where(url, target) if diagnosis.verdict is not Verdict.OK else ""
    line = diagnosis.line
    if where:
        head, sep, rest = line.partition(": ")
        line = f"{head}{where}{sep}{rest}"
    # One line, no secret, and no control character from an answer (an ESC sequence in an
    # error body would rewrite the operator's terminal).
    line = redaction.current().text(" ".join(line.split()))
    return Diagnosis(diagnosis.verdict, printable(line))


def _diagnose(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes,
    error: BaseException | None,
    target: Target,
    now: dt.datetime,
) -> Diagnosis:
    if status is None:
        return _failed(error, target)
    if 200 <= status < 300:
        return _ok(body, headers, target, now)
    if status in (401, 403):
        return _refused(status, headers, body, target, now)
    answer = _answer(status, headers, body)
    text = f"{_code_of(body) or ''} {message_of(body) or ''}"
    if status == 400 and _PROJECT.search(text):
        return Diagnosis(Verdict.PROJECT, _project_line(answer, target))
    if status == 404:
        if _NO_SUCH_API.search(text):
            return Diagnosis(
                Verdict.API,
                f"unexpected answer: {answer}: {target.endpoint} does not serve this API: "
                "check ECS_ENDPOINT (or HUAWEICLOUD_SDK_REGION) and ECS_API",
            )
        return Diagnosis(
            Verdict.PROJECT,
            f"project mismatch: the project's server listing answered {answer}: is "
            f"HUAWEICLOUD_SDK_PROJECT_ID {target.project_id} a project of this region, and "
            f"ECS_API ({target.api.name}) right for this cloud?",
        )
    if status == 429:
        return Diagnosis(
            Verdict.API, f"unexpected answer: throttled, {answer}: try again in a moment"
        )
    return Diagnosis(
        Verdict.API, f"unexpected answer: {answer} to GET {target.api.name} server listing"
    )


def _keystone(error: KeystoneError, target: Target) -> Diagnosis:
    """No token from Keystone, or no compute endpoint in its catalog."""
    text = _one_line(str(error), 400)
    if error.reason == "password":
        return Diagnosis(Verdict.CREDENTIALS, f"password rejected: {text}")
    if error.reason == "refused":
        return Diagnosis(Verdict.FORBIDDEN, f"permission denied: {text}")
    if error.reason == "catalog":
        return Diagnosis(Verdict.CONFIG, f"catalog without compute: {text}")
    cause = error.__cause__
    if error.reason == "unavailable" and error.status is None:
        why = _unreachable_why(cause, target.timeout_s) if cause is not None else None
        head = f"keystone unreachable: {why} ({text})" if why else f"keystone unreachable: {text}"
        return Diagnosis(
            Verdict.UNREACHABLE, f"{head}; check OS_AUTH_URL, the network and any proxy"
        )
    return Diagnosis(Verdict.API, f"unexpected answer: {text}")


def _failed(error: BaseException | None, target: Target) -> Diagnosis:
    """No answer: a network failure, missing credentials or a bug."""
    from handler.ecs.keystone import KeystoneError
    from handler.ecs.signing import CredentialsUnavailableError

    if isinstance(error, KeystoneError):
        return _keystone(error, target)
    if isinstance(error, CredentialsUnavailableError):
        return Diagnosis(Verdict.CONFIG, f"config invalid: {error}")
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return Diagnosis(Verdict.CONFIG, f"config invalid: ECS_ENDPOINT: {error}")
    if isinstance(error, httpx.TransportError | TimeoutError | OSError):
        host = urlsplit(target.endpoint).netloc
        why = _unreachable_why(error, target.timeout_s)
        return Diagnosis(
            Verdict.UNREACHABLE,
            f"endpoint unreachable: {host}: {why}; check ECS_ENDPOINT (or "
            "HUAWEICLOUD_SDK_REGION), the network and any proxy",
        )
    what = "no request was sent" if error is None else f"{type(error).__name__}: {error}"
    return Diagnosis(Verdict.API, f"unexpected error: {_one_line(what)}")


# --- the call -----------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Hands requests on and keeps each exchange (the body read whole: check reads one page)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request and record what came back."""
        exchange = Exchange(request.method, str(request.url.copy_with(query=None)))
        self.exchanges.append(exchange)
        try:
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
        except asyncio.CancelledError:
            # The client's own time limit cancels the request: no answer in time.
            exchange.error = TimeoutError("no answer in time")
            exchange.received_at = self.clock()
            raise
        except Exception as exc:
            exchange.error = exc
            exchange.received_at = self.clock()
            raise
        exchange.received_at = self.clock()
        exchange.status = response.status_code
        exchange.headers = dict(response.headers)
        exchange.body = body
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the transport underneath."""
        await self.inner.aclose()


#: How `Target.auth` names Keystone password authentication (OS_AUTH_URL).
KEYSTONE_AUTH = "Keystone password"


def auth_kind(config: Config) -> str:
    """How requests are authenticated: `token`, `AK/SK`, `Keystone password` or `credentials`."""
    if config.password_auth:
        return KEYSTONE_AUTH
    if config.ecs_auth_token is not None:
        return "token"
    if config.huaweicloud_sdk_ak is not None:
        return "AK/SK"
    return "credentials"


async def _first_page(client: EcsClient, project_id: str) -> None:
    """Read the first page (limit 1) of the project's servers, and no more."""
    servers = client.list_servers(project_id, page_size=1)
    try:
        await anext(servers, None)
    finally:
        close = getattr(servers, "aclose", None)
        if close is not None:  # an async generator: stop it before it asks for a next page
            await close()


def run_check(
    config: Config,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> Diagnosis:
    """Build the function's runtime from `config`, send the one read-only call, diagnose it.

    Whatever goes wrong is one line: an exception nobody foresaw (a bug) is `unexpected
    error` (exit 9), never a traceback.
    """
    try:
        return _run_check(config, transport=transport, clock=clock)
    except Exception as exc:  # noqa: BLE001 - the operator gets one line, whatever it was
        return _unexpected(exc)


def _unexpected(error: BaseException) -> Diagnosis:
    what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    line = f"unexpected error (a bug): {_one_line(what)}"
    return Diagnosis(Verdict.API, printable(redaction.current().text(" ".join(line.split()))))


def _run_check(
    config: Config,
    *,
    transport: httpx.AsyncBaseTransport | None,
    clock: Clock | None,
) -> Diagnosis:
    from handler.ecs.client import ComputeApiError
    from handler.ecs.keystone import KeystoneError
    from handler.ecs.signing import CredentialsUnavailableError
    from handler.ecs.transport import AdaptiveTransport, proxy_error
    from handler.runtime import Runtime

    now = clock or _wall_clock
    for url in (config.endpoint, config.os_auth_url):
        if transport is None and url is not None and (problem := proxy_error(url)):
            return Diagnosis(Verdict.CONFIG, f"config invalid: {problem}")
    recorder = RecordingTransport(transport or AdaptiveTransport(max_connections=2), now)
    try:
        # One attempt: a check reports what the first answer says, it does not retry into it.
        runtime = Runtime(config.model_copy(update={"max_attempts": 1}), transport=recorder)
    except ConfigError as exc:
        return config_diagnosis(exc)
    # With OS_AUTH_URL, the endpoint (and with OS_PROJECT_NAME alone, the project) is the
    # token's: known once Keystone has answered.
    seen = {
        "endpoint": config.endpoint or "the Keystone catalog's compute endpoint",
        "project_id": config.project_id or "(the Keystone token's)",
    }

    async def probe() -> None:
        client = runtime.client
        if runtime.keystone is not None:
            seen["project_id"] = config.project_id or await runtime.keystone.project_id()
            seen["endpoint"] = await client.base_url()
        await _first_page(client, seen["project_id"])

    caught: BaseException | None = None
    try:
        future = asyncio.run_coroutine_threadsafe(probe(), runtime.loop)
        try:
            future.result(timeout=config.request_timeout_s * 3 + 5)
        except (ComputeApiError, CredentialsUnavailableError, httpx.HTTPError) as exc:
            caught = exc
        except TimeoutError as exc:
            future.cancel()
            caught = exc
        except Exception as exc:  # noqa: BLE001 - a bug: said in one line, never a traceback
            caught = exc
    finally:
        runtime.close()
    target = Target(
        endpoint=seen["endpoint"],
        project_id=seen["project_id"],
        api=runtime.client.api,
        auth=auth_kind(config),
        timeout_s=config.request_timeout_s,
    )
    if isinstance(caught, ComputeApiError) and isinstance(caught.__cause__, KeystoneError):
        caught = caught.__cause__
    expected = (ComputeApiError, CredentialsUnavailableError, httpx.HTTPError, TimeoutError)
    if caught is not None and not isinstance(caught, expected):
        return _unexpected(caught)
    if not recorder.exchanges or isinstance(caught, KeystoneError):
        return diagnose(None, {}, b"", caught, target=target, now=now())
    last = recorder.exchanges[-1]
    return diagnose(
        last.status,
        last.headers,
        last.body,
        last.error or (caught if last.status is None else None),
        target=target,
        now=last.received_at or now(),
        url=last.url,
    )


def config_diagnosis(error: ConfigError) -> Diagnosis:
    """The line for a configuration that cannot be used (exit status 2)."""
    text = str(error).removeprefix("invalid configuration: ")
    return Diagnosis(Verdict.CONFIG, redaction.current().text(f"config invalid: {text}"))
