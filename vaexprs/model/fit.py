"""fit_vae and gen_exprs: the VAExprs-compatible Python API (the torch side).

    result = fit_vae(adata, "cell_type", hidden=(512,), epochs=100, patience=10)   # a CVAE (labels given)
    gen = gen_exprs(result, num_samples=300, labels={"group2": 300}, seed=1)
    gen.x_gen, gen.y_gen, gen.x_train, gen.y_train, gen.latent; gen.to_anndata()

As in VAExprs, fit_vae learns the data and gen_exprs draws latents from a BIC-selected Gaussian mixture over
the training cells' latent means (per label for a CVAE), decodes and de-scales. fit_vae's keywords are the
fields of `ModelConfig`, `TrainConfig` and `DataConfig` (vaexprs.config): their names, defaults and help are
declared there once. gen_exprs runs the same generation loop as the onnxruntime generator, with the torch
decoder: the same request and seed give the same cells up to float rounding.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from vaexprs.bundle.heads import HEADS, LibrarySize
from vaexprs.bundle.schema import MAX_ONNX_BYTES
from vaexprs.config import FIT_CONFIGS, DataConfig, ModelConfig, TrainConfig, config_defaults, split_options
from vaexprs.data.backed import is_on_disk, sample_rows, subset_rows
from vaexprs.data.io import as_matrix, cell_names, is_data_frame
from vaexprs.data.preprocess import (
    Preprocessor,
    apply_normalization,
    centred_rows,
    check_counts,
    library_size,
    plausible_maxima,
    unlogged_totals_hint,
    value_summary,
)
from vaexprs.errors import InputError, OptionError, examples
from vaexprs.generate.loop import iter_blocks, one_hot
from vaexprs.generate.request import plan_generation, request_from
from vaexprs.model.result import GeneratedCells, VAEResult

log = logging.getLogger("vaexprs")

DATA_FIELDS = ("n_genes", "n_labels")  # ModelConfig fields the data decides, not the caller
REFERENCE_CELLS = 10_000  # real cells a result trained from disk keeps in memory, for plots and evaluation


@dataclass
class TrainingData:
    """Validated cells split into training and validation sets (raw values: each head preprocesses its own)."""

    matrix: Any  # (N, G) dense or sparse
    genes: list[str]
    labels: np.ndarray | None
    val_matrix: Any = None
    val_labels: np.ndarray | None = None
    source: dict[str, Any] | None = None  # the file's path and sha256, when read by read_expression
    names: np.ndarray | None = None  # the training cells' names (an AnnData's obs_names), None for a matrix

    @property
    def conditional(self) -> bool:
        return self.labels is not None


def split_validation(n: int, val_split: float, labels: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation rows, stratified per label; every label keeps at least one training cell."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == v) for v in np.unique(labels)]
    val = []
    for rows in groups:
        k = round(len(rows) * val_split)
        val.append(rng.permutation(rows)[: min(k, len(rows) - 1)])
    val_rows = np.sort(np.concatenate(val)) if val else np.array([], dtype=int)
    return np.setdiff1d(np.arange(n), val_rows), val_rows


def prepare_data(
    x_train: Any, y_train: Any, x_val: Any, y_val: Any, data: DataConfig, train: TrainConfig
) -> TrainingData:
    """Read the matrices and labels, check them, and hold out validation cells (explicit, or val_split)."""
    matrix, genes, labels = as_matrix(x_train, y_train, data.layer)
    names = cell_names(x_train)
    if matrix.shape[0] < 2:
        raise InputError("one cell cannot be learnt: a model of a distribution needs at least 2 cells")
    if labels is not None:
        values, counts = np.unique(labels, return_counts=True)
        lonely = [str(v) for v, c in zip(values, counts) if c < 2]
        if lonely:
            raise InputError(
                f"label(s) with a single cell cannot be learnt: {examples(lonely)}; drop those cells or merge the "
                "label into another"
            )
    uns = getattr(x_train, "uns", None)
    source = dict(uns.get("vaexprs_source", {})) if uns is not None and "vaexprs_source" in uns else None
    if x_val is not None:
        val_matrix, val_genes, val_labels = as_matrix(x_val, y_val, data.layer)
        if val_matrix.shape[1] != matrix.shape[1]:
            raise InputError(f"x_val has {val_matrix.shape[1]} genes but x_train has {matrix.shape[1]}")
        # an AnnData's or a DataFrame's genes are names; a matrix's are positions
        named = all(hasattr(v, "var_names") or is_data_frame(v) for v in (x_train, x_val))
        if named and val_genes != genes:
            first = next(v for v, t in zip(val_genes, genes, strict=True) if v != t)
            what = "x_train's genes in another order" if set(val_genes) == set(genes) else "other genes than x_train"
            raise InputError(f"x_val has {what} (first: {first!r}); pass x_val[:, x_train.var_names]")
        if labels is not None and val_labels is None:
            raise OptionError("y_val", "is needed with x_val when training a CVAE")
        return TrainingData(matrix, genes, labels, val_matrix, val_labels, source, names)
    if train.val_split > 0:
        train_rows, val_rows = split_validation(matrix.shape[0], train.val_split, labels, train.seed)
        return TrainingData(
            subset_rows(matrix, train_rows), genes, None if labels is None else labels[train_rows],
            subset_rows(matrix, val_rows), None if labels is None else labels[val_rows], source,
            None if names is None else names[train_rows],
        )  # fmt: skip
    return TrainingData(matrix, genes, labels, source=source, names=names)


def in_memory_reference(
    x: Any, labels: np.ndarray | None, seed: int, source: Any = None, names: np.ndarray | None = None
) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """The cells a result keeps for plots and evaluation: all of them in memory, or a seeded sample of
    REFERENCE_CELLS read from disk (the result of training out of core must not hold the data set). Cells in
    memory are copied where they are still the caller's `source` array (normalize=none hands it through): the
    result must not change when the caller normalises its AnnData in place, nor the caller's data when
    someone edits result.x_train. Labels and `names` follow the cells."""
    if x is None:
        return x, labels, names
    if not is_on_disk(x):
        return (x.copy() if source is not None and _may_share(x, source) else x), labels, names
    rows = sample_rows(x.shape[0], REFERENCE_CELLS, seed)
    return x[rows], None if labels is None else np.asarray(labels)[rows], None if names is None else names[rows]


def _may_share(a: Any, b: Any) -> bool:
    """Whether two matrices (numpy or scipy.sparse) may use the same memory."""

    def buffers(m: Any) -> list[np.ndarray]:
        return [m.data] if hasattr(m, "tocsr") else [np.asarray(m)]

    return any(np.may_share_memory(p, q) for p in buffers(a) for q in buffers(b))


def fit_head(
    data: TrainingData,
    model_options: Mapping[str, Any],
    train: TrainConfig,
    data_config: DataConfig,
    callbacks: Sequence[Any] = (),
    progress: bool | None = None,
    what: str = "training",
    candidate: bool = False,
) -> VAEResult:
    """Train one model (one likelihood head) on prepared data: preprocessing, network, loop, latent sampler.
    `candidate`: a selection candidate, whose warnings about its data subset are the final model's to give."""
    import torch

    from vaexprs.model.loop import Batches, encode_means, fit
    from vaexprs.model.mixture import fit_latent_sampler
    from vaexprs.model.network import VAE

    likelihood = model_options["likelihood"]
    head = HEADS[likelihood]
    matrix, val_matrix = data.matrix, data.val_matrix
    train = train.with_beta_for(likelihood).resolved(matrix.shape[0])
    if head.count_input:
        matrix = check_counts(matrix, likelihood, data_config.round_counts)
        if val_matrix is not None:
            val_matrix = check_counts(val_matrix, likelihood, data_config.round_counts)
    preprocessor, normalized, note = Preprocessor.fit(
        matrix, data.genes, data.labels, normalize="none" if head.count_input else data_config.normalize,
        scale=head.scaled_input,
    )  # fmt: skip
    if head.count_input:
        note = f"likelihood {likelihood} models raw counts: no normalisation, no scaling"
    elif head.input == "log":
        summary = value_summary(normalized)
        low = summary.minimum if summary.size else 0.0
        if low < 0:
            raise OptionError(
                "likelihood",
                f"{likelihood!r} needs non-negative normalised values (0 = not detected); after "
                f"normalize={preprocessor.normalize} the minimum is {low:.4g}",
            )
    log.info(note)
    if head.scaled_log and preprocessor.normalize != "none":
        # log_hurdle and log_mixture log small linear values (fractions, ratios) themselves; auto tries them only
        # where the values stay as they are, but a name given on counts or large values would log a log
        log.warning(
            "likelihood=%s models log2(x / s + 1) of linear values, but normalize=%s has logged these values "
            "already: it models a log of logs. For counts use hurdle, nb or zinb; for linear values that should "
            "stay as they are give normalize='none'",
            likelihood, preprocessor.normalize,
        )  # fmt: skip
    n_labels = preprocessor.labels.n_classes if preprocessor.labels is not None else 0
    codes = preprocessor.labels.transform(data.labels) if data.labels is not None else None
    train_batches = Batches(normalized, codes, preprocessor, n_labels)
    val_batches = val_normalized = None
    if val_matrix is not None:
        val_codes = preprocessor.labels.transform(data.val_labels) if n_labels else None
        val_normalized = preprocessor.normalize_matrix(val_matrix)
        val_batches = Batches(val_normalized, val_codes, preprocessor, n_labels)

    model_config = ModelConfig(**model_options, n_genes=len(data.genes), n_labels=n_labels)
    torch.manual_seed(train.seed)
    model = VAE(model_config)
    model.head.start_from_data(normalized, codes, n_labels, train.seed)
    model.start_encoder_input(normalized, train.seed)
    data_info = {
        "n_cells": int(matrix.shape[0]),
        "n_genes": len(data.genes),
        "n_val_cells": int(val_matrix.shape[0]) if val_matrix is not None else 0,
        "label_counts": preprocessor.label_counts,
        "normalize": preprocessor.normalize,
        **({"on_disk": True, "reference_cells": REFERENCE_CELLS} if is_on_disk(matrix) else {}),
        **({"path": data.source.get("path"), "sha256": data.source.get("sha256")} if data.source else {}),
    }

    centred = not head.count_input and centred_rows(normalized)  # CLR-like values: generated cells centred too

    def assemble(state: Any) -> VAEResult:
        """The result from the model's current weights: encode the training cells, fit the latent sampler."""
        model.cpu()
        latent = encode_means(model, train_batches)
        classes = preprocessor.labels.classes if n_labels else ()
        sampler = fit_latent_sampler(latent, codes, classes, seed=train.seed, warn=not candidate)
        library = LibrarySize.fit(library_size(matrix), codes, n_labels) if head.count_input else None
        cap = plausible_maxima(matrix if head.count_input else normalized, head.count_input) if head.sampled else None
        x_train, y_train, names = in_memory_reference(normalized, data.labels, train.seed, matrix, data.names)
        x_val, y_val, _ = in_memory_reference(val_normalized, data.val_labels, train.seed, source=val_matrix)
        return VAEResult(
            model=model, model_config=model_config, train_config=train, data_config=data_config,
            preprocessor=preprocessor, sampler=sampler, history=state.history, best_epoch=state.best_epoch,
            normalize_note=note, x_train=x_train, y_train=y_train, latent=latent, data_info=data_info,
            device=state.device, library_size=library, x_val=x_val, y_val=y_val, value_cap=cap, cell_names=names,
            row_centred=centred,
        )  # fmt: skip

    def partial(state: Any) -> VAEResult:
        """For an interrupted run: the best weights so far, as a complete (loadable, exportable) result."""
        if state.best_state_dict is not None:
            model.load_state_dict(state.best_state_dict)
        model.eval()
        return assemble(state)

    state = fit(
        model, train_batches, val_batches, train, callbacks, partial_result=partial, progress=progress, what=what
    )
    return assemble(state)


