# Two commands do everything on a fresh Debian 12 machine:
#   make demo   boot the default machine and run the main job on it
#   make test   run the whole test suite (real QEMU under TCG, pytest-xdist)
# Both install what is missing first (Debian packages, .venv) and do no network work
# once the stamps under .cache/ are current.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMPS  := .cache/stamps
JOBS    ?= 2
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the project needs: QEMU itself (pulls SeaBIOS and iPXE), a C compiler
# for the interval index, 32-bit multilib for the probe guest, and venv/headers in case
# the system Python is Debian's own; chromium renders the HTML reports in the tests.
DEBIAN_PACKAGES := qemu-system-x86 gcc gcc-multilib libc6-dev make python3-venv python3-dev chromium

.PHONY: all setup demo test bench fuzz clean distclean fuzz-intervals bench-intervals bench-hal
all: test

setup: $(STAMPS)/venv

$(STAMPS)/debian: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/venv-base: $(STAMPS)/debian
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=77' wheel
	@touch $@

# Without build isolation a rebuild of the C extension (after an edit) needs no network:
# the build tools are already in the venv.  The editable install builds the extension
# and the lifeline program into harness/; when they are gone (make clean) the stamp is out
# of date whatever its age.  Editable in "compat" mode: a plain path in a .pth file, no
# import hook to load at every interpreter start (~10 ms each, a wheel has none either).
EDITABLE = --no-build-isolation --config-settings editable_mode=compat -e
ifeq ($(and $(wildcard harness/_intervals*.so),$(wildcard harness/qemu/_lifeline)),)
.PHONY: $(STAMPS)/venv
endif
$(STAMPS)/venv: $(STAMPS)/venv-base pyproject.toml setup.py harness/_intervals.c harness/qemu/_lifeline.c
	$(BIN)/python -m pip install -q $(EDITABLE) '.[test]'
	@touch $@

# The main job on the default machine: ResourceMap, error log, claims against the
# hardware; files (logs, registry, report, picture) under runs/default.
demo: setup
	$(BIN)/harness run configs/machines/default.yaml

# The harness plugin groups tests for --dist loadgroup: tests of one harness machine on
# one worker, every other test with its module (module-scoped fixtures are shared).
test: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup tests

