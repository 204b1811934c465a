"""MLflow runs on the training side: params, per-epoch metrics, artifacts, registration.

    with run_scope("vaexprs", run_name="train") as run:            # FINISHED, FAILED, or KILLED on a signal
        result = fit_vae(adata, callbacks=[MlflowCallback(run.info.run_id, params)])
        uri, version = log_training(result, bundle_dir, register="vaexprs")

The store is the one every vaexprs command shares (vaexprs.registry.store). Params are the configs' fields,
logged once, under their own names; metrics are the loop's records (`step` = epoch); an interrupted run keeps
its best weights as a complete checkpoint (`checkpoint/model_partial.pt`).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from vaexprs.errors import Terminated, first_line
from vaexprs.model.loop import Callback
from vaexprs.registry.models import RUN_BUNDLE_PATH
from vaexprs.registry.store import experiment_name, mlflow_client

log = logging.getLogger("vaexprs")

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "model.pt"
PARTIAL_CHECKPOINT_FILE = "model_partial.pt"  # best weights so far of an interrupted run
HISTORY_FILE = "history.csv"
PLOTS_DIR = "plots"
PARTIAL_FORMAT = "vaexprs-partial-checkpoint"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


@contextlib.contextmanager
def run_scope(experiment: str | None = None, run_name: str | None = None, nested: bool = False) -> Iterator[Any]:
    """The MLflow run to log into: the active one, or one started here (resumed from $MLFLOW_RUN_ID under
    `mlflow run`) that ends FINISHED, FAILED on an error, or KILLED on Ctrl-C or SIGTERM.

    A run that someone else opened is theirs to end. `nested=True` always starts a child of the active run.
    """
    mlflow = mlflow_client()
    active = mlflow.active_run()
    if active is not None and not nested:
        yield active
        return
    resuming = active is None and bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` opened it
    experiment_id = None
    if active is not None:  # a child lives in its parent's experiment (mlflow would put it in the default one)
        experiment_id = active.info.experiment_id
    elif not resuming:  # under `mlflow run` the launcher chose the experiment
        experiment_id = experiment_id_for(mlflow, experiment_name(experiment))
    run = mlflow.start_run(run_name=None if resuming else run_name, nested=nested, experiment_id=experiment_id)
    try:
        yield run
    except (KeyboardInterrupt, Terminated):
        mlflow.end_run("KILLED")
        raise
    except SystemExit as exc:
        mlflow.end_run("FINISHED" if exc.code in (0, None) else "FAILED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def experiment_id_for(mlflow: Any, name: str) -> str:
    """The id of experiment `name`, created if needed, without mlflow.set_experiment: that one also sets
    $MLFLOW_EXPERIMENT_ID for the rest of the process and its children, which then log to the wrong store."""
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, default=str)
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def log_params_once(run_id: str, params: Mapping[str, Any]) -> None:
    """Log the params this run lacks: `mlflow run` already logged its entry point's values (in the user's
    spelling, e.g. lr=1e-3, epochs=auto) and MLflow refuses to change a param."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    have = client.get_run(run_id).data.params
    new = [Param(k, param_text(v)) for k, v in params.items() if k not in have]
    # where it logged "auto", the value the data or the likelihood decided goes beside it: beta=auto, beta_used=4.0
    new += [
        Param(f"{k}_used", param_text(v)) for k, v in params.items()
        if have.get(k) == "auto" and param_text(v) not in ("auto", "") and f"{k}_used" not in have
    ]  # fmt: skip
    for start in range(0, len(new), 100):  # log_batch takes at most 100 params
        client.log_batch(run_id, params=new[start : start + 100])


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def runtime_version() -> str:
    for name in ("onnxruntime", "onnxruntime-gpu"):
        version = version_of(name)
        if version != "not installed":
            return version
    return "not installed"


class MlflowCallback(Callback):
    """Logs a training run: params and tags at the start, metrics every epoch, the best weights when training
    is interrupted."""

    def __init__(self, run_id: str, params: Mapping[str, Any] | None = None) -> None:
        self.run_id = run_id
        self.params = dict(params or {})
        self.started = time.perf_counter()

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient()

    def on_train_begin(self, model: Any, config: Any) -> None:
        self.started = time.perf_counter()
        params = {**model.config.to_dict(), **config.to_dict(), **self.params}
        log_params_once(self.run_id, params)
        mlflow_version = version_of("mlflow")
        tags = {
            "vaexprs.version": version_of("vaexprs"),
            "torch.version": version_of("torch"),
            "onnxruntime.version": runtime_version(),
            "mlflow.version": mlflow_version if mlflow_version != "not installed" else version_of("mlflow-skinny"),
            "device": str(next(model.parameters()).device),
            "vaexprs.model_type": "cvae" if model.config.is_conditional else "vae",
            "vaexprs.likelihood": model.config.likelihood,
        }
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in logs.items()])

    def on_train_end(self, state: Any) -> None:
        self.client.log_metric(self.run_id, "train_seconds", time.perf_counter() - self.started)

    def on_train_error(self, error: BaseException, state: Any) -> None:
        """Keep what the interrupted run learnt: the best weights so far (weights only) and the history."""
        try:
            with tempfile.TemporaryDirectory(prefix="vaexprs-partial-") as tmp:
                path = save_partial_checkpoint(state, Path(tmp) / PARTIAL_CHECKPOINT_FILE, error)
                self.client.log_artifact(self.run_id, str(path), CHECKPOINT_DIR)
                if state.history:
                    self.client.log_artifact(self.run_id, str(write_history_csv(state.history, tmp)))
            self.client.set_tag(self.run_id, "vaexprs.interrupted", f"{type(error).__name__}: {first_line(error)}")
            if state.best_epoch:
                self.client.log_metric(self.run_id, "best_epoch", state.best_epoch)
        except Exception as exc:  # never hide the error that stopped training
            log.warning("could not log the interrupted run's checkpoint to MLflow: %s", first_line(exc))


