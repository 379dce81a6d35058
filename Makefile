# The two commands a newcomer needs:  make demo   and   make test
# Everything is idempotent: a second run with nothing changed only checks and re-runs.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
PYTHON     ?= $(shell command -v python3)
CMAKE_ARGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE=$(PYTHON)
# The Python package straight from the build tree (no install needed).
PYENV      := PYTHONPATH=$(CURDIR)/python MPIRAY_BUILD_DIR=$(CURDIR)/$(BUILD)
CTEST_ARGS ?= --output-on-failure -j 2

.PHONY: all deps build build-asan demo test test-unit test-chaos test-python bench bench-python clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	@cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMPIRAY_SANITIZE=ON \
	  -DMPIRAY_UNIT_TESTS_ONLY=ON

build-asan: deps $(ASAN_BUILD)/build.ninja
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# A representative job: the C++ and the Python quickstart on 4 local MPI ranks (2 virtual
# nodes of 2 ranks, so objects also cross "nodes" over UCX).
demo: build
	MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(BUILD)/examples/cpp/quickstart
	$(PYENV) MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(PYTHON) examples/python/quickstart.py

# Every test: unit, integration (mpirun worlds, singleton), the Python suite, then the unit
# tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD) && ctest $(CTEST_ARGS)
	$(PYENV) $(PYTHON) -m pytest -q tests/python tests/spack
	cd $(ASAN_BUILD) && ctest $(CTEST_ARGS)

test-python: build
	$(PYENV) $(PYTHON) -m pytest -q tests/python tests/spack

test-unit: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L unit

# Workers SIGKILLed at random (tests/chaos/README.md); MPIRAY_CHAOS_SEED=n tries another seed.
test-chaos: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L chaos

# The core benchmark (JSON) on 4 ranks as 2 virtual nodes, so cross-node gets cross UCX.
bench: build
	MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(BUILD)/apps/mpiray bench core

# Ray's microbenchmark workloads on mpiray (add ARGS=--against-ray to compare with Ray).
bench-python: build
	$(PYENV) $(PYTHON) -m mpiray.bench $(ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
