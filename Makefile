# Daylight: `make run` serves the demo, `make test` runs the whole suite.
# Both bootstrap .venv on a fresh machine with Python 3.11+ and the package registries.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= var

.PHONY: run test lint bench screenshots bootstrap clean-demo messages system-packages

bootstrap: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@test -d $(DATA_DIR) || $(BIN)/daylight demo --data-dir $(DATA_DIR)
	@echo
	@echo "Demo logins: $(DATA_DIR)/demo-credentials.json"
	@echo "Current one-time codes:  $(BIN)/daylight demo-code --data-dir $(DATA_DIR) [--username demo-caseworker]"
	@$(BIN)/daylight demo-code --data-dir $(DATA_DIR)
	@echo
	$(BIN)/daylight serve --data-dir $(DATA_DIR)

# The browser tests drive Debian's Chromium (never a browser a test tool downloads from a
# CDN); tests/deploy checks the shipped configs with nginx and tor. All from the distribution's
# signed packages, installed when missing (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@{ command -v chromium >/dev/null && [ -x /usr/sbin/nginx ] && [ -x /usr/sbin/tor ]; } || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium nginx-light tor; }

test: $(STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests migrations bench
	$(BIN)/mypy

clean-demo:
	rm -rf $(DATA_DIR)

bench: $(STAMP)
	$(BIN)/python bench/http_paths.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/triage_queue.py
	$(BIN)/python bench/key_rotation.py
	$(BIN)/python bench/image_cleaning.py
	$(BIN)/python bench/load.py

screenshots: $(STAMP)
	DAYLIGHT_WRITE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -q

# Refresh the translation catalogs after changing a submitter-facing string; then
# translate what `make test` reports as missing (tests/intake/test_translations.py).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output -o app/locale/messages.pot \
		--project Daylight --copyright-holder "Daylight contributors" .
	$(BIN)/pybabel update -i app/locale/messages.pot -d app/locale --no-fuzzy-matching --ignore-obsolete
