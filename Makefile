# make setup     install everything (system packages, Python venv, the default kernel)
# make test      every test, VM tests included
# make test-vm   only the tests that boot real guests
# make bench     boot-to-ready time per kernel x NIC
# make kernel KERNEL_SRC=PATH   build a kernel tree (or tarball) with kernel-config/
VENV   := .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: setup test test-unit test-vm bench kernel clean

setup: $(VENV)/.installed
	./scripts/setup-system.sh
	$(VENV)/bin/testbed kernel fetch
	$(VENV)/bin/testbed kernel build

kernel: $(VENV)/.installed
	@test -n "$(KERNEL_SRC)" || { echo "usage: make kernel KERNEL_SRC=/path/to/linux"; exit 2; }
	$(VENV)/bin/testbed kernel build --source "$(KERNEL_SRC)"

# The venv is rebuilt only when the package description changes.
$(VENV)/.installed: pyproject.toml
	./scripts/setup-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest

test-unit: $(VENV)/.installed
	$(PY) -m pytest -m "not vm"

test-vm: $(VENV)/.installed
	$(PY) -m pytest -m vm

bench: $(VENV)/.installed
	$(VENV)/bin/testbed bench --runs 5 --json results/bench.json

clean:
	rm -rf results
