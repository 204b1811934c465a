"""Generation end to end for the CLI, the MLflow pyfunc and Python: model -> bundle -> blocks of cells -> file.

    summary = generate_to_file("models:/vaexprs@champion", "out.h5ad", n=1_000_000, seed=1)
    summary = generate_to_file("bundle_dir", "cells.zarr", n=10_000_000, dask="local:4")   # blocks on Dask
    x, labels = generate_array("bundle_dir", per_label={"group1": 100, "group2": 200})
    x, labels = generate_array(OnnxDecoder(bundle), GenerationRequest(n=50))    # a warm session, reused

Every check (request, output path, model, labels, output space) runs before a session starts or a file is
created, so bad input never leaves a partial file. Only numpy, onnxruntime, h5py/anndata and (for registry
URIs) the MLflow client are imported, each when first needed; zarr for a .zarr output, and Dask only with
`dask=` (vaexprs.generate.distributed).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle.heads import head_facts
from vaexprs.bundle.schema import Bundle, load_bundle
from vaexprs.errors import OptionError
from vaexprs.generate.engine import OnnxDecoder
from vaexprs.generate.loop import iter_blocks
from vaexprs.generate.request import GenerationRequest, Plan, plan_generation
from vaexprs.generate.writers import STORE_SUFFIXES, check_output, check_store_chunks, open_writer
from vaexprs.progress import ProgressBar

log = logging.getLogger("vaexprs")

Model = str | os.PathLike[str] | Bundle | OnnxDecoder


@dataclass
class Source:
    """A decoder ready to run and where it came from."""

    decoder: OnnxDecoder
    uri: str
    version: str | None

    @property
    def bundle(self) -> Bundle:
        return self.decoder.bundle


def as_request(request: GenerationRequest | None, fields: dict[str, Any]) -> GenerationRequest:
    """A request object, or one built (and checked) from keyword fields; not both."""
    if request is not None:
        if fields:
            raise TypeError("give a GenerationRequest or its fields as keywords, not both")
        return request
    return GenerationRequest(**fields)


@contextlib.contextmanager
def opened_bundle(model: Model) -> Iterator[tuple[Bundle, str, str | None]]:
    """(bundle, uri, registry version) of MODEL, loaded and verified; a download is removed afterwards."""
    if isinstance(model, OnnxDecoder):
        yield model.bundle, str(model.bundle.path), None
        return
    if isinstance(model, Bundle):
        yield model, str(model.path), None
        return
    from vaexprs.registry.models import resolved_bundle

    with resolved_bundle(model) as resolved:
        yield load_bundle(resolved.folder), resolved.uri, resolved.version


@contextlib.contextmanager
def open_source(
    model: Model, request: GenerationRequest, provider: str = "auto", threads: int | None = None
) -> Iterator[tuple[Source, Plan]]:
    """Resolve MODEL, check the request against it, then start its session (downloads are removed afterwards)."""
    if isinstance(model, OnnxDecoder):  # a warm session (e.g. the MLflow pyfunc's): provider/threads are its own
        yield Source(model, str(model.bundle.path), None), plan_generation(model.bundle.spec, request)
        return
    with opened_bundle(model) as (bundle, uri, version):
        plan = plan_generation(bundle.spec, request)  # the whole request is checked before a session starts
        yield Source(OnnxDecoder(bundle, provider, threads), uri, version), plan


def provenance(source: Source, plan: Plan) -> dict[str, Any]:
    """uns['vaexprs'] of a generated file: the model, the request, and what the values mean."""
    return describe(source.bundle, source.uri, source.version, source.decoder.active_provider, plan)


def describe(bundle: Bundle, uri: str, version: str | None, provider: str, plan: Plan) -> dict[str, Any]:
    """uns['vaexprs'] for cells of `plan` made from `bundle` (loaded from `uri`) with onnxruntime's `provider`."""
    from vaexprs import __version__

    request = plan.request
    meta = {
        "model_uri": uri,
        "model_version": version,
        "seed": request.seed,
        "sampler": request.sampler,
        "temperature": request.temperature,
        "provider": provider,
        "output_space": plan.space.name,
        "value_space": plan.space.value_space,
        "sampled": plan.space.sampled,
        # nb/zinb: the training mean library size, the denominator of lognorm size factors for these cells
        "train_mean_library": bundle.library_size.train_mean if bundle.library_size is not None else None,
        "likelihood": bundle.likelihood,
        "model_type": bundle.model_type,
        "vaexprs_version": __version__,
        "bundle_vaexprs_version": bundle.vaexprs_version,
        "n_cells": plan.n_total,
        "batch_size": plan.batch_size,
        "label": request.label,
        "per_label": request.per_label
        if isinstance(request.per_label, str) or request.per_label is None
        else ",".join(f"{k}={v}" for k, v in request.per_label.items()),
    }
    return {k: v for k, v in meta.items() if v is not None}


def file_uns(meta: dict[str, Any]) -> dict[str, Any]:
    """What a generated file's uns holds: our provenance, and scanpy's `log1p` base when X is log values."""
    uns: dict[str, Any] = {"vaexprs": meta}
    if meta.get("value_space") in ("lognorm", "log"):
        uns["log1p"] = {"base": 2.0}  # log2(x + 1) (scater's convention): tells scanpy not to log again
    return uns


class BackgroundWrites:
    """Write blocks on a second thread while the next ones are made: onnxruntime, numpy and h5py release the
    GIL, so decoding block k+1 overlaps writing block k. The queue holds at most DEPTH blocks (memory stays
    flat in n); a write error stops the producer at its next block and is raised in the caller's thread."""

    DEPTH = 2

    def __init__(self, writer: Any) -> None:
        import queue
        import threading

        self.writer = writer
        self.queue: Any = queue.Queue(maxsize=self.DEPTH)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vaexprs-writer", daemon=True)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:  # after an error, drain (so the producer never blocks) without writing
                try:
                    self.writer.write_chunk(*item)
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc

    def put(self, x: np.ndarray, codes: np.ndarray | None) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((x, codes))

    def __enter__(self) -> BackgroundWrites:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


