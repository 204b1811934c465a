"""Preprocessing between raw expression and what the network sees, in numpy only.

    state, normalized, note = Preprocessor.fit(x, genes, labels, normalize="auto")  # choice, scaler, labels
    batch = state.scale_batch(normalized[rows])             # (B, G) in [0, 1], what the encoder and BCE see
    val = state.normalize_matrix(x_val)                     # validation cells: the training cells' choices
    state.to_dict() / Preprocessor.from_dict(...)           # JSON round trip (checkpoint, bundle.json)

The scaler is fitted on training cells only and reused for validation cells (VAExprs scales validation data
with its own min/max, which leaks and mis-scales). Constant genes get range 1 instead of a division by zero.
Normalisation keeps scipy.sparse input sparse; scaling happens per batch, so a large sparse matrix is never
densified whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from vaexprs.config import Normalize, choices
from vaexprs.data.backed import blocks_of, is_on_disk, sample_rows
from vaexprs.errors import InputError, OptionError

log = logging.getLogger(__name__)

Normalization = Literal["lognorm", "log", "none"]  # what `normalize="auto"` resolves to
# Values above this cannot be on a log scale (log2 of 1e30); such non-count data (RPKM/FPKM/TPM) get log2(x + 1).
LOG_SCALE_MAX = 100.0
ROW_TOTAL_TOLERANCE = 1e-3  # cells whose totals differ by less than this share of the median sum to "one total"
MOMENT_VALUES = 8_000_000  # values per pass of nonzero_moments (64 MB as float64)
FLOOR_SAMPLE_CELLS = 10_000  # cells moments_above_floor reads (a seeded sample: bounded on disk too)
MIXTURE_SAMPLE_CELLS = 2_000  # cells two_groups reads: a seeded sample, dense (20,000 genes: 160 MB)


def _values(x: Any) -> np.ndarray:
    """The stored values of a dense or scipy.sparse matrix (zeros of a sparse matrix are implicit)."""
    return x.data if hasattr(x, "tocsr") else np.asarray(x)


def is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


@dataclass
class ValueSummary:
    """What the checks and the normalisation choice need to know of a matrix's stored values, in one pass."""

    size: int = 0
    non_finite: int = 0
    negative: int = 0
    fractional: int = 0
    minimum: float = np.inf
    maximum: float = -np.inf
    example_fraction: float | None = None  # one non-integer value, for the error message

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values).ravel()
        if not values.size:
            return
        finite = np.isfinite(values)
        self.size += values.size
        self.non_finite += int(values.size - np.count_nonzero(finite))
        self.negative += int(np.count_nonzero(values < 0))
        fractional = finite & (values != np.round(values))
        n_frac = int(np.count_nonzero(fractional))
        if n_frac and self.example_fraction is None:
            self.example_fraction = float(values[fractional][0])
        self.fractional += n_frac
        if finite.any():
            kept = values[finite]
            self.minimum = min(self.minimum, float(kept.min()))
            self.maximum = max(self.maximum, float(kept.max()))

    @property
    def counts(self) -> bool:
        """Every value a non-negative whole number (raw UMI or read counts)."""
        return bool(self.size and not (self.non_finite or self.negative or self.fractional))


def value_summary(x: Any) -> ValueSummary:
    """The summary of a matrix in memory, or of cells on disk (one streaming pass, kept with the view)."""
    if is_on_disk(x) and "values" in x.cache:
        return x.cache["values"]
    summary = ValueSummary()
    for block in blocks_of(x):
        summary.add(_values(block))
    if is_on_disk(x):
        x.cache["values"] = summary
    return summary


def looks_like_counts(x: Any) -> bool:
    """True when every value is a non-negative whole number (raw UMI or read counts)."""
    return value_summary(x).counts


def choose_normalization(x: Any, requested: str = "auto") -> tuple[Normalization, str]:
    """Resolve `normalize="auto"` and say why, so the user can see (and override) the choice.

    auto: counts -> lognorm (scater::logNormCounts); non-negative values too large to be logged already
    (RPKM, FPKM, TPM) -> log (log2(x + 1)); anything else (already log-scale, or signed) -> none.
    """
    if requested not in choices(Normalize):
        raise OptionError("normalize", f"must be one of {', '.join(choices(Normalize))}; got {requested!r}")
    if requested != "auto":
        return requested, f"normalize={requested} (as requested)"  # type: ignore[return-value]
    return _auto_normalization(value_summary(x))


