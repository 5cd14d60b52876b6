PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install run test unit integration bench chaos clean

$(BIN)/cartflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/cartflow

run: install
	$(BIN)/cartflow up

test: install
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q -ra tests/integration

chaos: install
	$(BIN)/python -m harness.chaos --duration $${CHAOS_SECONDS:-300}

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .cartflow .pytest_cache
