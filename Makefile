# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-dev

.PHONY: test lint typecheck pytest demo sandbox package bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict handler bench

pytest: $(STAMP)
	$(PY) -m pytest --cov=handler --cov-report=term:skip-covered -q

test: lint typecheck pytest

demo: $(STAMP)
	$(PY) -m handler demo

sandbox: $(STAMP)
	$(PY) -m handler sandbox

BENCH_STAMP = $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# One run of every benchmark against the sandbox; prints the table, writes bench/results/.
bench: $(BENCH_STAMP)
	$(PY) bench/run.py

package: $(STAMP)
	PY=$(PY) bash infra/package.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .demo dist
