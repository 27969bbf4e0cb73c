"""Running the sandbox: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from handler.sandbox.errors import SandboxConfigError, describe_validation_error
from handler.sandbox.faults import parse_faults, read_faults
from handler.sandbox.seed import QueueFaultsSeed, Seed, parse_seed, read_seed
from handler.sandbox.server import SandboxApp

T = TypeVar("T")

SHUTDOWN_TIMEOUT_S = 2.0
"""How long stopping waits for requests still being answered (e.g. slow faults)."""

_PROG = "ecs-metadata-janitor sandbox"


def bind_socket(host: str, port: int) -> socket.socket:
    """Open a listening TCP socket on host:port (port 0 picks a free one)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def base_url(host: str, sock: socket.socket) -> str:
    """The base URL (no trailing slash) clients use to reach a bound socket."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(
    app: SandboxApp, sock: socket.socket, stop: asyncio.Event, ready: Callable[[], None]
) -> None:
    """Serve `app` on `sock` until `stop` is set, calling `ready` once it accepts connections."""
    server = web.Server(app.handle, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        ready()
        await stop.wait()
    finally:
        await runner.cleanup()


class Sandbox:
    """A sandbox on a background thread with its own event loop; use it as a context manager."""

    def __init__(
        self,
        seed: Mapping[str, Any] | None = None,
        faults: Mapping[str, Any] | None = None,
        *,
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._seed: Seed = parse_seed(seed)
        self._app = SandboxApp(self._seed, parse_faults(faults), latency_ms=latency_ms)
        self._host = host
        self._port = port
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not running; use it as a context manager")
        return self._url

    @property
    def credentials(self) -> dict[str, Any]:
        """The seeded credentials: ak, sk, security_token, token."""
        return self._seed.credentials.model_dump()

    @property
    def project_id(self) -> str | None:
        """The seed's default project (its top-level one, else the first server's)."""
        return self._seed.default_project_id

    def start(self) -> None:
        """Bind the socket and start serving on a background thread."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        sock = bind_socket(self._host, self._port)
        self._app.set_base_url(base_url(self._host, sock))
        ready = threading.Event()
        failures: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(sock, ready, failures), name="ecs-sandbox", daemon=True
        )
        self._thread = thread
        thread.start()
        ready.wait()
        if failures:
            thread.join()
            self._thread = None
            raise failures[0]
        self._url = base_url(self._host, sock)

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None
        self._loop = None
        self._stop = None
        self._url = None

    def _run(
        self, sock: socket.socket, ready: threading.Event, failures: list[BaseException]
    ) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop, sock, ready))
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failures.append(exc)
            sock.close()
        finally:
            self._loop = None
            # Requests still held (a slow fault, a long latency) end with the sandbox, quietly.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            ready.set()

    async def _main(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, ready: threading.Event
    ) -> None:
        self._stop = asyncio.Event()
        self._loop = loop
        await serve(self._app, sock, self._stop, ready.set)

    def _call(self, function: Callable[[], T]) -> T:
        """Run `function` on the sandbox's loop (or directly when it is not running)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or threading.current_thread() is thread:
            return function()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed in the meantime
            return function()
        return future.result()

    def state(self) -> dict[str, Any]:
        """The current state in the seed's format (a deep copy), with queues and topics."""
        return self._call(self._app.snapshot)

    @property
    def aws(self) -> dict[str, Any] | None:
        """The seeded AWS identity for SQS (the seed's `aws` section), or None."""
        seeded = self._seed.aws
        return None if seeded is None else seeded.model_dump()

    def queue_url(self, name: str) -> str:
        """The URL of a queue of this sandbox: `{url}/{account id}/{name}`."""
        account = self._seed.aws.account_id if self._seed.aws is not None else "000000000000"
        return f"{self.url}/{account}/{name}"

    def topic_urn(self, name: str, project_id: str | None = None) -> str:
        """The URN of a seeded SMN topic (the default project's unless told otherwise)."""
        project = project_id or self.project_id
        for topic in self._seed.topics:
            if topic.name == name and topic.project_id == project:
                return topic.topic_urn
        raise KeyError(f"no topic {name} in project {project}")

    def set_queue_faults(self, faults: Mapping[str, Any] | None) -> None:
        """Replace the SQS/SMN faults (the seed's `queue_faults` format; None: none)."""
        try:
            config = QueueFaultsSeed.model_validate(dict(faults or {}))
        except ValidationError as exc:
            raise SandboxConfigError(f"queue_faults: {describe_validation_error(exc)}") from None
        self._call(lambda: self._app.set_queue_faults(config))

    def requests(self) -> list[dict[str, Any]]:
        """The log of API requests received: method, path, query, status, fault, auth, ..."""
        return self._call(self._app.requests)

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call(self._app.log.clear)

    def revoke_tokens(self) -> int:
        """Revoke every Keystone token issued so far (refused with 401 from now on)."""
        keystone = self._app.keystone
        if keystone is None:
            return 0
        return self._call(keystone.revoke_all)

    @property
    def keystone(self) -> dict[str, Any] | None:
        """The seeded Keystone (users, projects, region, token_ttl_s), or None."""
        seeded = self._seed.keystone
        return None if seeded is None else seeded.model_dump()

    def set_faults(self, faults: Mapping[str, Any] | None) -> None:
        """Replace the fault configuration (None: no faults); its random sequence restarts."""
        config = parse_faults(faults)
        self._call(lambda: self._app.set_faults(config))