def _auto_normalization(summary: ValueSummary) -> tuple[Normalization, str]:
    """normalize="auto"'s rule, on a matrix's value summary (choose_normalization; unlogged_totals_hint)."""
    vmax = summary.maximum if summary.size else 0.0
    if summary.counts:
        return "lognorm", "normalize=auto chose lognorm: the values are non-negative integers (counts)"
    if summary.size and summary.minimum >= 0 and vmax > LOG_SCALE_MAX:
        return "log", (
            f"normalize=auto chose log (log2(x + 1)): values are non-integer and reach {vmax:.4g}, "
            "so they are not counts and not yet on a log scale"
        )
    return "none", "normalize=auto chose none: values are not counts and already look log-scaled"


def unlogged_totals_hint(x: Any) -> str | None:
    """A warning for values normalize=auto takes as log-scale although every cell sums to one total: counts
    normalised without the log (`normalize_total(target_sum=1)`, percentages). A hurdle would draw them on their
    linear scale, which a classifier tells from real cells (benchmarks: fractions, AUC 0.84); counts per 10,000
    are logged by normalize=auto (AUC 0.63), and log_hurdle models them logged. fit_vae gives it unless
    log_hurdle was chosen. None for anything else."""
    summary = value_summary(x)
    if summary.size == 0 or summary.minimum < 0 or _auto_normalization(summary)[0] != "none":
        return None
    totals = library_size(x)
    total = float(np.median(totals))
    if total <= 0 or float(totals.max() - totals.min()) > ROW_TOTAL_TOLERANCE * total:
        return None
    return (
        f"every cell's values sum to {total:.4g}: they look like normalised counts without the log, which "
        f"normalize=auto takes as log-scale (values below {LOG_SCALE_MAX:g}) and the model draws on their linear "
        f"scale, easy to tell from real cells. Scale them to counts per 10,000 (x * {1e4 / total:.6g}) so that "
        "normalize=auto logs them, log them yourself, or use likelihood=log_hurdle"
    )


def library_size(x: Any) -> np.ndarray:
    """Per-cell totals, (N,) float64 (cells on disk: one streaming pass, kept with the view)."""
    if is_on_disk(x):
        if "library" not in x.cache:
            x.cache["library"] = np.concatenate([library_size(b) for b in x.chunks()])
        return x.cache["library"]
    return np.asarray(x.sum(axis=1), dtype=np.float64).ravel()


CENTRED_TOLERANCE = 1e-4  # of the largest absolute value: float32 rounding of a row's sum over 20,000 genes


def centred_rows(x: Any) -> bool:
    """True where the values are signed and every cell's values average 0: values centred per cell, such as the
    CLR transform of CITE-seq protein counts (log1p minus the cell's mean). A sampled cell does not keep that by
    itself (its rows averaged -0.23 to 0.23 on the study's clr_adt, where every real row is 0, and the row mean
    alone told generated from real at AUC 1.0), so generation centres its cells again where the data were."""
    summary = value_summary(x)
    if summary.size == 0 or summary.minimum >= 0:
        return False
    largest = max(abs(summary.minimum), abs(summary.maximum))
    means = library_size(x) / x.shape[1]
    return bool(np.all(np.abs(means) <= CENTRED_TOLERANCE * largest))


def size_factors(x: Any, mean_library: float | None = None) -> np.ndarray:
    """scater's library-size factors: library size / mean library size, (N,). Empty cells get factor 1.

    mean_library: the denominator to use instead of these cells' own mean (generated cells use the training
    mean, so their values do not depend on how generation was chunked).
    """
    lib = library_size(x)
    mean = mean_library if mean_library is not None else (lib.mean() if lib.size and lib.mean() > 0 else 1.0)
    sf = lib / mean
    sf[sf <= 0] = 1.0
    return sf


