# Everything installs itself: a fresh machine needs only python3 (3.11+), make and npm.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# NODES: validators; `make devnet` takes devnet/devnet.toml's count unless it is given, `make bench` 4.
NODES  ?=
DEVNET_DIR ?= .devnet

.PHONY: install contracts devnet test test-strict sim lint bench nemesis clean


# Debian packages for the browser tests (chromium) and the resolver benchmark (nginx, wrk). Best effort:
# without root or apt, the browser tests skip with a message and the benchmark skips nginx.
SYSTEM_PKGS := chromium chromium-driver nginx wrk
SYS_STAMP   := $(VENV)/.system-stamp

install: $(STAMP) $(SYS_STAMP)

# A Chromium is found however the platform names it (tests/browser.py); the stamp is written only
# once one is found, so the next `make install` looks again.
$(SYS_STAMP):
	mkdir -p $(VENV)
	if python3 tests/browser.py >/dev/null 2>&1 && command -v nginx >/dev/null && command -v wrk >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q $(SYSTEM_PKGS) >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q $(SYSTEM_PKGS) >/dev/null)) || \
	  echo "warning: could not install $(SYSTEM_PKGS) with apt-get"; \
	fi
	if python3 tests/browser.py >/dev/null 2>&1; then touch $(SYS_STAMP); else \
	  echo "warning: $$(python3 tests/browser.py 2>&1); the browser tests will skip, and .ci/run fails"; fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	if [ -f contracts/package.json ]; then cd contracts && npm ci --no-audit --no-fund; fi
	touch $(STAMP)

# Recompile contracts/*.sol with the pinned solcjs; commit contracts/build/LedgerAnchor.json and BenchNFT.json.
contracts: install
	$(PY) contracts/build.py

# The devnet devnet/devnet.toml defines (4 validators anchoring to a local Anvil), with the demo data.
devnet: install
	$(VENV)/bin/ledger devnet up --dir $(DEVNET_DIR) --demo $(if $(NODES),--nodes $(NODES))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ledger devnet bench

# Ends by listing skipped tests with their reasons (tests/conftest.py); HYPOTHESIS_PROFILE=ci|soak.
test: install lint
	$(VENV)/bin/pytest -q --durations=30

# What .ci/run runs: any skipped test fails the run; Hypothesis derandomised.
test-strict:
	LEDGER_STRICT_SKIPS=1 HYPOTHESIS_PROFILE=ci $(MAKE) test

# The consensus simulation's search (tests/sim/): `make sim SEEDS=5000 [JOBS=2]` runs the Twins
# enumeration and drawn schedules from a run seed it prints (SIM_SEED=R fixes it); `make sim MINUTES=60`
# soaks; `make sim SEED=name:seed` replays one schedule and writes its transcript to sim-failures/.
SEEDS ?= 1000
JOBS  ?= 2
sim: install
	$(if $(SEED),$(PY) -m tests.sim --replay $(SEED),$(PY) -m tests.sim --jobs $(JOBS) \
	  $(if $(MINUTES),--minutes $(MINUTES),--schedules $(SEEDS)))

bench: install
	$(VENV)/bin/ledger bench --nodes $(or $(NODES),4)

# A 4-validator devnet under client load and FAULTS faults (kill -9, restart, SIGSTOP, partition), one at a
# time, then every acknowledged transaction checked on every node (devnet/nemesis.py). SEED replays a schedule.
nemesis: install
	$(PY) -m devnet.nemesis --faults $(or $(FAULTS),20) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) $(DEVNET_DIR) .pytest_cache .mypy_cache .hypothesis sim-failures