def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8774,
    seed_path: Path | None = None,
    faults_path: Path | None = None,
    latency_ms: float = 0.0,
) -> int:
    """Run the sandbox in the foreground until SIGINT or SIGTERM; return the exit status."""
    try:
        seed = read_seed(seed_path) if seed_path is not None else parse_seed(None)
        faults = read_faults(faults_path) if faults_path is not None else parse_faults(None)
    except SandboxConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    if latency_ms < 0:
        print(f"{_PROG}: --latency-ms must not be negative", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        print(f"{_PROG}: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    app = SandboxApp(seed, faults, latency_ms=latency_ms)
    app.set_base_url(base_url(host, sock))
    banner = _banner(base_url(host, sock), seed, seed_path, faults_path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(app, sock, banner))
    return 0


async def _serve_until_signal(app: SandboxApp, sock: socket.socket, banner: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows: Ctrl+C still works
            loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        print("\n".join(banner), flush=True)

    await serve(app, sock, stop, ready)


def _banner(url: str, seed: Seed, seed_path: Path | None, faults_path: Path | None) -> list[str]:
    project = seed.default_project_id or "-"
    source = "demo" if seed_path is None else str(seed_path)
    lines = [f"ecs sandbox ready at {url} (project {project}, seed: {source})"]
    if faults_path is not None:
        lines.append(f"  faults: {faults_path}")
    if seed_path is None:
        credentials = seed.credentials
        lines += [
            "  demo credentials (fake, valid only against this sandbox):",
            f"    HUAWEICLOUD_SDK_PROJECT_ID={project}",
            f"    HUAWEICLOUD_SDK_AK={credentials.ak}",
            f"    HUAWEICLOUD_SDK_SK={credentials.sk}",
            f"    ECS_AUTH_TOKEN={credentials.token}",
        ]
        keystone = seed.keystone
        if keystone is not None:
            user, scope = keystone.users[0], keystone.projects[0]
            lines += [
                "  or Keystone password authentication (no ECS_ENDPOINT needed):",
                f"    OS_AUTH_URL={url}/v3",
                f"    OS_USERNAME={user.name}",
                f"    OS_PASSWORD={user.password}",
                f"    OS_PROJECT_NAME={scope.name}",
            ]
        aws = seed.aws
        if aws is not None:
            lines += [
                "  SQS (AWS JSON protocol, SigV4; fake credentials):",
                f"    AWS_ENDPOINT_URL_SQS={url}",
                f"    AWS_ACCESS_KEY_ID={aws.access_key_id}",
                f"    AWS_SECRET_ACCESS_KEY={aws.secret_access_key}",
                f"    AWS_REGION={aws.region or 'us-east-1'}",
            ]
    account = seed.aws.account_id if seed.aws is not None else "000000000000"
    lines += [f"  queue: {url}/{account}/{queue.name}" for queue in seed.queues]
    lines += [f"  topic: {topic.topic_urn}" for topic in seed.topics]
    lines.append("  stop with Ctrl+C")
    return lines
