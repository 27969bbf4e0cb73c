"""The warm container's runtime: one event loop, one HTTP pool, and the adapter over the engine.

Invocations may arrive on several threads at once (FunctionGraph runs concurrent requests per
instance): each is one task on the runtime's single loop, which runs in its own thread, so they
share the warm HTTP pool while their credentials, deadlines, redactor and log context stay
their own (context variables of their task).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import os
import random
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from handler import logs, metrics, redaction
from handler.config import Config, ConfigError, http_url_problem, load_config
from handler.context import Invocation, functiongraph_credentials, read_invocation
from handler.deadletter import DeadLetterSink, HttpSinkAuth, make_sink
from handler.ecs.client import EcsClient
from handler.ecs.keystone import (
    CATALOG_TYPES,
    KeystoneAuth,
    KeystoneError,
    KeystoneUnavailableError,
    PasswordSettings,
)
from handler.ecs.native import NativeApi
from handler.ecs.pacing import Pacer
from handler.ecs.signing import (
    NO_CREDENTIALS,
    AkSkAuth,
    Credentials,
    CredentialsUnavailableError,
    StaticCredentials,
    TokenAuth,
)
from handler.ecs.transport import AdaptiveTransport, proxy_error, proxy_secrets
from handler.engine import Deps, Job, base_margin_s, meter_for, settle, summarise
from handler.fanout import FanOutTarget
from handler.plan import Policy
from handler.sources import UnitReport, UnknownEventError, detect
from handler.sources.base import HttpRequest, RejectedEvent, SourceSettings
from handler.sources.webhook import ReplayCache

__all__ = [
    "CredentialsUnavailableError",
    "DeadLetterWriteError",
    "FanOutError",
    "Invoked",
    "Runtime",
    "RuntimeClosedError",
    "deadline_margin_s",
]

_log = structlog.get_logger("handler.runtime")

#: The credentials of the invocation running in this context (FunctionGraph's temporary ones).
_INVOCATION_CREDENTIALS: contextvars.ContextVar[Credentials | None] = contextvars.ContextVar(
    "invocation_credentials", default=None
)

deadline_margin_s = base_margin_s


@dataclass(frozen=True, slots=True)
class Invoked:
    """One invocation's answer, with the unit reports and the summary it was built from."""

    response: Any
    reports: list[UnitReport]
    summary: dict[str, Any]


class RuntimeClosedError(RuntimeError):
    """The runtime was closed (reset_runtime, process exit) while the invocation ran."""


def closed_while_running() -> RuntimeClosedError:
    """The error of an invocation whose runtime was closed under it."""
    return RuntimeClosedError(
        "the runtime was closed while this invocation ran; failing so it is retried"
    )


class FanOutError(RuntimeError):
    """A cleanup's work items were not all sent; the platform must run the cleanup again."""


class DeadLetterWriteError(RuntimeError):
    """Some dead letters could not be written: raised so that the platform retries the event."""


def xray_trace_id() -> str | None:
    """The X-Ray trace id of the invocation running now (Lambda sets `_X_AMZN_TRACE_ID`)."""
    header = os.environ.get("_X_AMZN_TRACE_ID", "")
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Root" and value:
            return value
    return None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return the loop the function runs on: uvloop where installed (about 10 % less CPU per
    pair, measured), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; a platform may lack it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class InvocationCredentials:
    """The current invocation's credentials (FunctionGraph's context), per task."""

    def get(self) -> Credentials:
        """Return the credentials of the invocation running here."""
        credentials = _INVOCATION_CREDENTIALS.get()
        if credentials is None:
            raise CredentialsUnavailableError(NO_CREDENTIALS)
        return credentials

    def refresh(self) -> Credentials:
        """The same: an invocation's context carries one set of credentials."""
        return self.get()


