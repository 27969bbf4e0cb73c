#!/usr/bin/env bash
# Build the function's zips for the Python 3.12 runtimes (AWS Lambda, Huawei FunctionGraph):
#   dist/ecs-metadata-janitor-<version>-py312-x86_64.zip and …-arm64.zip, and dist/SHA256SUMS.
# Each holds the runtime dependencies pinned (with their hashes) in requirements.lock, as
# manylinux wheels for CPython 3.12, plus handler/ without the sandbox, the demo and the
# operator commands, and an index.py so `index.handler` works (`handler.app.handler` too).
# Two builds of one commit give byte-identical zips: fixed timestamps, modes and file order.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
mkdir -p dist
rm -f dist/SHA256SUMS dist/ecs-metadata-janitor-*.zip
for arch in x86_64 arm64; do
  case "$arch" in
    x86_64) platform=manylinux2014_x86_64 ;;
    arm64) platform=manylinux2014_aarch64 ;;
  esac
  out="dist/build-$arch"
  rm -rf "$out"
  mkdir -p "$out/handler"
  "$PY" -m pip install -q --disable-pip-version-check --no-compile --no-deps --require-hashes \
    --target "$out" --python-version 3.12 --implementation cp --platform "$platform" \
    --only-binary=:all: -r requirements.lock
  (cd handler && find . -name '*.py' ! -path './sandbox/*' ! -path './commands/*' \
    ! -name 'demo.py' -print0 | xargs -0 -I{} cp --parents {} "../$out/handler/")
  printf '%s\n' '"""The function'"'"'s entry point as `index.handler` (Lambda and FunctionGraph)."""' \
    '' 'from handler.app import handler, lambda_handler' '' '__all__ = ["handler", "lambda_handler"]' \
    > "$out/index.py"
  find "$out" -name '__pycache__' -type d -prune -exec rm -rf {} +
  zip_name="ecs-metadata-janitor-$version-py312-$arch.zip"
  "$PY" infra/zipdir.py "$out" "dist/$zip_name"
  rm -rf "$out"
  echo "built dist/$zip_name ($(du -h "dist/$zip_name" | cut -f1))"
done
(cd dist && sha256sum ecs-metadata-janitor-"$version"-py312-*.zip > SHA256SUMS)
echo "wrote dist/SHA256SUMS; handler: index.handler (or handler.app.handler)"
