"""The container image (infra/container/) and the Knative Service (infra/knative/) agree with
the code: the CLI the image runs, its port, health path, user, lock files and build context,
and the configuration and secrets the Service passes. No docker, no network."""

from __future__ import annotations

import base64
import http.server
import json
import posixpath
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from handler import cli
from handler.asgi import HEALTH_PATH
from handler.commands.serve import DEFAULT_PORT, GRACE_MARGIN_S
from handler.config import Config, load_config
from handler.redaction import is_secret_field

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "infra" / "container" / "Dockerfile"
DOCKERIGNORE = ROOT / "infra" / "container" / "Dockerfile.dockerignore"
SERVICE = ROOT / "infra" / "knative" / "service.yaml"
LOCKS = ("requirements.lock", "requirements-serve.lock")
SECRET_NAME = "ecs-metadata-janitor"
#: Names a value is secret by, beyond what handler.redaction recognises (`..._AK`, `..._SK`).
SECRET_WORDS = re.compile(r"(^|_)(AK|SK|SECRET|TOKEN|PASSWORD|AUTH_HEADER)(_|$)")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]


# The Dockerfile, parsed: instructions per stage.


@dataclass
class Stage:
    """One FROM and the instructions after it."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction of this kind, in order."""
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]


def _logical_lines(text: str) -> list[str]:
    """Instructions with their `\\` continuations joined; comments (even inside a continued
    instruction, as Docker allows) and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append((current + raw).strip())
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return lines


def _substitute(text: str, args: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in args, f"${name} is not a global ARG with a default"
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages, each FROM's image resolved with the global ARGs' defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            image = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def _env(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        words = shlex.split(args)
        if "=" not in words[0]:  # the legacy `ENV NAME value` form
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            values[name] = value
    return values


def _labels(stage: Stage) -> dict[str, str]:
    return dict(
        word.partition("=")[::2] for args in stage.all("LABEL") for word in shlex.split(args)
    )


def _commands(stage: Stage) -> list[list[str]]:
    """The shell commands of the stage's RUN instructions, split at && and ;, as words."""
    found = []
    for args in stage.all("RUN"):
        for command in re.split(r"&&|;", args):
            if command.strip():
                found.append(shlex.split(command))
    return found


def _pip_installs(stage: Stage) -> list[list[str]]:
    return [
        words[words.index("install") + 1 :]
        for words in _commands(stage)
        if "pip" in words and "install" in words
    ]


def _copies(stage: Stage) -> list[tuple[dict[str, str], list[str], str]]:
    """Every COPY/ADD as (its --flags, its sources, its destination)."""
    found = []
    for keyword, args in stage.instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        found.append((flags, paths[:-1], paths[-1]))
    return found


def _exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction's words; fails for the shell form."""
    assert args.startswith("["), f"not exec form (a shell would get SIGTERM): {args}"
    words = json.loads(args)
    assert isinstance(words, list)
    assert all(isinstance(w, str) for w in words)
    return words


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def build(stages: list[Stage]) -> Stage:
    """The stage that runs pip."""
    builders = [stage for stage in stages if _pip_installs(stage)]
    assert len(builders) == 1
    return builders[0]


def _uid_gid(final: Stage) -> tuple[int, int]:
    user = final.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user}: a name cannot be checked by runAsNonRoot"
    assert gid.isdigit(), f"USER {user}: give the group as a number too"
    return int(uid), int(gid)


# The Dockerfile.


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    stages = parse_dockerfile(
        "ARG IMG=python:3.12-slim-bookworm\nFROM ${IMG} AS b\n# c\nRUN a \\\n  # inner\n  && b\n"
        "FROM b\nUSER 1:2\n"
    )
    assert [(s.image, s.name) for s in stages] == [("python:3.12-slim-bookworm", "b"), ("b", None)]
    assert stages[0].instructions == [("RUN", "a    && b")]
    assert _uid_gid(stages[1]) == (1, 2)


