"""Experiment (not the package's behaviour): is the held-out AUC of a half fit a memoriser's?

    PYTHONPATH=. python benchmarks/research/memorization.py visium_spots,many_labels,yan 2   # ~1-2 min a set
    -> one JSON line per data set and seed, on stdout; results in benchmarks/research/memorization_results.md

The quality study's held-out AUC (plain defaults fitted on the label-stratified half A of seed k, as many
generated cells as A, random forest against the other half B) is 0.64-1.00, while the in-sample AUC is at most
0.75. Is the model too poor on half the cells, or does it reproduce the cells it saw? For one half fit this
scores the same generated cells against A (the cells it trained on) and against B, next to the real halves
against each other and to a memoriser: copies of A's cells (drawn with replacement, label by label, plus 0.1 x
each gene's sd of noise, clipped at 0, so non-negative sets only: benchmarks/calibration.py's `copy`) against B.
Generated cells that score near 0.5 against A and near the memoriser against B sit on the training cells rather
than between them. The sampler `prior` (N(0, I) through the same decoder) is the other sampler gen_exprs offers.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks import harness, quality
from benchmarks.augmentation_control import copies_of, noisy_copies
from benchmarks.research import common

SAMPLERS = ("gmm", "prior")


def memorization(name: str, seeds: list[int]) -> None:
    import vaexprs

    ds = quality.Dataset(name, 0)
    for seed in seeds:
        tr, te, train, want = common.half_split(ds, seed)
        result = vaexprs.fit_vae(train, "cell_type", seed=seed)
        rng = np.random.default_rng([seed, 2])
        copies = noisy_copies(ds.real, tr, copies_of(ds.labels, tr, want, rng), rng)
        line = {
            "dataset": name, "seed": seed, "head": result.model_config.likelihood,
            "dropout": result.model_config.dropout, "n_train": int(tr.size), "n_test": int(te.size),
            "real_a_vs_b": round(harness.rf_auc(ds.real[te], ds.real[tr], seed), 3),
            "copies_vs_b": round(harness.rf_auc(ds.real[te], copies, seed), 3),
        }  # fmt: skip
        for sampler in SAMPLERS:
            gen = vaexprs.gen_exprs(result, seed=seed, labels=want, sampler=sampler)
            cells = quality.to_log(gen, ds.kind, ds.mean_lib, harness.mean_library(train.X))
            line[f"{sampler}_vs_a"] = round(harness.rf_auc(ds.real[tr], cells, seed), 3)
            line[f"{sampler}_vs_b"] = round(harness.rf_auc(ds.real[te], cells, seed), 3)
        print(json.dumps(line), flush=True)


def main(argv: list[str]) -> int:
    names = argv[0].split(",")
    seeds = [int(s) for s in argv[1].split(",")] if len(argv) > 1 else [2]
    common.setup()
    for name in names:
        memorization(name, seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
