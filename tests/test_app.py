from __future__ import annotations

import pytest
import stamina
import structlog

from handler import app, logs
from handler.ecs.reply import Reply
from handler.ecs.retry import RetryableReply
from handler.outcomes import Outcome
from handler.retrying import install_retry_logging


@pytest.mark.parametrize(("remaining", "margin"), [(1.0, 0.25), (3.0, 0.3), (60.0, 2.0)])
def test_deadline_margin(remaining: float, margin: float) -> None:
    assert app.deadline_margin_s(remaining) == pytest.approx(margin)


def test_retry_hook_logs_no_call_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("svc", "DEBUG")
    install_retry_logging()
    secret = "sk-very-secret-value"
    attempts = 0

    @stamina.retry(on=RetryableReply, attempts=2)
    def flaky(credential: str) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RetryableReply(Reply(503, Outcome.RETRIES_EXHAUSTED, retry=True))

    with stamina.set_testing(False):
        flaky(secret)
    out = capsys.readouterr().out
    assert '"message":"retry scheduled"' in out
    assert '"cause":"HTTP 503"' in out
    assert secret not in out
    structlog.reset_defaults()


def test_importing_the_entry_point_loads_no_heavy_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, handler.app; "
        "print(sorted(m for m in ('aiohttp', 'pydantic_settings', 'stamina', 'handler.runtime')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_warm_up_builds_the_runtime_or_fails_on_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from handler.config import ConfigError

    with pytest.raises(ConfigError, match="HUAWEICLOUD_SDK_PROJECT_ID"):
        app.warm_up()
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("ECS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ECS_AUTH_TOKEN", "token-for-warm-up")
    app.warm_up()
    assert isinstance(app._RUNTIME, app.Runtime)


def test_warm_up_also_loads_the_http_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env = {
        "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
        "ECS_ENDPOINT": "https://127.0.0.1:9",
        "ECS_AUTH_TOKEN": "token-for-warm-up",
        "PATH": "/usr/bin:/bin",
    }
    # What the first request needs is loaded (h11, the TLS context for an https endpoint), and
    # aiohttp, which the function does not use, is not.
    code = (
        "import sys, handler.app as a, handler.ecs.transport._common as t; a.warm_up(); "
        "print('h11' in sys.modules, bool(t._SSL_CONTEXT), 'aiohttp' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip().splitlines()[-1] == "True True False"
