# Mercato: `make run` to try it, `make test` to check it. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint openapi schema-docs bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Migrate, seed demo data, and serve on http://127.0.0.1:8000 (docs at /docs).
run: $(STAMP)
	$(BIN)/mercato migrate
	$(BIN)/mercato seed --products 10000 --categories 200
	$(BIN)/mercato serve

## The whole suite: lint, types, then every test.
test: lint
	$(BIN)/pytest -q

## Code style and types; migrations free of locking DDL (squawk); no breaking API or event change.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mercato schema lint
	$(BIN)/mercato schema check

## Rewrite the committed OpenAPI snapshot after a deliberate API change.
openapi: $(STAMP)
	$(BIN)/mercato openapi --output docs/openapi.json

## Rewrite docs/schema.md from the database (migrated to the head first) and the models.
schema-docs: $(STAMP)
	$(BIN)/mercato migrate
	$(BIN)/mercato schema docs

## Every workload (W1–W3, A1, W4, S1, E1) against its reference; writes docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mercato .pytest_cache .mypy_cache .ruff_cache
