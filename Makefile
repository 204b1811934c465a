# vaexprs: set-up, the main job and the tests, each from a fresh clone.
#   make demo   create .venv, install, and run the MLflow `main` entry point on the simulated vignette data
#   make test   create .venv, install, and run the test suite
#   make team-server / team-server-stop   the team MLflow stack (PostgreSQL, S3 store, server) in $(TEAM_DIR)
# PyTorch: TORCH_SPEC pins the CPU build that lies on this machine's disk (a plain `torch` requirement would pull
# a CUDA build of several GB). Elsewhere, override it, e.g.
#   make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# team-server: the server extra (mlflow[auth], psycopg, boto3) and a local S3 store, for tests/test_team_server.py
EXTRAS ?= train,cpu,dev,team-server,dask
comma := ,
LIGHT_VENV ?= .venv-light
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
TEAM_DIR ?= .team-server

.PHONY: setup setup-light demo test lint format bench clean team-server team-server-stop team-server-status

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

# README "A team tracking server": start (or restart) the stack, print what clients export; stop it.
team-server: setup
	$(BIN)/python scripts/team_server.py start --dir $(TEAM_DIR)

team-server-stop:
	$(BIN)/python scripts/team_server.py stop --dir $(TEAM_DIR)

team-server-status:
	$(BIN)/python scripts/team_server.py status --dir $(TEAM_DIR)

bench: setup
	$(BIN)/python benchmarks/generate.py

clean:
	rm -rf $(VENV) $(LIGHT_VENV) mlruns mlflow.db mlartifacts
	find outputs -mindepth 1 ! -name .gitignore -delete
