"""The warm container's runtime: configuration, event loop, HTTP pool; one invocation's run."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import structlog

from handler import logs
from handler.config import Config, ConfigError, load_config
from handler.context import Invocation, functiongraph_credentials, read_invocation
from handler.deadletter import DeadLetterSink, make_sink
from handler.ecs.client import EcsClient
from handler.ecs.signing import (
    NO_CREDENTIALS,
    AkSkAuth,
    Credentials,
    CredentialsUnavailableError,
    StaticCredentials,
    SwappableCredentials,
    TokenAuth,
)
from handler.execute import Executor
from handler.pipeline import Run, process, summarise
from handler.plan import Policy
from handler.sources import UnknownEventError, detect

__all__ = ["CredentialsUnavailableError", "DeadLetterWriteError", "Runtime", "deadline_margin_s"]

_log = structlog.get_logger("handler.runtime")


class DeadLetterWriteError(RuntimeError):
    """Some dead letters could not be written: raised so that the platform retries the event."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return the loop the function runs on: uvloop where installed (about 10 % less CPU per
    pair, measured), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; a platform may lack it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


#: Time kept back from the platform's limit even for writing dead letters: to answer.
SINK_SAFETY_S = 0.1


def deadline_margin_s(remaining_s: float) -> float:
    """Return the time kept back from the platform's limit to write dead letters and answer."""
    return min(max(remaining_s * 0.1, 0.25), 2.0)


class Runtime:
    """What lives as long as the warm container: config, event loop, HTTP pool, credentials."""

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sink: DeadLetterSink | None = None,
    ) -> None:
        self.config = config
        try:  # first: nothing is open yet if it fails
            self.sink = sink or make_sink(config.dead_letter_url)
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
        self.loop = new_event_loop()
        self.cold_start = True
        self._context_credentials: Credentials | None = None
        self._fg_credentials: SwappableCredentials | None = None
        self.client = EcsClient(
            endpoint=config.endpoint,
            auth=self._make_auth(),
            transport=transport,
            timeout_s=config.request_timeout_s,
            max_attempts=config.max_attempts,
            max_in_flight=config.max_concurrency,
        )
        self.policy = Policy(
            default_project=config.huaweicloud_sdk_project_id,
            allowed_projects=frozenset(config.allowed_project_ids),
            protected_keys=config.protected_keys,
            dry_run=config.dry_run,
        )
        logs.REDACTOR.add(config.secrets())

    def _make_auth(self) -> httpx.Auth:
        config = self.config
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
        self._fg_credentials = SwappableCredentials(lambda: self._context_credentials)
        return AkSkAuth(self._fg_credentials)

    def _deadlines(self, invocation: Invocation) -> tuple[float | None, float | None]:
        """Loop times by which the deletions must end, and by which dead letters must be stored."""
        remaining = invocation.remaining_s()
        if remaining is None:
            return None, None
        now = self.loop.time()
        work = now + max(remaining - deadline_margin_s(remaining), 0.0)
        return work, now + max(remaining - SINK_SAFETY_S, 0.0)

    def invoke(self, event: Any, context: Any) -> Any:
        """Handle one event and return the platform's response."""
        invocation = read_invocation(context)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            service=self.config.powertools_service_name,
            cold_start=self.cold_start,
            **invocation.log_fields(),
        )
        self.cold_start = False
        if self._fg_credentials is not None:
            self._context_credentials = functiongraph_credentials(context)
            creds = self._context_credentials
            if creds is None and not self.config.dry_run:
                _log.error("no credentials", error=NO_CREDENTIALS)
                raise CredentialsUnavailableError(NO_CREDENTIALS)
            if creds is not None:  # they rotate: only the current ones are looked for
                logs.REDACTOR.rotate([creds.ak, creds.sk, creds.security_token])
            self._fg_credentials.invalidate()
        try:
            source = detect(event)
        except UnknownEventError as exc:
            _log.error("unrecognised event", error=str(exc))
            raise
        work_deadline, sink_deadline = self._deadlines(invocation)
        run = Run(
            source=source,
            policy=self.policy,
            # Twice as many workers as requests in flight: when a slot frees, the next request
            # is already built and waiting (the client's semaphore still caps what is sent).
            executor=Executor(
                self.client, deadline=work_deadline, workers=2 * self.config.max_concurrency
            ),
            sink=self.sink,
            invocation_id=invocation.request_id,
            sink_deadline=sink_deadline,
        )
        try:
            reports = self.loop.run_until_complete(process(run, source.units(event)))
        except BaseException:
            # The loop outlives the invocation: nothing of a failed one may run in the next.
            self._cancel_leftovers()
            raise
        summary = summarise(reports)
        _log.info("invocation summary", source=source.kind, summary=summary)
        failures = [r.dead_letter_error for r in reports if r.dead_letter_error]
        if failures and not source.redelivers:
            raise DeadLetterWriteError(
                f"{len(failures)} unit(s) could not be dead-lettered: {failures[0]}; "
                "failing so the platform retries"
            )
        return source.respond(reports, summary)

    def _cancel_leftovers(self) -> None:
        leftovers = asyncio.all_tasks(self.loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    @classmethod
    def from_environment(cls) -> Runtime:
        """Read the configuration, set up the logs, and build the runtime (the cold start)."""
        try:
            config = load_config()
        except ConfigError as exc:
            logs.configure("ecs-metadata-janitor", os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
            _log.error("cold start failed", error=str(exc))
            raise
        logs.configure(config.powertools_service_name, config.powertools_log_level)
        return cls(config)

    def close(self) -> None:
        """Close the HTTP pool, the sink and the event loop (tests and the CLI)."""
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.sink.aclose())
        self.loop.close()