def save_partial_checkpoint(state: Any, path: Path, error: BaseException | None = None) -> Path:
    """The best weights of an unfinished run, with the model config and history (torch weights_only-loadable).

    When the trainer can assemble a complete result from them (fit_vae can: preprocessing, latent sampler), the
    file is a full checkpoint that `VAEResult.load` and `vaexprs export` accept; else weights, config, history.
    """
    import torch

    if getattr(state, "partial_result", None) is not None:
        try:
            return state.partial_result().save(path)
        except Exception as exc:
            log.warning("could not assemble a full checkpoint (%s); saving the weights only", first_line(exc))
    model = state.model
    weights = state.best_state_dict if state.best_state_dict is not None else model.state_dict()
    meta = {
        "format": PARTIAL_FORMAT,
        "version": 1,
        "model_config": model.config.to_dict(),
        "history": state.history,
        "best_epoch": state.best_epoch,
        "error": f"{type(error).__name__}: {first_line(error)}" if error is not None else "",
    }
    payload = json.loads(json.dumps(meta, default=str))  # plain types only, as weights_only loading requires
    payload["state_dict"] = {k: v.detach().cpu() for k, v in weights.items()}
    torch.save(payload, path)
    return path


def write_history_csv(history: list[dict[str, float]], folder: str | Path) -> Path:
    """history.csv: one row per epoch, the loop's keys as columns."""
    path = Path(folder) / HISTORY_FILE
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    return path


def log_evaluation(result: Any, folder: Path) -> tuple[dict[str, Any], Any]:
    """Score generated cells against held-out (else training) cells; log eval_* metrics and eval.json.

    An evaluation that cannot run (e.g. too few cells) is a warning, not a failed training run.
    """
    import mlflow

    from vaexprs.files import write_json_atomic
    from vaexprs.model.scoring import evaluate_model

    try:
        metrics, gen = evaluate_model(result)
    except Exception as exc:
        log.warning("post-training evaluation skipped: %s", first_line(exc))
        return {}, None
    scalars = {
        f"eval_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
    }
    mlflow.log_metrics(scalars)
    mlflow.set_tag("eval_reference", metrics["reference"])
    mlflow.log_artifact(str(write_json_atomic(folder / "eval.json", metrics)))
    log.info(
        "evaluated on %s: real-vs-generated AUC %.3f (0.5 = indistinguishable, 1 = always told apart)",
        metrics["reference"], metrics["auc_real_vs_gen"],
    )  # fmt: skip
    return metrics, gen


def log_checkpoint(checkpoint: Path) -> None:
    """Log a finished training's checkpoint to the active run before its bundle is exported: an interrupt or a
    failure during export or logging then leaves the trained weights in the KILLED or FAILED run (they were lost)."""
    import mlflow

    mlflow.log_artifact(str(checkpoint), CHECKPOINT_DIR)


def log_training(result: Any, bundle_dir: Path, register: str | None = None) -> tuple[str | None, str | None]:
    """Log a finished training's bundle, history, evaluation, figures and model selection to the active run (its
    checkpoint: log_checkpoint, first), and register the bundle as a pyfunc when asked; returns (registered URI,
    version)."""
    import mlflow

    from vaexprs.analysis.plots import save_all

    mlflow.log_artifacts(str(bundle_dir), RUN_BUNDLE_PATH)  # generate reads runs:/RUN_ID here
    spec = json.loads((bundle_dir / "bundle.json").read_text())
    metrics = {
        "best_epoch": result.best_epoch,
        f"best_{result.train_config.monitor}": min(row[result.train_config.monitor] for row in result.history),
        "epochs_trained": len(result.history),
        **{
            f"onnx_{part}_parity_max_abs_diff": float(entry["parity_max_abs_diff"])
            for part, entry in spec.get("onnx", {}).items()
            if isinstance(entry, dict) and "parity_max_abs_diff" in entry
        },
    }
    for row in result.selection:  # likelihood=auto: every candidate's scores, e.g. selection_hurdle_dropout_auc
        for key in ("auc", "keep", "keep_target", "corr", "zero_gap", "score", "seconds"):
            if isinstance(row.get(key), (int, float)):
                metrics[f"selection_{row.get('candidate', row['likelihood'])}_{key}"] = float(row[key])
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory(prefix="vaexprs-run-") as tmp_name:
        tmp = Path(tmp_name)
        mlflow.log_artifact(str(write_history_csv(result.history, tmp)))
        if result.selection:
            from vaexprs.files import write_json_atomic

            mlflow.log_artifact(str(write_json_atomic(tmp / "selection.json", result.selection)))
        _, gen = log_evaluation(result, tmp)
        try:
            save_all(result, gen, tmp / PLOTS_DIR)
            mlflow.log_artifacts(str(tmp / PLOTS_DIR), PLOTS_DIR)
        except Exception as exc:  # a figure must not fail a finished training
            log.warning("could not draw the training figures: %s", first_line(exc))
    if not register:
        return None, None
    from vaexprs.generate.pyfunc import log_generator_model

    info = log_generator_model(bundle_dir, registered_model_name=register)
    version = str(info.registered_model_version)
    return f"models:/{register}/{version}", version


def log_outputs(files: Mapping[str, Path], params: Mapping[str, Any] | None = None) -> None:
    """Log a command's output files (artifact folder -> file or folder) and params to the active run."""
    import mlflow

    if params:
        log_params_once(mlflow.active_run().info.run_id, params)
    for folder, path in files.items():
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), folder)
        elif Path(path).exists():
            mlflow.log_artifact(str(path), folder)
