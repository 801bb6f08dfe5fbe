# Every target creates the virtual environment if it is missing. torch is installed first and
# pinned (a CPU wheel); the project's looser torch range is then already satisfied, so pip never
# downloads a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export MOMA_SHARED ?= $(abspath ../shared)

.PHONY: setup demo test test-slow lint bench protos clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	bash scripts/demo.sh

test: setup
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared client server

bench: setup
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_amc_selection.py
	$(PY) benchmarks/bench_hub.py --db sqlite

protos: setup
	$(PY) scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
