# Daylight: `make run` serves the demo, `make test` lints and runs the whole suite.
# Both set up a fresh Debian machine themselves: .venv from the package registries, and the
# Debian packages the suite drives (as root, or through passwordless sudo).

PYTHON ?= $(shell command -v python3.11 || command -v python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= var
INTAKE_PORT ?= 8000
STAFF_PORT ?= 8001
# Only from the command line (`make run HOST=...`), never from an exported HOST: the demo's
# logins are printed in the clear, so it listens on loopback unless asked otherwise.
HOST = 127.0.0.1
LINT_PATHS := app tests bench

# `make test` runs lint, then system-packages, then pytest: in that order, also under -j.
.NOTPARALLEL:
.PHONY: run test lint bench screenshots screenshot-fonts bootstrap clean-demo messages system-packages

# Installs the Debian packages named in $$missing, as root or through passwordless sudo; when
# neither is possible, stops before anything runs half-equipped, with the command to run.
INSTALL_MISSING = if [ -n "$$missing" ]; then \
	if ! command -v apt-get >/dev/null; then \
		echo "make: missing packages (Debian's names):$$missing. Install them, then run make again." >&2; \
		exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
		echo "make: missing Debian packages:$$missing" >&2; \
		echo "Installing them needs root or passwordless sudo. Run this, then make $(or $(MAKECMDGOALS),bootstrap) again:" >&2; \
		echo "    sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
		exit 1; fi; \
	echo "Installing Debian packages:$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q$$missing; \
	fi

bootstrap: $(STAMP)

# Debian's python3 makes no venv without python3-venv (no ensurepip).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ missing=" python3-venv"; $(INSTALL_MISSING); }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@test -d $(DATA_DIR) || $(BIN)/daylight demo --data-dir $(DATA_DIR) --reports 500
	@echo
	@echo "Demo logins: $(DATA_DIR)/demo-credentials.json"
	@echo "Current one-time codes:  $(BIN)/daylight demo-code --data-dir $(DATA_DIR) [--username demo-caseworker]"
	@$(BIN)/daylight demo-code --data-dir $(DATA_DIR)
	@echo
	$(BIN)/daylight serve --data-dir $(DATA_DIR) --host $(HOST) --intake-port $(INTAKE_PORT) --staff-port $(STAFF_PORT)

# What the suite runs besides Python, as program:Debian package. The browser tests drive
# Debian's Chromium (never a browser a test tool downloads from a CDN); tests/deploy checks the
# shipped configs with nginx and tor; the backup tests run pg_dump and pg_restore on PostgreSQL;
# tests/deploy/test_readme_commands.py clones the repository with git; tests/deploy/test_compose.py
# validates the compose file with docker-compose. Installed when missing.
SYSTEM_PACKAGES := /usr/bin/chromium:chromium /usr/sbin/nginx:nginx-light /usr/sbin/tor:tor \
	/usr/bin/pg_dump:postgresql-client /usr/bin/git:git /usr/bin/docker-compose:docker-compose

system-packages:
	@missing=; for need in $(SYSTEM_PACKAGES); do \
		[ -x "$${need%%:*}" ] || missing="$$missing $${need#*:}"; done; \
	$(INSTALL_MISSING)

test: lint system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports
	$(BIN)/mypy

clean-demo:
	rm -rf $(DATA_DIR)

bench: $(STAMP)
	$(BIN)/python bench/http_paths.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/audit_witness.py
	$(BIN)/python bench/triage_queue.py
	$(BIN)/python bench/desk_search.py
	$(BIN)/python bench/key_rotation.py
	$(BIN)/python bench/row_macs.py
	$(BIN)/python bench/login_burst.py
	$(BIN)/python bench/image_cleaning.py
	$(BIN)/python bench/referral.py
	$(BIN)/python bench/load.py

# Fonts for the screenshots only: the pages name system fonts (no web font over Tor), and a
# machine without Chinese, Arabic-script and Tibetan fonts would photograph empty boxes.
SCREENSHOT_FONTS := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc:fonts-noto-cjk \
	/usr/share/fonts/truetype/noto/NotoSerifTibetan-Regular.ttf:fonts-noto-core

screenshot-fonts:
	@missing=; for need in $(SCREENSHOT_FONTS); do \
		[ -e "$${need%%:*}" ] || missing="$$missing $${need#*:}"; done; \
	$(INSTALL_MISSING)

screenshots: $(STAMP) system-packages screenshot-fonts
	DAYLIGHT_WRITE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -q

# Refresh the translation catalogs after changing a submitter-facing string; then
# translate what `make test` reports as missing (tests/intake/test_translations.py).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output -o app/locale/messages.pot \
		--project Daylight --copyright-holder "Daylight contributors" .
	$(BIN)/pybabel update -i app/locale/messages.pot -d app/locale --no-fuzzy-matching --ignore-obsolete
