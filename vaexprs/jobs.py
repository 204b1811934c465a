"""The jobs the CLI and the MLflow project run: training end to end, and the whole demo pipeline.

    outcome = train_job("cells.h5ad", TrainJob(output="bundle"), {"epochs": 30})
    outcome = pipeline(PipelineJob(), {"epochs": 30})        # simulate -> train -> register -> generate

train_job: check every option and output (before reading or training anything) -> read -> fit_vae -> checkpoint
-> ONNX bundle (-> MLflow run, registry when asked). Every option is declared once: the job's own here
(`TrainJob`, `PipelineJob`), the model's in vaexprs.config.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaexprs.config import Config, ModelType, opt
from vaexprs.errors import OptionError, examples

log = logging.getLogger("vaexprs")

FORCE_ENV = "VAEXPRS_FORCE"  # --force as an environment variable: how MLproject entry points pass it
GENES_AS_ROWS_ENV = "VAEXPRS_GENES_AS_ROWS"  # the same for train's --genes-as-rows
DEFAULT_LABEL_KEY = "cell_type"  # absent from the data: a VAE; any other absent key is a typo and refused


@dataclass
class TrainJob(Config):
    """`vaexprs train`'s own options (the model's come from ModelConfig, TrainConfig and DataConfig)."""

    label_key: str = opt(
        DEFAULT_LABEL_KEY, "obs column with the cell labels (a column you name must exist; cell_type may be absent)."
    )
    model: ModelType = opt(
        "auto", "vae, cvae (conditioned on --label-key), or auto: cvae when the data has that column."
    )
    output: str | None = opt(None, "Write the ONNX bundle to this folder.", flags=("--output", "-o"))
    checkpoint: str | None = opt(None, "Write the torch checkpoint (weights only) to this file.")
    track: bool = opt(False, "Log the run to MLflow: params, per-epoch metrics, checkpoint, bundle, figures.")
    experiment: str | None = opt(None, "MLflow experiment [default: $MLFLOW_EXPERIMENT_NAME, else vaexprs].")
    register: str | None = opt(None, "Register the model under this name in the MLflow registry (implies --track).")
    force: bool = opt(
        False,
        "Replace an existing bundle folder (never one holding other files) or checkpoint file (never the input).",
        envvar=FORCE_ENV,
    )
    backed: bool = opt(
        False,
        "Leave the .h5ad's X on disk and stream minibatches from it (data larger than memory; X stored as CSR "
        "or dense).",
    )
    genes_as_rows: bool = opt(
        False,
        "DATA (.csv/.tsv/.txt/.npy) has genes as rows and cells as columns, as R writes a SingleCellExperiment's "
        "counts; a label row is read like a label column.",
        envvar=GENES_AS_ROWS_ENV,
    )

    def __post_init__(self) -> None:
        for name in ("output", "checkpoint", "experiment", "register"):
            if getattr(self, name) == "":  # MLproject parameters cannot be absent, only empty
                setattr(self, name, None)
        super().__post_init__()
        if self.register is not None:
            from vaexprs.registry.models import check_model_name

            check_model_name(self.register)


@dataclass
class TrainOutcome:
    result: Any  # VAEResult
    bundle_dir: Path | None = None
    checkpoint: Path | None = None
    run_id: str | None = None
    model_uri: str | None = None
    model_version: str | None = None


def check_outputs(job: TrainJob, data: str | None) -> None:
    """Refuse outputs that exist (without --force) or must never be replaced, before any work."""
    from vaexprs.bundle.schema import check_bundle_output
    from vaexprs.files import check_output_name, exists_error

    protected = [data] if data else []
    if job.output:
        check_bundle_output(job.output, job.force, protected)
    if job.checkpoint:
        path = Path(job.checkpoint)
        check_output_name(path)  # before any stat of it: a name over 255 bytes raises OSError there
        resolved = path.resolve()
        folder = resolved.parent
        if not folder.is_dir():
            raise OptionError("checkpoint", f"folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):  # found at the end, it cost the whole training
            raise OptionError("checkpoint", f"folder {folder} is not writable")
        if path.is_dir():
            raise OptionError("checkpoint", f"{path} is a folder; give a file name such as model.pt")
        if data and resolved == Path(data).resolve():
            raise OptionError("checkpoint", f"{path} is the input data")
        if job.output:  # the bundle is published whole, and a file inside it would make it no bundle
            bundle = Path(job.output).expanduser().resolve()
            if resolved == bundle or bundle in resolved.parents:
                raise OptionError(
                    "checkpoint", f"{path} is in the bundle folder {{output}} {job.output}; give a path outside it",
                    refs=("output",),
                )  # fmt: skip
        if path.exists() and not job.force:
            raise exists_error(path)


def load_training_data(data: str | None, job: TrainJob, layer: str | None) -> tuple[Any, str | None]:
    """AnnData from the data file (or the simulated vignette data) and the label column to condition on."""
    from vaexprs.data.io import read_expression
    from vaexprs.data.simulate import simulate

    if job.backed and not data:
        raise OptionError("backed", "needs a DATA file (.h5ad) to read from disk")
    if job.genes_as_rows and not data:
        raise OptionError("genes_as_rows", "needs a DATA file (.csv/.tsv/.txt/.npy) to read")
    if not data:
        adata = simulate()
    else:  # a table's label column is read by name (e.g. the cell_type column of a CSV vaexprs generated)
        adata = read_expression(
            data, layer=layer, backed=job.backed, label_key=job.label_key, require_label=False,
            genes_as_rows=job.genes_as_rows,
        )  # fmt: skip
    has_labels = job.label_key in adata.obs
    # a key the user chose must exist, whatever the model: its absence is a typo, not "no labels"
    named = job.label_key != DEFAULT_LABEL_KEY
    if (job.model == "cvae" or named) and not has_labels:
        known = examples([str(c) for c in adata.obs.columns], 10) or "none"
        raise OptionError("label_key", f"{job.label_key!r} is not a column of the data (obs columns: {known})")
    conditional = job.model == "cvae" or (job.model == "auto" and has_labels)
    if job.model == "auto":
        log.info(
            "model auto: %s", f"a CVAE conditioned on obs[{job.label_key!r}]" if conditional
            else f"a VAE (the data has no obs[{job.label_key!r}])",
        )  # fmt: skip
    return adata, job.label_key if conditional else None


def asked_automatic(fit_options: dict[str, Any]) -> dict[str, str]:
    """The training options left to vaexprs (auto, the default of most), as a run records them: beta=auto, the
    value used beside it (beta_used), as `mlflow run` logs its entry point's parameters; without this a CLI run
    logged only the values used and lost that they were chosen, not asked for."""
    from vaexprs.config import ModelConfig, TrainConfig, config_defaults

    defaults = {**config_defaults(ModelConfig), **config_defaults(TrainConfig)}  # not the data's: layer=None is none
    options = {k: fit_options.get(k, v) for k, v in defaults.items()}
    return {k: "auto" for k, v in options.items() if (v is None or v == "auto") and k != "device"}


def data_params(adata: Any, label_key: str | None) -> dict[str, Any]:
    """Where the cells came from: file path and sha256 (or 'simulated'), size, labels and their counts."""
    source = dict(adata.uns.get("vaexprs_source", {}))
    params: dict[str, Any] = {
        "data_path": source.get("path") or "simulated",
        "data_sha256": source.get("sha256") or "simulated",
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
    }
    if not source and "simulation" in adata.uns:
        params["simulation"] = {k: int(v) for k, v in dict(adata.uns["simulation"]).items()}
    if label_key is not None:
        counts = adata.obs[label_key].astype(str).value_counts(sort=False)
        params["labels"] = ",".join(counts.index)
        params["label_counts"] = {str(k): int(v) for k, v in counts.items()}
    return params


def train_job(
    data: str | None, job: TrainJob, fit_options: dict[str, Any], progress: bool | None = None
) -> TrainOutcome:
    """Check, read, train, write the checkpoint and the bundle; track in MLflow when asked."""
    from vaexprs.model.ddp import is_main_process
    from vaexprs.model.fit import fit_vae

    check_outputs(job, data)
    adata, label_key = load_training_data(data, job, fit_options.get("layer"))
    if not is_main_process():  # under torchrun: every rank trains; rank 0 alone writes, logs and registers
        return TrainOutcome(result=fit_vae(adata, label_key, progress=False, **fit_options))
    if not (job.track or job.register):
        result = fit_vae(adata, label_key, progress=progress, **fit_options)
        outcome = TrainOutcome(result=result)
        if job.checkpoint:
            outcome.checkpoint = result.save(job.checkpoint, force=job.force)
        if job.output:
            from vaexprs.model.export import export_bundle

            outcome.bundle_dir = export_bundle(result, job.output, force=job.force, protected=[data] if data else ())
        return outcome
    return tracked_train_job(data, adata, label_key, job, fit_options, progress)


def tracked_train_job(
    data: str | None,
    adata: Any,
    label_key: str | None,
    job: TrainJob,
    fit_options: dict[str, Any],
    progress: bool | None,
) -> TrainOutcome:
    """train_job inside an MLflow run (the active one, e.g. a step of `pipeline`, or a new one)."""
    from vaexprs.model.export import export_bundle
    from vaexprs.model.fit import fit_vae
    from vaexprs.tracking.runs import (
        CHECKPOINT_FILE,
        MlflowCallback,
        log_checkpoint,
        log_params_once,
        log_training,
        run_scope,
    )

    with run_scope(job.experiment, run_name="train") as run:
        run_id = run.info.run_id
        log_params_once(run_id, asked_automatic(fit_options))  # then the callback logs beta_used=4.0 beside them
        params = {**data_params(adata, label_key), "label_key": job.label_key, "model": job.model}
        callback = MlflowCallback(run_id, params)
        result = fit_vae(adata, label_key, callbacks=(callback,), progress=progress, **fit_options)
        outcome = TrainOutcome(result=result, run_id=run_id)
        with tempfile.TemporaryDirectory(prefix="vaexprs-train-") as tmp_name:
            tmp = Path(tmp_name)
            log_checkpoint(result.save(tmp / CHECKPOINT_FILE))
            if job.checkpoint:  # before the bundle, as without tracking: a stop after training keeps both
                outcome.checkpoint = result.save(job.checkpoint, force=job.force)
            bundle_dir = Path(job.output) if job.output else tmp / "bundle"
            export_bundle(
                result, bundle_dir, force=job.force, protected=[data] if data else (),
                provenance={"mlflow_run_id": run_id},
            )  # fmt: skip
            outcome.model_uri, outcome.model_version = log_training(result, bundle_dir, job.register)
            if job.output:
                outcome.bundle_dir = bundle_dir
    return outcome


@dataclass
class PipelineJob(Config):
    """The MLflow project's main entry point: the vignette's data, trained, registered, promoted, generated."""

    groups: int = opt(3, "Simulated cell groups.", bounds=(1, 1000))
    cells: int = opt(100, "Simulated cells per group.", bounds=(1, 1_000_000))
    genes: int = opt(1000, "Simulated genes.", bounds=(1, 100_000))
    deg: int = opt(100, "Differentially expressed genes per group.", bounds=(1, 100_000))
    model: ModelType = opt("cvae", "vae, cvae or auto; a CVAE, so the registered demo model generates per label.")
    register: str = opt("vaexprs", "Registered model name.")
    alias: str = opt("champion", "Point this alias at the new version ('' = leave the aliases alone).")
    n_cells: int = opt(300, "Cells to generate from the registered model.", bounds=(1, 10_000_000))
    out_dir: str = opt("outputs", "Folder for the simulated data and the generated cells.")
    experiment: str | None = opt(None, "MLflow experiment [default: $MLFLOW_EXPERIMENT_NAME, else vaexprs].")
    force: bool = opt(
        False,
        "Replace simulated.h5ad and generated.h5ad in --out-dir (an earlier run's; any files of those names).",
        envvar=FORCE_ENV,
    )

    def __post_init__(self) -> None:
        if self.experiment == "":
            self.experiment = None
        super().__post_init__()
        from vaexprs.registry.models import check_alias, check_model_name

        check_model_name(self.register)
        if self.alias:  # checked before simulate and train, not after them at the promote step
            check_alias(self.alias)


@dataclass
class PipelineOutcome:
    run_id: str
    steps: dict[str, str] = field(default_factory=dict)
    model_uri: str = ""
    model_version: str | None = None
    alias_uri: str | None = None
    generated: Path | None = None
    n_cells: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def pipeline(
    job: PipelineJob, fit_options: dict[str, Any], seed: int = 1, progress: bool | None = None
) -> PipelineOutcome:
    """simulate -> train (export, tracking, registration) -> promote -> generate, one child run per step."""
    import mlflow

    from vaexprs.data.io import write_anndata
    from vaexprs.data.simulate import simulate
    from vaexprs.files import exists_error
    from vaexprs.generate.pipeline import generate_to_file
    from vaexprs.registry.models import promote
    from vaexprs.tracking.runs import log_outputs, run_scope

    out_dir = Path(job.out_dir).expanduser().resolve()
    data, generated = out_dir / "simulated.h5ad", out_dir / "generated.h5ad"
    if not job.force:
        for path in (data, generated):
            if path.exists():
                raise exists_error(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_scope(job.experiment, run_name="main") as parent:
        outcome = PipelineOutcome(run_id=parent.info.run_id)
        with run_scope(run_name="simulate", nested=True) as run:
            sizes = {"groups": job.groups, "cells": job.cells, "genes": job.genes, "deg": job.deg}
            write_anndata(simulate(**sizes, seed=seed), data, force=job.force)
            log_outputs({"data": data}, {**sizes, "seed": seed})
            outcome.steps["simulate"] = run.info.run_id
        with run_scope(run_name="train", nested=True) as run:
            train = TrainJob(model=job.model, track=True, register=job.register)
            trained = train_job(str(data), train, {"seed": seed, **fit_options}, progress)
            outcome.steps["train"] = run.info.run_id
            outcome.model_uri = trained.model_uri or f"runs:/{run.info.run_id}/bundle"
            outcome.model_version = trained.model_version
        if job.alias and trained.model_version:
            promote(job.register, trained.model_version, job.alias)
            outcome.alias_uri = f"models:/{job.register}@{job.alias}"
        with run_scope(run_name="generate", nested=True) as run:
            summary = generate_to_file(
                outcome.alias_uri or outcome.model_uri, generated, n=job.n_cells, seed=seed, force=job.force
            )
            log_outputs(
                {"generated": generated},
                {"model_uri": outcome.alias_uri or outcome.model_uri, "n_cells": job.n_cells, "seed": seed},
            )
            outcome.steps["generate"] = run.info.run_id
        outcome.generated, outcome.n_cells = generated, summary["n_cells"]
        outcome.metrics = {
            k: v for k, v in mlflow.get_run(outcome.steps["train"]).data.metrics.items() if k.startswith("eval_")
        }
        mlflow.set_tags({"vaexprs.model_uri": outcome.model_uri, "vaexprs.generated": str(generated)})
    return outcome
