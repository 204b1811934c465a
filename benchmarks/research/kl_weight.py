"""Experiment (not the package's behaviour): does a heavier KL term stop half fits sitting on their training cells?

    PYTHONPATH=. python benchmarks/research/kl_weight.py visium_spots,trajectory 1,2,3 1,4   # ~1 min a fit
    -> one JSON line per data set, seed and KL weight, on stdout; results in benchmarks/research/kl_weight_results.md

memorization.py found the encoded training cells of small, wide sets spread far beyond the prior (a variance of
15-28 per latent dimension on fulllength, the prior's 1): summed over thousands of genes, the reconstruction term
outweighs the KL term, the latent keeps each cell apart, and the generated cells repeat the training cells. Here
the quality study's half fit (plain defaults, label-stratified half A of seed k) is repeated with `beta` (the
KL weight, VAExprs' lambda) set, and scored as memorization.py does (against A and against the held-out half
B), plus the label keep rate by a classifier trained on B and the same-size augmentation gains on B.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks import harness, quality
from benchmarks.research import common


def kl_weight(name: str, seeds: list[int], betas: list[float]) -> None:
    import vaexprs

    ds = quality.Dataset(name, 0)
    for seed in seeds:
        tr, te, train, want = common.half_split(ds, seed)
        judge = harness.label_classifier(seed).fit(ds.real[te], ds.labels[te])
        for beta in betas:
            result = vaexprs.fit_vae(train, "cell_type", seed=seed, beta=beta)
            gen = vaexprs.gen_exprs(result, seed=seed, labels=want)
            cells = quality.to_log(gen, ds.kind, ds.mean_lib, harness.mean_library(train.X))
            labels = np.asarray(gen.y_gen).astype(str)
            gains = harness.classifier_gains(ds.real, ds.labels, tr, te, cells, labels, seed)
            print(json.dumps({
                "dataset": name, "seed": seed, "beta": beta, "head": result.model_config.likelihood,
                "dropout": result.model_config.dropout,
                "latent_var": round(float(np.asarray(result.latent).var(0).mean()), 2),
                "gen_vs_a": round(harness.rf_auc(ds.real[tr], cells, seed), 3),
                "gen_vs_b": round(harness.rf_auc(ds.real[te], cells, seed), 3),
                "keep_b": round(float(np.mean(judge.predict(cells) == labels)), 3),
                "lr_gain": round(gains["lr"]["gain"]["bal_acc"], 4), "rf_gain": round(gains["rf"]["gain"]["bal_acc"], 4),
            }), flush=True)  # fmt: skip


def main(argv: list[str]) -> int:
    names = argv[0].split(",")
    seeds = [int(s) for s in argv[1].split(",")] if len(argv) > 1 else [1, 2, 3]
    betas = [float(b) for b in argv[2].split(",")] if len(argv) > 2 else [1.0, 4.0]
    common.setup()
    for name in names:
        kl_weight(name, seeds, betas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
