PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install browser promtool run docs test unit integration bench chaos clean

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

# The documentation site (mkdocs.yml, pages in docs/), built into .cartflow/site;
# --strict fails on a broken link, a missing anchor or a page left out of the nav.
# Not --quiet: it hides the warnings from --strict too, which then passes anything.
# The build's output is shown only when it fails. NO_MKDOCS_2_WARNING silences a
# notice Material for MkDocs prints on every build.
docs: install
	@mkdir -p .cartflow
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict > .cartflow/docs.log 2>&1 \
	  || { cat .cartflow/docs.log; echo "make docs: the documentation site does not build (see above)"; exit 1; }

test: install docs browser promtool
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q -m unit tests

integration: install
	$(BIN)/pytest -q -ra tests/integration

chaos: install
	$(BIN)/python -m harness.chaos --duration $${CHAOS_SECONDS:-300}

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .cartflow .pytest_cache
