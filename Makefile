# The two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit clean image

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/entrasync demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check entrasync tests

# pyproject.toml names the files (entrasync, tests, bench). The conftest files of the helper
# folders would all be the module `conftest`, so each gets a run of its own.
CONFTESTS := tests/sync/conftest.py tests/daemon/conftest.py tests/graph/conftest.py tests/scenarios/conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy
	for f in $(CONFTESTS); do $(BIN)/mypy $$f || exit 1; done

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: lint typecheck $(STAMP)
	$(BIN)/pytest -q

# The container image (needs a Docker engine): build it, then print its size.
IMAGE ?= entrasync
image:
	docker build -t $(IMAGE) .
	@docker image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
