# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
BUILD      ?= build
ASAN_BUILD ?= build-asan
WERROR     ?= ON
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build asan test test-plain test-asan demo bench fuzz fuzz-merge fuzz-smoke format clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLEETSCAN_WERROR=$(WERROR) $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFLEETSCAN_WERROR=$(WERROR) -DFLEETSCAN_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-plain: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: asan
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

# Install what is missing, build, run the suite, then run it again under ASan+UBSan.
test: test-plain test-asan

demo: build
	./$(BUILD)/fleetscan demo

bench: build
	bash bench/run.sh

# libFuzzer targets (clang): 30 s each by default, FUZZ_TIME=N to change; new inputs stay in
# build-fuzz/corpus. fuzz-merge folds those that add coverage into fuzz/corpus (commit them).
# fuzz-smoke: the committed corpus plus 3 s of mutations per target under ASan+UBSan, no clang
# (also part of test-asan, as the fuzz_smoke_* tests).
fuzz: deps
	bash fuzz/run.sh

fuzz-merge: deps
	FUZZ_MERGE=1 bash fuzz/run.sh

fuzz-smoke: asan
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -R fuzz_smoke

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
