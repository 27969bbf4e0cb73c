# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# The function runs on the Python 3.12 runtimes: test on 3.12 where the machine has one
# (python3.12 on PATH, else pyenv's), otherwise on python3 (3.11 or later).
PYTHON ?= $(or $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null),$(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3))),python3)
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-dev-$(PYVER)

.PHONY: test lint typecheck pytest demo sandbox package lock bench clean

$(STAMP): pyproject.toml requirements.lock requirements-serve.lock
	@# A venv of another Python (an older checkout's) is made again for this one.
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
	  echo "$(VENV) is not Python $(PYVER): making it again"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@# The runtime dependencies exactly as they ship (requirements.lock, and the image's
	@# requirements-serve.lock; hashes checked), then the project and its dev tools around them.
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock \
	  -r requirements-serve.lock
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict handler bench

pytest: $(STAMP)
	@# The pins again (a no-op when in step): anything installed since, a bench extra or a
	@# hand-made upgrade, must not change what the tests run against.
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements.lock \
	  -r requirements-serve.lock
	$(PY) -m pytest --cov=handler --cov-report=term:skip-covered -q

test: lint typecheck pytest

demo: $(STAMP)
	$(PY) -m handler demo

sandbox: $(STAMP)
	$(PY) -m handler sandbox

BENCH_STAMP = $(VENV)/.installed-bench-$(PYVER)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# One run of every benchmark against the sandbox; prints the table, writes bench/results/.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py

# The zips for both architectures, from requirements.lock, and dist/SHA256SUMS.
package: $(STAMP)
	PY=$(PY) bash infra/package.sh

# Pin the runtime dependencies again, with their hashes, from pyproject.toml (and the image's
# `serve` extra).
lock: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check pip-tools
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))' > dist-requirements.in
	$(PY) -m piptools compile -q --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links --no-header -o requirements.lock dist-requirements.in
	rm -f dist-requirements.in
	sed -i '1i # The runtime dependencies, pinned with their hashes: what `make package` ships and `make test`\n# installs. Regenerate with `make lock` (pip-compile --generate-hashes, from pyproject.toml).' requirements.lock
	@# The `serve` extra for the container image, constrained to the versions above.
	printf -- '-c requirements.lock\nuvicorn>=0.30\n' > serve-requirements.in
	$(PY) -m piptools compile -q --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links --no-header -o requirements-serve.lock serve-requirements.in
	rm -f serve-requirements.in
	sed -i '1i # The `serve` extra (uvicorn) for the container image, pinned with hashes and constrained to\n# requirements.lock; the image installs both. Regenerate with `make lock`.' requirements-serve.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .demo dist
