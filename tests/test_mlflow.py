"""MLflow: the project's entry points, tracking, the registry and aliases, serving, and the light client.

Every test uses its own temporary tracking store (MLFLOW_TRACKING_URI) with the working folder in tmp_path.
Subprocesses get the test's Python environment first on PATH (what `make test` sets up: .venv/bin), and
servers are started in their own process group so that the server and all its children are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv the tests run in (.venv/bin): mlflow, python
MLFLOW = str(BIN / "mlflow")
SMALL = {"hidden": "16", "epochs": 3}  # training that takes well under a second


# --------------------------------------------------------------------------------------------- helpers


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_RUN_ID", None)
    env.update(extra)
    return env


def mlflow_run(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """`mlflow run REPO ARGS --env-manager local`, as `make demo` runs it."""
    cmd = [MLFLOW, "run", str(REPO), *args, "--env-manager", "local"]
    return subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], url: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> Iterator[str]:
    """Start a server in its own session, wait until `url` answers, and stop it and all its children."""
    log = (cwd / f"server-{int(time.time() * 1000)}.log").open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[:3]} exited with {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    tail = Path(log.name).read_text()[-2000:]
                    raise AssertionError(f"{url} did not answer in {timeout} s: {tail}") from exc
                time.sleep(0.5)
        yield Path(log.name).read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers that ignored SIGTERM after the leader exited
        log.close()


def all_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += all_artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def runs(client, experiment: str = "0") -> list:
    exp = client.get_experiment_by_name(experiment) if not experiment.isdigit() else client.get_experiment(experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def register(data: Path, name: str, seed: int, model: str = "cvae"):
    """Train a tiny model in this process and register it (the full install's path)."""
    from vaexprs.jobs import TrainJob, train_job

    job = TrainJob(model=model, register=name, experiment="tests")
    return train_job(str(data), job, {"seed": seed, "hidden": (16,), "epochs": 3}, progress=False)


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = sqlite_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture(scope="module")
def small_h5ad(tmp_path_factory: pytest.TempPathFactory, small_sim) -> Path:
    from vaexprs.data.io import write_anndata

    return write_anndata(small_sim, tmp_path_factory.mktemp("data") / "small.h5ad")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, small_h5ad: Path) -> dict[str, str]:
    """A store holding model 'vx' twice: version 1 (seed 1) and version 2 (seed 2)."""
    folder = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        mp.chdir(folder)
        first, second = register(small_h5ad, "vx", seed=1), register(small_h5ad, "vx", seed=2)
    assert (first.model_version, second.model_version) == ("1", "2")
    # a CLI training records what was left to auto as `mlflow run` does: the ask, and the value used beside it
    from mlflow import MlflowClient

    run = MlflowClient(sqlite_uri(folder)).get_run(first.run_id).data
    assert (run.params["likelihood"], run.params["likelihood_used"]) == ("auto", run.tags["vaexprs.likelihood"])
    assert run.params["beta"] == "auto" and run.params["beta_used"] in {"1.0", "4.0"}
    assert run.params["epochs"] == "3" and "epochs_used" not in run.params and run.params["batch_size_used"] == "32"
    return {"uri": sqlite_uri(folder), "run1": first.run_id, "run2": second.run_id}


