# The two commands of the README's quick start, and the steps behind them.
#   make demo   installs what is missing, builds, and runs the bundled example
#   make test   installs what is missing, builds, and runs the whole test suite
# Both are idempotent and quick when nothing changed.
PRESET ?= default
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps configure build test demo format check-format clean

all: build

deps:
	@scripts/setup-deps.sh

configure: deps
	@test -f $(BUILD_DIR)/build.ninja || cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD_DIR)

format:
	git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format -i

check-format:
	git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror

clean:
	rm -rf $(BUILD_DIR)