# a CSR X stores a value and its column (8 bytes) for every non-zero, a dense X 4 bytes for every value: CSR is the
# smaller file only where at least half the values are exact zeros
SPARSE_ENOUGH = 0.5


def sparse_output(likelihood: str, plan: Plan, first: np.ndarray | None = None) -> bool:
    """Whether the cells go to a file as CSR: sampled cells of a head whose samples can be exact zeros, where at
    least SPARSE_ENOUGH of the `first` block's values are (a hurdle trained on dense values, array intensities or
    methylation ratios, draws few: its cells stay dense, as the data were)."""
    if not (plan.space.sampled and head_facts(likelihood).sparse_cells):
        return False
    return first is None or first.size == 0 or float(np.mean(first == 0)) >= SPARSE_ENOUGH


def generate_to_file(
    model: Model,
    out: str | os.PathLike[str],
    request: GenerationRequest | None = None,
    *,
    provider: str = "auto",
    threads: int | None = None,
    force: bool = False,
    progress: bool = False,
    dask: str | None = None,
    dense: bool = False,
    compression: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Generate cells into a .h5ad/.csv/.npy file or a .zarr store, block by block; returns a summary of the run.

    model: a bundle folder, a models:/ or runs:/ URI, a loaded Bundle, or an OnnxDecoder to reuse its session.
    request (or its fields as keywords: n, label, per_label, sampler, temperature, seed, batch_size,
    output_space): what to make. Bad input raises InputError before any file exists.
    dask: "local", "local:W" or "tcp://HOST:PORT" to make the blocks on a Dask cluster, written straight into
    the .zarr output (vaexprs.generate.distributed; needs vaexprs[dask]). The cells are the same either way.
    dense: write sampled cells (counts, or hurdle log values) to .h5ad or .zarr as a dense X; by default they are
    written as CSR where at least half the first block's values are exact zeros (SPARSE_ENOUGH: below that a
    CSR file is larger; decoder means and floor_hurdle's signed values are always dense). A .zarr made on Dask
    is always dense (its blocks finish in any order; a CSR X is appended in row order).
    compression: "gzip" or "lzf" for the .h5ad X (none by default: fastest); refused for other outputs and on Dask.
    """
    request = as_request(request, fields)
    if compression is not None and (dask is not None or Path(out).suffix.lower() != ".h5ad"):
        # Silently writing an uncompressed file would leave the user believing it was compressed.
        raise OptionError(
            "compression",
            f"applies to .h5ad output only (without {{dask}}); got {compression!r} for {str(out)!r}",
            ("dask",),
        )
    if dask is not None:
        from vaexprs.generate.distributed import generate_zarr

        return generate_zarr(
            model, out, request, dask, provider=provider, threads=threads, force=force, progress=progress
        )
    out_path = check_output(out, force)
    t0 = time.perf_counter()
    with open_source(model, request, provider, threads) as (source, plan):
        bundle = source.bundle
        check_output(out_path, force, with_labels=plan.categories is not None)
        if out_path.suffix.lower() in STORE_SUFFIXES:
            check_store_chunks(plan.n_total, plan.batch_size)
        positions = plan.category_positions(bundle.n_labels)
        meta = provenance(source, plan)
        bar = ProgressBar(plan.n_total, "generating", unit="cells") if progress else None
        try:
            blocks = iter_blocks(bundle.spec, plan, source.decoder)
            first = next(blocks, None)  # its zeros decide the layout of X
            sparse = not dense and sparse_output(bundle.likelihood, plan, None if first is None else first.x)
            with (
                open_writer(
                    out_path, bundle.genes, plan.n_total, labels=plan.categories, force=force,
                    uns=file_uns(meta), chunk_rows=plan.batch_size, compression=compression, sparse=sparse,
                ) as writer,
                BackgroundWrites(writer) as writes,
            ):  # fmt: skip
                for block in itertools.chain([first] if first is not None else [], blocks):
                    writes.put(block.x, None if block.codes is None else positions[block.codes])
                    if bar is not None:
                        bar.advance(block.x.shape[0])
        finally:
            if bar is not None:
                bar.stop()
    seconds = time.perf_counter() - t0
    log.info("generated %d cells into %s in %.2f s (%s)", plan.n_total, out_path, seconds, meta["provider"])
    return {
        "n_cells": plan.n_total,
        "out": str(out_path),
        "provider": meta["provider"],
        "model_uri": source.uri,
        "model_version": source.version,
        "seconds": seconds,
    }


def generate_array(
    model: Model,
    request: GenerationRequest | None = None,
    *,
    provider: str = "auto",
    threads: int | None = None,
    **fields: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The same cells as `generate_to_file` (same request, same values), in memory.

    Returns x (n, G) float32 and the label names (n,) as an object array, or None for a VAE.
    """
    request = as_request(request, fields)
    with open_source(model, request, provider, threads) as (source, plan):
        bundle = source.bundle
        x = np.empty((plan.n_total, bundle.n_genes), dtype=np.float32)
        labels = np.empty(plan.n_total, dtype=object) if bundle.is_conditional else None
        names = np.asarray(bundle.labels, dtype=object)
        for block in iter_blocks(bundle.spec, plan, source.decoder):
            x[block.start : block.start + block.x.shape[0]] = block.x
            if labels is not None:
                labels[block.start : block.start + block.x.shape[0]] = names[block.codes]
    return x, labels
