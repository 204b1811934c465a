"""Test data sets for the realism study: the shared real sets plus cheap, seeded builders for the data types
users bring that the shared sets do not cover.

    from benchmarks.datasets import build, available
    adata = build("fulllength", seed=0)   # AnnData, obs['cell_type'] categorical, uns['bench'] = {kind, description}
    for name in available(): ...          # the shared sets are skipped when /work/shared/data is absent

`uns['bench']['kind']` says which log space the harness scores in: `counts` (raw integers: lognorm
log2(x / sf + 1)), `linear` (RPKM/FPKM/TPM: log2(x + 1)) or `log` (already log-scale: as is).
Every builder is deterministic for a seed and takes seconds.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(os.environ.get("VAEXPRS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


class DatasetUnavailable(RuntimeError):
    """The data set needs a file that is not here (the shared data folder); callers skip it."""


def _anndata(
    x: Any,
    labels: np.ndarray,
    genes: list[str] | None = None,
    kind: str = "counts",
    description: str = "",
    **extra: Any,
) -> Any:
    import anndata as ad
    import pandas as pd

    n, g = x.shape
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.asarray(labels).astype(str))}, index=[f"cell{i}" for i in range(n)]
    )
    var = pd.DataFrame(index=genes if genes is not None else [f"gene{j}" for j in range(g)])
    adata = ad.AnnData(x, obs=obs, var=var)
    adata.uns["bench"] = {"kind": kind, "description": description, **extra}
    return adata


@functools.lru_cache(maxsize=4)
def _read_shared(name: str) -> Any:
    import anndata as ad

    path = DATA / f"{name}.h5ad"
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is absent")
    return ad.read_h5ad(path)


def _shared(name: str, kind: str, description: str) -> Any:
    src = _read_shared(name)
    x = src.X.copy()
    genes = [str(g) for g in src.var_names]
    return _anndata(x, src.obs["cell_type"].astype(str).to_numpy(), genes, kind, description, source=str(DATA / name))


def yan(seed: int = 0) -> Any:
    """Shared: human preimplantation embryos, RPKM, 90 x 20214, 6 labels (6 to 30 cells)."""
    return _shared("yan", "linear", "yan: RPKM (Tang protocol), 90 cells x 20214 genes, 6 labels, 46% zeros")


def treutlein(seed: int = 0) -> Any:
    """Shared: mouse lung epithelium, FPKM, 80 x 23271, 5 labels (3 to 41 cells), very heavy tails."""
    return _shared("treutlein", "linear", "treutlein: FPKM (Fluidigm C1), 80 cells x 23271 genes, 5 labels, 90% zeros")


def pbmc3k(seed: int = 0) -> Any:
    """Shared: 10x PBMC 3k raw UMI counts, all 13714 genes, sparse, 8 labels (13 to 1145 cells)."""
    return _shared("pbmc3k", "counts", "pbmc3k: raw UMI counts (10x v1), 2638 cells x 13714 genes (all), 8 labels")


# --------------------------------------------------------------------------------------------- pbmc3k-derived
def _pbmc_lognorm(x: Any) -> np.ndarray:
    """Dense lognorm (log2(x / sf + 1), sf = library / mean library) of a count matrix."""
    from vaexprs.data.preprocess import apply_normalization

    y = apply_normalization(x, "lognorm")
    return np.asarray(y.toarray() if hasattr(y, "toarray") else y, dtype=np.float32)


def seurat_hvg(
    x: Any, n_top: int, min_mean: float = 0.0125, max_mean: float = 3.0, n_bins: int = 20, min_cells: int = 1
) -> np.ndarray:
    """Sorted indices of the `n_top` most variable genes, scanpy's `flavor='seurat'` rule (what the users who bring
    HVG-only data ran): normalize_total(1e4) + log1p, mean and log dispersion of expm1 values, dispersion z-scored
    within 20 mean bins, genes with mean in [min_mean, max_mean] compete."""
    x = x.tocsr().astype(np.float64) if hasattr(x, "tocsr") else np.asarray(x, dtype=np.float64)
    lib = np.asarray(x.sum(1)).ravel()
    lib[lib == 0] = 1.0
    norm = x.multiply(1e4 / lib[:, None]).tocsr() if hasattr(x, "tocsr") else x * (1e4 / lib[:, None])
    sq = norm.multiply(norm) if hasattr(norm, "multiply") else norm**2
    mean = np.asarray(norm.mean(0)).ravel()
    var = np.asarray(sq.mean(0)).ravel() - mean**2
    var *= x.shape[0] / max(x.shape[0] - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(np.where(mean > 0, var / mean, np.nan))
        log_mean = np.log1p(mean)
    bins = np.digitize(log_mean, np.linspace(np.nanmin(log_mean), np.nanmax(log_mean), n_bins + 1)[1:-1])
    z = np.full_like(disp, np.nan)
    for b in np.unique(bins):
        rows = (bins == b) & np.isfinite(disp)
        if rows.sum() > 1:
            sd = disp[rows].std(ddof=1)
            z[rows] = (disp[rows] - disp[rows].mean()) / (sd if sd > 0 else 1.0)
        elif rows.sum() == 1:
            z[rows] = 1.0  # scanpy sets a lone gene's normalised dispersion to 1
    detected = np.asarray((x > 0).sum(0)).ravel()
    ok = np.isfinite(z) & (log_mean >= min_mean) & (log_mean <= max_mean) & (detected >= min_cells)
    z[~ok] = -np.inf
    return np.sort(np.argsort(-z, kind="stable")[: min(n_top, int(ok.sum()))])


def _kmeans_split(x: Any, rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sub-cluster codes (0..k-1, largest first) of `rows` by k-means on a 20-PC PCA of their lognorm values:
    a Leiden-like split of a broad label (e.g. naive vs memory CD4 T)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from vaexprs.data.preprocess import highly_variable_genes

    sub = x[rows]
    hvg = highly_variable_genes(sub, 1000)
    z = PCA(n_components=20, random_state=seed).fit_transform(_pbmc_lognorm(sub[:, hvg]))
    codes = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z)
    order = np.argsort(-np.bincount(codes, minlength=k))
    return np.argsort(order)[codes]


def _subsample(labels: np.ndarray, sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    rows = [rng.choice(np.flatnonzero(labels == lab), size=n, replace=False) for lab, n in sizes.items()]
    return np.sort(np.concatenate(rows))


def umi_hvg(seed: int = 0) -> Any:
    """Droplet UMI counts, HVG-only, many small labels: pbmc3k subsampled to 700 cells and its most variable
    genes, CD4 T and CD14 Monocytes each split in two by k-means on PCA -> 10 labels of 8 to 240 cells."""

    src = _read_shared("pbmc3k")
    x = src.X.tocsr()
    labels = src.obs["cell_type"].astype(str).to_numpy().astype(object)
    for broad, names in (
        ("CD4 T", ("CD4 T naive", "CD4 T memory")),
        ("CD14 Monocytes", ("CD14 Mono a", "CD14 Mono b")),
    ):
        rows = np.flatnonzero(labels == broad)
        codes = _kmeans_split(x, rows, 2, seed)
        labels[rows] = np.asarray(names, dtype=object)[codes]
    labels = labels.astype(str)
    sizes = {"CD4 T naive": 240, "CD4 T memory": 130, "CD14 Mono a": 80, "CD14 Mono b": 50, "B": 60, "CD8 T": 50,
             "NK": 40, "FCGR3A Monocytes": 30, "Dendritic": 12, "Megakaryocytes": 8}  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = _subsample(labels, sizes, rng)
    sub = x[rows]
    genes = seurat_hvg(sub, 765, min_cells=3)  # HVGs seen in at least 3 of the kept cells
    sub = sub[:, genes]
    names = [str(g) for g in src.var_names[genes]]
    desc = (
        f"umi_hvg: pbmc3k UMI counts, {sub.shape[0]} cells x {sub.shape[1]} highly variable genes (scanpy "
        f"seurat rule, seen in >= 3 cells), 10 labels "
        f"(CD4 T and CD14 Mono split by k-means on PCA), 8 to 240 cells per label"
    )
    return _anndata(sub.astype(np.float32), labels[rows], names, "counts", desc)


def rare_label(seed: int = 0) -> Any:
    """UMI counts with labels of fewer than 10 cells: pbmc3k, 600 cells, 3000 highly variable genes, Dendritic 6
    and Megakaryocytes 4 cells among 6 larger labels."""
    src = _read_shared("pbmc3k")
    x = src.X.tocsr()
    labels = src.obs["cell_type"].astype(str).to_numpy()
    sizes = {"CD4 T": 220, "CD14 Monocytes": 120, "B": 90, "CD8 T": 80, "NK": 50, "FCGR3A Monocytes": 30,
             "Dendritic": 6, "Megakaryocytes": 4}  # fmt: skip
    rng = np.random.default_rng(seed + 7)
    rows = _subsample(labels, sizes, rng)
    sub = x[rows]
    genes = seurat_hvg(sub, 3000)
    sub = sub[:, genes]
    desc = (
        f"rare_label: pbmc3k UMI counts, {sub.shape[0]} cells x {sub.shape[1]} highly variable genes, 8 labels, "
        "Dendritic 6 and Megakaryocytes 4 cells"
    )
    return _anndata(sub.astype(np.float32), labels[rows], [str(g) for g in src.var_names[genes]], "counts", desc)


def scanpy_log(seed: int = 0) -> Any:
    """What scanpy users keep in X: normalize_total(1e4) then natural-log log1p, no counts; pbmc3k, 1000 cells
    (stratified), 3000 highly variable genes, sparse."""
    src = _read_shared("pbmc3k")
    x = src.X.tocsr()
    labels = src.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(seed + 11)
    rows = np.sort(np.concatenate([
        rng.choice(r, size=max(8, round(len(r) * 1000 / x.shape[0])), replace=False)
        for r in (np.flatnonzero(labels == lab) for lab in np.unique(labels))
    ]))  # fmt: skip
    sub = x[rows].astype(np.float64)
    lib = np.asarray(sub.sum(1)).ravel()  # normalize_total uses all genes, before HVG selection
    mito = np.asarray(src.var_names.str.upper().str.startswith("MT-"))
    pct_mt = 100.0 * np.asarray(sub[:, mito].sum(1)).ravel() / np.where(lib > 0, lib, 1.0)
    genes = seurat_hvg(sub, 3000)
    sub = sub.multiply(1e4 / lib[:, None]).tocsr()[:, genes]
    sub.data = np.log1p(sub.data)
    desc = (
        f"scanpy_log: pbmc3k normalize_total(1e4) + log1p (natural log), {sub.shape[0]} cells x "
        f"{sub.shape[1]} highly variable genes, 8 labels; non-integer, already log-scale (max {sub.max():.2f})"
    )
    adata = _anndata(sub.astype(np.float32), labels[rows], [str(g) for g in src.var_names[genes]], "log", desc)
    adata.obs["total_counts"] = lib  # scanpy's QC covariates, for scanpy_regressed
    adata.obs["pct_counts_mt"] = pct_mt
    return adata


def _scale(x: np.ndarray, max_value: float = 10.0) -> np.ndarray:
    """sc.pp.scale(max_value=10): each gene centred and divided by its sd (genes that do not vary: by 1), clipped."""
    sd = x.std(0, ddof=1)
    return np.clip((x - x.mean(0)) / np.where(sd > 0, sd, 1.0), None, max_value)


def scanpy_scaled(seed: int = 0) -> Any:
    """scanpy_log after sc.pp.scale(max_value=10): each gene centred and scaled to unit variance, clipped at 10.
    Signed values (most of them negative), dense: what a user may hand over from a scaled AnnData."""
    src = scanpy_log(seed)
    x = _scale(np.asarray(src.X.toarray(), dtype=np.float64))
    desc = (
        f"scanpy_scaled: scanpy_log then sc.pp.scale(max_value=10), {x.shape[0]} cells x {x.shape[1]} genes, "
        f"8 labels; signed values ({(x < 0).mean():.0%} negative, {x.min():.2f} .. {x.max():.2f})"
    )
    labels = src.obs["cell_type"].astype(str).to_numpy()
    return _anndata(x.astype(np.float32), labels, list(src.var_names), "log", desc, unseen=True)


def scanpy_regressed(seed: int = 0) -> Any:
    """UNSEEN: scanpy's PBMC tutorial to the end: scanpy_log, then sc.pp.regress_out(["total_counts",
    "pct_counts_mt"]) (per gene, least squares with an intercept: the residuals), then sc.pp.scale(max_value=10).
    Signed and continuous: every cell's undetected genes land on a value of its own, so unlike scanpy_scaled
    there is no point mass at a gene's minimum."""
    src = scanpy_log(seed)
    x = np.asarray(src.X.toarray(), dtype=np.float64)
    design = np.column_stack(
        [np.ones(x.shape[0]), src.obs["total_counts"].to_numpy(float), src.obs["pct_counts_mt"].to_numpy(float)]
    )
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    x = _scale(x - design @ coef)
    top = float(np.mean(x == x.min(0)))
    desc = (
        f"scanpy_regressed (unseen): scanpy_log, regress_out(total_counts, pct_counts_mt), scale(max_value=10); "
        f"{x.shape[0]} cells x {x.shape[1]} genes, 8 labels; signed, continuous ({(x < 0).mean():.0%} negative, "
        f"{top:.1%} of values at their gene's minimum)"
    )
    labels = src.obs["cell_type"].astype(str).to_numpy()
    return _anndata(x.astype(np.float32), labels, list(src.var_names), "log", desc, unseen=True)