def apply_normalization(x: Any, method: Normalization, mean_library: float | None = None) -> Any:
    """Return log-scale float32 values; sparse stays sparse (log2(0 + 1) = 0 keeps zeros).

    mean_library (lognorm only): size factors relative to this library size instead of the cells' own mean.
    Cells on disk get a view that normalises each block as it is read (lognorm: with the view's mean library).
    """
    if is_on_disk(x):
        if method == "lognorm" and mean_library is None:
            lib = library_size(x)
            mean_library = float(lib.mean()) if lib.size and lib.mean() > 0 else 1.0
        return x.map(partial(apply_normalization, method=method, mean_library=mean_library))
    if method == "none":
        return x.astype(np.float32) if is_sparse(x) else np.asarray(x, dtype=np.float32)
    if method == "lognorm":
        inv_sf = (1.0 / size_factors(x, mean_library)).astype(np.float64)
        if is_sparse(x):
            out = x.tocsr().astype(np.float64)
            out = out.multiply(inv_sf[:, None]).tocsr()
            out.data = np.log2(out.data + 1.0)
            return out.astype(np.float32)
        return np.log2(np.asarray(x, dtype=np.float64) * inv_sf[:, None] + 1.0).astype(np.float32)
    if method == "log":
        if is_sparse(x):
            out = x.tocsr().astype(np.float32, copy=True)
            out.data = np.log2(out.data + 1.0)
            return out
        return np.log2(np.asarray(x, dtype=np.float64) + 1.0).astype(np.float32)
    raise InputError(f"unknown normalization {method!r}")


def check_counts(x: Any, likelihood: str, round_counts: bool = False) -> Any:
    """Refuse anything but raw counts for a count likelihood, with a one-line InputError saying why.

    NaN/inf and negative values are always refused; non-integer values are rounded to the nearest integer
    only when `round_counts` (e.g. expected counts from a pseudo-aligner), else refused.
    """
    summary = value_summary(x)
    if summary.non_finite:
        raise OptionError(
            "likelihood", f"{likelihood!r} needs raw counts; the data has {summary.non_finite} NaN/inf value(s)"
        )
    if summary.negative:
        raise OptionError(
            "likelihood",
            f"{likelihood!r} needs raw counts (non-negative integers); the data has {summary.negative} negative "
            f"value(s) (min {summary.minimum:.4g})",
        )
    n_frac = summary.fractional
    if n_frac and not round_counts:
        example = summary.example_fraction
        raise OptionError(
            "likelihood",
            f"{likelihood!r} needs raw counts (integers); the data has {n_frac} non-integer value(s) "
            f"(e.g. {example:.6g}): use bce, mse or hurdle for normalised values, or {{round_counts}} to round them",
            ("round_counts",),
        )
    if n_frac:
        log.info("round_counts: rounded %d non-integer value(s) to the nearest integer", n_frac)
        if is_on_disk(x):
            return x.map(_rounded)
        return _rounded(x)
    return x


def _rounded(x: Any) -> Any:
    """Values rounded to whole numbers (a sparse matrix stays sparse and drops the new zeros)."""
    if is_sparse(x):
        x = x.tocsr(copy=True)
        x.data = np.round(x.data)
        x.eliminate_zeros()
        return x
    return np.round(np.asarray(x))


def highly_variable_genes(x: Any, n_top: int = 2000, min_cells_frac: float = 0.01) -> np.ndarray:
    """Indices (sorted) of the `n_top` genes with the highest dispersion (variance / mean) of lognorm values.

    A deliberately simple rule (no mean binning as in Seurat/scanpy): only genes detected in at least
    `min_cells_frac` of cells compete, so rare noisy genes do not win on a few cells. For counts.
    """
    logged = apply_normalization(x, "lognorm")
    n = logged.shape[0]
    if is_sparse(logged):
        mean = np.asarray(logged.mean(axis=0)).ravel().astype(np.float64)
        sq = logged.copy()
        sq.data = sq.data.astype(np.float64) ** 2
        var = np.asarray(sq.mean(axis=0)).ravel() - mean**2
        detected = np.asarray((logged > 0).sum(axis=0)).ravel()
    else:
        mean = logged.mean(axis=0, dtype=np.float64)
        var = logged.var(axis=0, dtype=np.float64)
        detected = np.count_nonzero(logged > 0, axis=0)
    dispersion = np.where(mean > 0, var / np.maximum(mean, 1e-12), -np.inf)
    dispersion[detected < max(1, int(np.ceil(min_cells_frac * n)))] = -np.inf
    order = np.argsort(-dispersion, kind="stable")[: min(n_top, int(np.isfinite(dispersion).sum()))]
    return np.sort(order)


