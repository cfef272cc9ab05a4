# icalign — convenience wrapper around CMake. `make demo` and `make test` are
# the two-command quick start; everything else is for developers.
SHARED ?= $(abspath ../shared)
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
MODEL  ?=
ICALIGN = build/icalign

.PHONY: all build test test-fast test-asan demo bench fuzz clang format format-check clean test-neon

all: build

build:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DICALIGN_SHARED_DIR=$(SHARED) $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

# gcc -Werror build + tests, then the same unit tests under ASan+UBSan.
test: test-fast test-asan

test-fast: build
	cd build && ctest --output-on-failure -j $(JOBS)

test-asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DICALIGN_SANITIZE=ON \
	    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DICALIGN_SHARED_DIR=$(SHARED) $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# Answers three MT-Bench questions with the URIAL demonstrations: MODEL=path.gguf, else the
# default base model once `build/icalign pull` has downloaded it, else the stories260K fixture.
demo: build
	@sh tools/demo.sh "$(ICALIGN)" "$(MODEL)" "$(SHARED)"

bench: build
	@sh tools/bench.sh "$(ICALIGN)" "$(SHARED)"

# clang -Werror build (CI checks both compilers).
clang:
	@cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release \
	    -DICALIGN_SHARED_DIR=$(SHARED) $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-clang -j $(JOBS)

# libFuzzer targets, each run for FUZZ_SECONDS over its seed corpus.
FUZZ_SECONDS ?= 20
fuzz:
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DICALIGN_FUZZ=ON -DICALIGN_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@sh tools/fuzz.sh build-fuzz "$(SHARED)" $(FUZZ_SECONDS)

# ---- NEON kernels: cross-built for aarch64 and run under qemu-user (CI).
# Needs gcc-aarch64-linux-gnu and qemu-user (Debian). The kernel test runs
# without cmocka there (a stand-in in the test file).
NEON_CC ?= aarch64-linux-gnu-gcc
NEON_RUN ?= qemu-aarch64
test-neon:
	@mkdir -p build-neon
	$(NEON_CC) -O2 -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
	    -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DKERN_SIMD_NO_CMOCKA -Iinclude \
	    src/kern/*.c src/common/*.c tests/unit/test_kern_simd.c -lm -lpthread -static \
	    -o build-neon/test_kern_simd
	$(NEON_RUN) build-neon/test_kern_simd
	ICALIGN_NEON_DOTPROD=0 $(NEON_RUN) build-neon/test_kern_simd
	ICALIGN_SIMD=scalar $(NEON_RUN) build-neon/test_kern_simd

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-clang build-fuzz build-neon
