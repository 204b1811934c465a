"""Check (not the package's behaviour): does a default model reproduce a batch effect it was never told about?

    PYTHONPATH=. python benchmarks/research/batch_mix.py [two_batches] [seed]
    -> one JSON line on stdout; written to benchmarks/results/research/batch_mix.json

`two_batches` (benchmarks/datasets.py) holds every label in two batches, the second thinned per gene; the batch
is in obs['batch'], not in the label the CVAE is conditioned on. A logistic regression on a PCA of the real cells
(harness space) learns the batch; it then names the batch of each generated cell. Per label, the share it calls
batch B should match the real share (what it calls B among the real cells, in cross-validation). A generator
that kept only one batch would move that share towards 0 or 1; one that averaged the batches would give P(B) a
smaller spread than the real cells get.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks import datasets, harness, quality
from benchmarks.research import common


def main(name: str = "two_batches", seed: int = 1) -> dict[str, object]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    common.setup()
    adata = datasets.build(name)
    kind = adata.uns["bench"]["kind"]
    mean_lib = harness.mean_library(adata.X)
    real = harness.log_space(adata.X, kind, mean_lib)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    batch = (adata.obs["batch"].to_numpy() == "B").astype(int)

    result, timing = quality.fit(adata, {}, seed)
    gen, gen_labels, _, _ = quality.generate(result, seed, kind, mean_lib, mean_lib, num_samples=adata.n_obs)

    judge = make_pipeline(StandardScaler(), PCA(n_components=30, random_state=0), LogisticRegression(max_iter=2000))
    real_p = cross_val_predict(judge, real, batch, cv=5, method="predict_proba")[:, 1]
    gen_p = judge.fit(real, batch).predict_proba(gen)[:, 1]
    real_called, gen_called = (real_p > 0.5).astype(int), (gen_p > 0.5).astype(int)
    per_label = {
        k: {
            "real_cells": int(np.sum(labels == k)),
            "real_true_b": round(float(batch[labels == k].mean()), 3),
            "real_called_b": round(float(real_called[labels == k].mean()), 3),
            "gen_called_b": round(float(gen_called[gen_labels == k].mean()), 3) if np.any(gen_labels == k) else None,
        }
        for k in sorted(set(labels))
    }
    out = {
        "data": name,
        "seed": seed,
        "head": result.model_config.likelihood,
        "fit_s": round(timing["fit_s"], 1),
        "batch_cv_accuracy": round(float(np.mean(real_called == batch)), 3),
        "real_called_b": round(float(real_called.mean()), 3),
        "gen_called_b": round(float(gen_called.mean()), 3),
        # a generator that blurs the batches gives P(B) near the middle: a smaller spread than the real cells'
        "real_p_b_sd": round(float(real_p.std()), 3),
        "gen_p_b_sd": round(float(gen_p.std()), 3),
        "real_p_b_deciles": np.round(np.quantile(real_p, np.linspace(0.1, 0.9, 9)), 2).tolist(),
        "gen_p_b_deciles": np.round(np.quantile(gen_p, np.linspace(0.1, 0.9, 9)), 2).tolist(),
        "per_label": per_label,
    }
    quality.write_atomic(common.RESULTS / "batch_mix.json", json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["two_batches"]), *[int(a) for a in sys.argv[2:3]])
