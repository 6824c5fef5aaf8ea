# make run  — the demo on an embedded PostgreSQL (http://127.0.0.1:8000)
# make test — venv, install, lint (ruff, mypy, import layers), the whole suite on PostgreSQL 18,
#             the database suite on 15
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest pytest-pg15 bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vechat-rls demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

pytest: $(STAMP) browser
	$(PY) -m pytest

# tests/browser/test_browser.py drives Debian's Chromium through Playwright (which cannot download its own).
browser:
	@command -v chromium >/dev/null || \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium))

# The database suite again on Debian's PostgreSQL 15 server package.
pytest-pg15: $(STAMP)
	@command -v pg_config >/dev/null && test -x "$$(pg_config --bindir)/postgres" || \
	  (apt-get install -y -qq postgresql-15 >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql-15))
	VECHAT_TEST_POSTGRES=15 $(PY) -m pytest -m db

test: lint pytest pytest-pg15

clean:
	rm -rf $(VENV) .vechat