# Build outputs and tool caches.  runs/ (what harness run, matrix and repro wrote) and
# harness-failures/ are results, not build outputs: delete them yourself when done.
clean:
	rm -rf build dist *.egg-info harness/*.so harness/qemu/_lifeline .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV) .cache

# ---- interval index (harness/_intervals.c) ----
# The fuzz driver compiles the index core without Python under ASan+UBSan and checks a
# seeded random operation stream against a brute-force model.
FUZZ_OPS    ?= 2000000
FUZZ_SEED   ?= 20240531
FUZZ_CFLAGS := -std=c11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
               -fno-omit-frame-pointer -Wall -Wextra -Werror

fuzz-intervals: $(STAMPS)/debian
	@mkdir -p build/fuzz
	gcc $(FUZZ_CFLAGS) -o build/fuzz/fuzz_intervals tests/fuzz/fuzz_intervals.c
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ./build/fuzz/fuzz_intervals $(FUZZ_OPS) $(FUZZ_SEED)

fuzz: fuzz-intervals

# The peers (superintervals, ailist, ncls, intervaltree) come from the [bench] extra.
$(STAMPS)/bench: $(STAMPS)/venv
	$(BIN)/python -m pip install -q $(EDITABLE) '.[test,bench]'
	@touch $@

bench-intervals: $(STAMPS)/bench
	$(BIN)/python benchmarks/bench_intervals.py

bench: bench-intervals

# ---- HAL configuration-space access (harness/qemu/livebus.py) ----
bench-hal: setup
	$(BIN)/python benchmarks/bench_hal_config.py

bench: bench-hal

# ---- matrix throughput (harness/matrix.py): cells/s against bare QEMU cycles/s ----
.PHONY: bench-matrix
bench-matrix: setup
	$(BIN)/python benchmarks/bench_matrix.py --jobs $(JOBS)

bench: bench-matrix

# ---- overhead over QEMU itself (issue 21): CLI start, layout, main job, matrix, pytest fixtures ----
.PHONY: bench-overhead
bench-overhead: setup
	$(BIN)/python benchmarks/bench_overhead.py --jobs $(JOBS)

bench: bench-overhead

# ---- the firmware's end: SeaBIOS's last line against its reboot (issue 21) ----
.PHONY: bench-firmware-end
bench-firmware-end: setup
	$(BIN)/python benchmarks/bench_firmware_end.py

bench: bench-firmware-end

# ---- guest images (guest_images/; outputs cached in .cache/guests, built on first use too) ----
guests: setup
	$(BIN)/python -m harness.guests

.PHONY: guests

# ---- reliability (RELIABILITY.md) ----
# make test runs every reliability test at a small volume; these run them at full volume.
# fuzz: 10^5 inputs in all across the ten targets of tests/fuzz_targets.py (plus the C
# index under ASan above); fuzz-atheris: the same targets coverage-guided (the [fuzz]
# extra); soak: chaos and durability at ten times make test's volume, 200 kills timed at
# QEMU's start.
.PHONY: fuzz-inputs fuzz-atheris soak reliability-figures
FUZZ_EXAMPLES ?= 10000
ATHERIS_RUNS  ?= 20000
SOAK_CHAOS    ?= 2000
SOAK_KILLS    ?= 400
SOAK_START_KILLS ?= 200
FIGURES       := $(BIN)/python tests/reliability_figures.py

fuzz-inputs: setup
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -n $(JOBS) -p no:cacheprovider --timeout 3600 \
	  tests/test_fuzz.py -k fuzz_target
	$(FIGURES) fuzz

fuzz: fuzz-inputs

$(STAMPS)/fuzz: $(STAMPS)/venv
	$(BIN)/python -m pip install -q $(EDITABLE) '.[test,fuzz]'
	@touch $@

fuzz-atheris: $(STAMPS)/fuzz
	@mkdir -p build/fuzz
	for target in $$(cd tests && ../$(BIN)/python -c 'from fuzz_targets import TARGETS; print(*TARGETS)'); do \
	  $(BIN)/python tests/fuzz/fuzz_atheris.py $$target -runs=$(ATHERIS_RUNS) -max_len=4096 \
	    -len_control=0 -artifact_prefix=build/fuzz/ || exit 1; done

soak: setup
	CHAOS_ITERATIONS=$(SOAK_CHAOS) DURABILITY_KILLS=$(SOAK_KILLS) START_KILLS=$(SOAK_START_KILLS) $(BIN)/python -m pytest -n $(JOBS) \
	  -p no:cacheprovider --timeout 3600 tests/test_chaos.py tests/test_durability.py tests/test_bounded_waits.py
	$(FIGURES)

reliability-figures:
	$(FIGURES)

# ---- PnP assignment (harness/nt/pnp.py): synthetic arbitration sets, no QEMU ----
.PHONY: bench-pnp
bench-pnp: setup
	$(BIN)/python benchmarks/bench_pnp.py

bench: bench-pnp

# ---- firmware stalls (harness/qemu/progress.py): how a held-up firmware ends, the watch's margins ----
.PHONY: bench-firmware-stalls
bench-firmware-stalls: setup
	$(BIN)/python benchmarks/bench_firmware_stalls.py

bench: bench-firmware-stalls

# ---- random valid machines against the live layout (tests/livefuzz.py), not in make test ----
# Each machine runs through the main job twice; failing files (shrunk) go to runs/livefuzz/failures.
FUZZ_MACHINES     ?= 300
FUZZ_MACHINE_SEED ?= 1
.PHONY: fuzz-machines
fuzz-machines: setup
	$(BIN)/python tests/livefuzz.py --count $(FUZZ_MACHINES) --seed $(FUZZ_MACHINE_SEED) -j $(JOBS) --out runs/livefuzz
