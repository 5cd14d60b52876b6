PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install browser promtool run test unit integration bench chaos clean

$(BIN)/cartflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/cartflow

run: install
	$(BIN)/cartflow up

# The browser test drives Debian's chromium (Playwright's own download cannot
# work offline); installed here when missing and we may (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null 2>&1 \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium missing (apt-get install chromium as root): the browser test will be skipped"; fi; }

# The alert rules are checked with Debian's promtool (package prometheus), installed
# here when missing and we may (as root).
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q --no-install-recommends prometheus || (apt-get update -q && apt-get install -y -q --no-install-recommends prometheus)) >/dev/null 2>&1 \
	      || echo "could not install prometheus: the promtool test will be skipped"; \
	  else echo "promtool missing (apt-get install prometheus as root): the promtool test will be skipped"; fi; }

test: install browser promtool
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q -m unit tests/unit

integration: install
	$(BIN)/pytest -q -ra tests/integration

chaos: install
	$(BIN)/python -m harness.chaos --duration $${CHAOS_SECONDS:-300}

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .cartflow .pytest_cache
