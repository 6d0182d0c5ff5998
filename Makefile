# rmqfast: the documented workflow. `make test` is the one test command (CI runs it);
# `make run` starts a local RocketMQ and the proxy in front of it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
MATURIN   := $(VENV)/bin/maturin
STAMP     := $(VENV)/.deps-stamp
WHEEL_DIR := target/wheels
PYTEST_ARGS ?=

.PHONY: help venv jars build wheel wheel-check sdist-check lint rust-lint rust-test py-lint test test-fast run down bench bench-clients clean fuzz fuzz-check fuzz-tools

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Also on the Makefile: it holds the tool list, and a venv made before a tool was added must get it.
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q "maturin>=1.9,<2" "ziglang>=0.17,<0.18" "auditwheel>=6,<7" \
		"pytest>=8" "pytest-asyncio>=0.23" pytest-timeout \
		"hypothesis>=6" "ruff>=0.6" "mypy>=1.11" starlette fastapi httpx flask django uvicorn
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with maturin and the test tools

jars: build  ## fetch the RocketMQ jars from Maven Central (cached)
	$(PY) -m rmqfast.devcluster jars

# The wheel `make build` installs into .venv, that the tests use, is the one shipped: linked by
# zig against glibc 2.17 symbols whatever this machine's glibc, so it installs on every maintained
# x86_64 glibc distribution (RHEL/Rocky 8+, Ubuntu 20.04+, Debian 11+, Amazon Linux 2).
# maturin runs zig as `python3 -m ziglang` from PATH, hence the venv's bin/ first.
WHEEL_PLAT  := manylinux_2_17_x86_64
WHEEL_TAGS  := cp310-abi3-manylinux2014_x86_64.$(WHEEL_PLAT)
WHEEL_BUILD := PATH="$(abspath $(VENV))/bin:$$PATH" $(MATURIN) build --release \
	--zig --compatibility manylinux2014