def test_it_is_multi_stage_on_a_pinned_python_312_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image in names:  # FROM an earlier stage
            continue
        # A Debian release tag (never the floating `3.12-slim`), optionally pinned by digest.
        assert re.fullmatch(
            r"python:3\.12-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", stage.image
        ), stage.image


def test_the_final_stage_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    uid, gid = _uid_gid(final)
    assert uid != 0
    assert gid != 0
    # USER comes after the last RUN of the stage: nothing after it runs as root.
    keywords = [kw for kw, _ in final.instructions]
    last_run = max((i for i, kw in enumerate(keywords) if kw == "RUN"), default=-1)
    assert keywords.index("USER") > last_run
    # The user and group exist in /etc/passwd and /etc/group with those numbers.
    created = " ".join(" ".join(words) for words in _commands(final))
    assert f"--uid {uid}" in created
    assert f"--gid {gid}" in created


def test_both_locks_are_installed_with_their_hashes_as_wheels_only(build: Stage) -> None:
    copied = {Path(src).name for flags, sources, _ in _copies(build) for src in sources}
    for lock in LOCKS:
        assert (ROOT / lock).is_file()
        assert lock in copied, f"{lock} is not copied into the build stage"
        installs = [words for words in _pip_installs(build) if any(w == lock for w in words)]
        assert installs, f"no pip install -r {lock}"
        for words in installs:
            assert words[words.index(lock) - 1] == "-r"
            assert "--require-hashes" in words
            assert "--only-binary=:all:" in words
            assert "--no-deps" in words


def test_pip_installs_the_locks_alone_without_extras(build: Stage, final: Stage) -> None:
    target = _env(final)["PYTHONPATH"]
    installed: list[str] = []
    for words in _pip_installs(build):
        assert words[words.index("--target") + 1] == target
        assert "--no-deps" in words
        assert "-e" not in words
        assert "--editable" not in words
        flags_with_values = {"--target", "-r", "--requirement", "-c", "--constraint"}
        positional = [
            w
            for i, w in enumerate(words)
            if not w.startswith("-") and words[i - 1] not in flags_with_values
        ]
        installed += positional
        installed += [words[i + 1] for i, w in enumerate(words) if w == "-r"]
    # The two locks and nothing else: no extra such as .[dev] or .[bench].
    assert sorted(installed) == sorted(LOCKS)
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"\[[^\]]*\b(dev|bench|cli)\b[^\]]*\]", text)


def test_the_package_is_copied_beside_the_wheels_as_the_zip_carries_it(
    build: Stage, final: Stage
) -> None:
    target = _env(final)["PYTHONPATH"]
    copies = {
        posixpath.normpath(src): dest for _, sources, dest in _copies(build) for src in sources
    }
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for package in packages:
        assert posixpath.normpath(copies[package]) == posixpath.join(target, package)
    assert not set(copies) & {"tests", "bench", "events", ".venv", "dist", "."}


def test_the_final_stage_gets_the_installed_tree_only(build: Stage, final: Stage) -> None:
    target = _env(final)["PYTHONPATH"]
    copies = _copies(final)
    assert copies
    for flags, sources, destination in copies:
        # Nothing from the build context: only what the build stage installed.
        assert flags.get("from") == build.name
        assert sources == [target]
        assert destination == target


def test_the_environment(final: Stage) -> None:
    env = _env(final)
    assert env["PYTHONUNBUFFERED"] == "1"  # log lines leave at once
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only
    assert env["PORT"] == str(DEFAULT_PORT)


def test_the_entrypoint_is_the_serve_command_on_all_interfaces(final: Stage) -> None:
    words = _exec_form(final.last("ENTRYPOINT"))
    if final.all("CMD"):
        words += _exec_form(final.last("CMD"))
    assert words[:3] == ["python", "-m", "handler"]
    args = cli._build_parser().parse_args(words[3:])
    assert args.command == "serve"
    assert args.host == "0.0.0.0"
    assert args.port is None  # so $PORT (Knative's) decides
    assert args.sandbox is False


