# The two entry points a newcomer needs: `make run` and `make test`.
# Everything else is plumbing they call.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# stress-ng: tests/mount stress run; fio: bench/mount.py.
# zsh and fish: the completion tests load `aether completion` scripts into real shells.
APT_PACKAGES := fuse3 libfuse3-dev pkg-config attr git zsh fish stress-ng fio

.PHONY: run test setup apt proto proto-check docs lint bench clean

run: setup
	$(BIN)/python scripts/walkthrough.py

# Test files run in parallel, one file per worker at a time (--dist loadfile):
# a module's tests share one daemon. `pytest tests/x.py` alone runs serially.
test: setup proto-check
	$(BIN)/python -m pytest -q -n auto --dist loadfile

setup: apt $(STAMP)

# Installs only what is missing; needs root (CI and the dev machines are root).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

# Regenerates the committed betterproto2 code from proto/ (the API contract).
proto: setup
	$(BIN)/python scripts/gen_proto.py aether/_gen

# Fails when the committed generated code differs from a fresh generation.
proto-check: setup
	$(BIN)/python scripts/gen_proto.py --check aether/_gen

# Regenerates the generated parts of docs/ (API tables, CLI reference);
# tests/test_docs.py fails when they are stale.
docs: setup
	$(BIN)/python scripts/gen_api_doc.py
	$(BIN)/python scripts/gen_cli_doc.py

lint: setup
	$(BIN)/ruff check aetherd aether tui tests bench scripts

bench: setup
	$(BIN)/python bench/fork_checkpoint.py
	$(BIN)/python bench/import.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/read.py
	$(BIN)/python bench/chunks.py
	$(BIN)/python bench/mount.py
	$(BIN)/python bench/tui.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) .pytest_cache
