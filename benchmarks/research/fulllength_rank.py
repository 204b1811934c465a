"""Is the generated cells' within-label variation lower-rank (more coherent across genes) than the real cells'?
Share of the within-label variance in the top k principal components of the within-label residuals (each cell
minus its label's mean), real vs generated (own latents / GMM latents, hurdle sampled), for saved fits of
benchmarks.research.fulllength_diag.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.research.fulllength_rank fulllength 1 [tag]
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from benchmarks.research.fulllength_diag import decode, latent_variants, load_saved_fit


def top_share(x: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 3, 10)) -> list[float]:
    r = x.astype(np.float64).copy()
    for lab in np.unique(labels):
        r[labels == lab] -= r[labels == lab].mean(0)
    s = np.linalg.svd(r, compute_uv=False) ** 2
    return [round(float(s[:k].sum() / s.sum()), 3) for k in ks]


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    name, seed = sys.argv[1], int(sys.argv[2])
    tag = sys.argv[3] if len(sys.argv) > 3 else ""
    fit = load_saved_fit(name, seed, tag)
    labels, real, result, codes, mu, lv = fit.labels, fit.real, fit.result, fit.codes, fit.mu, fit.logvar
    print(f"{name} s{seed}{tag}: share of within-label variance in top 1/3/10 residual PCs")
    print("  real", top_share(real, labels))
    rng = np.random.default_rng(11)
    lat = latent_variants(result, mu, lv, codes, rng)
    for lname in ("own", "gmm"):
        for mode in ("s1", "mean"):
            print(f"  {lname} {mode}", top_share(decode(result, lat[lname], codes, mode, rng), labels))
