"""Experiment (not the package's behaviour): why same-size augmentation loses on the smallest sets' half fits.

    PYTHONPATH=. python benchmarks/research/small_sets.py noise log2tpm            # ~2 min
    PYTHONPATH=. python benchmarks/research/small_sets.py hold-out log2tpm,yan,treutlein,fulllength   # ~25 min
    -> one JSON line per data set and seed, on stdout; results in benchmarks/research/small_sets_results.md

Both parts use the quality study's augmentation protocol (`benchmarks/quality.py` run_aug: plain defaults fitted on
the label-stratified half A of seed k, classifiers trained on A with and without as many generated cells, tested
on the other half B).

`noise`: how much of a same-size gain is the classifier's and the generation draw's noise? Per split, one fit,
DRAWS generation draws x FOREST_SEEDS random-forest seeds, and the same grid's forests with copies of A instead.

`hold-out`: on these half fits (33-45 cells) 20% of each label is fewer than the 10 cells the selection's metrics
need, so `likelihood=auto` falls back to the hurdle without dropout. Here the selection holds out more instead,
one cell at a time from the label with the most training cells left, up to half of each label (patched into
`vaexprs.model.selection.held_out_counts` in this process only).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks import harness, quality
from benchmarks.research import common

DRAWS = 3
FOREST_SEEDS = 5
MAX_HOLD_OUT = 0.5


def noise(name: str, seeds: list[int]) -> None:
    import vaexprs

    ds = quality.Dataset(name, 0)
    for seed in seeds:
        tr, te, train, want = common.half_split(ds, seed)
        result = vaexprs.fit_vae(train, "cell_type", seed=seed)
        grid = np.zeros((DRAWS, FOREST_SEEDS))
        for g in range(DRAWS):
            gen = vaexprs.gen_exprs(result, seed=seed + 100 * g, labels=want)
            cells = quality.to_log(gen, ds.kind, ds.mean_lib, harness.mean_library(train.X))
            for r in range(FOREST_SEEDS):
                gains = harness.classifier_gains(ds.real, ds.labels, tr, te, cells, gen.y_gen, seed + 1000 * r)
                grid[g, r] = gains["rf"]["gain"]["bal_acc"]
        copies = [
            harness.classifier_gains(ds.real, ds.labels, tr, te, ds.real[tr], ds.labels[tr], seed + 1000 * r)
            for r in range(FOREST_SEEDS)
        ]
        print(json.dumps({
            "part": "noise", "dataset": name, "seed": seed, "rf_gain_mean": round(float(grid.mean()), 4),
            "rf_gain_per_draw": grid.mean(1).round(3).tolist(), "rf_gain_grid": grid.round(3).tolist(),
            "rf_gain_copies_mean": round(float(np.mean([c["rf"]["gain"]["bal_acc"] for c in copies])), 4),
        }), flush=True)  # fmt: skip


def patch_larger_hold_out() -> None:
    """selection.held_out_counts holds out at least MIN_CELLS cells where up to MAX_HOLD_OUT of each label
    allows it: one more at a time from the label with the most training cells left."""
    from vaexprs.analysis.metrics import MIN_CELLS
    from vaexprs.model import selection

    package_rule = selection.held_out_counts

    def held_out_counts(sizes: list[int]) -> list[int]:
        ks = package_rule(sizes)
        while sum(ks) < MIN_CELLS:
            room = [i for i, s in enumerate(sizes) if s and ks[i] + 1 <= s * MAX_HOLD_OUT]
            if not room:
                break
            ks[max(room, key=lambda j: (sizes[j] - ks[j], -j))] += 1
        return ks

    selection.held_out_counts = held_out_counts


def hold_out(name: str, seeds: list[int]) -> None:
    patch_larger_hold_out()
    ds = quality.Dataset(name, 0)
    for seed in seeds:
        run = quality.run_aug(ds, {}, seed)
        chosen = [r["candidate"] for r in run["info"]["selection"] if r.get("chosen")]
        print(json.dumps({
            "part": "hold-out", "dataset": name, "seed": seed, "chosen": chosen,
            "val_cells": next((r.get("val_cells") for r in run["info"]["selection"] if "score" in r), None),
            "heldout_keep": round(run["heldout"]["keep"], 3), "heldout_auc": round(run["heldout"]["auc"], 3),
            "rf_gain": round(run["rf"]["gain"]["bal_acc"], 4), "lr_gain": round(run["lr"]["gain"]["bal_acc"], 4),
            "fit_s": round(run["info"]["fit_s"], 1),
        }), flush=True)  # fmt: skip


def main(argv: list[str]) -> int:
    part, names = argv[0], argv[1].split(",")
    seeds = [int(s) for s in argv[2].split(",")] if len(argv) > 2 else [1, 2, 3]
    common.setup()
    for name in names:
        {"noise": noise, "hold-out": hold_out}[part](name, seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
