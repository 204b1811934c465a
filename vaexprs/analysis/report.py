"""`vaexprs evaluate REAL GEN`: read both files, bring them into one space, score, write JSON and plots.

Generated files carry what their values mean in uns['vaexprs']['output_space'] (lognorm, log, none, counts).
With `real_space="auto"`, raw real data (counts, or RPKM-like values) are normalised the same way before
scoring, so the comparison happens in the generated cells' space; counts are compared after lognorm.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vaexprs.errors import InputError
from vaexprs.files import exists_error, force_switch, refuse_inputs, require_output_folder, write_json_atomic

log = logging.getLogger("vaexprs")

REAL_SPACES = ("auto", "lognorm", "log", "none")
GENERATED_LABEL_KEY = "cell_type"  # the label column `vaexprs generate` writes
# cells read from one .h5ad: gene means and variances of a random 200,000 are those of millions to a fraction of
# a percent, and the pooled comparison uses at most 5,000 a side
MAX_EVALUATE_CELLS = 200_000


def _read(path: Path, label_key: str | None) -> Any:
    """A file evaluate scores. A .zarr store, and any file of more than MAX_EVALUATE_CELLS cells, as a seeded
    sample of at most that many, streamed from disk: evaluate's memory stays flat however many cells were
    generated (2 million took 5.2 GB read whole; anndata's backed mode still read all of obs; a 3 million-cell
    CSV of 16 genes took 1.7 GB)."""
    import tempfile

    from vaexprs.data.io import read_expression
    from vaexprs.data.sampled import TABLE_SUFFIXES, count_cells, read_sample, sample_table

    suffix = path.suffix.lower()
    if suffix == ".zarr" or (
        suffix == ".h5ad" and path.is_file() and _cells_or_none(path, count_cells) > MAX_EVALUATE_CELLS
    ):
        return read_sample(path, MAX_EVALUATE_CELLS, label_key or None)
    with tempfile.TemporaryDirectory(prefix="vaexprs-evaluate-") as folder:
        # a large table: a sample of it under the same name (messages name the file the user gave)
        sampled = sample_table(path, MAX_EVALUATE_CELLS, 0, Path(folder)) if suffix in TABLE_SUFFIXES else None
        # labels where the file has them (generate's CSV column, a .npy's .obs.csv); their absence is judged later
        return read_expression(sampled or path, label_key=label_key or None, require_label=False)


def _cells_or_none(path: Path, count: Any) -> int:
    """The file's cell count, or 0 where it cannot be read this way (read_expression then says what is wrong)."""
    try:
        return count(path)
    except InputError:
        return 0


def _read_generated(path: Path, label_key: str | None) -> Any:
    """GEN with its labels under `label_key`. `vaexprs generate` names its label column cell_type whatever the
    training data called it, so a model trained with --label-key stage is scored against its cell_type column."""
    other_key = bool(label_key) and label_key != GENERATED_LABEL_KEY
    try:
        gen = _read(path, label_key)
    except InputError:
        if not other_key:
            raise
        gen = _read(path, GENERATED_LABEL_KEY)  # a .csv's cell_type column is text, not a gene
    if other_key and label_key not in gen.obs and GENERATED_LABEL_KEY not in gen.obs and path.suffix == ".npy":
        gen = _read(path, GENERATED_LABEL_KEY)  # a .npy's labels: the cell_type column of NAME.obs.csv
    if label_key and label_key not in gen.obs and GENERATED_LABEL_KEY in gen.obs:
        gen.obs[label_key] = gen.obs[GENERATED_LABEL_KEY]
    return gen


def _refuse_unnamed_genes(path: Path, adata: Any, other: Any) -> None:
    """A .npy holds no gene names (they read as gene1..); comparing it with named genes would fail as 'gene sets
    differ', and taking the genes by position could pair the wrong ones."""
    if path.suffix.lower() != ".npy" or list(adata.var_names) == list(other.var_names):
        return
    raise InputError(
        f"{path.name} is a .npy, which holds no gene names; write the cells as .h5ad or .csv (named genes) to "
        "compare them"
    )


def _meta(adata: Any) -> dict[str, Any]:
    meta = adata.uns.get("vaexprs", {})
    return meta if isinstance(meta, dict) else {}