def fit_vae(
    x_train: Any,
    y_train: Sequence[Any] | str | None = None,
    x_val: Any = None,
    y_val: Sequence[Any] | str | None = None,
    *,
    callbacks: Sequence[Any] = (),
    progress: bool | None = None,
    **options: Any,
) -> VAEResult:
    """Train a VAE (no labels) or a CVAE (labels given) on cells x genes data; see the parameters below."""
    model_opts, train_opts, data_opts = split_options(options, *FIT_CONFIGS, where=" of fit_vae")
    for name in DATA_FIELDS:
        if name in model_opts:
            raise OptionError(name, "comes from the data; it is not an option of fit_vae")
    train = TrainConfig(**train_opts)
    data_config = DataConfig(**data_opts)
    model_options = {**{k: v for k, v in config_defaults(ModelConfig).items() if k not in DATA_FIELDS}, **model_opts}
    ModelConfig(**model_options)  # every option checked before the data is read
    train = train.with_beta_for(model_options["likelihood"])
    data = prepare_data(x_train, y_train, x_val, y_val, data_config, train)
    agree_across_ranks(data, train)
    n_labels = 0 if data.labels is None else len(np.unique(data.labels))
    check_model_size(len(data.genes), n_labels, model_options["latent_dim"], tuple(model_options["hidden"]))
    hint = unlogged_totals_hint(data.matrix) if data_config.normalize == "auto" else None
    selection: list[dict[str, Any]] = []
    if model_options["likelihood"] == "auto":
        from vaexprs.model.selection import apply_choice, select_likelihood

        choice, selection = select_likelihood(data, model_options, train, data_config, progress)
        model_options, train = apply_choice(model_options, train, choice)
    if hint and not HEADS[model_options["likelihood"]].scaled_log:  # log_hurdle, log_mixture model them logged
        log.warning(hint)
    try:
        result = fit_head(data, model_options, train, data_config, callbacks, progress)
    except FloatingPointError as exc:
        if not selection:
            raise
        result = _refit_runner_up(data, model_options, train, data_config, callbacks, progress, selection, exc)
    result.selection = selection
    return result


def agree_across_ranks(data: TrainingData, train: TrainConfig) -> None:
    """Under torchrun, every rank must have read the same data (a no-op in a single process)."""
    from vaexprs.model import ddp

    if ddp.world()[1] > 1:
        from vaexprs.model.loop import choose_device

        fingerprint = ddp.data_fingerprint(data.matrix.shape[0], data.genes, data.labels, data.source)
        ddp.agree(fingerprint, choose_device(train.device))


def _refit_runner_up(
    data: TrainingData,
    model_options: dict[str, Any],
    train: TrainConfig,
    data_config: DataConfig,
    callbacks: Sequence[Any],
    progress: bool | None,
    selection: list[dict[str, Any]],
    exc: FloatingPointError,
) -> VAEResult:
    """The selected model diverged on all cells (its candidate had not, on fewer cells and epochs): train the
    best other candidate instead, and say so in the log and in the selection table."""
    from vaexprs.model.selection import apply_choice, runner_up

    failed = next(r for r in selection if r.get("chosen"))
    fallback = runner_up(selection, failed)
    if fallback is None:
        raise exc
    why = str(exc).split(":")[0]  # "loss became non-finite at epoch N"
    log.warning("likelihood=auto: %s diverged on all cells (%s); training %s instead", failed["candidate"], why,
                fallback["candidate"])  # fmt: skip
    failed.update(chosen=False, final_diverged=why)
    fallback["chosen"] = True
    options, train = apply_choice(model_options, train, fallback)
    return fit_head(data, options, train, data_config, callbacks, progress)


def _fit_signature() -> inspect.Signature:
    """fit_vae's signature with every config field as a keyword (what help(), IDEs and notebooks show)."""
    base = inspect.signature(fit_vae)
    kept = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = []
    for cls in FIT_CONFIGS:
        defaults = config_defaults(cls)
        hints = {f.name: f.type for f in fields(cls)}
        for f in fields(cls):
            if f.name in DATA_FIELDS:
                continue
            extra.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=defaults[f.name], annotation=hints[f.name]
                )
            )
    return base.replace(parameters=[*kept, *extra])


def _fit_doc() -> str:
    """numpydoc Parameters for fit_vae, from the configs' help texts."""
    lines = [
        "Train a VAE (no labels) or a CVAE (labels given) on cells x genes data.",
        "",
        "Parameters",
        "----------",
        "x_train : AnnData, pandas DataFrame, numpy array or scipy.sparse matrix",
        "    Cells x genes (AnnData: X, or `layer`; a DataFrame: its columns are the genes, its index the cells).",
        "    A backed AnnData (`anndata.read_h5ad(path, backed='r')`)",
        "    trains out of core: X stays on disk, statistics are streamed, and the result keeps a sample of",
        "    REFERENCE_CELLS cells (10,000) as x_train/x_val for plots and evaluation.",
        "y_train : sequence or str, optional",
        "    One label per cell (a pandas Series is aligned on the cells' names), or an obs column name of",
        "    x_train (a column of a DataFrame). Labels make a CVAE.",
        "x_val, y_val : optional",
        "    Explicit validation cells (scaled with the training scaler), instead of `val_split`.",
        "callbacks : sequence of vaexprs.model.loop.Callback",
        "    Hooks into the training loop (MLflow logging plugs in here).",
        "progress : bool, optional",
        "    A progress bar over epochs; None = where someone watches (a terminal or a notebook).",
    ]
    for cls in FIT_CONFIGS:
        defaults = config_defaults(cls)
        for f in fields(cls):
            if f.name not in DATA_FIELDS:
                lines += [f"{f.name} : {f.type}, default {defaults[f.name]!r}", f"    {f.metadata['help']}"]
    lines += ["", "Returns", "-------", "VAEResult", "    The model, its preprocessing, history and latent sampler."]
    return "\n".join(lines)


fit_vae.__signature__ = _fit_signature()  # type: ignore[attr-defined]
fit_vae.__doc__ = _fit_doc()


class TorchDecoder:
    """The decode function of the generation loop, backed by the trained torch decoder (de-scaling folded in)."""

    def __init__(self, result: VAEResult) -> None:
        self.module = result.output_decoder()
        self.names = tuple(self.module.output_names)
        self.n_labels = result.model_config.n_labels

    def __call__(self, z: np.ndarray, codes: np.ndarray | None) -> dict[str, np.ndarray]:
        import torch

        onehot = one_hot(codes, self.n_labels)
        with torch.inference_mode():
            args = (torch.from_numpy(z),) + (() if onehot is None else (torch.from_numpy(onehot),))
            values = self.module(*args)
        return {name: value.numpy() for name, value in zip(self.names, values)}


HEAD_LAYERS_AT_MOST = 4  # the widest head (log_mixture) maps the first hidden layer to the genes 4 times
BYTES_PER_TRAINED_PARAMETER = 16  # float32 weight, gradient and Adam's two moments


def check_model_size(n_genes: int, n_labels: int, latent_dim: int, hidden: tuple[int, ...]) -> None:
    """Refuse, before any training, a network whose decoder cannot be exported (ONNX's 2 GiB per file) or whose
    training would not fit in memory: each --hidden layer is bounded, but 8 layers of 16,384 on 33,000 genes
    reached 14 GB of weights and died in torch's allocator (or in the exporter, after training)."""
    layers = list(hidden)
    encoder = sum((a + 1) * b for a, b in zip([n_genes + n_labels, *layers], [*layers, 2 * latent_dim]))
    widths = [latent_dim + n_labels, *reversed(layers)]
    decoder = sum((a + 1) * b for a, b in zip(widths, widths[1:])) + HEAD_LAYERS_AT_MOST * (layers[0] + 1) * n_genes
    if 4 * decoder > MAX_ONNX_BYTES:  # the decoder's weights must fit in one .onnx file
        raise OptionError(
            "hidden",
            f"{','.join(map(str, layers))} on {n_genes} genes gives a decoder of about {4 * decoder / 2**30:.1f} GiB, "
            f"more than the {MAX_ONNX_BYTES >> 30} GiB an ONNX file holds; use smaller layers",
        )
    needed, limit = BYTES_PER_TRAINED_PARAMETER * (encoder + decoder), memory_limit()
    if needed > limit:
        raise OptionError(
            "hidden",
            f"{','.join(map(str, layers))} on {n_genes} genes needs about {needed / 2**30:.1f} GiB to train (weights, "
            f"gradients, Adam), more than half of this machine's {2 * limit / 2**30:.0f} GiB; use smaller layers",
        )


DEFAULT_NUM_SAMPLES = 300  # VAExprs' vignette generates 300 cells
# a generation request's options as gen_exprs names them (labels is a name, or {label: count})
_GEN_EXPRS_OPTIONS = {"n": "num_samples", "label": "labels", "per_label": "labels"}


