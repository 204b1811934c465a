"""In-sample AUC rewards copies of the training cells. For each latent sampler of
benchmarks.research.fulllength_diag (hurdle sampled noise), the real-vs-generated AUC and auc_pca_distance next
to a novelty check: the median distance (log space, all genes) of a generated cell to its nearest real cell,
over the median distance of a real cell to its nearest OTHER real cell (1 = as novel as another real cell,
<< 1 = near-copies of training cells).

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.research.fulllength_novelty fulllength 1 [tag]
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np

from benchmarks import harness
from benchmarks.research.fulllength_diag import OUT, decode, latent_variants, load_saved_fit


def nn_dist(a: np.ndarray, b: np.ndarray, same: bool = False) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2 * a64 @ b64.T
    if same:
        np.fill_diagonal(d, np.inf)
    return np.sqrt(np.maximum(d.min(1), 0))


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    name, seed = sys.argv[1], int(sys.argv[2])
    tag = sys.argv[3] if len(sys.argv) > 3 else ""
    fit = load_saved_fit(name, seed, tag)
    labels, real, result, codes, mu, lv = fit.labels, fit.real, fit.result, fit.codes, fit.mu, fit.logvar
    base = float(np.median(nn_dist(real, real, same=True)))
    out = {}
    for gs in (11, 12):
        rng = np.random.default_rng(gs)
        lat = latent_variants(result, mu, lv, codes, rng)
        for lname in ("gmm", "own", "agg_post", "nn_mix", "kde", "lw"):
            gen = decode(result, lat[lname], codes, "s1", rng)
            ex = harness.explain_auc(real, gen)
            row = {
                "auc": harness.rf_auc(real, gen, 0),
                "auc_pca_distance": ex["auc_pca_distance"],
                "novelty": float(np.median(nn_dist(gen, real)) / base),
            }
            out.setdefault(lname, []).append(row)
            print(name, tag, lname, gs, {k: round(v, 3) for k, v in row.items()}, flush=True)
    (OUT / f"novelty_{name}_s{seed}{tag}.json").write_text(json.dumps(out, indent=1))
