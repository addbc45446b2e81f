# Two commands are all a user needs (README): `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test lint format maniskill-cpu-study

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m vla_torchrl.recipes.demo $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

# issue 14's CPU-scale study on the real benchmark, ~6 h on 2 cores (docs/results/maniskill-cpu)
maniskill-cpu-study: setup
	bash docs/results/maniskill-cpu/reproduce.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
