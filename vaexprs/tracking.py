"""MLflow tracking and registry: one run per training, a pyfunc per registered model, aliases to promote it.

    outcome = tracked_training(adata, TrainOptions(model="cvae", register="vaexprs"))   # vaexprs train --track
    previous = promote("vaexprs", 3, "champion")                                         # vaexprs promote
    path = download_checkpoint("runs:/<RUN_ID>/checkpoint/model.pt")                     # vaexprs export

The store is $MLFLOW_TRACKING_URI, else `sqlite:///<cwd>/mlflow.db` (`ensure_tracking_uri`, called by every
command that touches MLflow). The light install (mlflow-skinny) reads HTTP servers and file stores only, so a
database URI there fails early with a message saying what to install or set (`check_tracking_store`).
mlflow, torch and matplotlib are imported inside the functions: the light client imports this module too.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaexprs.errors import InputError, VaexprsRuntimeError

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

    from vaexprs.api import VAEResult
    from vaexprs.workflow import TrainOptions, TrainOutcome

log = logging.getLogger("vaexprs")

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "model.pt"
PARTIAL_CHECKPOINT_FILE = "model_partial.pt"  # best weights so far of an interrupted run
BUNDLE_DIR = "bundle"
HISTORY_FILE = "history.csv"
PLOTS_DIR = "plots"
LOGGED_MODEL_NAME = "generator"
PARTIAL_FORMAT = "vaexprs-partial-checkpoint"
# Schemes of database-backed stores: the full mlflow (SQLAlchemy) opens them, mlflow-skinny cannot.
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


# ------------------------------------------------------------------------------------------ tracking store


def default_tracking_uri() -> str:
    """`sqlite:///<cwd>/mlflow.db`: an absolute path, so child processes in other folders share the store."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def ensure_tracking_uri() -> str:
    """The tracking URI every vaexprs command uses; sets $MLFLOW_TRACKING_URI so subprocesses inherit it.

    $MLFLOW_TRACKING_URI wins, then a URI set in this process with mlflow.set_tracking_uri, then the default.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        with contextlib.suppress(ImportError, AttributeError):
            from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

            if is_tracking_uri_set():
                return str(mlflow.get_tracking_uri())
    uri = default_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def full_mlflow_installed() -> bool:
    """Whether this environment can open database stores (the full mlflow brings SQLAlchemy and alembic)."""
    return all(importlib.util.find_spec(name) is not None for name in ("sqlalchemy", "alembic"))


def check_tracking_store(uri: str | None = None) -> str:
    """Fail with a clear InputError where the light client meets a database store it cannot open."""
    uri = uri or ensure_tracking_uri()
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in DB_SCHEMES and not full_mlflow_installed():
        raise InputError(
            f"the tracking URI {uri} needs the full mlflow (pip install vaexprs[train]) "
            "or a tracking server: MLFLOW_TRACKING_URI=http://..."
        )
    return uri


def _mlflow() -> Any:
    """mlflow, with the store set up and checked (the import costs seconds, so only where needed)."""
    check_tracking_store(ensure_tracking_uri())
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow-skinny is a base dependency
        raise InputError("this needs the MLflow client: pip install 'vaexprs[train]'") from None
    return mlflow


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def run_scope(experiment: str | None = None, run_name: str | None = None, nested: bool = False) -> Iterator[Any]:
    """The MLflow run to log into: the active one, or one started here (resumed from $MLFLOW_RUN_ID under
    `mlflow run`) that ends FINISHED, FAILED on an exception or KILLED on Ctrl-C.

    A run that someone else opened is theirs to end. `nested=True` always starts a child of the active run.
    """
    mlflow = _mlflow()
    active = mlflow.active_run()
    if active is not None and not nested:
        yield active
        return
    resuming = active is None and bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` opened it
    if active is None and experiment and not resuming:
        mlflow.set_experiment(experiment)  # under `mlflow run` the launcher chose the experiment
    run = mlflow.start_run(run_name=None if resuming else run_name, nested=nested)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except SystemExit as exc:
        mlflow.end_run("FINISHED" if exc.code in (0, None) else "FAILED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


# ------------------------------------------------------------------------------------------ training run


def _param_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, default=str)
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def data_params(adata: AnnData, options: TrainOptions) -> dict[str, Any]:
    """Where the cells came from: file path and sha256 (or 'simulated'), size, labels and their counts."""
    source = dict(adata.uns.get("vaexprs_source", {})) if hasattr(adata, "uns") else {}
    params: dict[str, Any] = {
        "data_path": source.get("path") or "simulated",
        "data_sha256": source.get("sha256") or "simulated",
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
    }
    if not source and "simulation" in adata.uns:
        params["simulation"] = {k: int(v) for k, v in dict(adata.uns["simulation"]).items()}
    if options.model == "cvae" and options.label_key in adata.obs:
        counts = adata.obs[options.label_key].astype(str).value_counts(sort=False)
        params["labels"] = ",".join(counts.index)
        params["label_counts"] = {str(k): int(v) for k, v in counts.items()}
    return params


class MlflowCallback:
    """Logs a training run to MLflow: params and tags at the start, metrics every epoch, the best weights
    when training is interrupted.

    It has the hooks of `vaexprs.train.Callback` without subclassing it, so importing this module (the light
    client does) never imports torch.
    """

    def __init__(self, run_id: str, options: TrainOptions, adata: AnnData) -> None:
        self.run_id = run_id
        self.options = options
        self.data = data_params(adata, options)
        self.device = "cpu"
        self.started = time.perf_counter()

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params this run lacks; `mlflow run` already logged its entry point's values (in the user's
        spelling, e.g. lr=1e-3) and MLflow refuses to change a param."""
        from mlflow.entities import Param

        have = set(self.client.get_run(self.run_id).data.params)
        new = [Param(k, _param_text(v)) for k, v in params.items() if k not in have]
        for start in range(0, len(new), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def on_train_begin(self, model: Any, config: Any) -> None:
        self.started = time.perf_counter()
        self.device = str(next(model.parameters()).device)
        params = dict(self.options.to_params())
        params.update({f"model.{k}": v for k, v in model.config.to_dict().items()})
        params.update({f"train.{k}": v for k, v in config.to_dict().items()})
        params.update(self.data)
        self.log_params(params)
        tags = {
            "vaexprs.version": _version("vaexprs"),
            "torch.version": _version("torch"),
            "onnxruntime.version": _runtime_version(),
            "mlflow.version": _version("mlflow")
            if _version("mlflow") != "not installed"
            else _version("mlflow-skinny"),
            "device": self.device,
            "vaexprs.model_type": "cvae" if model.config.is_conditional else "vae",
        }
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: Any) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, epoch) for key, value in logs.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

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
            self.client.set_tag(self.run_id, "vaexprs.interrupted", f"{type(error).__name__}: {_first_line(error)}")
            if state.best_epoch:
                self.client.log_metric(self.run_id, "best_epoch", state.best_epoch)
        except Exception as exc:  # never hide the error that stopped training
            log.warning("could not log the interrupted run's checkpoint to MLflow: %s", _first_line(exc))


