# The two commands a newcomer needs:  make demo   and   make test
# Everything is idempotent: a second run with nothing changed only checks and re-runs.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
CMAKE_ARGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
CTEST_ARGS ?= --output-on-failure -j 2

.PHONY: all deps build build-asan demo test test-unit test-asan bench clean

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

# A representative job: the C++ quickstart on 4 local MPI ranks (2 virtual nodes of 2 ranks,
# so objects also cross "nodes" over UCX).
demo: build
	MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(BUILD)/examples/cpp/quickstart

# Every test: unit, integration (mpirun worlds, singleton), then the unit tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD) && ctest $(CTEST_ARGS)
	cd $(ASAN_BUILD) && ctest $(CTEST_ARGS)

test-unit: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L unit

# The core benchmark (JSON) on 4 ranks as 2 virtual nodes, so cross-node gets cross UCX.
bench: build
	MPIRAY_RANKS_PER_NODE=2 scripts/mpirun -n 4 $(BUILD)/apps/mpiray bench core

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