def align_spaces(real: Any, gen: Any, real_space: str = "auto") -> tuple[Any, Any, str]:
    """Return (real, gen) matrices' AnnData in one space and a note saying which."""
    from vaexprs.data.preprocess import apply_normalization, choose_normalization, looks_like_counts

    if real_space not in REAL_SPACES:
        raise InputError(f"--real-space must be one of {', '.join(REAL_SPACES)}; got {real_space!r}")
    meta = _meta(gen)
    gen_space = meta.get("value_space") or meta.get("output_space")
    if gen_space == "counts":
        # counts (sampled, or nb/zinb means) are compared after lognorm, with the training mean library size
        # as scater's reference, so the result does not depend on how many cells were generated
        mean_library = meta.get("train_mean_library")
        gen = gen.copy()
        gen.X = apply_normalization(gen.X, "lognorm", mean_library=float(mean_library) if mean_library else None)
        gen_space = "lognorm"
    method = real_space
    if real_space == "auto":
        raw_method, _ = choose_normalization(real.X, "auto")
        looks_raw = looks_like_counts(real.X) or raw_method == "log"
        if gen_space is None and raw_method != "none":
            gen, gen_space = _guess_gen_space(gen, raw_method)
        method = gen_space if gen_space in ("lognorm", "log") and looks_raw else "none"
    if method != "none":
        real = real.copy()
        real.X = apply_normalization(real.X, method)
    return real, gen, f"real cells compared in {method if method != 'none' else 'their own'} space"


def _guess_gen_space(gen: Any, raw_method: str) -> tuple[Any, str | None]:
    """A generated .csv/.npy carries no value space. Where the real cells are raw, take the space training puts
    such cells in (`raw_method`, normalize=auto's choice): generated values that look normalised are in it, and
    generated values as raw as the real ones are normalised the same way. Without this, raw RPKM was compared
    with log values (AUC 1.0)."""
    from vaexprs.data.preprocess import apply_normalization, choose_normalization

    gen_method, _ = choose_normalization(gen.X, "auto")
    if gen_method == "none":
        log.warning(
            "the generated cells carry no value space (a .csv or .npy has none) and look normalised; the real "
            "cells are compared after %s, the space training puts them in (--real-space chooses another)",
            raw_method,
        )
        return gen, raw_method
    if gen_method == raw_method:
        gen = gen.copy()
        gen.X = apply_normalization(gen.X, raw_method)
        return gen, raw_method
    return gen, None


def check_plot_folder(folder: Path, force: bool) -> None:
    """Refuse, before any work, a --plots folder that is a file, and plots that exist there without `force`."""
    from vaexprs.analysis.plots import COMPARISON_PLOTS

    if folder.exists() and not folder.is_dir():
        raise InputError(f"--plots {folder} is a file, not a folder")
    existing = [folder / f"{name}.png" for name in COMPARISON_PLOTS if (folder / f"{name}.png").exists()]
    if len(existing) == 1 and not force:
        raise exists_error(existing[0])
    if existing and not force:  # every file the user would lose, not the first alone
        raise InputError(f"{' and '.join(map(str, existing))} exist; pass {force_switch()} to overwrite them")


def evaluate_files(
    real_path: str | Path,
    gen_path: str | Path,
    *,
    label_key: str | None = "cell_type",
    real_space: str = "auto",
    output: str | Path | None = None,
    plots: str | Path | None = None,
    seed: int = 0,
    force: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Score GEN against REAL; write metrics JSON (atomically) and plots; return the table and the metrics."""
    from vaexprs.analysis.metrics import evaluate_anndata, format_table

    real_path, gen_path = Path(real_path), Path(gen_path)
    if output is not None:
        output = Path(output)
        require_output_folder(output.parent)
        refuse_inputs(output, (real_path, gen_path))
        if output.exists() and not force:
            raise exists_error(output)
    if plots is not None:
        check_plot_folder(Path(plots), force)
    real = _read(real_path, label_key)
    gen = _read_generated(gen_path, label_key)
    _refuse_unnamed_genes(gen_path, gen, real)
    _refuse_unnamed_genes(real_path, real, gen)
    if label_key and (label_key not in real.obs or label_key not in gen.obs):
        side = "REAL" if label_key not in real.obs else "GEN"
        raise InputError(f"label column {label_key!r} not found in {side}; pass --label-key '' for unlabelled data")
    real, gen, note = align_spaces(real, gen, real_space)
    log.info(note)
    metrics = evaluate_anndata(real, gen, label_key=label_key, seed=seed)
    metrics["space_note"] = note
    if output is not None:
        write_json_atomic(output, metrics)
    if plots is not None:
        from vaexprs.analysis.plots import save_comparison_plots

        Path(plots).mkdir(parents=True, exist_ok=True)
        genes = [str(g) for g in real.var_names]
        gen = gen[:, genes]
        save_comparison_plots(
            real.X,
            real.obs[label_key].astype(str).to_numpy() if label_key else None,
            gen.X,
            gen.obs[label_key].astype(str).to_numpy() if label_key else None,
            genes,
            plots,
        )
    return format_table(metrics), metrics