def _gen_exprs_ref(option: str) -> str:
    """An option named inside a message, as gen_exprs' caller wrote it."""
    return "labels={label: count}" if option == "per_label" else _GEN_EXPRS_OPTIONS.get(option, option)


def memory_limit() -> int:
    """Bytes gen_exprs may hold: half of this machine's memory (8 GiB where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def check_in_memory(n_cells: int, values_per_cell: int) -> None:
    """Refuse, before any work, cells that would not fit in memory (gen_exprs returns them as one array); a
    file takes any number, block by block."""
    needed, limit = 4 * n_cells * values_per_cell, memory_limit()
    if needed > limit:
        raise OptionError(
            "num_samples",
            f"of {n_cells} cells would hold {needed / 2**30:.1f} GiB in memory, more than half of this machine's "
            f"{2 * limit / 2**30:.0f} GiB; write them to a file block by block instead (vaexprs.generate_to_file "
            "or `vaexprs generate`), or ask for fewer",
        )


def gen_exprs(
    result: VAEResult,
    num_samples: int | None = None,
    labels: str | Mapping[str, int] | None = None,
    sampler: str = "gmm",
    seed: int = 1,
    batch_size: int | None = None,
    output_space: str | None = None,
    temperature: float = 1.0,
) -> GeneratedCells:
    """Generate cells: labels None = training proportions; a label name; or {label: count, ...}.

    num_samples: how many cells (300 where not given); with {label: count} the counts say it, and a num_samples
    that disagrees with their sum is refused rather than silently ignored.

    sampler: gmm (the mixture over training latents, VAExprs' way) or prior (N(0, I)).
    output_space: None = the head's default: sampled counts for nb/zinb, sampled log values for hurdle, the
    decoder mean for bce/mse; `lognorm` (nb/zinb: sampled counts, log-normalised with the training mean
    library size); `mean` (the expected value, no sampling noise: VAExprs' behaviour).
    batch_size: cells per block; the same seed and block size give the same cells as `vaexprs generate`.
    temperature: scale of the latent draws around their label's components (0 to 2). 1 (the default) samples
    the fitted distribution; below 1 gives more typical, less diverse cells: 0.6 raised a random forest's gain
    from same-size augmentation on most sets tried, at some cost in realism (README, "Realism").
    """
    spec = result.spec
    if num_samples is None and not isinstance(labels, Mapping):  # with {label: count} the counts say how many
        num_samples = DEFAULT_NUM_SAMPLES
    try:
        request = request_from(
            num_samples, labels, sampler=sampler, seed=seed, batch_size=batch_size, output_space=output_space,
            temperature=temperature,
        )  # fmt: skip
        plan = plan_generation(spec, request)
    except OptionError as exc:  # worded with gen_exprs' own argument names
        raise OptionError(_GEN_EXPRS_OPTIONS.get(exc.option, exc.option), exc.worded_detail(_gen_exprs_ref)) from None
    check_in_memory(plan.n_total, spec.n_genes + spec.latent_dim)
    # filled block by block: the cells are held once, not once in blocks and again joined
    x_gen = np.empty((plan.n_total, spec.n_genes), dtype=np.float32)
    latent = np.empty((plan.n_total, spec.latent_dim), dtype=np.float32)
    codes = np.empty(plan.n_total, dtype=np.int64) if result.labels else None
    for block in iter_blocks(spec, plan, TorchDecoder(result)):
        rows = slice(block.start, block.start + block.x.shape[0])
        x_gen[rows], latent[rows] = block.x, block.latent
        if codes is not None:
            codes[rows] = block.codes
    y_gen = None if codes is None else result.preprocessor.labels.inverse_transform(codes)
    x_train = result.x_train
    if x_train is not None and HEADS[spec.likelihood].count_input and plan.space.value_space == "lognorm":
        x_train = apply_normalization(x_train, "lognorm")  # the real cells in the generated cells' space
    return GeneratedCells(
        x_gen=x_gen,
        y_gen=y_gen,
        x_train=x_train,
        y_train=result.y_train,
        cell_names=result.cell_names,
        latent=latent,
        genes=result.genes,
        output_space=plan.space.name,
        seed=seed,
        sampler=sampler,
        value_space=plan.space.value_space,
        sampled=plan.space.sampled,
        temperature=plan.temperature,
    )
