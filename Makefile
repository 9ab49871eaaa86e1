# bioprune: `make demo` and `make test` each build .venv from scratch when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: env demo test lint bench clean

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

bench: env
	$(BIN)/python benchmarks/run_all.py $(BENCH)

clean:
	rm -rf $(VENV) $(DEMO_OUT)
