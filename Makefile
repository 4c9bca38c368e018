# kubetensor's entry points. `make help` lists them. Everything installs what it needs itself:
# pinned tool binaries into ~/.cache/kubetensor/bin, the Python environment into .venv (its heavy
# dependencies shared per machine under ~/.cache/kubetensor/venvs), models into ~/.cache/kubetensor/models.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
KT := .venv/bin/kubetensor
GPU_PYTHON ?= python3
PYTEST_ARGS ?=
RUN_ARGS ?=

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: setup
setup: tools venv models ## Build/install everything (tools, .venv, models); each step is cached

.PHONY: tools
tools: ## Build the pinned Go tools (kube-apiserver, etcd, kwok, helm, nats-server, jaeger) and npm tools (solc, anvil) once
	@bash tools/build.sh
	@bash tools/npm-tools.sh

.PHONY: venv
venv: ## Create .venv (Python 3.11, pinned requirements/lock.txt, vLLM CPU build, kubetensor editable, kubetensor_native)
	@bash tools/venv.sh

.PHONY: models
models: venv ## Train the small addition models (once per machine; cached by content hash)
	@$(KT) models build

.PHONY: proto
proto: venv ## Regenerate services/kubetensor/v1 from protos/
	@$(PY) tools/gen_protos.py

.PHONY: lint
lint: venv ## ruff (check + format), mypy (strict) and import-linter
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -c "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"

.PHONY: test
test: setup lint ## Everything: lint, then unit, integration and e2e tests on real servers
	$(PY) -m pytest tests $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: venv ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: bench
bench: setup ## Run the benchmarks; JSON results in tests/bench/results/
	@mkdir -p tests/bench/results
	@for b in tests/bench/bench_*.py; do \
	  echo "== $$b"; $(PY) $$b --out tests/bench/results/$$(basename $$b .py).json || exit 1; done

.PHONY: bench-dendrite
bench-dendrite: setup ## The network bench against Bittensor's own dendrite/axon (bittensor 10.5.0 in its own cached venv)
	@mkdir -p tests/bench/results
	@bt=$$(bash tools/bittensor-venv.sh) && \
	  $$bt tests/bench/dendrite_baseline.py --out tests/bench/results/dendrite_baseline.json
	@$(PY) tests/bench/bench_network.py --out tests/bench/results/bench_network.json \
	  --dendrite tests/bench/results/dendrite_baseline.json

.PHONY: gpu-check
gpu-check: ## On a machine with an NVIDIA GPU and the `vllm` package (GPU_PYTHON): the Miner's vLLM path, scored (docs/gpu.md)
	@$(GPU_PYTHON) tests/gpu/check_vllm_gpu.py $(GPU_CHECK_ARGS)

.PHONY: run
run: setup ## Run the whole network locally: NATS, consensus + chain ledger, 3 vLLM miners, 2 validators (Ctrl-C stops it)
	@$(KT) devnet up $(RUN_ARGS)

.PHONY: stop
stop: ## Stop a sandbox started with `kubetensor sandbox up`
	@$(KT) sandbox down

.PHONY: clean
clean: ## Remove .venv and caches inside the clone (the machine-wide cache stays)
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache tests/bench/results

.PHONY: chart
chart: venv ## Copy manifests/crds/ into the Helm chart and render manifests/install/kubetensor.yaml from it
	@$(PY) tools/chart.py all
