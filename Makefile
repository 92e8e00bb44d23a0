# Fresh machine: `make run` (set up, then the main job on the embedded synthetic default) and
# `make test`. Both bootstrap .venv idempotently; torch==2.13.0 is installed first (CPU build).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STORE  ?= $(CURDIR)/.cxp/store

.PHONY: setup run lint test test-fast test-all bench clean

setup: $(STAMP)

# setuptools_scm goes into the venv too: `make lint` builds with --no-build-isolation, and it writes
# src/connectome_priors/_version.py (the version and commit kernel/version.py records) at every install.
$(STAMP): pyproject.toml tests/requirements-schemas.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q 'setuptools_scm>=10,<11'
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps -r tests/requirements-schemas.txt
	touch $(STAMP)

run: setup
	$(BIN)/cxp etl --source synthetic --store $(STORE)
	$(BIN)/cxp status --store $(STORE)
	$(BIN)/cxp priors build synthetic_6_6_2 --fields 6_6_2 --store $(STORE)
	$(BIN)/cxp priors show synthetic_6_6_2 --store $(STORE) --plot $(CURDIR)/.cxp/plots
	$(BIN)/cxp train --prior synthetic_6_6_2 --store $(STORE) --tasks T2 --variants W,W*D*C \
		--runs 2 --epochs 2 --n-train 1024 --n-val 256 --n-test 512 --out $(CURDIR)/.cxp/train

# ruff ([tool.ruff] in pyproject.toml: the rules and why). The import-linter contracts
# (pyproject.toml) read the installed package as it is (one physical tree: src/connectome_priors
# with links to the stage folders); .ci/check_wheel.py fails when a module of the tree would not
# ship in the wheel; .ci/mypy_baseline.py runs `mypy -p connectome_priors` (every module) and
# fails where a module has more errors than its baseline.
lint: setup
	$(BIN)/ruff check --no-cache etl priors_store training src tests bench docs
	cd $(CURDIR)/src && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml
	$(BIN)/python .ci/check_wheel.py
	$(BIN)/python .ci/mypy_baseline.py
	rm -rf build

# `make test` (what CI runs): every test but the full-scale `slow` ones (pyproject's addopts).
# `make test-fast`: also leaves out the `processes` tests (crash, concurrency, CPU-feature matrix,
# CLI subprocesses), for the edit-test loop; `make test` still runs them.
test: setup lint
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m 'not slow and not processes'

test-all: setup
	$(BIN)/python -m pytest -q -m ''

bench: setup
	$(BIN)/python bench/etl_synthetic.py
	$(BIN)/python bench/priors_pooled.py
	$(BIN)/python bench/priors_fields.py --jobs 2
	$(BIN)/python bench/sttc_speed.py
	$(BIN)/python bench/aggregate_synapses.py --no-progress
	$(BIN)/python bench/etl_cave.py
	$(BIN)/python bench/nwb_read.py
	$(BIN)/python bench/train_grid.py

clean:
	rm -rf .cxp build *.egg-info
