# Two commands are all a user needs (README): `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test lint format

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m vla_torchrl.recipes.demo $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
