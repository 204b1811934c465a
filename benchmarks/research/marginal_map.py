"""Would mapping each gene's generated values onto the training cells' own distribution make cells more real?
A research fit, not a default.

    PYTHONPATH=. python benchmarks/research/marginal_map.py methylation,denoised,...
    -> one JSON line per set and variant; all of them in benchmarks/results/research/marginal_map.json

What is left of the in-sample misses is the shape of single genes' values more than the cells' structure:
methylation's generated cells reach a per-cell maximum of 18 where real ones reach 12 (the per-cell maximum alone
tells them apart at 0.87), because a log-normal tail cannot draw what a beta-binomial over a few covered
cytosines leaves. Quantile mapping (the marginal step of a Gaussian copula, as scDesign2/3 model genes) keeps the
model's cells and their order per gene and replaces each gene's marginal by the real one: a generated value's
rank among a large reference sample of the same model's cells is read off the training cells' quantiles at that
rank. Both tables are QUANTILES levels per gene, so a bundle could carry them (genes x levels x 2 floats).

Here every set's default model (fit_vae's defaults at the study's seed) is trained twice, as the study trains
its in-sample unit and its held-out unit of seed 1 (half A), and its cells are scored as generated and as
mapped, exactly as the study scores them: in-sample against all cells, held-out against half B (with the
augmentation gain of a same-size generated set on B). The mapping is fitted on the training cells only (all
cells in-sample, A held-out). Heads whose cells are integer counts (nb, zinb) or the decoder mean (bce, mse)
are left as they are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks.quality import EVAL_SEED, SEED, clean, score_generated, to_log, write_atomic
from benchmarks.research.common import Store, half_split, setup, study_insample

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "research" / "marginal_map.json"
QUANTILES = 101  # levels per gene: 0, 1%, ..., 100%
REFERENCE_CELLS = 2000  # the model's own cells the generated ranks are read from (at least the training cells)
TABLE_CELLS = 2000  # training cells the real quantiles come from (a seeded sample beyond)
MAPPED_HEADS = ("hurdle", "log_hurdle", "floor_hurdle", "mixture")
SHOWN = ("auc", "keep", "corr", "zero_frac_gen", "zero_frac_real", "var_ratio_median", "max_share_over", "auc_cell_max")


def _dense(x: Any) -> np.ndarray:
    return harness.dense(x).astype(np.float64)


def quantile_tables(model_cells: np.ndarray, real_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels, genes) quantiles of the model's reference cells and of the training cells."""
    levels = np.linspace(0.0, 1.0, QUANTILES)
    return np.quantile(model_cells, levels, axis=0), np.quantile(real_cells, levels, axis=0)


def map_marginals(x: np.ndarray, model_q: np.ndarray, real_q: np.ndarray) -> np.ndarray:
    """Each gene's values -> their rank among the model's cells (ties: the mean rank, so a point mass such as
    the zeros keeps one rank) -> the training cells' value at that rank."""
    levels = np.linspace(0.0, 1.0, model_q.shape[0])
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        knots, inverse = np.unique(model_q[:, j], return_inverse=True)
        if knots.size < 2:  # the model draws one value: the training cells' median
            out[:, j] = real_q[model_q.shape[0] // 2, j]
            continue
        rank = np.bincount(inverse, weights=levels) / np.bincount(inverse)
        out[:, j] = np.interp(np.interp(x[:, j], knots, rank), levels, real_q[:, j])
    return out


def variants(result: Any, train_x: Any, request: dict[str, Any], want: dict[str, int], seed: int
             ) -> tuple[Any, dict[str, np.ndarray]]:  # fmt: skip
    """The model's cells as the study asks for them (`request`), as generated and (for a sampled continuous
    head) mapped; the reference sample has the label mix `want`."""
    import vaexprs

    gen = vaexprs.gen_exprs(result, seed=seed, **request)
    raw = {"generated": _dense(gen.x_gen)}
    if result.model_config.likelihood in MAPPED_HEADS:
        total = sum(want.values())
        scale = max(REFERENCE_CELLS, total) / total
        ref_want = {k: max(1, round(v * scale)) for k, v in want.items()}
        reference = _dense(vaexprs.gen_exprs(result, labels=ref_want, seed=seed + 7919).x_gen)
        rows = np.random.default_rng(seed).permutation(train_x.shape[0])[:TABLE_CELLS]
        model_q, real_q = quantile_tables(reference, _dense(train_x[np.sort(rows)]))
        raw["mapped"] = map_marginals(raw["generated"], model_q, real_q)
    return gen, raw


def scored(ds: Any, gen: Any, raw: np.ndarray, real: np.ndarray, labels: np.ndarray, ref: dict[str, Any],
           train_lib: float, judge: Any = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    gen.x_gen = raw.astype(np.float32)
    x = to_log(gen, ds.kind, ds.mean_lib, train_lib)
    gl = np.asarray(gen.y_gen).astype(str)
    m = score_generated(real, labels, x, gl, gen.x_gen, False, ref, judge=judge)
    return x, gl, {k: m[k] for k in SHOWN}


def set_rows(name: str, store: Store) -> list[dict[str, Any]]:
    import vaexprs

    if store.done(name):
        return store.get(name)["rows"]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    ds, result, _ = study_insample(name)
    want = harness.label_counts(ds.labels)
    gen, raws = variants(result, result.x_train, {"num_samples": ds.adata.n_obs}, want, SEED)
    for variant, raw in raws.items():
        _, _, m = scored(ds, gen, raw, ds.real, ds.labels, ds.ref, ds.mean_lib, ds.judge)
        rows.append({"dataset": name, "unit": "insample", "variant": variant, "head": result.model_config.likelihood,
                     "metrics": m})  # fmt: skip
        print(json.dumps(clean(rows[-1])), flush=True)
    tr, te, train_ad, want = half_split(ds, 1)
    result = vaexprs.fit_vae(train_ad, "cell_type", seed=1)
    gen, raws = variants(result, result.x_train, {"labels": want}, want, 1)
    ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED, split=(te, tr))
    for variant, raw in raws.items():
        x, gl, m = scored(ds, gen, raw, ds.real[te], ds.labels[te], ref, harness.mean_library(train_ad.X))
        gains = harness.classifier_gains(ds.real, ds.labels, tr, te, x, gl, 1)
        m.update({f"aug_{c}": gains[c]["gain"]["bal_acc"] for c in ("lr", "rf")})
        rows.append({"dataset": name, "unit": "heldout_seed1", "variant": variant,
                     "head": result.model_config.likelihood, "metrics": m})  # fmt: skip
        print(json.dumps(clean(rows[-1])), flush=True)
    store.put(name, {"rows": clean(rows), "seconds": time.perf_counter() - started})
    return rows


def main(argv: list[str]) -> int:
    setup()
    store = Store("marginal_map")
    names = argv[0].split(",") if argv else ["methylation", "denoised", "pearson_residuals", "fractions"]
    rows = [row for name in names for row in set_rows(name, store)]
    write_atomic(OUT, json.dumps(clean(rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