def column_min_max(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene min and max of a dense or sparse matrix, without densifying it (on disk: chunk by chunk)."""
    if is_on_disk(x):
        parts = [column_min_max(block) for block in x.chunks()]
        return np.min([p[0] for p in parts], axis=0), np.max([p[1] for p in parts], axis=0)
    if is_sparse(x):
        x = x.tocsc()
        return (
            np.asarray(x.min(axis=0).todense(), dtype=np.float64).ravel(),
            np.asarray(x.max(axis=0).todense(), dtype=np.float64).ravel(),
        )
    return x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)


def column_mean_var(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and population variance (over all cells, zeros included) in float64, without densifying
    a sparse matrix (on disk: from per-chunk sums)."""
    n = max(x.shape[0], 1)
    if is_on_disk(x):
        total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        for block in x.chunks():
            mean, var = column_mean_var(block)
            total += mean * block.shape[0]
            squares += (var + mean**2) * block.shape[0]
        mean = total / n
        return mean, np.clip(squares / n - mean**2, 0.0, None)
    if is_sparse(x):
        mean = np.asarray(x.sum(axis=0, dtype=np.float64)).ravel() / n
        sq = x.copy()
        sq.data = sq.data.astype(np.float64) ** 2
        return mean, np.clip(np.asarray(sq.sum(axis=0)).ravel() / n - mean**2, 0.0, None)
    arr = np.asarray(x)
    return arr.mean(axis=0, dtype=np.float64), arr.var(axis=0, dtype=np.float64)


@dataclass
class NonzeroMoments:
    """Per label and gene: how many cells detect the gene, and the sum and sum of squares of its non-zero
    values. Enough for a hurdle model's starting point (zero rate, non-zero mean, within-label spread)."""

    n_cells: int
    count: np.ndarray  # (L, G)
    total: np.ndarray  # (L, G)
    squares: np.ndarray  # (L, G)

    def zero_fraction(self) -> np.ndarray:
        return 1.0 - self.count.sum(0) / max(self.n_cells, 1)

    def mean(self) -> np.ndarray:
        """Mean of each gene's non-zero values over all cells (0 where a gene is never detected)."""
        k = self.count.sum(0)
        return np.divide(self.total.sum(0), k, out=np.zeros(k.shape), where=k > 0)

    def pooled_sd(self) -> np.ndarray:
        """Within-label sd of each gene's non-zero values, pooled over labels (NaN where no label has two)."""
        k = self.count
        within = self.squares - np.divide(self.total**2, k, out=np.zeros(k.shape), where=k > 0)
        dof = np.clip(k - 1, 0, None).sum(0)
        return np.sqrt(np.divide(np.clip(within.sum(0), 0, None), dof, out=np.full(dof.shape, np.nan), where=dof > 0))


def nonzero_moments(x: Any, codes: np.ndarray | None, n_labels: int = 0) -> NonzeroMoments:
    """NonzeroMoments of a dense, sparse or on-disk matrix (one streaming pass; memory: labels x genes)."""
    n_groups = max(n_labels, 1)
    shape = (n_groups, x.shape[1])
    count, total, squares = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    step = max(1, MOMENT_VALUES // max(x.shape[1], 1))  # rows per pass: a dense float64 copy stays ~64 MB
    start = 0
    for whole in blocks_of(x):
        for offset in range(0, whole.shape[0], step):
            block = whole[offset : offset + step]
            rows = block.shape[0]
            groups = np.zeros(rows, dtype=np.int64) if codes is None else np.asarray(codes[start : start + rows])
            start += rows
            _add_moments(block, groups, count, total, squares)
    return NonzeroMoments(int(x.shape[0]), count, total, squares)


def moments_above_floor(
    x: Any, codes: np.ndarray | None, n_labels: int, seed: int
) -> tuple[np.ndarray, NonzeroMoments]:  # fmt: skip
    """Each gene's minimum over all cells (one streaming pass; float32), and the NonzeroMoments of the values
    above it from a seeded sample of at most FLOOR_SAMPLE_CELLS cells: the floor_hurdle head's start."""
    floor, _ = column_min_max(x)
    rows = sample_rows(x.shape[0], FLOOR_SAMPLE_CELLS, seed)
    block = x[rows]
    shifted = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float64) - floor
    return floor.astype(np.float32), nonzero_moments(shifted, None if codes is None else codes[rows], n_labels)


def positive_median(x: Any, seed: int) -> float:
    """The median of the positive values of a seeded sample of at most FLOOR_SAMPLE_CELLS cells (1 where there
    are none): the log_hurdle head's scale, where its log2(x / s + 1) bends (bounded on disk too)."""
    block = x[sample_rows(x.shape[0], FLOOR_SAMPLE_CELLS, seed)]
    values = _values(block).ravel()
    positive = values[np.isfinite(values) & (values > 0)]
    return float(np.median(positive)) if positive.size else 1.0


def scaled_log(x: Any, scale: float) -> Any:
    """log2(x / scale + 1) of non-negative values, float32; sparse stays sparse, cells on disk get a view."""
    if is_on_disk(x):
        return x.map(partial(scaled_log, scale=scale))
    if is_sparse(x):
        out = x.tocsr().astype(np.float64, copy=True)
        out.data = np.log2(out.data / scale + 1.0)
        return out.astype(np.float32)
    return np.log2(np.asarray(x, dtype=np.float64) / scale + 1.0).astype(np.float32)


def two_groups(x: Any, seed: int, iterations: int = 30) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each gene's minimum over all cells (one streaming pass), and its values split into a lower and an upper
    group by a one-dimensional 2-means on a seeded sample of at most MIXTURE_SAMPLE_CELLS cells: the mixture
    head's start. Returns (floor, {low_mean, low_sd, high_mean, high_sd, low_share, min_sigma}), sds at least
    `min_sigma`, 1% of the gene's sd."""
    floor, _ = column_min_max(x)
    rows = sample_rows(x.shape[0], MIXTURE_SAMPLE_CELLS, seed)
    block = x[rows]
    v = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float32)
    n = max(v.shape[0], 1)
    total = v.sum(0, dtype=np.float64)
    min_sigma = np.maximum(0.01 * v.std(0, dtype=np.float64), 1e-4)
    threshold = total / n
    for _ in range(iterations):
        low = v <= threshold.astype(np.float32)
        n_low = low.sum(0)
        low_sum = np.where(low, v, 0.0).sum(0, dtype=np.float64)
        low_mean = np.where(n_low > 0, low_sum / np.maximum(n_low, 1), threshold)
        high_mean = np.where(n_low < n, (total - low_sum) / np.maximum(n - n_low, 1), threshold)
        moved = (low_mean + high_mean) / 2
        if np.allclose(moved, threshold):
            break
        threshold = moved
    low = v <= threshold.astype(np.float32)
    n_low = low.sum(0)
    low_sd = np.sqrt(np.where(low, (v - low_mean) ** 2, 0.0).sum(0, dtype=np.float64) / np.maximum(n_low, 1))
    high_sd = np.sqrt(np.where(low, 0.0, (v - high_mean) ** 2).sum(0, dtype=np.float64) / np.maximum(n - n_low, 1))
    groups = {
        "low_mean": low_mean, "low_sd": np.maximum(low_sd, min_sigma), "high_mean": high_mean,
        "high_sd": np.maximum(high_sd, min_sigma), "low_share": n_low / n, "min_sigma": min_sigma,
    }  # fmt: skip
    return floor.astype(np.float32), {k: np.asarray(g, dtype=np.float32) for k, g in groups.items()}


