# Everything installs itself: a fresh machine needs only python3 (3.11+), make and npm.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODES  ?= 4
DEVNET_DIR ?= .devnet

.PHONY: install contracts devnet test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	if [ -f contracts/package.json ]; then cd contracts && npm ci --no-audit --no-fund; fi
	touch $(STAMP)

# Recompile contracts/LedgerAnchor.sol with the pinned solcjs; commit contracts/build/LedgerAnchor.json.
contracts: install
	$(PY) contracts/build.py

devnet: install
	$(VENV)/bin/ledger devnet up --nodes $(NODES) --dir $(DEVNET_DIR) --ethereum anvil --demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ledger

test: install lint
	$(VENV)/bin/pytest -q

bench: install
	$(VENV)/bin/ledger bench --nodes $(NODES)

clean:
	rm -rf $(VENV) $(DEVNET_DIR) .pytest_cache .mypy_cache .hypothesis