# Expanded when a recipe runs, so they see what its prerequisites built.
wheel_file   = $(wildcard $(WHEEL_DIR)/*.whl)
sdist_file   = $(wildcard $(WHEEL_DIR)/*.tar.gz)
# What building from the sdist needs (paths inside it).
SDIST_NEEDS := pyproject.toml PKG-INFO README.md Cargo.toml Cargo.lock rust/Cargo.toml \
	rust/src/lib.rs rust/benches/codec.rs python/rmqfast/__init__.py python/rmqfast/_core.pyi \
	python/rmqfast/py.typed
SDIST_JUNK  := (^|/)(target|\.venv|\.git|tests|bench|\.devcluster|__pycache__|\.hypothesis|\.[a-z_]+_cache)/|\.(so|pyc|whl)$$

build: $(STAMP)  ## build the release wheel (abi3, manylinux2014, via zig) and install it into .venv
	rm -rf $(WHEEL_DIR)
	$(WHEEL_BUILD) --quiet --out $(WHEEL_DIR)
	$(PIP) install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl

wheel: build  ## the wheel (as `build`) and the sdist, into target/wheels
	$(MATURIN) sdist --out $(WHEEL_DIR)

wheel-check: wheel  ## assert the wheel's tags (auditwheel); install and run it with no Rust on PATH; the sdist's contents
	@[[ "$(words $(wheel_file))" == 1 && "$(notdir $(wheel_file))" == rmqfast-*-$(WHEEL_TAGS).whl ]] || \
		{ echo "wheel-check: want one rmqfast-*-$(WHEEL_TAGS).whl in $(WHEEL_DIR), found: '$(notdir $(wheel_file))'" >&2; exit 1; }
	rm -rf target/wheel-check && python3 -m venv target/wheel-check
	@# Which policy the symbols actually meet, whatever the file name says.
	$(VENV)/bin/auditwheel show $(wheel_file) > target/wheel-check/auditwheel.txt
	@tr -s ' \n' ' ' < target/wheel-check/auditwheel.txt | \
		grep -qF 'is consistent with the following platform tag: "$(WHEEL_PLAT)"' || \
		{ cat target/wheel-check/auditwheel.txt; echo "wheel-check: auditwheel: $(notdir $(wheel_file)) is not $(WHEEL_PLAT)" >&2; exit 1; }
	env -i HOME=$$HOME PATH=/usr/bin:/bin PIP_DISABLE_PIP_VERSION_CHECK=1 target/wheel-check/bin/pip install -q $(wheel_file)
	@# LD_BIND_NOW: every symbol (ring's and zstd's C included) must resolve at load, not at first call.
	env -i HOME=$$HOME PATH=/usr/bin:/bin LD_BIND_NOW=1 target/wheel-check/bin/python -I -c \
		"import shutil, rmqfast, rmqfast.codec as c; assert shutil.which('cargo') is None; \
		 f = c.RemotingCommand(105, {'topic': 'T'}).encode(); assert c.decode(f).ext_fields == {'topic': 'T'}; \
		 print('wheel OK: rmqfast', rmqfast.__version__)"
	env -i HOME=$$HOME PATH=/usr/bin:/bin target/wheel-check/bin/python -I -m rmqfast.proxy --help \
		> target/wheel-check/proxy-help.txt
	@grep -q '^usage: ' target/wheel-check/proxy-help.txt || \
		{ cat target/wheel-check/proxy-help.txt; echo "wheel-check: python -m rmqfast.proxy --help printed no usage" >&2; exit 1; }
	@[[ "$(words $(sdist_file))" == 1 ]] || { echo "wheel-check: want one sdist in $(WHEEL_DIR), found: '$(sdist_file)'" >&2; exit 1; }
	@tar tzf $(sdist_file) | sed 's|^[^/]*/||' > target/wheel-check/sdist.txt
	@for f in $(SDIST_NEEDS); do grep -qxF "$$f" target/wheel-check/sdist.txt || \
		{ echo "wheel-check: $(notdir $(sdist_file)) lacks $$f" >&2; exit 1; }; done
	@! grep -E '$(SDIST_JUNK)' target/wheel-check/sdist.txt || \
		{ echo "wheel-check: $(notdir $(sdist_file)) carries the files above" >&2; exit 1; }
	@echo "wheel-check OK: $(notdir $(wheel_file)) ($(WHEEL_PLAT), abi3), $(notdir $(sdist_file))"

sdist-check: wheel  ## build a wheel from the sdist in a clean dir as pip does (a full Rust build) and run it
	@[[ "$(words $(sdist_file))" == 1 ]] || { echo "sdist-check: want one sdist in $(WHEEL_DIR), found: '$(sdist_file)'" >&2; exit 1; }
	rm -rf target/sdist-check && mkdir -p target/sdist-check
	@# Outside the work tree: nothing of the checkout (target/, python/) can stand in for the sdist.
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		env -u CARGO_TARGET_DIR -u VIRTUAL_ENV -u PYTHONPATH python3 -m venv "$$tmp/venv" && \
		cd "$$tmp" && env -u CARGO_TARGET_DIR -u VIRTUAL_ENV -u PYTHONPATH \
			"$$tmp/venv/bin/pip" wheel -q --no-deps -w "$$tmp/dist" $(abspath $(sdist_file)) && \
		"$$tmp/venv/bin/pip" install -q --no-deps "$$tmp"/dist/*.whl && \
		"$$tmp/venv/bin/python" -I -c "import rmqfast, rmqfast.codec as c; \
			f = c.RemotingCommand(105, {'topic': 'T'}).encode(); assert c.decode(f).ext_fields == {'topic': 'T'}" && \
		"$$tmp/venv/bin/python" -I -m rmqfast.proxy --help | grep -q '^usage: ' && \
		cp "$$tmp"/dist/*.whl $(abspath target/sdist-check)/ && \
		echo "sdist-check OK: built and ran $$(basename "$$tmp"/dist/*.whl) from $(notdir $(sdist_file))"

rust-lint:  ## cargo fmt --check and clippy -D warnings (with and without the Python bindings)
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

rust-test:  ## Rust unit and property tests
	cargo test --quiet

py-lint: build  ## ruff, mypy --strict, and stubtest on rmqfast._core
	$(VENV)/bin/ruff check python tests bench fuzz
	$(VENV)/bin/ruff format --check python tests bench fuzz
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest rmqfast._core

lint: rust-lint py-lint  ## every linter

test: rust-lint rust-test wheel-check py-lint fuzz-check  ## everything CI runs: lint, Rust tests, wheel, fuzz briefly, pytest
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: rust-test build  ## the inner loop: Rust tests and every pytest test that needs no RocketMQ
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

# cargo-fuzz (libFuzzer, AddressSanitizer) needs a nightly toolchain; both are installed on
# first use. FUZZ_SECONDS per target; fuzz/README.md records the long runs.
FUZZ_SECONDS ?= 600
CARGO_FUZZ := $(shell command -v cargo-fuzz 2>/dev/null)

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(if $(CARGO_FUZZ),true,cargo install cargo-fuzz --locked)

fuzz: fuzz-tools  ## coverage-guided fuzzing of the codec, FUZZ_SECONDS (600) per target
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

fuzz-check: fuzz-tools  ## every fuzz target for 30 s on its corpus (part of `make test`)
	FUZZ_SECONDS=30 fuzz/run.sh

run: build  ## start (or reuse) a local RocketMQ, the proxy in front of it, send a first message; PROXY_PORT=, ADMIN_PORT= pick ports
	$(PY) -m rmqfast.devcluster run --dir .devcluster \
		$(if $(PROXY_PORT),--proxy-port $(PROXY_PORT)) $(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT))

down:  ## stop the local RocketMQ that `make run` started (and its proxy, if still running)
	$(PY) -m rmqfast.devcluster down --dir .devcluster

# The official RocketMQ 5.x Python client, for bench-clients only: a venv of its own, so that its
# grpcio/protobuf/opentelemetry never meet the test tools (under target/, so `make clean` drops it).
BENCH_VENV   := target/bench-official
BENCH_STAMP  := $(BENCH_VENV)/.deps-stamp
BENCH_CLIENTS_ARGS ?=

$(BENCH_STAMP): Makefile
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -U pip
	$(BENCH_VENV)/bin/pip install -q "rocketmq-python-client==5.1.2"
	touch $(BENCH_STAMP)

bench: build bench-clients  ## criterion benchmarks of the codec and of an access-log line, and bench-clients (figures go to bench/RESULTS.md)
	cargo bench --bench codec -- --noplot
	cargo bench --bench access -- --noplot

bench-clients: build $(BENCH_STAMP)  ## rmqfast's logger against the official Python client (rocketmq-python-client 5.1.2), about 4 min; BENCH_CLIENTS_ARGS=--write records it
	$(PY) bench/client_bench.py --official-python $(BENCH_VENV)/bin/python $(BENCH_CLIENTS_ARGS)

clean:  ## remove build outputs and the venv
	cargo clean
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache
