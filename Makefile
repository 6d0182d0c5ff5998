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

.PHONY: help venv jars build wheel wheel-check lint rust-lint rust-test py-lint test run down bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q "maturin>=1.9,<2" "pytest>=8" "pytest-asyncio>=0.23" pytest-timeout \
		"hypothesis>=6" "ruff>=0.6" "mypy>=1.11" starlette fastapi httpx flask django
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with maturin and the test tools

jars: build  ## fetch the RocketMQ jars from Maven Central (cached)
	$(PY) -m rmqfast.devcluster jars

build: $(STAMP)  ## build the release wheel and install it into .venv
	rm -rf $(WHEEL_DIR)
	$(MATURIN) build --release --quiet --out $(WHEEL_DIR)
	$(PIP) install -q --force-reinstall --no-deps $(WHEEL_DIR)/*.whl

wheel: build  ## build the abi3 wheel into target/wheels

wheel-check: build  ## install the wheel into a fresh venv with no Rust toolchain on PATH and import it
	rm -rf target/wheel-check && python3 -m venv target/wheel-check
	env -i HOME=$$HOME PATH=/usr/bin:/bin target/wheel-check/bin/pip install -q $(WHEEL_DIR)/*.whl
	env -i HOME=$$HOME PATH=/usr/bin:/bin target/wheel-check/bin/python -c \
		"import shutil, rmqfast, rmqfast.codec as c; assert shutil.which('cargo') is None; \
		 f = c.RemotingCommand(105, {'topic': 'T'}).encode(); assert c.decode(f).ext_fields == {'topic': 'T'}; \
		 print('wheel OK: rmqfast', rmqfast.__version__)"

rust-lint:  ## cargo fmt --check and clippy -D warnings (with and without the Python bindings)
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

rust-test:  ## Rust unit and property tests
	cargo test --quiet

py-lint: build  ## ruff, mypy --strict, and stubtest on rmqfast._core
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest rmqfast._core

lint: rust-lint py-lint  ## every linter

test: rust-lint rust-test wheel-check py-lint  ## everything CI runs: lint, Rust tests, wheel, pytest
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: build  ## start a local RocketMQ (devcluster) and the proxy in front of it (Ctrl-C stops the proxy)
	$(PY) -m rmqfast.devcluster up --namesrvs 1 --brokers 2 --dir .devcluster
	@ns=$$($(PY) -c "import json; print(json.load(open('.devcluster/devcluster.json'))['namesrv_addr'])"); \
	echo "RocketMQ name server: $$ns  (stop the cluster with: make down)"; \
	echo "Give clients the proxy's address below as their name server (-n / NAMESRV_ADDR)."; \
	$(PY) -m rmqfast.proxy --namesrv "$$ns" --listen 127.0.0.1:19876 --admin 127.0.0.1:9901

down:  ## stop the local RocketMQ that `make run` started
	$(PY) -m rmqfast.devcluster down --dir .devcluster

bench: build  ## criterion benchmarks of the codec (figures go to bench/RESULTS.md)
	cargo bench --bench codec -- --noplot

clean:  ## remove build outputs and the venv
	cargo clean
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache
