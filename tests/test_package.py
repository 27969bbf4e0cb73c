"""The shipped zip (issue 11 §1): built from the lock, reproducible, and it runs on Python 3.12
alone: unzipped into an empty folder, imported in isolated mode, it deletes a sandbox's pairs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from handler.sandbox import Sandbox
from tests.conftest import DEMO_PROJECT, metadata_of, python312
from tests.sandbox._demo import WEB1

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ZIP = ROOT / "dist" / f"ecs-metadata-janitor-{VERSION}-py312-x86_64.zip"


@pytest.fixture(scope="module")
def built(package_dist: Path) -> Path:
    """The x86_64 zip of this checkout (tests/conftest.py builds it)."""
    return package_dist / ZIP.name


def test_the_zip_holds_the_function_and_no_tool(built: Path) -> None:
    names = zipfile.ZipFile(built).namelist()
    assert "index.py" in names and "handler/app.py" in names
    assert not [n for n in names if n.startswith(("handler/sandbox/", "handler/commands/"))]
    assert "handler/demo.py" not in names and not [n for n in names if n.startswith("tests/")]
    # The CLI and what only it uses: they need the sandbox and the commands, left out.
    assert not {"handler/cli.py", "handler/__main__.py", "handler/local.py"} & set(names)
    assert not [n for n in names if n.split("/")[0] in ("pytest", "mypy", "ruff", "respx")]
    assert {info.date_time for info in zipfile.ZipFile(built).infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_zip_holds_this_checkouts_code(built: Path) -> None:
    archive = zipfile.ZipFile(built)
    shipped = [n for n in archive.namelist() if n.startswith("handler/")]
    assert "handler/asgi.py" in shipped
    for name in shipped:
        assert archive.read(name) == (ROOT / name).read_bytes(), name


def test_the_zip_does_not_carry_the_builders_paths(built: Path) -> None:
    archive = zipfile.ZipFile(built)
    for info in archive.infolist():
        assert not info.filename.startswith("bin/"), info.filename
        data = archive.read(info)
        assert str(ROOT).encode() not in data, info.filename
        if info.filename.endswith(".dist-info/RECORD"):
            assert b"../../bin/" not in data, info.filename


def test_the_sums_name_both_zips(built: Path) -> None:
    sums = (built.parent / "SHA256SUMS").read_text().split()
    assert f"ecs-metadata-janitor-{VERSION}-py312-x86_64.zip" in sums
    assert f"ecs-metadata-janitor-{VERSION}-py312-arm64.zip" in sums


def test_the_package_refuses_another_python(tmp_path: Path) -> None:
    if sys.version_info[:2] == (3, 12):
        other = shutil.which("python3.11") or next(
            iter(sorted(Path.home().glob(".pyenv/versions/3.11*/bin/python3"))), None
        )
        if other is None:
            pytest.skip("no other Python here")
    else:
        other = sys.executable
    done = subprocess.run(
        ["bash", "infra/package.sh"],
        cwd=ROOT,
        env={**os.environ, "PY": str(other), "DIST": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Python 3.12" in done.stderr
    assert not list(tmp_path.glob("*.zip"))


def test_the_unzipped_function_deletes_a_pair_on_python_312_alone(
    built: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    python = python312()
    if python is None:
        pytest.skip("no Python 3.12 on this machine")
    folder = tmp_path / "function"
    zipfile.ZipFile(built).extractall(folder)
    script = (
        "import sys, json; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if 'lib' in p "
        "and 'site-packages' not in p]; import index; "
        "print(json.dumps(index.handler(json.loads(sys.argv[2]), None)))"
    )
    creds = sandbox.credentials
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ECS_ENDPOINT": sandbox.url,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
        "HUAWEICLOUD_SDK_AK": creds["ak"],
        "HUAWEICLOUD_SDK_SK": creds["sk"],
    }
    event = {"server_id": WEB1, "key": "owner"}
    done = subprocess.run(
        [python, "-I", "-c", script, str(folder), json.dumps(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    response = json.loads(done.stdout.strip().splitlines()[-1])
    assert response["summary"]["deleted"] == 1
    assert "owner" not in metadata_of(sandbox, WEB1)