# --------------------------------------------------------------------------------------------- simulations
def _gamma_poisson(rng: np.random.Generator, mu: np.ndarray, shape: Any) -> np.ndarray:
    """Negative-binomial counts (float64) of mean `mu` and gamma shape `shape` (inverse dispersion), drawn as a
    gamma-Poisson mixture."""
    return rng.poisson(rng.gamma(shape, mu / shape)).astype(np.float64)


def _droplet_counts(
    rng: np.random.Generator,
    log_mu: np.ndarray,
    library: tuple[float, float],
    theta: tuple[float, float],
    theta_range: tuple[float, float],
) -> np.ndarray:
    """Float32 NB counts of cells x genes: softmax(log_mu) proportions times a log-normal library (median, sd of
    its log), with a log-normal inverse dispersion per gene (median, sd of its log) clipped to `theta_range`."""
    prop = np.exp(log_mu - log_mu.max(1, keepdims=True))
    prop /= prop.sum(1, keepdims=True)
    mu = prop * np.exp(rng.normal(np.log(library[0]), library[1], log_mu.shape[0]))[:, None]
    shape = np.clip(np.exp(rng.normal(np.log(theta[0]), theta[1], log_mu.shape[1])), *theta_range)[None, :]
    return _gamma_poisson(rng, mu, shape).astype(np.float32)


