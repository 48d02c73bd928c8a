# Tooling as code: `make test` is exactly what CI runs (.ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the test suite starts for real (servers on 127.0.0.1, headless browser).
SYSTEM_PACKAGES ?= chromium redis-server postgresql
# And what the benchmarks add: wrk, a load generator cheap enough per request that the server,
# not the client, is what a single-operation benchmark measures.
BENCH_PACKAGES ?= $(SYSTEM_PACKAGES) wrk

.PHONY: run test lint deploy-lint typecheck pytest bench emulator demo clean system-deps venv tool-venvs

run: venv ## the main job on the embedded defaults
	$(BIN)/cio-relay run

test: venv system-deps tool-venvs lint deploy-lint typecheck pytest ## everything CI checks

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	@bash scripts/system-deps.sh $(SYSTEM_PACKAGES)

# Tools whose pinned dependencies clash with ours get a venv of their own (.venv-<tool>).
tool-venvs: venv
	@bash scripts/tool-venvs.sh

# The container image and the Terraform, checked offline (docs/deploy-gcp.md says what cannot be).
deploy-lint: venv tool-venvs
	@bash scripts/deploy-checks.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: venv ## benchmarks; results go in docs/benchmarks.md
	@bash scripts/system-deps.sh $(BENCH_PACKAGES)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

emulator: venv
	$(BIN)/cio-relay emulator

demo: venv
	$(BIN)/cio-relay demo

clean:
	rm -rf $(VENV) .venv-* cio-relay-data .pytest_cache .mypy_cache .ruff_cache