class _LoopThread:
    """An event loop running forever in a daemon thread; coroutines are handed to it.

    Once closing starts, no invocation is handed to the loop any more, and any still waiting
    when it stops fail with RuntimeClosedError: no caller is ever left waiting.
    """

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self._lock = threading.Lock()
        self._closing = False
        self._pending: set[concurrent.futures.Future[Any]] = set()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="janitor-loop", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Hand a coroutine to the loop; its future is failed, never left, if the loop stops."""
        with self._lock:
            if self._closing:
                coroutine.close()
                raise RuntimeClosedError("the runtime is closed; failing so it is retried")
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the loop and wait for its result (cancelled if this thread is)."""
        future = self.submit(coroutine)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise closed_while_running() from None
        except BaseException:
            future.cancel()
            raise

    @property
    def closing(self) -> bool:
        """True once closing has started: no invocation is taken any more."""
        return self._closing

    def begin_close(self) -> None:
        """Refuse new invocations from now on."""
        with self._lock:
            self._closing = True

    def stop(self) -> None:
        """Stop the loop, fail what still waits, join the thread and close the loop."""
        self.begin_close()
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        with self._lock:
            pending = list(self._pending)
        for future in pending:  # outside the lock: a cancelled future's callback takes it
            future.cancel()  # never started on the stopped loop: its caller gets an error
        if not self._thread.is_alive():
            self.loop.close()


def _check_urls(config: Config, *, proxies: bool) -> None:
    """Fail the cold start on a URL httpx cannot send to, or a proxy for one that is unusable."""
    named = {
        "ECS_ENDPOINT": config.endpoint,
        "OS_AUTH_URL": config.os_auth_url,
        "SMN_ENDPOINT": _smn_endpoint(config),
    }
    urls = [url for url in named.values() if url is not None]
    for name, url in named.items():
        if url is None:
            continue
        try:
            httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"invalid configuration: {name}: not a usable URL ({exc})") from None
    if not proxies:
        return
    if config.dead_letter_url.lower().startswith(("http://", "https://")):
        urls.append(config.dead_letter_url)
    for url in urls:
        if problem := proxy_error(url):
            raise ConfigError(f"invalid configuration: {problem}")


def _smn_endpoint(config: Config) -> str | None:
    """The SMN sink's endpoint (given or derived from its topic's region), or None."""
    from handler.queues.smn import is_smn_url, parse_topic

    if not is_smn_url(config.dead_letter_url):
        return None
    try:
        return parse_topic(config.dead_letter_url, endpoint=config.smn_endpoint).endpoint
    except ValueError:
        return None  # said by make_sink


def _password_settings(config: Config) -> PasswordSettings:
    """The Keystone token request the configuration describes (OS_* variables)."""
    assert config.os_auth_url is not None
    assert config.os_username is not None
    assert config.os_password is not None
    return PasswordSettings(
        auth_url=config.os_auth_url,
        username=config.os_username,
        password=config.os_password.get_secret_value(),
        user_domain_name=config.os_user_domain_name,
        project_id=config.os_project_id,
        project_name=config.os_project_name,
        project_domain_name=config.os_project_domain_name,
        region=config.os_region_name,
        interface=config.os_interface,
        service_types=CATALOG_TYPES[config.ecs_api],
    )


class Runtime:
    """What lives as long as the warm container: config, event loop, HTTP pool, credentials.

    However it is built, it configures the logs (Powertools JSON, secrets redacted) from its
    configuration: a hand-built `Runtime(config, transport=…)` logs exactly as the deployed one.
    """

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sink: DeadLetterSink | None = None,
    ) -> None:
        self.config = config
        logs.configure(
            config.powertools_service_name,
            config.powertools_log_level,
            sampling=config.powertools_logger_sample_rate > 0,
        )
        self.redactor = redaction.set_process_secrets([*config.secrets(), *proxy_secrets()])
        _check_urls(config, proxies=transport is None)
        self._transport = transport or AdaptiveTransport(max_connections=config.max_concurrency)
        self._uses_context_credentials = False
        #: The Keystone token flow, when OS_AUTH_URL is set (the token lives as long as this).
        self.keystone: KeystoneAuth | None = None
        auth = self._make_auth()
        try:  # before the loop: nothing is running yet if it fails
            secret = config.dead_letter_secret
            self.sink = sink or make_sink(
                config.dead_letter_url,
                transport=self._transport,
                aws=config.aws_settings(),
                aws_credentials=config.aws_credentials(),
                # An SMN topic is published to as the ECS calls are made: same signer, same
                # credentials (or token).
                huawei_auth=auth,
                smn_endpoint=config.smn_endpoint,
                http_auth=HttpSinkAuth(
                    webhook_secret=secret.get_secret_value() if secret else None,
                    header=config.dead_letter_header(),
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
        self._meter = meter_for(self.sink)
        self._auth = auth
        #: The client fan-out targets send with (over the same pool), made at the first one.
        self._fan_out_http: httpx.AsyncClient | None = None
        keystone = self.keystone
        self.client = EcsClient(
            endpoint=config.endpoint,
            auth=auth,
            # OS_AUTH_URL without ECS_ENDPOINT: the endpoint is the token catalog's.
            resolve_endpoint=keystone.endpoint
            if keystone is not None and config.endpoint is None
            else None,
            transport=self._transport,
            timeout_s=config.request_timeout_s,
            max_attempts=config.max_attempts,
            max_in_flight=config.max_concurrency,
            api=NativeApi() if config.ecs_api == "native" else None,
            pacer=Pacer(config.max_requests_per_second),
        )
        #: True until the default project is known: with OS_PROJECT_NAME alone it is the
        #: token's, learnt at the first invocation.
        self._project_from_token = config.project_id is None
        self.policy = Policy(
            default_project=config.project_id or "",
            allowed_projects=frozenset(config.allowed_project_ids),
            protected_keys=config.protected_keys,
            dry_run=config.dry_run,
        )
        secret = config.webhook_secret
        self.source_settings = SourceSettings(
            webhook_secret=secret.get_secret_value() if secret else None,
            webhook_auth=config.webhook_auth,
            max_pairs_per_request=config.max_pairs_per_request,
            replays=ReplayCache(),
        )
        if config.webhook_auth == "signature" and secret is None:
            _log.info(
                "webhooks refused",
                reason="WEBHOOK_AUTH=signature and no WEBHOOK_SECRET: every webhook request is "
                "answered 401; set WEBHOOK_SECRET, or WEBHOOK_AUTH=none when a gateway in front "
                "authenticates (queues and schedules are not affected)",
            )
        self._cold_lock = threading.Lock()
        self.cold_start = True
        self._thread = _LoopThread()
        self.loop = self._thread.loop

    def _make_auth(self) -> httpx.Auth:
        config = self.config
        if config.password_auth:
            self.keystone = KeystoneAuth(
                _password_settings(config),
                transport=self._transport,
                timeout_s=config.request_timeout_s,
            )
            return self.keystone
        if config.ecs_auth_token is not None:
            token = config.ecs_auth_token
            return TokenAuth(token.get_secret_value)
        if config.huaweicloud_sdk_ak is not None and config.huaweicloud_sdk_sk is not None:
            token_value = config.huaweicloud_sdk_security_token
            credentials = Credentials(
                config.huaweicloud_sdk_ak.get_secret_value(),
                config.huaweicloud_sdk_sk.get_secret_value(),
                token_value.get_secret_value() if token_value else None,
            )
            return AkSkAuth(StaticCredentials(credentials))
        self._uses_context_credentials = True
        return AkSkAuth(InvocationCredentials())

    @property
    def closed(self) -> bool:
        """True once `close` has started: every invocation from then on fails."""
        return self._thread.closing

    @property
    def needs_platform_credentials(self) -> bool:
        """True when the ECS calls are signed with credentials only a platform's context gives
        (FunctionGraph's agency): none are configured, and this is not a dry run."""
        return self._uses_context_credentials and not self.config.dry_run

    def _take_cold_start(self) -> bool:
        with self._cold_lock:
            cold, self.cold_start = self.cold_start, False
            return cold

    def invoke(self, event: Any, context: Any) -> Any:
        """Handle one event and return the platform's response (safe from several threads)."""
        return self.run(event, context).response

    def run(self, event: Any, context: Any) -> Invoked:
        """Handle one event; return the response with the unit reports behind it (tools, demo)."""
        invocation = read_invocation(context)
        cold = self._take_cold_start()
        result: Invoked = self._thread.run(
            self.invoke_async(event, context, invocation, cold_start=cold)
        )
        return result

    def submit(self, event: Any, context: Any) -> concurrent.futures.Future[Invoked]:
        """Start handling one event on the runtime's loop and return at once (the ASGI door).

        The future's CancelledError means the runtime was closed under the invocation.
        """
        invocation = read_invocation(context)
        cold = self._take_cold_start()
        future: concurrent.futures.Future[Invoked] = self._thread.submit(
            self.invoke_async(event, context, invocation, cold_start=cold)
        )
        return future

    async def invoke_async(
        self, event: Any, context: Any, invocation: Invocation, *, cold_start: bool = False
    ) -> Invoked:
        """Handle one event on the running loop: the adapter from the platform to the engine."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            service=self.config.powertools_service_name,
            cold_start=cold_start,
            xray_trace_id=xray_trace_id(),
            **invocation.log_fields(),
        )
        config = self.config
        if config.powertools_logger_sample_rate > 0:
            sampled = random.random() < config.powertools_logger_sample_rate  # noqa: S311
            logs.set_invocation_level(
                10 if sampled else logs.level_number(config.powertools_log_level)
            )
        # The process's secrets as they are now: the Keystone tokens issued so far among them.
        redactor = redaction.rebased(self.redactor)
        if self._uses_context_credentials:
            creds = functiongraph_credentials(context)
            if creds is not None:  # they rotate: each invocation redacts its own
                redactor = redactor.with_secrets([creds.ak, creds.sk, creds.security_token])
            elif not self.config.dry_run:
                _log.error("no credentials", error=NO_CREDENTIALS)
                raise CredentialsUnavailableError(NO_CREDENTIALS)
            _INVOCATION_CREDENTIALS.set(creds)
        with redaction.use(redactor):
            if config.powertools_logger_log_event:
                # As Powertools' Logger: the event itself is the message.
                shown = event.as_event() if isinstance(event, HttpRequest) else event
                _log.info(redactor.value(shown))
            try:
                source = detect(event, self.source_settings)
            except UnknownEventError as exc:
                _log.error("unrecognised event", error=str(exc))
                raise UnknownEventError(redactor.text(str(exc))) from None
            try:
                units = source.units(event)
            except UnknownEventError as exc:  # a known envelope around an unknown payload
                _log.error("unrecognised event", source=source.kind, error=str(exc))
                raise UnknownEventError(redactor.text(str(exc))) from None
            except RejectedEvent as exc:
                # Whatever a source put in it, the answer's text is redacted and bounded.
                refused = exc.with_message(redactor.cut(exc.message, 512))
                _log.warning(
                    "event rejected",
                    source=source.kind,
                    status=refused.status,
                    error=refused.message,
                )
                return Invoked(source.reject(refused), [], {})
            if self._project_from_token:
                await self._learn_project(invocation.remaining_s())
            remaining = invocation.remaining_s()
            now = asyncio.get_running_loop().time()
            job = Job(
                source=source,
                units=units,
                invocation_id=invocation.request_id,
                limit=None if remaining is None else now + remaining,
            )
            deps = Deps(
                deleter=self.client,
                lister=self.client,
                sink=self.sink,
                policy=self.policy,
                redactor=redactor,
                # Twice as many workers as requests in flight: when a slot frees, the next
                # request is already built and waiting (the client's limit caps what is sent).
                workers=2 * self.config.max_concurrency,
                meter=self._meter,
                fan_out=self._fan_out_target,
            )
            measured = metrics.start() if config.metrics == "emf" else None
            reports = await settle(job, deps)
            summary = summarise(reports, source.on_transient)
            _log.info("invocation summary", source=source.kind, summary=summary)
            if measured is not None:
                self._emit_metrics(invocation, summary, reports, measured)
            failures = [r.dead_letter_error for r in reports if r.dead_letter_error]
            if failures and not source.redelivers:
                raise DeadLetterWriteError(
                    f"{len(failures)} unit(s) could not be dead-lettered: {failures[0]}; "
                    "failing so the platform retries"
                )
            unsent = summary.get("cleanup", {}).get("fan_out", {}).get("unsent_servers")
            if unsent:
                raise FanOutError(
                    f"the work of {len(unsent)} server(s) was not sent "
                    f"(first: {unsent[0]}); failing so the platform runs the cleanup again"
                )
            return Invoked(source.respond(reports, summary), reports, summary)

    def _fan_out_target(self, url: str) -> FanOutTarget:
        """The target a selector's `fan_out` names; ValueError saying why it cannot be used."""
        from handler.queues.smn import is_smn_url
        from handler.queues.sqs import is_sqs_url

        http = self._fan_out_http
        if http is None:
            http = self._fan_out_http = httpx.AsyncClient(
                transport=self._transport, trust_env=False
            )
        config = self.config
        if is_sqs_url(url):
            from handler.queues.sigv4 import AwsCredentials
            from handler.queues.sinks import SqsSink
            from handler.queues.targets import SqsTarget

            credentials = config.aws_credentials()
            if credentials is None:
                raise ValueError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: needed for sqs://")
            try:
                SqsSink.check_signer()
            except ImportError:
                raise ValueError("an SQS queue needs Python 3.12 or later") from None
            return SqsTarget(
                url,
                aws=config.aws_settings(),
                credentials=AwsCredentials(*credentials),
                http=http,
            )
        if is_smn_url(url):
            from handler.queues.smn import SmnClient, parse_topic

            topic = parse_topic(url, endpoint=config.smn_endpoint)
            return SmnClient(topic, http=http, auth=self._auth)
        if url.partition("://")[0].lower() in ("http", "https"):
            from handler.queues.targets import HttpTarget

            problem = http_url_problem(url)
            if problem is not None:
                raise ValueError(problem)
            secret = config.webhook_secret
            return HttpTarget(url, secret=secret.get_secret_value() if secret else None, http=http)
        raise ValueError("must be an sqs://, smn:// or http(s):// URL")

    async def _learn_project(self, remaining_s: float | None) -> None:
        """Take the default project from the Keystone token (OS_PROJECT_NAME alone).

        Without it no pair can be formed, so a Keystone failure fails the invocation (a
        KeystoneError, i.e. CredentialsUnavailableError) and the platform retries the event;
        so does a token not issued before the invocation's deadline (less the margin kept to
        answer), while its request carries on for the next invocation.
        """
        keystone = self.keystone
        assert keystone is not None  # no project id configured implies OS_AUTH_URL
        wait = None if remaining_s is None else max(remaining_s - deadline_margin_s(remaining_s), 0)
        try:
            async with asyncio.timeout(wait):
                project = await keystone.project_id()
        except TimeoutError:
            late = KeystoneUnavailableError(
                f"Keystone at {keystone.settings.host} (OS_AUTH_URL) issued no token before the "
                "invocation's deadline: no default project (OS_PROJECT_NAME alone); failing so "
                "the platform retries"
            )
            _log.error("no default project: the Keystone token is needed first", error=str(late))
            raise late from None
        except KeystoneError as exc:
            _log.error("no default project: the Keystone token is needed first", error=str(exc))
            raise
        if self._project_from_token:
            self.policy = dataclasses.replace(self.policy, default_project=project)
            self._project_from_token = False
            _log.info("default project from the Keystone token", project_id=project)

    def _emit_metrics(
        self,
        invocation: Invocation,
        summary: dict[str, Any],
        reports: list[UnitReport],
        measured: metrics.InvocationMetrics,
    ) -> None:
        """EMF on Lambda (CloudWatch reads it from the log); one log line on FunctionGraph."""
        results = [result for report in reports for result in report.results]
        named = metrics.values(summary, results, measured)
        if invocation.platform == "functiongraph":
            _log.info("invocation metrics", metrics=named)
            return
        service = self.config.powertools_service_name
        namespace = self.config.powertools_metrics_namespace or service
        logs.write_line(metrics.emf_document(namespace, service, named))

    @classmethod
    def from_environment(cls) -> Runtime:
        """Read the configuration, set up the logs, and build the runtime (the cold start)."""
        try:
            config = load_config()
        except ConfigError as exc:
            logs.configure("ecs-metadata-janitor", os.environ.get("POWERTOOLS_LOG_LEVEL"))
            _log.error("cold start failed", error=str(exc))
            raise
        return cls(config)

    def close(self) -> None:
        """Cancel what still runs, close the HTTP pool and the sink, stop the loop and thread."""
        if self.loop.is_closed():
            return
        self._thread.begin_close()

        async def close_all() -> None:
            # An invocation still running is cancelled first (its caller gets CancelledError),
            # never left waiting on a loop that stopped under it.
            running = asyncio.all_tasks() - {asyncio.current_task()}
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self.client.aclose()
            await self.sink.aclose()
            if self._fan_out_http is not None:
                await self._fan_out_http.aclose()
            await self._transport.aclose()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=10)
        self._thread.stop()
