"""Default fit time against the number of cells, with all of pbmc3k's genes: is the selection's work budget
what keeps a mid-sized set within the time of the full one?

    PYTHONPATH=. python benchmarks/fit_time.py            # ~25 min on 2 cores
    -> JSON on stdout and in benchmarks/results/fit_time.json

Each run is a plain-defaults `fit_vae(adata, "cell_type", seed=0)` (likelihood and dropout auto: selection
included) on a label-stratified sample of pbmc3k's cells (`harness.stratified_split`, seed 0; all 13,714
genes), in one process, one after the other. `bounded` runs as shipped; `unbounded` lifts the selection's
work budget (`selection.SELECTION_WORK = inf`), which is how selection ran before it. Times on a shared
2-core machine are noisy: compare the ratios of this one run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import datasets, harness, machine  # noqa: E402
from benchmarks.quality import write_atomic  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "fit_time.json"
RUNS = ((1000, "bounded"), (1000, "unbounded"), (2638, "bounded"))


def one_fit(adata: Any, budget: str) -> dict[str, Any]:
    import vaexprs
    from vaexprs.model import selection

    shipped = selection.SELECTION_WORK
    selection.SELECTION_WORK = math.inf if budget == "unbounded" else shipped
    try:
        started = time.perf_counter()
        result = vaexprs.fit_vae(adata, "cell_type", seed=0)
        seconds = time.perf_counter() - started
    finally:
        selection.SELECTION_WORK = shipped
    scored = [r for r in result.selection if "score" in r]
    chosen = next(r for r in scored if r["chosen"])
    return {
        "seconds": round(seconds, 1),
        "selection_seconds": round(sum(r["seconds"] for r in scored), 1),
        "candidates": len(scored),
        "candidate_epochs": scored[0]["epochs"],
        "candidate_train_cells": scored[0]["train_cells"],
        "final_epochs": result.train_config.epochs,
        "chosen": chosen["candidate"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    environment = machine.describe(("vaexprs", "torch", "numpy", "anndata", "scikit-learn"))
    full = datasets.pbmc3k()
    labels = full.obs["cell_type"].to_numpy()
    rows = []
    for n_cells, budget in RUNS:
        if n_cells < full.n_obs:
            keep, _ = harness.stratified_split(labels, n_cells / full.n_obs, seed=0)
            adata = full[keep].copy()
        else:
            adata = full
        row = {"cells": int(adata.n_obs), "genes": int(adata.n_vars), "budget": budget, **one_fit(adata, budget)}
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    seconds = {(r["cells"], r["budget"]): r["seconds"] for r in rows}
    n_mid, n_full = rows[0]["cells"], rows[-1]["cells"]
    out = {
        "command": "PYTHONPATH=. python benchmarks/fit_time.py",
        "environment": environment,
        "rows": rows,
        "ratios": {
            f"{n_mid}_bounded_over_unbounded": round(seconds[n_mid, "bounded"] / seconds[n_mid, "unbounded"], 3),
            f"{n_mid}_bounded_over_{n_full}": round(seconds[n_mid, "bounded"] / seconds[n_full, "bounded"], 3),
            f"{n_mid}_unbounded_over_{n_full}": round(seconds[n_mid, "unbounded"] / seconds[n_full, "bounded"], 3),
        },
    }
    write_atomic(args.out, json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