def _runtime_version() -> str:
    for name in ("onnxruntime", "onnxruntime-gpu"):
        version = _version(name)
        if version != "not installed":
            return version
    return "not installed"


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
            log.warning("could not assemble a full checkpoint (%s); saving the weights only", _first_line(exc))

    model = state.model
    weights = state.best_state_dict if state.best_state_dict is not None else model.state_dict()
    meta = {
        "format": PARTIAL_FORMAT,
        "version": 1,
        "model_config": model.config.to_dict(),
        "history": state.history,
        "best_epoch": state.best_epoch,
        "error": f"{type(error).__name__}: {_first_line(error)}" if error is not None else "",
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


def save_plots(result: VAEResult, folder: Path, gen: Any = None) -> list[Path]:
    """The figures that exist after training (warn, never fail the run): loss curves, the architecture and,
    when generated cells are given, the heatmap and the PCA of real beside generated cells."""
    from vaexprs import plots

    made = []
    drawings = [
        ("history.png", lambda path: plots.plot_history(result.history, path, best_epoch=result.best_epoch)),
        ("architecture.png", lambda path: plots.plot_vae(result, path)),
    ]
    if gen is not None:
        drawings += [
            ("heatmap.png", lambda path: plots.plot_heatmap(gen, path)),
            ("augmentation_pca.png", lambda path: plots.plot_aug(gen, "PCA", path)),
        ]
    for name, draw in drawings:
        try:
            draw(folder / name)
            made.append(folder / name)
        except Exception as exc:
            log.warning("could not draw %s: %s", name, _first_line(exc))
    return made


def log_evaluation(result: VAEResult, folder: Path) -> tuple[dict[str, float], Any]:
    """Score generated cells against held-out (else training) cells; log eval_* metrics and eval.json.

    Returns the scalar metrics and the generated cells (for the plots); an evaluation that cannot run (e.g. too
    few cells) is a warning, not a failed training run.
    """
    import mlflow

    from vaexprs.evaluate import evaluate_model
    from vaexprs.jsonio import write_json_atomic

    try:
        metrics, gen = evaluate_model(result)
    except Exception as exc:
        log.warning("post-training evaluation skipped: %s", _first_line(exc))
        return {}, None
    scalars = {
        f"eval_{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
    }
    mlflow.log_metrics(scalars)
    mlflow.set_tag("eval_reference", metrics["reference"])
    mlflow.log_artifact(str(write_json_atomic(folder / "eval.json", metrics)))
    log.info("evaluated on %s: auc_real_vs_gen %.3f", metrics["reference"], metrics["auc_real_vs_gen"])
    return scalars, gen


def _bundle_parity(bundle_dir: Path) -> dict[str, float]:
    spec = json.loads((bundle_dir / "bundle.json").read_text())
    return {
        f"onnx_{part}_parity_max_abs_diff": float(entry["parity_max_abs_diff"])
        for part, entry in spec.get("onnx", {}).items()
        if isinstance(entry, dict) and "parity_max_abs_diff" in entry
    }


def tracked_training(adata: AnnData, options: TrainOptions) -> TrainOutcome:
    """Train inside an MLflow run; log checkpoint, bundle, history and plots; register when asked.

    Uses the active run if there is one (e.g. a child run of the `main` entry point), else starts one in
    `options.experiment`. The bundle's provenance records the run id.
    """
    from vaexprs.export import export_bundle
    from vaexprs.workflow import TrainOutcome, fit_from_options

    with run_scope(options.experiment) as run:
        import mlflow

        run_id = run.info.run_id
        callback = MlflowCallback(run_id, options, adata)
        result = fit_from_options(adata, options, callbacks=(callback,))
        outcome = TrainOutcome(result=result, run_id=run_id)
        best = min(row[options.monitor] for row in result.history)
        metrics = {
            "best_epoch": result.best_epoch,
            f"best_{options.monitor}": best,
            "epochs_trained": len(result.history),
        }
        with tempfile.TemporaryDirectory(prefix="vaexprs-run-") as tmp_name:
            tmp = Path(tmp_name)
            checkpoint = result.save(tmp / CHECKPOINT_FILE)
            mlflow.log_artifact(str(checkpoint), CHECKPOINT_DIR)
            if options.checkpoint:
                outcome.checkpoint = Path(shutil.copyfile(checkpoint, options.checkpoint))
            bundle_dir = Path(options.bundle_dir) if options.bundle_dir else tmp / BUNDLE_DIR
            export_bundle(result, bundle_dir, force=options.force, provenance={"mlflow_run_id": run_id})
            if options.bundle_dir:
                outcome.bundle_dir = bundle_dir
            mlflow.log_artifacts(str(bundle_dir), BUNDLE_DIR)
            metrics.update(_bundle_parity(bundle_dir))
            mlflow.log_metrics(metrics)
            mlflow.log_params(
                {k: _param_text(v) for k, v in {"n_val_cells": result.data_info.get("n_val_cells")}.items()}
            )
            mlflow.log_artifact(str(write_history_csv(result.history, tmp)))
            _, gen = log_evaluation(result, tmp)
            (tmp / PLOTS_DIR).mkdir()
            for path in save_plots(result, tmp / PLOTS_DIR, gen):
                mlflow.log_artifact(str(path), PLOTS_DIR)
            if options.register:
                from vaexprs.pyfunc import log_generator_model

                info = log_generator_model(bundle_dir, registered_model_name=options.register)
                outcome.model_version = str(info.registered_model_version)
                outcome.model_uri = f"models:/{options.register}/{outcome.model_version}"
        outcome.details = {"metrics": metrics, "run_id": run_id, "tracking_uri": mlflow.get_tracking_uri()}
    return outcome


# ------------------------------------------------------------------------------------------ registry


def _client() -> Any:
    mlflow = _mlflow()
    return mlflow.MlflowClient()


def model_versions(name: str) -> list[int]:
    """The versions of a registered model, ascending; InputError when there is no such model."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(f"no registered model named {name!r} in {ensure_tracking_uri()}") from None
        raise VaexprsRuntimeError(f"could not read model {name!r}: {_first_line(exc)}") from None
    return sorted(int(v.version) for v in versions)


def promote(name: str, version: int | str, alias: str = "champion") -> str | None:
    """Point `models:/NAME@ALIAS` at `version` (moving the alias if it exists); returns the previous version."""
    from mlflow.exceptions import MlflowException

    if not alias:
        raise InputError("give an alias to set, e.g. --alias champion")
    versions = model_versions(name)
    if int(version) not in versions:
        listed = ", ".join(map(str, versions)) or "none"
        raise InputError(f"model {name} has no version {version} (versions: {listed})")
    client = _client()
    previous = None
    with contextlib.suppress(MlflowException):
        previous = str(client.get_model_version_by_alias(name, alias).version)
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise InputError(f"cannot set alias {alias!r} on {name} version {version}: {_first_line(exc)}") from None
    return previous


def download_checkpoint(uri: str) -> Path:
    """A local copy of a run's torch checkpoint: runs:/RUN_ID[/checkpoint[/model.pt]] or models:/NAME@ALIAS.

    A registered vaexprs model holds the ONNX bundle, not the weights; for models:/ URIs the checkpoint comes
    from the run that logged the version.
    """
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        if uri.startswith("models:/"):
            uri = f"runs:/{_version_run_id(mlflow.MlflowClient(), uri)}/{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except MlflowException as exc:
        raise InputError(f"checkpoint {uri!r} could not be downloaded: {_first_line(exc)}") from None
    if local.is_file():
        return local
    for candidate in (local / CHECKPOINT_FILE, local / CHECKPOINT_DIR / CHECKPOINT_FILE):
        if candidate.is_file():
            return candidate
    raise InputError(f"{uri!r} holds no {CHECKPOINT_DIR}/{CHECKPOINT_FILE}")


def _version_run_id(client: Any, uri: str) -> str:
    """The run that logged the model version a models:/NAME@ALIAS or models:/NAME/VERSION URI names."""
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = rest.rpartition("/")
        if not name or not number.isdigit():
            raise InputError(f"{uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
        version = client.get_model_version(name, number)
    if not version.run_id:
        raise InputError(f"{uri} was not logged from an MLflow run, so it has no checkpoint")
    return str(version.run_id)
