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

.PHONY: all deps build build-asan demo test test-unit test-chaos test-python test-install test-rllib-full bench bench-python bench-scale clean

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

# Every test: unit, integration (mpirun worlds, singleton), the Python suite, installing as
# users do, then the unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD) && ctest $(CTEST_ARGS)
	$(PYENV) $(PYTHON) -m pytest -q tests/python tests/spack
	$(PYENV) $(PYTHON) -m pytest -q tests/install
	cd $(ASAN_BUILD) && ctest $(CTEST_ARGS)

test-python: build
	$(PYENV) $(PYTHON) -m pytest -q tests/python tests/spack

# The README's install lines in fresh virtual environments (sdist, checkout, editable; pip
# with build isolation, the compiler cache reused), each then running a program under python
# and mpirun; cmake --install with find_package(mpiray) and pkg-config applications.
test-install: build
	$(PYENV) $(PYTHON) -m pytest -q tests/install

# RLlib's learning tests at the issue's full thresholds (PPO 450 on CartPole, DQN 150, Pendulum
# -400; `make test` runs bounded versions of these three). About 8 minutes on 2 busy cores.
test-rllib-full: build
	$(PYENV) MPIRAY_RLLIB_FULL=1 $(PYTHON) -m pytest -q tests/python/rllib/test_rllib_learning.py

test-unit: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L unit

# Workers SIGKILLed at random (tests/chaos/README.md); MPIRAY_CHAOS_SEED=n tries another seed.
test-chaos: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L chaos

# The core benchmark (JSON) on 4 ranks as 2 virtual nodes, so cross-node gets cross UCX; then the
# collective suite (all-reduce on 4 processes beside Open MPI's MPI_Allreduce and torch gloo).
bench: build
	MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(BUILD)/apps/mpiray bench core
	$(PYENV) $(PYTHON) -m mpiray.bench --suite collective

# Ray's microbenchmark workloads on mpiray (add ARGS=--against-ray to compare with Ray).
bench-python: build
	$(PYENV) $(PYTHON) -m mpiray.bench $(ARGS)

# Issue 5's scale envelope (JSON): 1M queued tasks, 10k args, 3,000 returns, 10k gets, an
# object holding 10k refs; then 10k actors on 64 ranks and a 1 GiB object sent to 7 nodes.
bench-scale: build
	$(PYENV) $(PYTHON) -m mpiray.bench_scale --tasks 1000000
	$(PYENV) scripts/mpirun -x PYTHONPATH -x MPIRAY_BUILD_DIR -n 64 $(PYTHON) -m mpiray.bench_scale --only actors --actors 10000
	$(PYENV) MPIRAY_RANKS_PER_NODE=1 MPIRAY_OBJECT_STORE_MEMORY=1536M scripts/mpirun -x PYTHONPATH -x MPIRAY_BUILD_DIR -n 8 $(PYTHON) -m mpiray.bench_scale --only broadcast

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