@pytest.fixture
def use_registry(registry: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    monkeypatch.chdir(tmp_path)
    return registry


def test_what_a_cli_run_records_as_auto() -> None:
    """Options left to auto are logged as auto (their values used beside them); a data option's None (no layer)
    is not auto, and an option the user set is not logged here at all (the callback logs its value)."""
    from vaexprs.jobs import asked_automatic

    asked = asked_automatic({"layer": None, "normalize": "auto", "epochs": 3, "beta": None, "likelihood": "hurdle"})
    assert asked == {"dropout": "auto", "encoder_input": "auto", "batch_size": "auto", "beta": "auto"}


# --------------------------------------------------------------------------------------------- the project


def test_project_files_declare_the_entry_points_and_one_environment() -> None:
    from mlflow.projects._project_spec import load_project
    from mlflow.utils.environment import _PythonEnv

    project = load_project(str(REPO))
    assert project.env_config_path.endswith("conda.yaml")
    assert set(project._entry_points) == {"main", "simulate", "train", "export", "generate", "evaluate"}
    assert {p.type for ep in project._entry_points.values() for p in ep.parameters.values()} == {
        "int", "float", "string", "path",
    }  # fmt: skip
    # virtualenv/uv convert conda.yaml; python_env.yaml must say the same
    converted = _PythonEnv.from_conda_yaml(str(REPO / "conda.yaml")).to_dict()
    assert converted == _PythonEnv.from_yaml(str(REPO / "python_env.yaml")).to_dict()
    assert converted["python"] == "3.11" and ".[train,cpu]" in converted["dependencies"]


ENTRY_COMMANDS = {"main": "pipeline", "simulate": "simulate", "train": "train", "export": "export",
                  "generate": "generate", "evaluate": "evaluate"}  # fmt: skip


@pytest.mark.parametrize("entry", sorted(ENTRY_COMMANDS))
def test_mlproject_parameters_are_the_cli_s(entry: str) -> None:
    """Each entry point is one `python -m vaexprs` command; every parameter goes to the CLI option of the same
    name, with the CLI's own default: MLproject cannot drift from the options declared in vaexprs.config."""
    import re

    import typer
    from mlflow.projects._project_spec import load_project

    from vaexprs.cli import app

    point = load_project(str(REPO)).get_entry_point(entry)
    command = " ".join(point.command.split())
    name = ENTRY_COMMANDS[entry]
    # boolean flags (--force, --genes-as-rows) go in as the environment variables the CLI reads for them
    prefix = re.match(rf"^((?:VAEXPRS_[A-Z_]+={{[a-z_]+}} )*)python -m vaexprs {name} ", command)
    assert prefix, command
    env_of = {key: env for env, key in re.findall(r"(VAEXPRS_[A-Z_]+)={([a-z_]+)}", prefix.group(1))}
    cli = typer.main.get_command(app).commands[name]
    by_flag = {flag: param for param in cli.params for flag in param.opts}
    for key, parameter in point.parameters.items():
        if key in env_of:
            param = next((p for p in cli.params if p.envvar == env_of[key]), None)
            assert param is not None, f"{entry}: no CLI option reads {env_of[key]}"
            assert param.name == key and parameter.default == "false" and param.default is False, (entry, key)
            continue
        match = re.search(rf"(--[a-z-]+) {{{key}}}(?: |$)", command)
        if match is None:  # a positional argument
            assert f" {{{key}}}" in command, f"{entry}: parameter {key} is not passed to the CLI"
            param = next(p for p in cli.params if p.param_type_name == "argument" and p.name == key)
        else:
            param = by_flag[match.group(1)]
            assert param.name == key, f"{entry}: {match.group(1)} is the CLI's {param.name}, not {key}"
        if parameter.default is None:
            assert param.required, f"{entry}: {key} is required in MLproject but optional in the CLI"
            continue
        if param.required or param.default is None:
            continue  # the CLI has no default (e.g. an output path): the entry point chooses one ("" = none)
        cli_default = ",".join(map(str, param.default)) if isinstance(param.default, tuple) else param.default
        assert str(parameter.default) == str(cli_default), (entry, key, parameter.default, cli_default)


def test_mlflow_run_train_logs_everything_and_registers(store: str, tmp_path: Path, small_h5ad: Path) -> None:
    from mlflow import MlflowClient

    done = mlflow_run(
        "-e", "train", "-P", f"data={small_h5ad}", "-P", "model=cvae", "-P", "epochs=3", "-P", "hidden=16",
        "-P", "patience=0", "-P", "register=sim-cvae", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient()
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    for key in ("loss", "recon_loss", "kl_loss", "epoch_time"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert 1 <= metrics["best_epoch"] <= 3 and metrics["onnx_decoder_parity_max_abs_diff"] < 1e-4
    assert params["data_path"] == str(small_h5ad) and len(params["data_sha256"]) == 64
    assert params["labels"] == "group1,group2,group3" and json.loads(params["label_counts"])["group1"] == 30
    assert (params["n_cells"], params["n_genes"], params["n_labels"]) == ("90", "120", "3")
    assert {"vaexprs.version", "torch.version", "onnxruntime.version", "device"} <= set(tags)
    artifacts = set(all_artifacts(client, run.info.run_id))
    expected = {"checkpoint/model.pt", "bundle/decoder.onnx", "bundle/encoder.onnx", "bundle/bundle.json"}
    assert expected | {"history.csv", "plots/history.png", "plots/heatmap.png", "eval.json"} <= artifacts
    # likelihood=auto (the default, the param as asked): the candidates' scores as metrics and selection.json,
    # the head that was trained as the tag vaexprs.likelihood
    assert params["likelihood"] == "auto"
    # what "auto" became sits beside it (the selection chose the KL weight); -P epochs=3 was not auto
    assert (params["beta"], params["batch_size_used"]) == ("auto", "32") and params["beta_used"] in {"1.0", "4.0"}
    assert params["epochs"] == "3" and "epochs_used" not in params
    assert tags["vaexprs.likelihood"] in {"hurdle", "bce"}
    assert "selection.json" in artifacts and {"selection_hurdle_auc", "selection_bce_auc"} <= set(metrics)
    assert 0.0 <= metrics["selection_hurdle_keep_target"] <= 0.9  # the keep the candidates were charged against
    selection = json.loads(Path(client.download_artifacts(run.info.run_id, "selection.json")).read_text())
    assert {r["keep_target"] for r in selection if "score" in r} == {metrics["selection_hurdle_keep_target"]}
    assert [r["likelihood"] for r in selection if r.get("chosen")] == [tags["vaexprs.likelihood"]]
    assert float(params["beta_used"]) == next(r["beta"] for r in selection if r.get("chosen"))
    # after training, generated cells are scored against the training cells (no validation split here)
    assert 0.0 <= metrics["eval_auc_real_vs_gen"] <= 1.0 and "eval_mean_corr" in metrics
    assert tags["eval_reference"].startswith("training cells")
    bundle = json.loads(Path(client.download_artifacts(run.info.run_id, "bundle/bundle.json")).read_text())
    assert bundle["provenance"]["mlflow_run_id"] == run.info.run_id
    (version,) = client.search_model_versions("name='sim-cvae'")
    assert str(version.version) == "1" and version.run_id == run.info.run_id


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["-P", "data=/no/such/cells.h5ad"], "error: data file not found: /no/such/cells.h5ad"),
        (["-P", "model=gan"], "error: Invalid value for '--model'"),
        (["-P", "model=cvae", "-P", "label_key=celltype"], "error: --label-key 'celltype' is not a column of the data"),
    ],
    ids=["missing-file", "unknown-model", "unknown-label-key"],
)
def test_entry_point_bad_input_fails_the_run(
    store: str, tmp_path: Path, small_h5ad: Path, params: list[str], message: str
) -> None:
    from mlflow import MlflowClient

    data = [] if "data=" in params[1] else ["-P", f"data={small_h5ad}"]
    done = mlflow_run("-e", "train", *data, *params, cwd=tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (run,) = runs(MlflowClient())
    assert run.info.status == "FAILED"


def test_main_entry_point_chains_the_steps_in_child_runs(store: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    small = ["genes=120", "cells=30", "deg=20", "epochs=3", "hidden=16", "alias=champion", f"out_dir={tmp_path}/out"]
    done = mlflow_run(*[arg for p in small for arg in ("-P", p)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "MLflow run:" in out and "registered model: models:/vaexprs/1 = models:/vaexprs@champion" in out
    assert f"generated cells:  {tmp_path}/out/generated.h5ad (300 cells" in out
    assert "(0.5 = indistinguishable, 1.0 = always told apart)" in out
    client = MlflowClient()
    all_runs = runs(client)
    parent = next(r for r in all_runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.data.tags["mlflow.runName"]: r for r in all_runs if r is not parent}
    assert set(children) == {"simulate", "train", "generate"}
    assert all(r.info.status == "FINISHED" for r in all_runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert "generated/generated.h5ad" in all_artifacts(client, children["generate"].info.run_id)
    assert client.get_model_version_by_alias("vaexprs", "champion").run_id == children["train"].info.run_id


def test_pipeline_steps_log_into_the_parents_experiment(store: str, tmp_path: Path) -> None:
    """Outside `mlflow run` the child runs went to the Default experiment, leaving the parent without steps."""
    from mlflow import MlflowClient

    from vaexprs.cli import main

    small = ["--cells", "10", "--genes", "50", "--deg", "5", "--epochs", "2", "--hidden", "8", "--likelihood", "mse"]
    assert main(["pipeline", *small, "-q", "--out-dir", str(tmp_path / "out"), "--experiment", "myexp"]) == 0
    client = MlflowClient()
    assert runs(client) == []  # nothing in Default
    steps = runs(client, "myexp")
    assert {r.data.tags["mlflow.runName"] for r in steps} >= {"simulate", "train", "generate"} and len(steps) == 4


def test_main_refuses_an_alias_mlflow_would_refuse_before_any_step(store: str, tmp_path: Path, capsys) -> None:
    """A reserved alias used to fail at the promote step, after simulate, train and registration had run."""
    from vaexprs.cli import main

    assert main(["pipeline", "--alias", "v2", "--out-dir", str(tmp_path / "out"), "--epochs", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --alias 'v2' is reserved by MLflow (latest, numbers and v<number>); pick a name"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


# --------------------------------------------------------------------------------------------- tracking


@pytest.mark.parametrize(("error", "status"), [(KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")])
def test_interrupted_training_ends_the_run_with_the_best_weights(
    store: str, small_h5ad: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException], status: str
) -> None:
    import torch
    from mlflow import MlflowClient

    from vaexprs.jobs import TrainJob, train_job
    from vaexprs.tracking import runs as tracking

    logged = tracking.MlflowCallback.on_epoch_end

    def stop_at_epoch_2(self, epoch, logs, state):
        logged(self, epoch, logs, state)
        if epoch == 2:
            raise error("stop")

    monkeypatch.setattr(tracking.MlflowCallback, "on_epoch_end", stop_at_epoch_2)
    with pytest.raises(error):
        train_job(str(small_h5ad), TrainJob(track=True, experiment="t"), {"hidden": (16,), "epochs": 5}, progress=False)
    client = MlflowClient()
    (run,) = runs(client, "t")
    assert run.info.status == status
    assert {"checkpoint/model_partial.pt", "history.csv"} <= set(all_artifacts(client, run.info.run_id))
    partial = torch.load(client.download_artifacts(run.info.run_id, "checkpoint/model_partial.pt"), weights_only=True)
    assert partial["best_epoch"] in (1, 2) and len(partial["history"]) == 2 and partial["state_dict"]
    # a complete checkpoint: it loads, generates and exports like a finished one
    import vaexprs

    resumed = vaexprs.VAEResult.load(client.download_artifacts(run.info.run_id, "checkpoint/model_partial.pt"))
    assert vaexprs.gen_exprs(resumed, num_samples=5).x_gen.shape == (5, 120)
    assert run.data.tags["vaexprs.interrupted"].startswith(error.__name__)


@pytest.mark.parametrize(("error", "status"), [(KeyboardInterrupt, "KILLED"), (RuntimeError, "FAILED")])
def test_a_run_stopped_after_training_keeps_the_trained_checkpoint(
    store: str,
    small_h5ad: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
    status: str,
) -> None:
    """Stopped during the ONNX export (or the logging after it), the run ended with no artifact at all: the
    finished model was lost. Its checkpoint is now logged before the export."""
    from mlflow import MlflowClient

    import vaexprs
    from vaexprs.jobs import TrainJob, train_job
    from vaexprs.model import export

    def stopped(*args: object, **kwargs: object) -> None:
        raise error("stopped during the export")

    monkeypatch.setattr(export, "export_bundle", stopped)
    job = TrainJob(track=True, experiment="t", checkpoint=str(tmp_path / "model.pt"))
    with pytest.raises(error):
        train_job(str(small_h5ad), job, {"hidden": (16,), "epochs": 3}, progress=False)
    assert (tmp_path / "model.pt").is_file()  # written before the bundle, as an untracked training writes it
    client = MlflowClient()
    (run,) = runs(client, "t")
    assert run.info.status == status
    assert "checkpoint/model.pt" in set(all_artifacts(client, run.info.run_id))
    trained = vaexprs.VAEResult.load(client.download_artifacts(run.info.run_id, "checkpoint/model.pt"))
    assert len(trained.history) == 3  # the whole training, not a partial one


def test_default_tracking_store_is_sqlite_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaexprs.registry.store import ensure_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert ensure_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert ensure_tracking_uri() == "http://127.0.0.1:1"


def test_light_client_refuses_database_stores_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaexprs.errors import InputError
    from vaexprs.registry import store as tracking

    monkeypatch.setattr(tracking, "full_mlflow_installed", lambda: False)
    with pytest.raises(InputError, match=r"the tracking URI sqlite:///x.db needs the full mlflow \(pip install"):
        tracking.check_tracking_store("sqlite:///x.db")
    assert tracking.check_tracking_store("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_file_store_without_mlflows_opt_in_is_one_line_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """MLflow 3 opens folder stores only with MLFLOW_ALLOW_FILE_STORE=true; its paragraph came as an exit-1
    MlflowException once a lookup (or a whole training) had run."""
    from vaexprs.cli import main
    from vaexprs.registry.store import is_file_store

    assert is_file_store("file:///srv/mlruns") and is_file_store("./mlruns") and is_file_store("/srv/mlruns")
    assert not any(is_file_store(u) for u in ("sqlite:///x.db", "http://h:5000", "databricks", "postgresql://h/db"))
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["promote", "vx", "--version", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: the tracking URI {store.as_uri()} is a file store, which MLflow opens only with "
        "MLFLOW_ALLOW_FILE_STORE=true; set it, or use a database (sqlite:///...) or a tracking server (http://...)"
    )
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # with the opt-in, the store opens: the model is missing
    assert main(["promote", "vx", "--version", "1"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "MLFLOW_ALLOW_FILE_STORE" not in err


# --------------------------------------------------------------------------------------------- registry


def test_promote_moves_the_alias_and_what_generate_loads(use_registry: dict[str, str], tmp_path: Path, capsys) -> None:
    import anndata as ad

    from vaexprs.cli import main
    from vaexprs.registry.models import model_version, parse_model_uri

    out = {}
    for version in (1, 2):
        assert main(["promote", "vx", "--version", str(version), "--alias", "champion"]) == 0
        assert str(model_version(parse_model_uri("models:/vx@champion")).version) == str(version)
        out[version] = tmp_path / f"v{version}.h5ad"
        assert main(["generate", "models:/vx@champion", "-n", "40", "--seed", "3", "-o", str(out[version])]) == 0
    assert "models:/vx@champion -> version 2 (moved from version 1)" in capsys.readouterr().out
    first, second = ad.read_h5ad(out[1]), ad.read_h5ad(out[2])
    assert first.uns["vaexprs"]["model_version"] == "1" and second.uns["vaexprs"]["model_version"] == "2"
    dense = [x.toarray() if hasattr(x, "toarray") else x for x in (first.X, second.X)]  # sampled cells: CSR
    assert first.shape == second.shape == (40, 120) and not np.allclose(*dense)


def test_promote_to_a_missing_version_fails_clearly(use_registry: dict[str, str], capsys) -> None:
    from vaexprs.cli import main

    assert main(["promote", "vx", "--version", "7", "--alias", "champion"]) == 2
    assert capsys.readouterr().err.strip() == "error: model vx has no version 7 (versions: 1, 2)"
    assert main(["promote", "nope", "--version", "1"]) == 2
    capsys.readouterr()
    assert main(["promote", " ", "--version", "1"]) == 2  # NAME is an argument: it said "--name needs ..."
    assert capsys.readouterr().err.strip() == "error: NAME needs a model name"
    # MLflow's alias rules, named before the registry is touched (they used to read "alias ... not found")
    for alias, says in [
        ("bad alias!", "letters, digits, '_' and '-'"),
        ("a" * 256, "1 to 255"),
        ("", "1 to 255"),
        ("v3", "reserved by MLflow"),
        ("Latest", "reserved by MLflow"),
        ("12", "reserved by MLflow"),
    ]:
        assert main(["promote", "vx", "--version", "1", "--alias", alias]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --alias ") and says in err and "\n" not in err, err
    assert main(["promote", "vx", "--version", "1", "--alias", "staging-2_b"]) == 0


def test_export_from_a_run_or_a_registered_version(use_registry: dict[str, str], tmp_path: Path) -> None:
    from vaexprs.bundle.schema import load_bundle
    from vaexprs.cli import main

    uri = f"runs:/{use_registry['run1']}/checkpoint/model.pt"
    assert main(["export", uri, "-o", str(tmp_path / "from-run")]) == 0
    assert main(["export", "models:/vx/2", "-o", str(tmp_path / "from-model")]) == 0
    assert load_bundle(tmp_path / "from-model").labels == ["group1", "group2", "group3"]
    # the lineage survives a re-export (it was None)
    for folder, run in (("from-run", "run1"), ("from-model", "run2")):
        spec = json.loads((tmp_path / folder / "bundle.json").read_text())
        assert spec["provenance"]["mlflow_run_id"] == use_registry[run]
    assert main(["export", "runs:/0123456789abcdef0123456789abcdef/checkpoint/model.pt", "-o", "x"]) == 2


def test_generate_reads_a_bare_run_uri_as_the_runs_bundle(use_registry: dict[str, str], tmp_path: Path) -> None:
    """runs:/RUN_ID (no path) stopped with MLflow's "Not a proper runs:/ URI" (exit 1); export accepted it."""
    from vaexprs.cli import main

    by_run, by_version = tmp_path / "run.npy", tmp_path / "version.npy"
    assert main(["generate", f"runs:/{use_registry['run1']}", "-n", "6", "-o", str(by_run), "-q"]) == 0
    assert main(["generate", "models:/vx/1", "-n", "6", "-o", str(by_version), "-q"]) == 0
    assert by_run.read_bytes() == by_version.read_bytes()


def test_registered_pyfunc_generates_per_row(use_registry: dict[str, str]) -> None:
    import mlflow.pyfunc
    import pandas as pd

    from vaexprs.generate.pipeline import generate_array

    model = mlflow.pyfunc.load_model("models:/vx/2")
    request = pd.DataFrame({"label": ["group2", None], "n": [4, 3], "seed": [5, 6], "sampler": ["gmm", "prior"]})
    cells = model.predict(request)
    assert cells.shape == (7, 121) and list(cells.columns[:2]) == ["gene1", "gene2"]
    assert list(cells["cell_type"][:4]) == ["group2"] * 4
    x, _ = generate_array("models:/vx/2", n=4, label="group2", seed=5)
    np.testing.assert_array_equal(cells.iloc[:4, :-1].to_numpy(np.float32), x)


# --------------------------------------------------------------------------------------------- serving


def test_compact_answers_hold_the_records_cells(use_registry: dict[str, str], vae_bundle: Path) -> None:
    """params {"format": "npz"|"csr"}: one base64 .npz that numpy (and scipy) decode to the records' cells."""
    import mlflow.pyfunc
    import pandas as pd
    import scipy.sparse
    from mlflow.exceptions import MlflowException

    from vaexprs.generate.pyfunc import VaexprsGenerator

    model = mlflow.pyfunc.load_model("models:/vx/2")
    request = pd.DataFrame({"label": ["group2", None], "n": [4, 30], "seed": [5, 6]})
    records = model.predict(request)
    x, labels = records.iloc[:, :-1].to_numpy(np.float32), records["cell_type"].to_numpy(str)
    dense = np.load(answer_file(model.predict(request, params={"format": "npz"})))
    assert dense["x"].dtype == np.float32 and list(dense["genes"]) == list(records.columns[:-1])
    np.testing.assert_array_equal(dense["x"], x)
    np.testing.assert_array_equal(dense["cell_type"], labels)
    compact = answer_file(model.predict(request, params={"format": "csr"}))
    csr, archive = scipy.sparse.load_npz(compact), np.load(compact)
    assert csr.format == "csr" and csr.dtype == np.float32
    np.testing.assert_array_equal(csr.toarray(), x)
    np.testing.assert_array_equal(archive["cell_type"], labels)
    with pytest.raises(MlflowException, match="format must be one of records, npz, csr; got 'xml'") as info:
        model.predict(request, params={"format": "xml"})
    assert info.value.get_http_status_code() == 400

    vae = VaexprsGenerator()  # a VAE: no labels in either answer
    vae.load_context(types.SimpleNamespace(artifacts={"bundle": str(vae_bundle)}))
    plain = np.load(answer_file(vae.predict(None, pd.DataFrame({"n": [7]}), params={"format": "npz"})))
    assert sorted(plain.files) == ["genes", "x"]
    np.testing.assert_array_equal(plain["x"], vae.predict(None, pd.DataFrame({"n": [7]})).to_numpy(np.float32))


def invoke(port: int, body: dict) -> tuple[int, dict]:
    """POST /invocations; the status and the parsed JSON answer (errors included)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def answer_file(answer: str):
    """A compact answer as a client reads it: base64 -> an in-memory .npz for np.load (or scipy's load_npz)."""
    import base64
    import io

    return io.BytesIO(base64.b64decode(answer))


def test_models_serve_generates_over_http(use_registry: dict[str, str], tmp_path: Path) -> None:
    from vaexprs.cli import main
    from vaexprs.generate.pipeline import generate_array

    assert main(["promote", "vx", "--version", "2", "--alias", "champion"]) == 0
    port = free_port()
    cmd = [MLFLOW, "models", "serve", "-m", "models:/vx@champion", "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    body = {"dataframe_split": {"columns": ["label", "n", "seed"], "data": [["group1", 50, 1]]}}
    with server(cmd, f"http://127.0.0.1:{port}/ping", tmp_path, subprocess_env()):
        status, answer = invoke(port, body)
        npz_status, npz = invoke(port, {**body, "params": {"format": "npz"}})
        bad_status, bad = invoke(port, {**body, "params": {"format": "xml"}})
    assert status == 200 and npz_status == 200
    rows = answer["predictions"]
    assert len(rows) == 50 and {row["cell_type"] for row in rows} == {"group1"}
    genes = [f"gene{i + 1}" for i in range(120)]
    assert list(rows[0]) == [*genes, "cell_type"]
    x, _ = generate_array("models:/vx/2", n=50, label="group1", seed=1)
    np.testing.assert_allclose(np.array([[row[g] for g in genes] for row in rows]), x, rtol=1e-6)
    cells = np.load(answer_file(npz["predictions"]))  # the compact answer: the same cells, bit for bit
    np.testing.assert_array_equal(cells["x"], np.array([[row[g] for g in genes] for row in rows], dtype=np.float32))
    assert list(cells["genes"]) == genes and list(cells["cell_type"]) == ["group1"] * 50
    assert bad_status == 400 and bad["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "format must be one of records, npz, csr; got 'xml'" in bad["message"]