def test_expose_is_the_serve_port(final: Stage) -> None:
    exposed = [port.partition("/")[0] for args in final.all("EXPOSE") for port in args.split()]
    assert exposed == [str(DEFAULT_PORT)]
    assert _env(final)["PORT"] == str(DEFAULT_PORT)


def test_sigterm_stops_it(final: Stage) -> None:
    assert final.last("STOPSIGNAL") in ("SIGTERM", "15")


def test_the_labels(final: Stage) -> None:
    labels = _labels(final)
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.source"].startswith("https://")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == HEALTH_PATH else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_the_healthcheck_probes_the_health_path_on_port(final: Stage) -> None:
    args = final.last("HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    assert "--timeout=" in options
    words = _exec_form(command.strip())
    assert words[:2] == ["python", "-c"]  # no curl or wget in the slim image
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    port = str(server.server_address[1])
    try:
        for status, healthy in ((200, True), (503, False)):
            _Health.status = status
            ran = subprocess.run(
                [sys.executable, "-I", "-c", words[2]],
                env={"PORT": port},
                capture_output=True,
                timeout=10,
                check=False,
            )
            assert (ran.returncode == 0) is healthy, (status, ran.stderr)
    finally:
        server.shutdown()
        server.server_close()


# The build context: Dockerfile.dockerignore.


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) for each pattern, as BuildKit reads them (`*`, `**`, `?`, `!`)."""
    found = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        found.append((negated, re.compile(regex)))
    return found


def _excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the path stays out of the context: the last pattern matching it or one of its
    parent directories decides."""
    parts = posixpath.normpath(path).split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_the_context_holds_only_what_the_build_needs() -> None:
    patterns = _ignore_patterns()
    for kept in ("handler/app.py", "handler/commands/serve.py", *LOCKS):
        assert not _excluded(kept, patterns), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "dist/SHA256SUMS",
        "tests/test_app.py",
        "bench/run.py",
        "events/sqs-batch.json",
        ".demo/function.log",
        ".coverage",
        "handler/__pycache__/app.cpython-312.pyc",
        "handler/sources/__pycache__",
    ):
        assert _excluded(dropped, patterns), dropped


