#!/usr/bin/env bash
# Build the function's zips for the Python 3.12 runtimes (AWS Lambda, Huawei FunctionGraph):
#   dist/ecs-metadata-janitor-<version>-py312-x86_64.zip and …-arm64.zip, and dist/SHA256SUMS.
# Each holds the runtime dependencies pinned (with their hashes) in requirements.lock, as
# manylinux wheels for CPython 3.12, plus handler/ without the sandbox, the demo, the CLI and the
# operator commands, and an index.py so `index.handler` works (`handler.app.handler` too).
# Two builds of one commit give byte-identical zips: fixed timestamps, modes and file order.
# DIST (default dist) is where they are written; ARCHES (default "x86_64 arm64") which are built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DIST=${DIST:-dist}
ARCHES=${ARCHES:-x86_64 arm64}
# pip evaluates the lock's markers against the Python it runs on, whatever --python-version
# says: another Python would leave out the 3.12-only pins (aws-sdk-signers) without a word.
if [ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "3.12" ]; then
  echo "error: the zips are for the Python 3.12 runtimes: run with a Python 3.12 (PY=...)" >&2
  exit 2
fi
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
mkdir -p "$DIST"
rm -f "$DIST/SHA256SUMS" "$DIST"/ecs-metadata-janitor-*.zip
for arch in $ARCHES; do
  case "$arch" in
    x86_64) platform=manylinux2014_x86_64 ;;
    arm64) platform=manylinux2014_aarch64 ;;
  esac
  out="$DIST/build-$arch"
  rm -rf "$out"
  mkdir -p "$out/handler"
  out=$(cd "$out" && pwd)
  "$PY" -m pip install -q --disable-pip-version-check --no-compile --no-deps --require-hashes \
    --target "$out" --python-version 3.12 --implementation cp --platform "$platform" \
    --only-binary=:all: -r requirements.lock
  # Every pin of the lock is in: a pin pip skipped would fail the function at its cold start.
  "$PY" - "$out" requirements.lock <<'CHECK'
import pathlib, re, sys
out, lock = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text()
have = {re.sub(r"[-_.]+", "_", p.name.split("-")[0]).lower() for p in out.glob("*.dist-info")}
want = {re.sub(r"[-_.]+", "_", m).lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==", lock, re.M)}
if want - have:
    sys.exit(f"error: the build lacks pinned packages: {sorted(want - have)}")
CHECK
  # Console scripts carry the builder's interpreter path: not the function's, not reproducible.
  rm -rf "$out/bin"
  find "$out" -path '*.dist-info/RECORD' -exec sed -i '\#^\.\./\.\./bin/#d' {} +
  # The function's code: not the sandbox, the demo, the CLI and the operator commands (tools
  # that need what the zip leaves out).
  (cd handler && find . -name '*.py' ! -path './sandbox/*' ! -path './commands/*' \
    ! -name 'demo.py' ! -name 'cli.py' ! -name '__main__.py' ! -name 'local.py' -print0 \
    | xargs -0 -I{} cp --parents {} "$out/handler/")
  printf '%s\n' '"""The function'"'"'s entry point as `index.handler` (Lambda and FunctionGraph)."""' \
    '' 'from handler.app import handler, lambda_handler' '' '__all__ = ["handler", "lambda_handler"]' \
    > "$out/index.py"
  find "$out" -name '__pycache__' -type d -prune -exec rm -rf {} +
  zip_name="ecs-metadata-janitor-$version-py312-$arch.zip"
  "$PY" infra/zipdir.py "$out" "$DIST/$zip_name"
  rm -rf "$out"
  echo "built $DIST/$zip_name ($(du -h "$DIST/$zip_name" | cut -f1))"
done
(cd "$DIST" && sha256sum ecs-metadata-janitor-"$version"-py312-*.zip > SHA256SUMS)
echo "wrote $DIST/SHA256SUMS; handler: index.handler (or handler.app.handler)"
