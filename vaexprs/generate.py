"""Generation end to end, for the CLI, the MLflow pyfunc and the Python API: model -> bundle -> cells -> file.

    summary = generate_to_file("models:/vaexprs@champion", "out.h5ad", n=1_000_000, seed=1)
    x, labels = generate_array("bundle_dir", n=300, per_label="group1=100,group2=200")

Every check (model, counts, labels, sampler, output path) runs before any file is created, so bad input never
leaves a partial file behind. Only numpy, onnxruntime, h5py/anndata and (for registry URIs) the MLflow client
are imported, each when first needed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle import BUNDLE_JSON, Bundle, load_bundle
from vaexprs.engine import Generator, Plan, plan_request
from vaexprs.errors import InputError
from vaexprs.writers import check_output, open_writer

log = logging.getLogger("vaexprs")

URI_SCHEMES = ("models:/", "runs:/")


def _find_bundle_json(root: Path) -> Path | None:
    """The shallowest bundle.json under root (an MLflow model keeps the bundle among its artifacts)."""
    if (root / BUNDLE_JSON).is_file():
        return root / BUNDLE_JSON
    found = sorted(root.rglob(BUNDLE_JSON), key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def _registry_version(uri: str) -> str | None:
    """The model version a models:/ URI names: NAME/N -> N; NAME@ALIAS -> looked up in the registry."""
    if not uri.startswith("models:/"):
        return None
    rest = uri[len("models:/") :].rstrip("/")
    if "@" in rest:
        import mlflow

        name, alias = rest.rsplit("@", 1)
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    _, _, version = rest.partition("/")
    return version if version.isdigit() else None


def _resolve_uri(uri: str) -> tuple[Path, str, str | None]:
    from vaexprs.tracking import check_tracking_store

    check_tracking_store()  # the default store; a database store needs the full mlflow (InputError otherwise)
    try:
        import mlflow
        import mlflow.artifacts
    except ImportError:
        raise InputError(f"resolving {uri!r} needs the MLflow client: pip install mlflow-skinny") from None
    from mlflow.exceptions import MlflowException

    try:
        version = _registry_version(uri)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except MlflowException as e:
        where = mlflow.get_tracking_uri() if uri.startswith("runs:/") else mlflow.get_registry_uri()
        first = str(e.message if hasattr(e, "message") else e).strip().splitlines()[0]
        missing = getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in first.lower()
        what = "not found" if missing else "could not be resolved"
        kind = "in the registry" if uri.startswith("models:/") else "in the tracking server"
        raise InputError(f"model {uri!r} {what} {kind} at {where}: {first}") from None
    found = _find_bundle_json(local) if local.is_dir() else (local if local.name == BUNDLE_JSON else None)
    if found is None:
        raise InputError(f"model {uri!r} holds no {BUNDLE_JSON} (is it a vaexprs model?)")
    return found.parent, uri, version


def resolve_model(model: str | os.PathLike[str]) -> tuple[Path, str, str | None]:
    """(bundle folder, model URI for the record, registry version or None) for a URI or a local path.

    MLflow is imported only for `models:/` and `runs:/` URIs.
    """
    text = os.fspath(model)
    if text.startswith(URI_SCHEMES):
        return _resolve_uri(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"model {text!r} does not exist (give a bundle folder, models:/NAME@ALIAS or runs:/ID/PATH)")
    if path.is_file():
        if path.name != BUNDLE_JSON:
            raise InputError(f"model {text!r} is a file but not a {BUNDLE_JSON}; give the bundle folder")
        return path.parent.resolve(), str(path.parent.resolve()), None
    found = _find_bundle_json(path)
    if found is None:
        raise InputError(f"model folder {text!r} holds no {BUNDLE_JSON}")
    return found.parent.resolve(), str(path.resolve()), None


def _prepare(
    model: str | os.PathLike[str] | Bundle | Generator,
    n: int | None,
    label: str | None,
    per_label: str | Mapping[str, int] | None,
    sampler: str,
    seed: int,
    provider: str,
    batch_size: int | None,
    threads: int | None,
    output_space: str | None,
) -> tuple[Generator, Plan, str, str | None]:
    if isinstance(model, Generator):  # a warm session (e.g. held by the MLflow pyfunc): provider/threads are its own
        gen, uri, version = model, str(model.bundle.path), None
    else:
        if isinstance(model, Bundle):
            bundle, uri, version = model, str(model.path), None
        else:
            folder, uri, version = resolve_model(model)
            bundle = load_bundle(folder)
        # the whole request is checked (and the labels drawn) before a session starts
        plan = plan_request(bundle, n, label, per_label, sampler, seed, batch_size, output_space)
        gen = Generator(bundle, provider=provider, threads=threads)
        gen.n_total = plan.n_total
        return gen, plan, uri, version
    return gen, gen.plan(n, label, per_label, sampler, seed, batch_size, output_space), uri, version


def _used_labels(bundle: Bundle, codes: np.ndarray | None) -> tuple[list[str] | None, np.ndarray | None]:
    """The labels that occur (model order) and a code -> position map, so obs categories have no empty ones."""
    if codes is None:
        return None, None
    used = np.flatnonzero(np.bincount(codes, minlength=bundle.n_labels))
    remap = np.full(bundle.n_labels, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return [bundle.labels[i] for i in used], remap


def generate_to_file(
    model: str | os.PathLike[str] | Bundle | Generator,
    out: str | os.PathLike[str],
    n: int | None = None,
    label: str | None = None,
    per_label: str | Mapping[str, int] | None = None,
    sampler: str = "gmm",
    seed: int = 1,
    provider: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    force: bool = False,
    progress: bool = False,
    output_space: str | None = None,
) -> dict[str, Any]:
    """Generate cells into a .h5ad/.csv/.npy file, streaming chunks; returns a summary of the run.

    model: a bundle folder, a models:/ or runs:/ URI, a loaded Bundle, or a Generator to reuse its session.
    n: number of cells (labels drawn in training proportions); label: all n of one label; per_label:
    "L1=300,L2=50" or a dict (counts decide, n is ignored). Bad input raises InputError before any file exists.
    """
    out_path = check_output(out, force)
    t0 = time.perf_counter()
    gen, plan, uri, version = _prepare(
        model, n, label, per_label, sampler, seed, provider, batch_size, threads, output_space
    )
    bundle = gen.bundle
    categories, remap = _used_labels(bundle, plan.codes)
    check_output(out_path, force, with_labels=categories is not None)
    from vaexprs import __version__

    meta = {
        "model_uri": uri,
        "model_version": version,
        "seed": int(seed),
        "sampler": sampler,
        "provider": gen.active_provider,
        "output_space": plan.output_space,
        "value_space": plan.value_space,
        "sampled": plan.sampled,
        # nb/zinb: the training mean library size, the denominator of lognorm size factors for these cells
        "train_mean_library": bundle.library_size.train_mean if bundle.library_size is not None else None,
        "likelihood": bundle.likelihood,
        "model_type": bundle.model_type,
        "vaexprs_version": __version__,
        "bundle_vaexprs_version": bundle.vaexprs_version,
        "n_cells": plan.n_total,
        "batch_size": plan.batch_size,
    }
    if label is not None:
        meta["label"] = str(label)
    if per_label is not None:
        meta["per_label"] = (
            per_label if isinstance(per_label, str) else ",".join(f"{k}={v}" for k, v in per_label.items())
        )
    bar = _progress(plan.n_total) if progress else None
    chunks = gen.run_plan(plan, reuse_buffers=True)
    try:
        with open_writer(
            out_path, bundle.genes, plan.n_total, labels=categories, force=force, uns={"vaexprs": meta}
        ) as w:
            for x, codes in chunks:
                w.write_chunk(x, None if codes is None else remap[codes])  # type: ignore[index]
                if bar is not None:
                    bar.advance(x.shape[0])
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - t0
    log.info("generated %d cells into %s in %.2f s (%s)", plan.n_total, out_path, seconds, gen.active_provider)
    return {
        "n_cells": plan.n_total,
        "out": str(out_path),
        "provider": gen.active_provider,
        "model_uri": uri,
        "model_version": version,
        "seconds": seconds,
    }


class _Bar:
    """A rich progress bar over cells (rich comes with typer); imported only when asked for."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),  # stdout stays clean for the CLI's summary
        )
        self._task = self._progress.add_task("cells", total=total)
        self._progress.start()

    def advance(self, k: int) -> None:
        self._progress.advance(self._task, k)

    def stop(self) -> None:
        self._progress.stop()


def _progress(total: int) -> _Bar:
    return _Bar(total)


def generate_array(
    model: str | os.PathLike[str] | Bundle | Generator,
    n: int | None = None,
    label: str | None = None,
    per_label: str | Mapping[str, int] | None = None,
    sampler: str = "gmm",
    seed: int = 1,
    provider: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    output_space: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The same cells as `generate_to_file` (same arguments, same seed -> same values), in memory.

    Returns x (n, G) float32 and the label names (n,) as an object array, or None for a VAE.
    """
    gen, plan, _, _ = _prepare(model, n, label, per_label, sampler, seed, provider, batch_size, threads, output_space)
    x = np.empty((plan.n_total, gen.bundle.n_genes), dtype=np.float32)
    start = 0
    for chunk, _codes in gen.run_plan(plan, reuse_buffers=True):
        x[start : start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
    labels = None
    if plan.codes is not None:
        labels = np.asarray(gen.bundle.labels, dtype=object)[plan.codes]
    return x, labels