def _typed_labels(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Label names type1.. repeated by `sizes`, and their integer codes."""
    return np.repeat([f"type{k + 1}" for k in range(len(sizes))], sizes), np.repeat(np.arange(len(sizes)), sizes)


def _unseen(
    rng: np.random.Generator, x: np.ndarray, labels: np.ndarray, kind: str, description: str, **extra: Any
) -> Any:
    """A simulated set in a random cell order (so no label sits in a block), marked unseen for the report (`extra`:
    more facts for uns['bench'], as _anndata's)."""
    order = rng.permutation(labels.size)
    return _anndata(x[order], labels[order], None, kind, description, unseen=True, **extra)


def microarray(seed: int = 0, n_genes: int = 3000) -> Any:
    """UNSEEN: log2 intensities of an expression array (bulk samples of sorted cell types), a simulation:
    150 samples, 4 labels (60/40/30/20), 3,000 probes; no zeros at all. Probe baselines N(7, 1.8) on a scanner
    background (values never below ~4), five correlated gene modules, label programmes on 8% of probes,
    intensity-dependent noise (larger near background) and a per-array brightness offset."""
    rng = np.random.default_rng(seed + 505)
    sizes = (60, 40, 30, 20)
    labels, code = _typed_labels(sizes)
    n = labels.size
    base = np.clip(rng.normal(7.0, 1.8, n_genes), 3.0, 14.0)
    programmes = np.zeros((len(sizes), n_genes))
    for k in range(len(sizes)):
        de = rng.choice(n_genes, size=int(0.08 * n_genes), replace=False)
        programmes[k, de] = rng.normal(0.0, 1.5, de.size)
    loadings = rng.normal(0.0, 0.35, (5, n_genes)) * (rng.random((5, n_genes)) < 0.2)
    factors = rng.normal(0.0, 1.0, (n, 5))
    signal = base[None, :] + programmes[code] + factors @ loadings + rng.normal(0.0, 0.2, (n, 1))
    sd = 0.12 + 0.5 * np.exp(-(signal - 3.0) / 2.5)  # noisier near the background
    signal = signal + rng.normal(0.0, 1.0, signal.shape) * sd
    x = np.log2(np.exp2(signal) + 16.0)  # scanner background: intensities never reach 0
    desc = (
        f"microarray (unseen): simulated log2 array intensities, {n} samples x {n_genes} probes, 4 labels "
        f"(60/40/30/20), no zeros, {x.min():.2f}..{x.max():.2f}"
    )
    return _unseen(rng, x.astype(np.float32), labels, "log", desc)


def fulllength(seed: int = 0, n_genes: int = 26000) -> Any:
    """Full-length read counts (Smart-seq-like), a gamma-Poisson simulation: 65 cells, 4 labels (25/18/14/8),
    log-uniform library sizes 3e5..7e6, gene-length factors, strong overdispersion, amplification noise and
    expression-dependent dropout; ~80% zeros."""
    rng = np.random.default_rng(seed + 101)
    sizes = (25, 18, 14, 8)
    labels, code = _typed_labels(sizes)
    n = labels.size
    # gene abundance (heavy-tailed, many barely expressed genes) x gene length (reads scale with length)
    log_p = rng.normal(0.0, 2.3, n_genes) + rng.normal(0.0, 0.6, n_genes)
    programmes = np.zeros((len(sizes), n_genes))
    for k in range(len(sizes)):
        de = rng.choice(n_genes, size=int(0.06 * n_genes), replace=False)
        programmes[k, de] = rng.normal(0.0, 1.6, de.size)
        on = rng.choice(n_genes, size=int(0.01 * n_genes), replace=False)  # label-specific genes switched on
        programmes[k, on] += rng.uniform(2.5, 5.0, on.size)
    log_mu = log_p[None, :] + programmes[code]
    log_mu += rng.normal(0.0, 0.5, (n, n_genes))  # amplification / biological noise per cell and gene
    prop = np.exp(log_mu)
    prop /= prop.sum(1, keepdims=True)
    library = np.exp(rng.uniform(np.log(3e5), np.log(7e6), n))
    mu = prop * library[:, None]
    theta = np.exp(rng.normal(np.log(0.8), 0.5, n_genes))  # strong overdispersion (NB shape ~0.8)
    counts = _gamma_poisson(rng, mu, theta[None, :])
    # Smart-seq dropout: failed capture/RT, likelier for weakly expressed genes, with a per-cell efficiency
    efficiency = rng.normal(0.0, 0.5, n)
    drop = 1.0 / (1.0 + np.exp(1.6 * (np.log10(mu + 1e-3) - 1.6 + efficiency[:, None])))
    counts[rng.random(counts.shape) < drop] = 0.0
    order = rng.permutation(n)
    x = counts[order].astype(np.float32)
    lib = x.sum(1)
    desc = (
        f"fulllength: Smart-seq-like simulated read counts, {n} cells x {n_genes} genes, 4 labels "
        f"(25/18/14/8), {np.mean(x == 0):.0%} zeros, library sizes {lib.min():.3g}..{lib.max():.3g}"
    )
    return _anndata(x, labels[order], None, "counts", desc)


def vignette(seed: int = 0) -> Any:
    """The VAExprs vignette's simulation (vaexprs.simulate()): 300 x 1000 non-negative, non-integer values
    (N(5, 5) clipped at 0, already log-like), 3 labels."""
    import vaexprs

    src = vaexprs.simulate(groups=3, cells=100, genes=1000, deg=100, seed=seed + 1)
    x = np.asarray(src.X, dtype=np.float32)
    desc = f"vignette: vaexprs.simulate(), {x.shape[0]} x {x.shape[1]}, non-integer, {np.mean(x == 0):.0%} zeros"
    return _anndata(x, src.obs["cell_type"].astype(str).to_numpy(), list(src.var_names), "log", desc)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


TRAJECTORY_STAGES = (  # label, cells, pseudotime interval, branch (0 trunk, 1 fate A, 2 fate B)
    ("stem", 150, (0.0, 0.3), 0),
    ("progenitor", 90, (0.3, 0.5), 0),
    ("fateA_early", 60, (0.5, 0.75), 1),
    ("fateB_early", 40, (0.5, 0.75), 2),
    ("fateA_late", 25, (0.75, 1.0), 1),
    ("fateB_late", 10, (0.75, 1.0), 2),
)


def trajectory(seed: int = 0, n_genes: int = 2000) -> Any:
    """UNSEEN (no default was tuned on it): UMI-like counts of a branching differentiation trajectory, a
    gamma-Poisson simulation. 375 cells on a pseudotime 0..1: a trunk (stem 150, progenitor 90 cells) that
    branches at 0.5 into two fates (early 60/40, late 25/10 cells); 2,000 genes with heavy-tailed baselines,
    smooth pseudotime trends (sigmoids up or down), transient bumps and fate-specific switches; cell noise,
    log-normal library sizes around 5e3 (before dropout), gene-specific NB dispersion (shape 0.3..30) and dropout likelier for
    weakly expressed genes, with a per-cell capture efficiency. obs also holds `pseudotime` and `branch`."""
    rng = np.random.default_rng(seed + 303)
    g = n_genes
    labels, t, branch = [], [], []
    for name, n, (lo, hi), b in TRAJECTORY_STAGES:
        labels += [name] * n
        t.append(rng.uniform(lo, hi, n))
        branch += [b] * n
    labels_arr, t_arr, branch_arr = np.array(labels), np.concatenate(t), np.array(branch)
    n = labels_arr.size
    log_p = rng.normal(0.0, 1.6, g)  # baseline abundance: a few high, most barely expressed
    effect = np.zeros((n, g))
    # trunk trends along pseudotime (every cell): 25% of genes go up or down through a sigmoid
    trend = rng.choice(g, size=g // 4, replace=False)
    amp = rng.normal(0.0, 1.5, trend.size)
    centre, width = rng.uniform(0.1, 0.9, trend.size), rng.uniform(0.05, 0.2, trend.size)
    effect[:, trend] += amp * _sigmoid((t_arr[:, None] - centre) / width)
    # transient programmes: 8% of genes peak around one pseudotime
    bump = rng.choice(g, size=int(0.08 * g), replace=False)
    centre, width = rng.uniform(0.15, 0.85, bump.size), rng.uniform(0.04, 0.12, bump.size)
    effect[:, bump] += rng.uniform(1.0, 3.0, bump.size) * np.exp(-0.5 * ((t_arr[:, None] - centre) / width) ** 2)
    # fate-specific switches after the branch point: 8% of genes per fate, mostly switched on
    for b in (1, 2):
        genes = rng.choice(g, size=int(0.08 * g), replace=False)
        sign = np.where(rng.random(genes.size) < 0.8, 1.0, -1.0)
        amp = sign * rng.uniform(1.0, 3.5, genes.size)
        centre, width = rng.uniform(0.5, 0.8, genes.size), rng.uniform(0.03, 0.1, genes.size)
        rows = branch_arr == b
        effect[np.ix_(rows, genes)] += amp * _sigmoid((t_arr[rows, None] - centre) / width)
    log_mu = log_p[None, :] + effect + rng.normal(0.0, 0.3, (n, g))  # biological noise per cell and gene
    prop = np.exp(log_mu - log_mu.max(1, keepdims=True))
    prop /= prop.sum(1, keepdims=True)
    library = np.exp(rng.normal(np.log(5e3), 0.45, n))
    mu = prop * library[:, None]
    theta = np.clip(np.exp(rng.normal(np.log(3.0), 0.9, g)), 0.3, 30.0)  # gene-specific dispersion
    counts = _gamma_poisson(rng, mu, theta[None, :])
    efficiency = rng.normal(0.0, 0.4, n)  # per-cell capture: some cells lose more weakly expressed genes
    drop = _sigmoid(-1.2 * (np.log(mu + 1e-6) - np.log(1.0) + efficiency[:, None]))
    counts[rng.random(counts.shape) < drop] = 0.0
    order = rng.permutation(n)
    x = counts[order].astype(np.float32)
    lib = x.sum(1)
    sizes = "/".join(str(s[1]) for s in TRAJECTORY_STAGES)
    desc = (
        f"trajectory (unseen: no default was tuned on it): simulated UMI-like counts (gamma-Poisson) of a "
        f"branching differentiation, {n} cells x {g} genes, 6 labels along pseudotime ({sizes} cells), library "
        f"sizes {lib.min():.3g}..{lib.max():.3g}, gene-specific dispersion, expression-dependent dropout, "
        f"{np.mean(x == 0):.0%} zeros"
    )
    adata = _anndata(x, labels_arr[order], None, "counts", desc, unseen=True)
    adata.obs["pseudotime"] = t_arr[order]
    adata.obs["branch"] = branch_arr[order]
    return adata


def _programmes(
    rng: np.random.Generator, n_labels: int, n_genes: int, n_on: int, low: float, high: float
) -> np.ndarray:
    """(labels, genes) log-scale shifts: each label switches on `n_on` genes of its own by U(low, high)."""
    out = np.zeros((n_labels, n_genes))
    for k in range(n_labels):
        on = rng.choice(n_genes, size=n_on, replace=False)
        out[k, on] += rng.uniform(low, high, n_on)
    return out


def atac_binary(seed: int = 0) -> Any:
    """UNSEEN: binarised chromatin accessibility (scATAC peaks, 0/1), a simulation: 400 cells x 1,500 peaks,
    4 labels (160/120/80/40), ~90% zeros; per-peak openness, 150 label-specific peaks per label and a per-cell
    sequencing depth on the logit scale."""
    rng = np.random.default_rng(seed + 606)
    sizes = (160, 120, 80, 40)
    labels, code = _typed_labels(sizes)
    n, g = labels.size, 1500
    logit = rng.normal(-3.0, 1.0, g)[None, :] + _programmes(rng, len(sizes), g, 150, 1.5, 3.0)[code]
    logit += rng.normal(0.0, 0.5, (n, 1))  # depth: deeper cells open more peaks
    x = (rng.random((n, g)) < _sigmoid(logit)).astype(np.float32)
    desc = f"atac_binary (unseen): simulated 0/1 accessible peaks, {n} cells x {g} peaks, 4 labels, {np.mean(x == 0):.0%} zeros"
    return _unseen(rng, x, labels, "counts", desc)


def cite_adt(seed: int = 0) -> Any:
    """UNSEEN: CITE-seq antibody (ADT) counts, a simulation: 600 cells x 30 proteins, 6 labels (200 to 20),
    dense (every protein has ambient background counts), 4 marker proteins per label at 7-55x background,
    a per-cell staining factor and gamma-Poisson noise."""
    rng = np.random.default_rng(seed + 707)
    sizes = (200, 150, 100, 80, 50, 20)
    labels, code = _typed_labels(sizes)
    n, g = labels.size, 30
    log_mu = rng.uniform(2.5, 4.5, g)[None, :] + _programmes(rng, len(sizes), g, 4, 2.0, 4.0)[code]
    mu = np.exp(log_mu + rng.normal(0.0, 0.3, (n, 1)))
    x = _gamma_poisson(rng, mu, 5.0).astype(np.float32)
    desc = (
        f"cite_adt (unseen): simulated CITE-seq protein counts, {n} cells x {g} antibodies, 6 labels, "
        f"{np.mean(x == 0):.1%} zeros, max {x.max():.0f}"
    )
    return _unseen(rng, x, labels, "counts", desc)


def bulk_counts(seed: int = 0) -> Any:
    """UNSEEN: bulk RNA-seq read counts, a simulation: 36 samples x 8,000 genes, 3 groups (16/12/8), library
    sizes 1e7..3e7, per-gene dispersion around 0.1 (biological replicates), 400 differentially expressed genes per
    group; almost no zeros. Too few samples for the selection to hold any out (it falls back to the hurdle)."""
    rng = np.random.default_rng(seed + 808)
    sizes = (16, 12, 8)
    labels, code = _typed_labels(sizes)
    n, g = labels.size, 8000
    programmes = np.zeros((len(sizes), g))
    for k in range(len(sizes)):
        de = rng.choice(g, size=400, replace=False)
        programmes[k, de] = rng.normal(0.0, 1.2, de.size)
    prop = np.exp(rng.normal(0.0, 2.0, g)[None, :] + programmes[code])
    prop /= prop.sum(1, keepdims=True)
    mu = prop * rng.uniform(1e7, 3e7, n)[:, None]
    theta = 1.0 / np.exp(rng.normal(np.log(0.1), 0.5, g))[None, :]
    x = _gamma_poisson(rng, mu, theta).astype(np.float32)
    desc = (
        f"bulk_counts (unseen): simulated bulk RNA-seq counts, {n} samples x {g} genes, 3 groups (16/12/8), "
        f"{np.mean(x == 0):.1%} zeros, max {x.max():.3g}"
    )
    return _unseen(rng, x, labels, "counts", desc)


def log2tpm(seed: int = 0) -> Any:
    """UNSEEN: log2(TPM + 1), how full-length data sets are often shared: the `fulllength` simulation's counts
    (6,000 genes) scaled to a million per cell, then log2: non-integer, log-scale, ~72% zeros, maxima near 20."""
    src = fulllength(seed, n_genes=6000)
    x = np.asarray(src.X, dtype=np.float64)
    y = np.log2(x / x.sum(1, keepdims=True) * 1e6 + 1.0).astype(np.float32)
    desc = f"log2tpm (unseen): log2(TPM + 1) of the fulllength simulation, {y.shape[0]} cells x {y.shape[1]} genes, {np.mean(y == 0):.0%} zeros"
    return _anndata(y, src.obs["cell_type"].astype(str).to_numpy(), None, "log", desc, unseen=True)


MANY_LABEL_SIZES = (160, 110, 80, 60, 45, 36, 30, 25, 20, 17, 14, 12, 10, 9, 8, 7, 6, 5, 5, 4, 4, 3, 3, 3)


def many_labels(seed: int = 0) -> Any:
    """UNSEEN: droplet UMI counts of highly variable genes only, with many small labels, a simulation: 24
    subtypes of 6 lineages (160 down to 3 cells; 11 labels under 10 cells, 3 of 3), 1,000 genes. Each lineage
    switches on 60 genes by U(1.5, 3.5) on the log scale and each subtype 15 more by U(0.7, 2.0), so subtypes of
    one lineage are close, as annotated subclusters are; log-normal library sizes around 1.5e3 and gene-specific
    NB dispersion (shape 0.3..50), no extra dropout (droplet zeros are the NB's own)."""
    rng = np.random.default_rng(seed + 909)
    labels, code = _typed_labels(MANY_LABEL_SIZES)
    n, g, n_lineages = labels.size, 1000, 6
    lineage = np.arange(len(MANY_LABEL_SIZES)) % n_lineages  # type1..type6 head each lineage, then smaller ones
    log_mu = rng.normal(-0.5, 1.6, g)[None, :] + _programmes(rng, n_lineages, g, 60, 1.5, 3.5)[lineage[code]]
    log_mu += _programmes(rng, len(MANY_LABEL_SIZES), g, 15, 0.7, 2.0)[code] + rng.normal(0.0, 0.25, (n, g))
    x = _droplet_counts(rng, log_mu, library=(1.5e3, 0.5), theta=(4.0, 0.8), theta_range=(0.3, 50.0))
    desc = (
        f"many_labels (unseen): simulated droplet UMI counts, HVG-only, {n} cells x {g} genes, "
        f"{len(MANY_LABEL_SIZES)} labels (6 lineages x 4 subtypes, {max(MANY_LABEL_SIZES)} to "
        f"{min(MANY_LABEL_SIZES)} cells), {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc)


SPOT_DOMAINS = (120, 100, 80, 60, 40)  # spots per tissue domain (the label)


def visium_spots(seed: int = 0) -> Any:
    """UNSEEN: spatial transcriptomics spots (Visium-like), a simulation: 400 spots x 2,000 genes, each spot the
    summed UMI counts of 1 + Poisson(7) cells of 8 cell types, drawn in the proportions of its tissue domain (5
    domains, the label: 120 to 40 spots; Dirichlet compositions, so domains share cell types and differ by
    their mixture), plus a per-spot capture factor. Labels that no single cell has, fewer zeros than single
    cells, counts summed over cells."""
    rng = np.random.default_rng(seed + 1010)
    labels, code = _typed_labels(SPOT_DOMAINS)
    n, g, n_types = labels.size, 2000, 8
    type_log_mu = rng.normal(0.0, 1.5, g)[None, :] + _programmes(rng, n_types, g, 80, 1.5, 3.5)
    type_prop = np.exp(type_log_mu)
    type_prop /= type_prop.sum(1, keepdims=True)
    domain_mix = rng.dirichlet(np.full(n_types, 0.6), len(SPOT_DOMAINS))  # each domain's cell-type proportions
    n_cells = 1 + rng.poisson(7.0, n)
    spot_mix = np.stack([rng.multinomial(k, domain_mix[d]) for k, d in zip(n_cells, code, strict=True)])
    mu = (spot_mix @ type_prop) * 8e2 * np.exp(rng.normal(0.0, 0.3, n))[:, None]  # ~800 UMIs per cell on these genes
    theta = np.clip(np.exp(rng.normal(np.log(5.0), 0.7, g)), 0.5, 50.0)[None, :]
    x = _gamma_poisson(rng, mu, theta).astype(np.float32)
    desc = (
        f"visium_spots (unseen): simulated spatial spots, {n} spots x {g} genes, summed counts of 1 + Poisson(7) "
        f"cells of 8 types, 5 tissue domains as labels ({'/'.join(map(str, SPOT_DOMAINS))}), "
        f"{np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc)


# ------------------------------------------ added 2026-12-06, after every default was fixed, run once as they are
def _stratified_rows(labels: np.ndarray, n: int, min_per_label: int, rng: np.random.Generator) -> np.ndarray:
    """About `n` rows in the labels' proportions, at least `min_per_label` of each (all of a smaller label)."""
    names, counts = np.unique(labels, return_counts=True)
    sizes = np.maximum(np.round(counts * n / counts.sum()).astype(int), min_per_label)
    return _subsample(labels, {k: int(min(s, c)) for k, s, c in zip(names, sizes, counts, strict=True)}, rng)


def _thinned_hvg(x: Any, n_top: int) -> tuple[Any, np.ndarray]:
    """Thinned counts (CSR) without the zeros thinning made, on their `n_top` most variable genes (seen in >= 3
    cells): (float32 matrix, gene indices)."""
    x.eliminate_zeros()
    genes = seurat_hvg(x, n_top, min_cells=3)
    return x[:, genes].astype(np.float32), genes


def shallow_umi(seed: int = 0) -> Any:
    """UNSEEN: shallow droplet sequencing: pbmc3k's UMIs thinned binomially to 25% (about 550 per cell), 1,000
    cells in the label proportions (at least 15 per label), the 2,000 most variable genes of the thinned cells
    (seen in >= 3 of them); 8 labels."""
    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 1111)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    rows = _stratified_rows(labels, 1000, 15, rng)
    x = src.X.tocsr()[rows].astype(np.float64)
    x.data = rng.binomial(x.data.astype(np.int64), 0.25).astype(np.float64)
    sub, genes = _thinned_hvg(x, 2000)
    desc = (
        f"shallow_umi (unseen): pbmc3k UMIs thinned to 25%, {sub.shape[0]} cells x {sub.shape[1]} highly variable "
        f"genes, 8 labels, median {np.median(np.asarray(sub.sum(1))):.0f} UMIs per cell on them, "
        f"{1 - sub.nnz / np.prod(sub.shape):.0%} zeros"
    )
    return _anndata(sub, labels[rows], [str(g) for g in src.var_names[genes]], "counts", desc, unseen=True)


def ambient_corrected(seed: int = 0) -> Any:
    """UNSEEN: ambient-RNA-corrected UMI counts as SoupX (roundToInt = FALSE) or CellBender leave them: pbmc3k,
    800 cells in the label proportions (at least 10 per label), 2,000 most variable genes, each cell minus
    rho x its library x the soup profile (the pooled expression of all 2,638 cells; rho ~ U(0.02, 0.2) per cell),
    floored at 0: non-negative, mostly non-integer values, more zeros than the raw counts."""
    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 1212)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    full = src.X.tocsr().astype(np.float64)
    soup = np.asarray(full.sum(0)).ravel()
    soup /= soup.sum()
    rows = _stratified_rows(labels, 800, 10, rng)
    x = full[rows]
    genes = seurat_hvg(x, 2000, min_cells=3)
    lib = np.asarray(x.sum(1)).ravel()  # the library over all genes, as the correction sees it
    rho = rng.uniform(0.02, 0.2, rows.size)
    y = np.maximum(x[:, genes].toarray() - (rho * lib)[:, None] * soup[genes][None, :], 0.0).astype(np.float32)
    desc = (
        f"ambient_corrected (unseen): pbmc3k counts minus a per-cell share of the soup (SoupX-like, not rounded), "
        f"{y.shape[0]} cells x {y.shape[1]} genes, 8 labels, {np.mean(y == 0):.0%} zeros, "
        f"{np.mean(y[y > 0] != np.round(y[y > 0])):.0%} of non-zero values non-integer"
    )
    return _anndata(y, labels[rows], [str(g) for g in src.var_names[genes]], "counts", desc, unseen=True,
                    non_integer=True)  # fmt: skip


def two_batches(seed: int = 0) -> Any:
    """UNSEEN: two sequencing batches with every label in both: pbmc3k, 1,000 cells in the label proportions (at
    least 15 per label), half of them (at random) thinned binomially per gene as a second chemistry would capture
    them (each gene kept with p = 0.6 x U(0.4, 1): fewer UMIs, gene-specific losses), then the 2,000 most variable
    genes of the pooled cells. The batch is in obs['batch'], not in the label: a generator must reproduce both
    batches within each label."""
    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 1414)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    rows = _stratified_rows(labels, 1000, 15, rng)
    x = src.X.tocsr()[rows].astype(np.float64).tocoo()
    batch = rng.random(rows.size) < 0.5
    keep = 0.6 * rng.uniform(0.4, 1.0, x.shape[1])
    second = batch[x.row]
    x.data[second] = rng.binomial(x.data[second].astype(np.int64), keep[x.col[second]]).astype(np.float64)
    sub, genes = _thinned_hvg(x.tocsr(), 2000)
    desc = (
        f"two_batches (unseen): pbmc3k UMI counts in two batches (the second thinned per gene), "
        f"{sub.shape[0]} cells x {sub.shape[1]} genes, 8 labels, {int(batch.sum())} cells in batch B, "
        f"{1 - sub.nnz / np.prod(sub.shape):.0%} zeros"
    )
    adata = _anndata(sub, labels[rows], [str(g) for g in src.var_names[genes]], "counts", desc, unseen=True)
    adata.obs["batch"] = np.where(batch, "B", "A")
    return adata


PANEL_SIZES = (900, 700, 500, 400, 250, 150, 100)


def targeted_panel(seed: int = 0) -> Any:
    """UNSEEN: a targeted gene panel (BD Rhapsody-like), a simulation: 3,000 cells x 400 genes, 7 labels (900 to
    100), deep per gene (log-normal libraries around 2,500 on 400 genes), 30 marker genes per label at
    e^1..e^3, gene-specific NB dispersion (shape 0.5..30), few zeros: many cells, few genes."""
    rng = np.random.default_rng(seed + 1313)
    labels, code = _typed_labels(PANEL_SIZES)
    n, g = labels.size, 400
    log_mu = rng.normal(0.0, 1.2, g)[None, :] + _programmes(rng, len(PANEL_SIZES), g, 30, 1.0, 3.0)[code]
    log_mu += rng.normal(0.0, 0.2, (n, g))
    x = _droplet_counts(rng, log_mu, library=(2.5e3, 0.4), theta=(3.0, 0.8), theta_range=(0.5, 30.0))
    desc = (
        f"targeted_panel (unseen): simulated targeted-panel counts, {n} cells x {g} genes, "
        f"{len(PANEL_SIZES)} labels ({max(PANEL_SIZES)} to {min(PANEL_SIZES)}), {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc)


# ------------------------------ a second batch, added later on 2026-12-06 on the same terms (run once, as they are)
IMAGING_SIZES = (700, 450, 350, 250, 200, 150, 120, 90, 60, 40, 25, 12)


def imaging_spatial(seed: int = 0) -> Any:
    """UNSEEN: imaging-based spatial transcriptomics (MERFISH / Xenium-like), a simulation: 2,447 segmented cells
    x a 300-gene panel, 12 labels (700 to 12), 15 designed markers per label at e^1.5..e^3.5. Transcripts scale
    with the cell's volume (log-normal, sd 0.45) and a detection efficiency (about 180 per cell on the panel),
    near-Poisson noise (NB shape around 8), segmentation bleed (each cell also holds 0-25% of a random
    neighbour's transcripts, of any type), and the values divided by the cell's volume (times the median volume),
    as Vizgen's and Squidpy's volume normalisation leave them: non-negative, non-integer."""
    rng = np.random.default_rng(seed + 1515)
    labels, code = _typed_labels(IMAGING_SIZES)
    n, g, k = labels.size, 300, len(IMAGING_SIZES)
    type_prop = np.exp(rng.normal(0.0, 1.2, g)[None, :] + _programmes(rng, k, g, 15, 1.5, 3.5))
    type_prop /= type_prop.sum(1, keepdims=True)
    volume = np.exp(rng.normal(0.0, 0.45, n))
    library = 180.0 * volume**0.8 * np.exp(rng.normal(0.0, 0.25, n))
    neighbour = rng.integers(0, k, n)  # the type of the cell whose transcripts bleed in
    bleed = rng.uniform(0.0, 0.25, n)
    mu = library[:, None] * (type_prop[code] + bleed[:, None] * type_prop[neighbour])
    theta = np.clip(np.exp(rng.normal(np.log(8.0), 0.6, g)), 2.0, 100.0)[None, :]
    x = (_gamma_poisson(rng, mu, theta) / volume[:, None]).astype(np.float32)
    desc = (
        f"imaging_spatial (unseen): simulated MERFISH-like cells, {n} cells x {g} panel genes, {k} labels "
        f"({max(IMAGING_SIZES)} to {min(IMAGING_SIZES)}), counts with segmentation bleed divided by cell volume "
        f"(non-integer), median {np.median(x.sum(1)):.0f} per cell, {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc, non_integer=True)


def pearson_residuals(seed: int = 0) -> Any:
    """UNSEEN: analytic Pearson residuals (Lause et al. 2021; scanpy's normalize_pearson_residuals, Seurat's
    SCTransform scale.data), what X holds after that workflow: pbmc3k, 1,000 cells in the label proportions (at
    least 15 per label), the 2,000 genes of highest residual variance, z = (x - mu) / sqrt(mu + mu^2 / 100) with
    mu = the cell's total x the gene's share, clipped to +-sqrt(cells). Signed, dense, skewed to the right: each
    gene's floor is where it is not detected, its tail where it is a marker."""
    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 1616)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    rows = _stratified_rows(labels, 1000, 15, rng)
    x = src.X.tocsr()[rows].astype(np.float64)
    detected = np.asarray((x > 0).sum(0)).ravel() >= 3
    x = x[:, detected].toarray()
    mu = x.sum(1, keepdims=True) * (x.sum(0, keepdims=True) / x.sum())
    clip = np.sqrt(x.shape[0])
    z = np.clip((x - mu) / np.sqrt(mu + mu**2 / 100.0), -clip, clip)
    genes = np.sort(np.argsort(-z.var(0), kind="stable")[:2000])
    y = z[:, genes].astype(np.float32)
    names = src.var_names[np.flatnonzero(detected)[genes]]
    desc = (
        f"pearson_residuals (unseen): analytic Pearson residuals of pbmc3k counts (theta 100, clipped at "
        f"+-{clip:.1f}), {y.shape[0]} cells x {y.shape[1]} genes of highest residual variance, 8 labels, "
        f"values {y.min():.2f} to {y.max():.2f}, {np.mean(y < 0):.0%} negative"
    )
    return _anndata(y, labels[rows], [str(g) for g in names], "log", desc, unseen=True)


PERTURB_SIZES = (400, 150, 120, 90, 70, 50, 35, 20)  # non-targeting control first


def perturb_seq(seed: int = 0) -> Any:
    """UNSEEN: a CRISPR screen read out by droplet UMIs (Perturb-seq-like), a simulation: 935 cells of one cell
    line x 2,000 genes, labelled by guide: non-targeting controls (400) and 7 perturbations (150 to 20). Each
    knocks its target gene down 4-fold and shifts a downstream programme of 0 to 40 genes by e^0.3..e^1 either
    way (one perturbation has no effect at all); every cell also sits somewhere in a cell cycle shared by all
    labels (a 150-gene programme) and has its own log-normal library. Labels differ weakly, so real cells are
    told apart far less often than cell types are."""
    rng = np.random.default_rng(seed + 1717)
    labels, code = _typed_labels(PERTURB_SIZES)
    labels = np.array(["non-targeting" if c == 0 else f"guide{c}" for c in code])
    n, g, k = labels.size, 2000, len(PERTURB_SIZES)
    effect = np.zeros((k, g))
    for label, n_down in zip(range(1, k), (40, 30, 25, 15, 10, 5, 0), strict=True):
        effect[label, rng.integers(0, g)] = -np.log(4.0)
        genes = rng.choice(g, size=n_down, replace=False)
        effect[label, genes] += rng.uniform(0.3, 1.0, n_down) * rng.choice([-1.0, 1.0], n_down)
    cycle = np.zeros(g)
    cycle[rng.choice(g, size=150, replace=False)] = rng.uniform(0.5, 1.5, 150)
    phase = rng.beta(0.6, 1.2, n)  # most cells out of the cycle's peak
    log_mu = rng.normal(0.0, 1.3, g)[None, :] + effect[code] + phase[:, None] * cycle[None, :]
    x = _droplet_counts(rng, log_mu, library=(3e3, 0.45), theta=(2.0, 0.7), theta_range=(0.2, 30.0))
    desc = (
        f"perturb_seq (unseen): simulated CRISPR-screen UMI counts, {n} cells x {g} genes, {k} guide labels "
        f"(non-targeting {PERTURB_SIZES[0]}, 7 perturbations of {PERTURB_SIZES[1]} to {PERTURB_SIZES[-1]}; weak "
        f"effects, a shared cell cycle), {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc)


# ------------------------------------ a third batch, added 2026-12-07 on the same terms (run once, as they are)
METHYLATION_SIZES = (220, 160, 110, 70, 40, 20)


def methylation(seed: int = 0) -> Any:
    """UNSEEN: single-nucleus DNA methylation (snmC-seq-like) gene-body mCH levels, as ALLCools' posterior
    normalisation leaves them, a simulation: 620 nuclei x 2,000 genes, 6 neuron types (220 to 20). Each nucleus
    has its own global mCH rate (around 4%); genes differ by a log-normal factor and each type is hypomethylated
    on 80 genes of its own (its markers) and hypermethylated on 40. Coverage is gamma-Poisson (gene length x
    nucleus depth; short genes are often uncovered), methylated cytosines beta-binomial. The value is
    (mc + a) / (cov + a + b) / (a / (a + b)) with the nucleus' prior a = 2 x rate, b = 2 x (1 - rate): positive,
    dense, non-integer, about 1 at the nucleus' mean, and exactly 1 wherever the gene had no coverage (a point
    mass inside the range, not at 0)."""
    rng = np.random.default_rng(seed + 1818)
    labels, code = _typed_labels(METHYLATION_SIZES)
    n, g, k = labels.size, 2000, len(METHYLATION_SIZES)
    rate = np.exp(rng.normal(np.log(0.04), 0.3, n))
    programme = np.zeros((k, g))
    for t in range(k):
        hypo, hyper = np.split(rng.choice(g, size=120, replace=False), [80])
        programme[t, hypo] = -rng.uniform(0.7, 2.0, hypo.size)
        programme[t, hyper] = rng.uniform(0.3, 1.0, hyper.size)
    level = np.clip(rate[:, None] * np.exp(rng.normal(0.0, 0.5, g)[None, :] + programme[code]), 1e-4, 0.9)
    depth = np.exp(rng.normal(0.0, 0.4, n))
    length = np.exp(rng.normal(np.log(15.0), 1.1, g))
    cov = _gamma_poisson(rng, depth[:, None] * length[None, :], 2.0)
    strength = 30.0  # beta-binomial: cytosines of one gene in one nucleus share a methylation level
    p = rng.beta(level * strength, (1.0 - level) * strength)
    mc = rng.binomial(cov.astype(np.int64), p).astype(np.float64)
    a, b = 2.0 * rate[:, None], 2.0 * (1.0 - rate[:, None])
    x = ((mc + a) / (cov + a + b) / (a / (a + b))).astype(np.float32)
    desc = (
        f"methylation (unseen): simulated snmC-seq gene-body mCH, ALLCools posterior ratios, {n} nuclei x {g} "
        f"genes, {k} labels ({max(METHYLATION_SIZES)} to {min(METHYLATION_SIZES)}), values {x.min():.2f} to "
        f"{x.max():.1f}, {np.mean(cov == 0):.0%} uncovered (exactly 1)"
    )
    return _unseen(rng, x, labels, "log", desc, non_integer=True)


PROTEOMICS_SIZES = (160, 100, 70, 45, 25)


def proteomics(seed: int = 0) -> Any:
    """UNSEEN: single-cell proteomics (SCoPE2 / plexDIA-like) log2 protein intensities with the missing values
    filled with 0, as they reach AnnData: 400 cells x 800 proteins, 5 labels (160 to 25). Protein abundance
    log2 ~ N(18, 2.2); each type shifts 40 proteins of its own by +-U(0.8, 2.5); a per-cell loading (sd 0.4)
    and per-value noise (sd 0.5). Values are missing not at random (the mass spectrometer misses faint
    peptides: P(seen) = sigmoid((log2 value - 16.5) / 0.8)) and a little at random (5%): zeros far below the
    smallest seen value, and more of them for faint proteins and faint cells."""
    rng = np.random.default_rng(seed + 1919)
    labels, code = _typed_labels(PROTEOMICS_SIZES)
    n, g, k = labels.size, 800, len(PROTEOMICS_SIZES)
    shift = _programmes(rng, k, g, 40, 0.8, 2.5) * rng.choice([-1.0, 1.0], (k, g))
    value = rng.normal(18.0, 2.2, g)[None, :] + shift[code] + rng.normal(0.0, 0.4, (n, 1))
    value += rng.normal(0.0, 0.5, (n, g))
    seen = (rng.random((n, g)) < _sigmoid((value - 16.5) / 0.8)) & (rng.random((n, g)) > 0.05)
    x = np.where(seen, value, 0.0).astype(np.float32)
    desc = (
        f"proteomics (unseen): simulated single-cell proteomics log2 intensities, missing as 0, {n} cells x {g} "
        f"proteins, {k} labels ({max(PROTEOMICS_SIZES)} to {min(PROTEOMICS_SIZES)}), {np.mean(x == 0):.0%} "
        f"missing, seen values {x[x > 0].min():.1f} to {x.max():.1f}"
    )
    return _unseen(rng, x, labels, "log", desc, non_integer=True)


UNFILTERED_SIZES = (300, 180, 120, 80, 50, 30, 15)


def unfiltered_umi(seed: int = 0) -> Any:
    """UNSEEN: a droplet UMI matrix with every gene of the reference, as Cell Ranger writes it and many users
    pass it on unfiltered, a simulation: 775 cells x 8,000 genes, 7 labels (300 to 15). A third of the genes are
    never seen in these cells (all-zero columns); 13 mitochondrial genes take 2-15% of each cell's UMIs (more in
    stressed cells) and two MALAT1-like genes about 3% each; 25 markers per label at e^1..e^3; log-normal
    libraries around 4,000 and gene-specific NB dispersion (shape 0.3..50)."""
    rng = np.random.default_rng(seed + 2020)
    labels, code = _typed_labels(UNFILTERED_SIZES)
    n, g, k = labels.size, 8000, len(UNFILTERED_SIZES)
    log_mu = rng.normal(-1.0, 1.5, g)[None, :] + _programmes(rng, k, g, 25, 1.0, 3.0)[code]
    log_mu += rng.normal(0.0, 0.2, (n, g))
    silent = rng.choice(np.arange(15, g), size=g // 3, replace=False)
    log_mu[:, silent] = -np.inf  # never expressed here
    x = _droplet_counts(rng, log_mu, library=(4e3, 0.5), theta=(3.0, 0.8), theta_range=(0.3, 50.0))
    lib = x.sum(1, keepdims=True)
    mito_share = np.clip(rng.gamma(2.0, 0.025, n), 0.02, 0.15)[:, None]  # of the final library
    mito_prop = rng.dirichlet(np.full(13, 2.0))
    x[:, :13] = rng.poisson(lib * mito_share / (1 - mito_share - 0.06) * mito_prop[None, :])
    x[:, 13:15] = rng.poisson(lib * 0.03 / (1 - mito_share - 0.06) * np.exp(rng.normal(0.0, 0.2, (n, 2))))
    desc = (
        f"unfiltered_umi (unseen): simulated droplet UMI counts with every gene, {n} cells x {g} genes, {k} labels "
        f"({max(UNFILTERED_SIZES)} to {min(UNFILTERED_SIZES)}), {int(np.sum(x.sum(0) == 0))} genes never seen, "
        f"median {np.median(x[:, :13].sum(1) / x.sum(1)):.1%} mitochondrial, {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "counts", desc)


FRACTION_SIZES = (250, 180, 140, 100, 80, 60, 40, 12)


def fractions(seed: int = 0) -> Any:
    """UNSEEN: relative abundances, each cell's counts divided by its total (`sc.pp.normalize_total(target_sum=1)`
    without log1p; compositional analyses start here), a simulation: 862 cells x 1,500 genes, 8 labels (250 to
    12), 30 markers per label at e^1..e^3, log-normal libraries around 2,500 and gene-specific NB dispersion
    (shape 0.3..50). Non-negative, non-integer, every row sums to 1, most values below 0.01: linear-scale values
    that never reach the size at which normalize=auto logs them."""
    rng = np.random.default_rng(seed + 2121)
    labels, code = _typed_labels(FRACTION_SIZES)
    n, g, k = labels.size, 1500, len(FRACTION_SIZES)
    log_mu = rng.normal(-0.5, 1.4, g)[None, :] + _programmes(rng, k, g, 30, 1.0, 3.0)[code]
    log_mu += rng.normal(0.0, 0.2, (n, g))
    counts = _droplet_counts(rng, log_mu, library=(2.5e3, 0.5), theta=(3.0, 0.8), theta_range=(0.3, 50.0))
    x = (counts / counts.sum(1, keepdims=True)).astype(np.float32)
    desc = (
        f"fractions (unseen): simulated UMI counts divided by each cell's total, {n} cells x {g} genes, {k} labels "
        f"({max(FRACTION_SIZES)} to {min(FRACTION_SIZES)}), max {x.max():.3f}, {np.mean(x == 0):.0%} zeros"
    )
    return _unseen(rng, x, labels, "linear", desc, non_integer=True)


DENOISED_NEIGHBOURS = 15


def denoised(seed: int = 0) -> Any:
    """UNSEEN: denoised expression as a generative model exports it, a transformation of pbmc3k: 1,000 cells in the
    label proportions (at least 15 per label), the 2,000 most variable genes, each cell's expected fractions
    (scVI's get_normalized_expression with its default library size of 1): the mean fractions of the cell and its
    14 nearest neighbours (PCA of the lognorm values), blended with 2% of the genes' overall fractions so that no
    value is 0, each row summing to 1. Dense, strictly positive, non-integer and far below 100: small
    linear-scale values, like fractions, without the zeros."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 2323)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    rows = _stratified_rows(labels, 1000, 15, rng)
    counts = src.X.tocsr()[rows].astype(np.float64)
    genes = seurat_hvg(counts, 2000, min_cells=3)
    counts = np.asarray(counts[:, genes].toarray())
    pcs = PCA(n_components=30, random_state=seed).fit_transform(_pbmc_lognorm(counts))
    _, neighbours = NearestNeighbors(n_neighbors=DENOISED_NEIGHBOURS).fit(pcs).kneighbors(pcs)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    smooth = fractions[neighbours].mean(1)
    overall = counts.sum(0) / counts.sum()
    x = 0.98 * smooth + 0.02 * np.maximum(overall, 1e-9)[None, :]
    x = (x / x.sum(1, keepdims=True)).astype(np.float32)
    desc = (
        f"denoised (unseen): pbmc3k cells' expected fractions (a {DENOISED_NEIGHBOURS}-neighbour mean, scVI-like "
        f"normalized expression), {x.shape[0]} cells x {x.shape[1]} highly variable genes, 8 labels, values "
        f"{x.min():.1e} to {x.max():.3f}, no zeros"
    )
    return _anndata(x, labels[rows], [str(g) for g in src.var_names[genes]], "linear", desc, unseen=True,
                    non_integer=True)  # fmt: skip


# ------------------------------------ a fourth batch, added 2026-12-08 on the same terms (run once, as they are)
CLR_ADT_SIZES = (240, 150, 110, 80, 50, 35, 23, 12)


def clr_adt(seed: int = 0) -> Any:
    """UNSEEN: CITE-seq protein (ADT) values after the centred log-ratio transform most pipelines apply (muon's
    pt.pp.clr and Seurat's CLR across each cell), a transformation of a fresh simulation in the style of cite_adt:
    700 cells x 40 antibodies, 8 labels (240 to 12). Counts: baselines e^2.5..e^4.5 (ambient background on every
    protein), 4 marker proteins per label at e^2..e^4 above it, a per-cell staining factor (sd 0.3) and
    gamma-Poisson noise (shape 5). Then, per cell, log1p(x) minus the cell's mean of log1p over the proteins:
    signed, dense, non-integer, every row summing to 0; the staining factor cancels out, the markers stand up."""
    rng = np.random.default_rng(seed + 2424)
    labels, code = _typed_labels(CLR_ADT_SIZES)
    n, g, k = labels.size, 40, len(CLR_ADT_SIZES)
    log_mu = rng.uniform(2.5, 4.5, g)[None, :] + _programmes(rng, k, g, 4, 2.0, 4.0)[code]
    counts = _gamma_poisson(rng, np.exp(log_mu + rng.normal(0.0, 0.3, (n, 1))), 5.0)
    logged = np.log1p(counts)
    x = (logged - logged.mean(1, keepdims=True)).astype(np.float32)
    desc = (
        f"clr_adt (unseen): CLR of simulated CITE-seq protein counts (per cell: log1p minus the cell's mean), {n} "
        f"cells x {g} antibodies, {k} labels ({max(CLR_ADT_SIZES)} to {min(CLR_ADT_SIZES)}), signed "
        f"({np.mean(x < 0):.0%} negative), {x.min():.2f} to {x.max():.2f}, each cell centred at 0, "
        f"{np.mean(counts == 0):.1%} zero counts before the transform"
    )
    return _unseen(rng, x, labels, "log", desc, non_integer=True, signed=True)


METACELL_SIZE = 20  # cells per metacell, about (each label's cells split into round(n / 20) equal groups)
METACELL_MIN = 4  # labels left with fewer metacells are dropped


def _balanced_groups(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Group codes (0..k-1) of the rows of `z` into k groups of equal size (floor or ceil of n / k): k-means
    centres, then twice a greedy assignment of the closest (row, centre) pairs under each centre's quota, the
    centres moved to their groups' means in between (size-constrained k-means, as metacell tools keep sizes
    even)."""
    from sklearn.cluster import KMeans

    n = z.shape[0]
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z)
    centres, natural = km.cluster_centers_, np.bincount(km.labels_, minlength=k)
    quota = np.full(k, n // k)
    quota[np.argsort(-natural, kind="stable")[: n % k]] += 1  # the largest natural clusters take the remainder
    for _ in range(2):
        dist = ((z[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        codes, left = np.full(n, -1), quota.copy()
        for flat in np.argsort(dist, axis=None, kind="stable"):
            row, c = divmod(int(flat), k)
            if codes[row] < 0 and left[c] > 0:
                codes[row], left[c] = c, left[c] - 1
        centres = np.stack([z[codes == c].mean(0) for c in range(k)])
    return codes


def metacells(seed: int = 0) -> Any:
    """UNSEEN: metacell (pseudobulk-of-neighbours) counts as SEACells / MetaCell users pass them on, a
    transformation of pbmc3k: within each label, its cells are split into round(n / 20) groups of equal size
    (18 to 21 neighbours in pbmc3k) by size-constrained k-means on a 20-PC PCA of their lognorm values (1,000 most variable
    genes of the label), the raw UMI counts of each group SUMMED over all genes, then the 2,000 most variable
    genes of the metacells (scanpy's seurat rule, seen in >= 3). Labels left with fewer than 4 metacells are
    dropped (pbmc3k: Dendritic, 36 cells -> 2, and Megakaryocytes, 13 -> 1), leaving 6 labels and 129 metacells:
    integer, deep (about 20 cells' UMIs each), about half the values zero where the single cells have 92% on
    these genes (the rest are mostly markers of other labels), few samples per label. obs['n_cells'] holds the group
    sizes."""
    from sklearn.decomposition import PCA

    from vaexprs.data.preprocess import highly_variable_genes

    src = _read_shared("pbmc3k")
    rng = np.random.default_rng(seed + 2525)
    x = src.X.tocsr().astype(np.float64)
    cell_labels = src.obs["cell_type"].astype(str).to_numpy()
    sums, labels, members, dropped = [], [], [], {}
    for lab in np.unique(cell_labels):
        rows = np.flatnonzero(cell_labels == lab)
        k = max(1, round(rows.size / METACELL_SIZE))
        if k < METACELL_MIN:
            dropped[str(lab)] = int(rows.size)
            continue
        sub = x[rows]
        hvg = highly_variable_genes(sub, 1000)
        z = PCA(n_components=20, random_state=seed).fit_transform(_pbmc_lognorm(sub[:, hvg]))
        codes = _balanced_groups(z, k, int(rng.integers(2**31 - 1)))
        for c in range(k):
            sums.append(np.asarray(sub[codes == c].sum(0)).ravel())
            labels.append(lab)
            members.append(int(np.sum(codes == c)))
    counts = np.stack(sums)
    genes = seurat_hvg(counts, 2000, min_cells=3)
    y = counts[:, genes].astype(np.float32)
    order = rng.permutation(y.shape[0])
    y, labels_arr, sizes = y[order], np.asarray(labels)[order], np.asarray(members)[order]
    desc = (
        f"metacells (unseen): pbmc3k UMI counts summed over metacells of {sizes.min()} to {sizes.max()} "
        f"neighbouring cells (size-constrained k-means on PCA within each label), {y.shape[0]} metacells x "
        f"{y.shape[1]} highly variable genes, {np.unique(labels_arr).size} labels "
        f"({'/'.join(str(v) for v in sorted(np.unique(labels_arr, return_counts=True)[1], reverse=True))}; "
        f"dropped with < {METACELL_MIN} metacells: "
        f"{', '.join(f'{k} ({v} cells)' for k, v in dropped.items()) or 'none'}), median "
        f"{np.median(y.sum(1)):.0f} UMIs per metacell on them, max {y.max():.0f}, {np.mean(y == 0):.1%} zeros"
    )
    adata = _anndata(y, labels_arr, [str(g) for g in src.var_names[genes]], "counts", desc, unseen=True,
                     dropped_labels=dropped)  # fmt: skip
    adata.obs["n_cells"] = sizes
    return adata


BUILDERS: dict[str, Callable[..., Any]] = {
    "yan": yan,
    "treutlein": treutlein,
    "pbmc3k": pbmc3k,
    "fulllength": fulllength,
    "umi_hvg": umi_hvg,
    "rare_label": rare_label,
    "vignette": vignette,
    "scanpy_log": scanpy_log,
    "scanpy_scaled": scanpy_scaled,
    "scanpy_regressed": scanpy_regressed,
    "trajectory": trajectory,
    "microarray": microarray,
    "atac_binary": atac_binary,
    "cite_adt": cite_adt,
    "bulk_counts": bulk_counts,
    "log2tpm": log2tpm,
    "many_labels": many_labels,
    "visium_spots": visium_spots,
    "shallow_umi": shallow_umi,
    "ambient_corrected": ambient_corrected,
    "targeted_panel": targeted_panel,
    "two_batches": two_batches,
    "imaging_spatial": imaging_spatial,
    "pearson_residuals": pearson_residuals,
    "perturb_seq": perturb_seq,
    "methylation": methylation,
    "proteomics": proteomics,
    "unfiltered_umi": unfiltered_umi,
    "fractions": fractions,
    "denoised": denoised,
    "clr_adt": clr_adt,
    "metacells": metacells,
}
# these need /work/shared/data
SHARED_ONLY = {
    "yan", "treutlein", "pbmc3k", "umi_hvg", "rare_label", "scanpy_log", "scanpy_scaled", "scanpy_regressed",
    "shallow_umi", "ambient_corrected", "two_batches", "pearson_residuals", "denoised",
    "metacells",
}  # fmt: skip


def available() -> list[str]:
    """The data sets that can be built here (the pbmc3k-derived ones need the shared file)."""
    return [
        n
        for n in BUILDERS
        if n not in SHARED_ONLY or (DATA / ("pbmc3k.h5ad" if n not in ("yan", "treutlein") else f"{n}.h5ad")).is_file()
    ]


def build(name: str, seed: int = 0) -> Any:
    """The named data set (raises DatasetUnavailable when its shared file is absent)."""
    if name not in BUILDERS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[name](seed)


def describe(adata: Any) -> dict[str, Any]:
    """Shape, zeros, value range, library sizes and label counts: the data-set table of the report."""
    x = adata.X
    n, g = adata.shape
    nnz = x.nnz if hasattr(x, "nnz") else int(np.count_nonzero(x))
    values = x.data if hasattr(x, "data") and hasattr(x, "nnz") else np.asarray(x)
    lib = np.asarray(x.sum(1)).ravel()
    counts = adata.obs["cell_type"].value_counts()
    return {
        "kind": adata.uns["bench"]["kind"],
        "unseen": bool(adata.uns["bench"].get("unseen", False)),
        "description": adata.uns["bench"]["description"],
        "n_cells": int(n),
        "n_genes": int(g),
        "zero_frac": float(1.0 - nnz / (n * g)),
        "max": float(values.max()),
        "integer": bool(np.all(values == np.round(values))),
        "library_min": float(lib.min()),
        "library_median": float(np.median(lib)),
        "library_max": float(lib.max()),
        "labels": {str(k): int(v) for k, v in counts.items()},
    }


if __name__ == "__main__":  # python -m benchmarks.datasets: print every data set's summary
    import json
    import time

    for name in BUILDERS:
        t = time.perf_counter()
        try:
            d = describe(build(name))
        except DatasetUnavailable as exc:
            print(f"{name}: skipped ({exc})")
            continue
        d["build_seconds"] = round(time.perf_counter() - t, 2)
        print(name, json.dumps(d))
