"""Where do generated cells lack (or add) variance? A diagnostic of the study's in-sample models, not a default.

    PYTHONPATH=. python benchmarks/research/pc_variance.py denoised,fractions
    -> one JSON line per set; all of them in benchmarks/results/research/pc_variance.json

The harness tells real from generated cells with a random forest on the first 50 principal components of the
pooled cells. Here each set's in-sample model (fit_vae's defaults at the study's seed: the study's unit) generates
its cells as the study asks, both are put in the harness's scoring space and pooled (as many of each), and the
ratio of generated to real variance along each pooled component says where the forest sees a difference: ratios
near 1 where the model reproduces the real cells' structure, below 1 where it lacks it, above 1 where it adds
variance (per-gene noise the real cells do not have). The baseline is the same ratio for one label-stratified
half of the real cells against the other: what "as real" looks like with this many cells (components fitted to
a finite pool are not all 1 even then).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks.quality import SEED, clean, write_atomic
from benchmarks.research.common import score_as_study, setup, study_insample, study_space

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "research" / "pc_variance.json"
BANDS = ((0, 10), (10, 20), (20, 30), (30, 50))  # components 1-10, 11-20, 21-30, 31-50


def pc_variance_ratios(real: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`other` over `real` variance along each of the first harness.N_PCS components of the pooled cells (as
    many of each, drawn as the harness draws them)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(SEED)
    m = min(real.shape[0], other.shape[0])
    a, b = real[rng.choice(real.shape[0], m, replace=False)], other[rng.choice(other.shape[0], m, replace=False)]
    n = int(min(harness.N_PCS, 2 * m - 1, real.shape[1]))
    pca = PCA(n_components=n, random_state=SEED).fit(np.vstack([a, b]))
    return pca.transform(b).var(0) / np.maximum(pca.transform(a).var(0), 1e-12)


def by_band(ratios: np.ndarray) -> dict[str, float]:
    return {f"pc{a + 1}-{b}": float(np.median(ratios[a:b])) for a, b in BANDS if a < ratios.size}


def set_row(name: str) -> dict[str, Any]:
    import vaexprs

    ds, result, fit_s = study_insample(name)
    gen = vaexprs.gen_exprs(result, num_samples=ds.adata.n_obs, seed=SEED)
    metrics = score_as_study(ds, gen)
    scored = study_space(ds, gen)
    ratios = pc_variance_ratios(ds.real, scored)
    half_a, half_b = harness.stratified_split(ds.labels, 0.5, SEED)
    baseline = pc_variance_ratios(ds.real[half_a], ds.real[half_b])
    gene_ratio = np.median(scored.var(0) / np.maximum(ds.real.var(0), 1e-12))
    row = {
        "dataset": name,
        "head": result.model_config.likelihood,
        "auc": metrics["auc"],
        "gene_var_ratio_median": float(gene_ratio),
        "pc_var_ratio_by_band": by_band(ratios),
        "real_halves_by_band": by_band(baseline),
        "pc_var_ratio": ratios.round(3).tolist(),
        "real_halves": baseline.round(3).tolist(),
        "fit_s": fit_s,
    }
    print(json.dumps(clean({k: v for k, v in row.items() if k not in ("pc_var_ratio", "real_halves")})), flush=True)
    return clean(row)


def main(argv: list[str]) -> int:
    setup()
    rows = [set_row(name) for name in (argv[0] if argv else "denoised,fractions").split(",")]
    write_atomic(OUT, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
