# make setup     install everything (system packages, Python venv, every kernel in testbed.yaml,
#                the QEMU with the 82598 model)
# make test      every test, VM tests included
# make test-vm   only the tests that boot real guests
# make bench     boot, restore and catalogue times and CPU seconds per kernel, both clocks (quick)
# make bench-full  the same for every kernel x NIC, with scaling and the whole matrix
# make soak      200 boot + scenario cycles: flakes, leftovers, the slowest cycle (CYCLES=N, TRANSPORT=ssh)
# make kernel KERNEL_SRC=PATH   build a kernel tree (or tarball) with kernel-config/
# make bisect-demo  a whole `git bisect run` over a small history made from 3.14.40 (about 3 min)
# Tests run JOBS at a time, each VM test on its own guest (its own QEMU): four keep two cores
# busy whether the guests run on the virtual clock or mostly wait on the real one (README); an
# idle worker takes tests queued for a busy one (worksteal), as their lengths differ 100-fold.
JOBS   ?= $(shell echo $$(( $$(nproc) * 2 )))
XDIST  := -n $(JOBS) --dist worksteal
VENV   := .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: setup test test-unit test-vm bench bench-full soak kernel bisect-demo clean

# The QEMU with the 82598 model is optional: if it cannot be built, its one line says which step
# failed and why (recorded for `testbed qemu status`), and everything else runs on Debian's QEMU.
setup: $(VENV)/.installed
	./scripts/setup-system.sh
	$(VENV)/bin/testbed kernel fetch
	$(VENV)/bin/testbed kernel build
	$(VENV)/bin/testbed qemu build || true

kernel: $(VENV)/.installed
	@test -n "$(KERNEL_SRC)" || { echo "usage: make kernel KERNEL_SRC=/path/to/linux"; exit 2; }
	$(VENV)/bin/testbed kernel build --source "$(KERNEL_SRC)"

# The venv is rebuilt only when the package description changes.
$(VENV)/.installed: pyproject.toml
	./scripts/setup-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .[test]
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest $(XDIST)

test-unit: $(VENV)/.installed
	$(PY) -m pytest $(XDIST) -m "not vm"

test-vm: $(VENV)/.installed
	$(PY) -m pytest $(XDIST) -m vm

bench: $(VENV)/.installed
	$(VENV)/bin/testbed bench --json results/bench.json

bench-full: $(VENV)/.installed
	$(VENV)/bin/testbed bench --full --json results/bench-full.json

# not part of `make test`: 200 cold boots + carrier-qmp across the NICs (4.5 min here, virtual clock)
soak: $(VENV)/.installed
	$(VENV)/bin/testbed soak --cycles $(or $(CYCLES),200) $(if $(TRANSPORT),--transport $(TRANSPORT))

# not part of `make test`: one kernel build per step (README, "Bisecting a kernel")
bisect-demo: $(VENV)/.installed
	./scripts/bisect-demo.sh

clean:
	rm -rf results
