#!/usr/bin/env bash
# Build dist/function.zip for the Python 3.12 runtimes (AWS Lambda, Huawei FunctionGraph):
# the runtime dependencies as manylinux wheels for CPython 3.12, plus handler/ without the
# sandbox and the demo (they are for local use only). Handler: handler.app.handler
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PLATFORM=${PLATFORM:-manylinux2014_x86_64}
out=dist/function
rm -rf "$out" dist/function.zip
mkdir -p "$out"
# Runtime dependencies only, read from pyproject.toml into a requirements file (markers intact).
requirements=dist/requirements.txt
"$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))' > "$requirements"
"$PY" -m pip install -q --disable-pip-version-check --target "$out" \
  --python-version 3.12 --implementation cp --platform "$PLATFORM" --only-binary=:all: \
  -r "$requirements"
mkdir -p "$out/handler"
(cd handler && find . -name '*.py' ! -path './sandbox/*' ! -path './commands/*' ! -name 'demo.py' -print0 \
  | xargs -0 -I{} cp --parents {} "../$out/handler/")
find "$out" -name '__pycache__' -type d -prune -exec rm -rf {} +
(cd "$out" && "$OLDPWD/$PY" - <<'PYZIP'
import os, zipfile
with zipfile.ZipFile("../function.zip", "w", zipfile.ZIP_DEFLATED) as zf:
    for root, _, files in os.walk("."):
        for name in sorted(files):
            path = os.path.join(root, name)
            zf.write(path, os.path.relpath(path, "."))
PYZIP
)
echo "built dist/function.zip ($(du -h dist/function.zip | cut -f1)); handler: handler.app.handler"