def _add_moments(block: Any, groups: np.ndarray, count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> None:
    """Add one block's cells (their label codes in `groups`) to the running sums, in place."""
    for g in np.unique(groups):
        part = block[groups == g]
        if is_sparse(part):
            part = part.tocsr()
            values = part.data.astype(np.float64)
            count[g] += np.bincount(part.indices[values != 0], minlength=count.shape[1])
            total[g] += np.bincount(part.indices, weights=values, minlength=count.shape[1])
            squares[g] += np.bincount(part.indices, weights=values**2, minlength=count.shape[1])
        else:
            part = np.asarray(part, dtype=np.float64)
            count[g] += np.count_nonzero(part, axis=0)
            total[g] += part.sum(0)
            squares[g] += (part**2).sum(0)


def plausible_maxima(x: Any, counts: bool) -> np.ndarray:
    """(G,) the largest value a generated cell may hold per gene: the training maximum plus the gene's own
    spread (its sd on the log scale), so a sampled tail cannot leave what the data could hold.

    x: training values in the head's own space (log-scale values, or raw counts when `counts`: the margin is
    then taken on log2(x + 1) and the cap is a whole count).
    """
    logged = apply_normalization(x, "log") if counts else x
    _, high = column_min_max(logged)
    _, var = column_mean_var(logged)
    cap = high + np.sqrt(var)
    return np.floor(np.exp2(cap) - 1.0) if counts else cap


@dataclass
class MinMaxScaler:
    """Per-gene min-max scaling to [0, 1], fitted on training cells. Constant genes get range 1 (flagged)."""

    minimum: np.ndarray  # (G,)
    scale: np.ndarray  # (G,) max - min, 1 where the gene is constant
    constant: np.ndarray  # (G,) bool

    @classmethod
    def fit(cls, x: Any) -> MinMaxScaler:
        lo, hi = column_min_max(x)
        span = hi - lo
        constant = span <= 0
        scale = np.where(constant, 1.0, span)
        if constant.any():
            log.info("%d constant gene(s) get range 1 (no division by zero)", int(constant.sum()))
        return cls(lo.astype(np.float32), scale.astype(np.float32), constant)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(B, G) dense -> scaled; values outside the training range fall outside [0, 1] and are clipped."""
        return np.clip((np.asarray(x, dtype=np.float32) - self.minimum) / self.scale, 0.0, 1.0)

    @property
    def output_scale(self) -> np.ndarray:
        """De-scaling factors: constant genes get 0, so they come back exactly at their constant value."""
        return np.where(self.constant, 0.0, self.scale).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "minimum": self.minimum.tolist(),
            "scale": self.scale.tolist(),
            "constant": np.flatnonzero(self.constant).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaler:
        minimum = np.asarray(d["minimum"], dtype=np.float32)
        constant = np.zeros(minimum.shape[0], dtype=bool)
        constant[np.asarray(d.get("constant", []), dtype=int)] = True
        return cls(minimum, np.asarray(d["scale"], dtype=np.float32), constant)


@dataclass
class LabelEncoder:
    """Ordered label names <-> integer codes <-> one-hot rows."""

    classes: list[str]

    @classmethod
    def fit(cls, labels: Sequence[Any]) -> LabelEncoder:
        return cls(sorted({str(v) for v in labels}))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def transform(self, labels: Sequence[Any]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        try:
            return np.fromiter((index[str(v)] for v in labels), dtype=np.int64, count=len(labels))
        except KeyError as exc:
            raise InputError(f"unknown label {exc.args[0]!r}; known labels: {', '.join(self.classes)}") from None

    def inverse_transform(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[np.asarray(codes, dtype=np.int64)]


@dataclass
class Preprocessor:
    """Everything needed to map raw input to model space and back; serialisable to JSON."""

    normalize: Normalization
    genes: list[str]
    scaler: MinMaxScaler | None  # None for count likelihoods, which see raw counts
    labels: LabelEncoder | None = None
    label_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        x: Any,
        genes: Sequence[str],
        labels: Sequence[Any] | None = None,
        normalize: str = "auto",
        scale: bool = True,
    ) -> tuple[Preprocessor, Any, str]:
        """Fit on training cells; return the state, the normalised matrix and a note on the normalisation."""
        method, note = choose_normalization(x, normalize)
        normalized = apply_normalization(x, method)
        scaler = MinMaxScaler.fit(normalized) if scale else None
        encoder = LabelEncoder.fit(labels) if labels is not None else None
        counts: dict[str, int] = {}
        if encoder is not None:
            codes = encoder.transform(labels)
            counts = {c: int(n) for c, n in zip(encoder.classes, np.bincount(codes, minlength=encoder.n_classes))}
        return cls(method, [str(g) for g in genes], scaler, encoder, counts), normalized, note

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def label_proportions(self) -> np.ndarray:
        counts = np.asarray([self.label_counts[c] for c in self.labels.classes], dtype=np.float64)
        return counts / counts.sum()

    def normalize_matrix(self, x: Any) -> Any:
        return apply_normalization(x, self.normalize)

    def scale_batch(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32, copy=False) if self.scaler is None else self.scaler.transform(x)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normalize": self.normalize,
            "genes": self.genes,
            "scaler": self.scaler.to_dict() if self.scaler is not None else None,
            "labels": self.labels.classes if self.labels is not None else [],
            "label_counts": self.label_counts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        return cls(
            normalize=d["normalize"],
            genes=list(d["genes"]),
            scaler=MinMaxScaler.from_dict(d["scaler"]) if d.get("scaler") else None,
            labels=LabelEncoder(list(d["labels"])) if d.get("labels") else None,
            label_counts={str(k): int(v) for k, v in d.get("label_counts", {}).items()},
        )
