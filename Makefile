# vaexprs: set-up, the main job and the tests, each from a fresh clone.
#   make demo   create .venv, install, and run the MLflow `main` entry point on the simulated vignette data
#   make test   create .venv, install, and run the test suite
# PyTorch: TORCH_SPEC pins the CPU build that lies on this machine's disk (a plain `torch` requirement would pull
# a CUDA build of several GB). Elsewhere, override it, e.g.
#   make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= train,cpu,dev
comma := ,
LIGHT_VENV ?= .venv-light
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: setup setup-light demo test lint format bench clean

setup: $(STAMP)

# The light install (`vaexprs[cpu]`: no torch, scikit-learn or matplotlib) that tests prove generation works in.
setup-light: $(LIGHT_VENV)/.installed

$(LIGHT_VENV)/.installed: pyproject.toml
	test -x $(LIGHT_VENV)/bin/python || $(PYTHON) -m venv $(LIGHT_VENV)
	$(LIGHT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LIGHT_VENV)/bin/python -m pip install --quiet -e ".[cpu]"
	touch $@

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_EXPERIMENT_NAME=vaexprs mlflow run . --env-manager local -P force=true

test: setup setup-light
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" VAEXPRS_LIGHT_PYTHON="$(abspath $(LIGHT_VENV))/bin/python" $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/generate.py

clean:
	rm -rf $(VENV) $(LIGHT_VENV) mlruns mlflow.db mlartifacts outputs
