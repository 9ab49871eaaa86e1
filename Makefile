# bioprune: `make demo` and `make test` each build .venv from scratch when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out
# The lower-bounds environment: the oldest supported Python with every dependency
# at the lowest version pyproject.toml allows (requirements/lower.txt).
LOWER_PYTHON ?= $(shell scripts/find_python.sh 3.10)
LOWER_VENV ?= .venv-lower

.PHONY: env demo test lint bench clean env-lower test-lower wheel-check

env: $(VENV)/.installed

# The environment is pinned (requirements/env.txt: torch==2.13.0, the CPU wheel on
# this machine); the package itself only asks for ranges so GPU users get CUDA builds.
$(VENV)/.installed: pyproject.toml requirements/env.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements/env.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The whole study on the shipped demo config (Snakemake; a rerun resumes, doing only what is
# missing or stale). The report: $(DEMO_OUT)/report/report.html and report.md.
demo: env
	$(BIN)/bioprune study src/bioprune/resources/study/demo.yaml --out $(DEMO_OUT)

test: env
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: env
	$(BIN)/ruff check src tests benchmarks scripts

# The suite at the lower bounds (Python 3.10, torch 2.2, transformers 4.56, ...).
# The first run downloads about 3 GB (torch 2.2 is a CUDA build on PyPI) into pip's
# cache; `pip check` proves the installed set satisfies pyproject.toml's ranges.
env-lower: $(LOWER_VENV)/.installed

$(LOWER_VENV)/.installed: pyproject.toml requirements/lower.txt
	@test -n "$(LOWER_PYTHON)" || { echo "set LOWER_PYTHON to a Python 3.10" >&2; exit 1; }
	$(LOWER_PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_VENV)/bin/python -m pip install --quiet -r requirements/lower.txt
	$(LOWER_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(LOWER_VENV)/bin/python -m pip check
	touch $@

test-lower: env-lower
	$(LOWER_VENV)/bin/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider

# Build the wheel and sdist, install each in a fresh venv (offline) and smoke-test it.
wheel-check: env
	ENV_PYTHON=$(BIN)/python bash scripts/wheel_check.sh

bench: env
	$(BIN)/python benchmarks/run_all.py $(BENCH)

clean:
	rm -rf $(VENV) $(LOWER_VENV) $(DEMO_OUT) build/wheel-check