def test_every_copied_path_exists_and_is_in_the_context(stages: list[Stage]) -> None:
    patterns = _ignore_patterns()
    copied = [
        src
        for stage in stages
        for flags, sources, _ in _copies(stage)
        if "from" not in flags
        for src in sources
    ]
    assert copied
    for src in copied:
        path = ROOT / src
        assert path.exists(), f"COPY {src}: no such path in the repository"
        assert not _excluded(src, patterns), f"COPY {src}: excluded from the build context"
        if path.is_dir():  # every source file under it reaches the build
            files = [p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")]
            assert files
            assert not [f for f in files if "__pycache__" not in f and _excluded(f, patterns)]


# The Knative Service.


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    loaded = yaml.safe_load(SERVICE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def container(service: dict[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


@pytest.fixture(scope="module")
def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), "a variable is set twice"
    return {item["name"]: item for item in container["env"]}


def _is_secret(name: str) -> bool:
    field_info = Config.model_fields.get(name.lower())
    annotated = field_info is not None and SecretStr in (
        field_info.annotation,
        *typing.get_args(field_info.annotation),
    )
    return annotated or is_secret_field(name) or SECRET_WORDS.search(name) is not None


def test_it_is_a_knative_service(service: dict[str, Any], container: dict[str, Any]) -> None:
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == PYPROJECT["project"]["name"]
    repository, _, tag = container["image"].rpartition(":")
    assert repository.endswith("/ecs-metadata-janitor")
    assert tag.partition("@")[0] == VERSION


def test_scaling_and_concurrency(service: dict[str, Any]) -> None:
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    low = int(annotations["autoscaling.knative.dev/min-scale"])
    high = int(annotations["autoscaling.knative.dev/max-scale"])
    assert 0 <= low <= high
    assert high >= 1
    concurrency = template["spec"]["containerConcurrency"]
    assert isinstance(concurrency, int)
    assert concurrency >= 1


def test_the_port_is_the_images(container: dict[str, Any], final: Stage) -> None:
    assert container["ports"] == [{"name": "http1", "containerPort": DEFAULT_PORT}]
    assert final.last("EXPOSE") == str(container["ports"][0]["containerPort"])


def test_the_probes_hit_the_health_path(container: dict[str, Any]) -> None:
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == HEALTH_PATH
        assert "port" not in get or get["port"] == DEFAULT_PORT


def test_requests_are_answered_within_knatives_timeout(
    service: dict[str, Any], env: dict[str, dict[str, Any]]
) -> None:
    plain = {name: item["value"] for name, item in env.items() if "value" in item}
    serve_timeout = load_config(plain).serve_timeout_s
    assert serve_timeout == float(plain["SERVE_TIMEOUT_S"])
    timeout = service["spec"]["template"]["spec"]["timeoutSeconds"]
    # A request's answer (and the drain at SIGTERM: Knative's grace period is this timeout)
    # comes before Knative gives up.
    assert timeout > serve_timeout + GRACE_MARGIN_S


def test_every_variable_is_a_setting(env: dict[str, dict[str, Any]]) -> None:
    # load_config reads each field under its own name (any case); Config has no aliases.
    settings = {name.upper() for name in Config.model_fields}
    assert set(env) <= settings, sorted(set(env) - settings)
    # Knative sets PORT itself and refuses a Service that sets it.
    assert "PORT" not in env
    for name, item in env.items():
        assert ("value" in item) != ("valueFrom" in item), name


def test_secrets_come_from_the_secret_only(env: dict[str, dict[str, Any]]) -> None:
    secret = {name for name in env if _is_secret(name)}
    assert {"HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "WEBHOOK_SECRET"} <= secret
    for name in secret:
        assert "value" not in env[name], f"{name} has an inline value"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET_NAME
        assert ref["key"]
    for name in set(env) - secret:
        assert "valueFrom" not in env[name] or "secretKeyRef" not in env[name]["valueFrom"]


def test_the_kubectl_example_creates_those_keys_with_placeholders(
    env: dict[str, dict[str, Any]],
) -> None:
    comments = "\n".join(
        line.lstrip("# ").rstrip("\\ ")
        for line in SERVICE.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    )
    assert f"kubectl create secret generic {SECRET_NAME}" in comments
    literals = dict(re.findall(r"--from-literal=(\w+)=(\S+)", comments))
    keys = {
        item["valueFrom"]["secretKeyRef"]["key"] for item in env.values() if "valueFrom" in item
    }
    assert set(literals) == keys
    for value in literals.values():
        assert re.fullmatch(r"'?(whsec_)?<[^>]+>'?", value), value


def test_the_plain_values_with_the_secrets_make_a_valid_configuration(
    env: dict[str, dict[str, Any]],
) -> None:
    environ = {name: item["value"] for name, item in env.items() if "value" in item}
    environ |= {
        "HUAWEICLOUD_SDK_AK": "AKEXAMPLEEXAMPLE",
        "HUAWEICLOUD_SDK_SK": "SKEXAMPLEEXAMPLEEXAMPLE",
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode(),
    }
    config = load_config(environ)
    assert config.huaweicloud_sdk_ak is not None
    assert config.webhook_secret is not None
    assert config.dead_letter_url == environ["DEAD_LETTER_URL"]


def test_the_security_context(container: dict[str, Any], final: Stage) -> None:
    context = container["securityContext"]
    uid, gid = _uid_gid(final)
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == uid
    assert context.get("runAsGroup", gid) == gid
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def _mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity)
    assert match, f"{quantity}: give memory in Mi or Gi"
    return float(match[1]) * (1024 if match[2] == "Gi" else 1)


def test_the_resources(container: dict[str, Any]) -> None:
    resources = container["resources"]
    assert re.fullmatch(r"\d+m", resources["requests"]["cpu"])
    requested = _mebibytes(resources["requests"]["memory"])
    limit = _mebibytes(resources["limits"]["memory"])
    assert 0 < requested <= limit
