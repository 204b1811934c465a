"""Is the top-up gain the generator's, or only the rebalancing's? The quality study's top-up, against topping
up with copies of real training cells.

    PYTHONPATH=. python benchmarks/augmentation_control.py      # after benchmarks/quality.py (reads its JSON)
    -> JSON on stdout and in benchmarks/results/augmentation_control.json

For every data set and augmentation seed of `results/quality.json`, the study's own split (the same
`harness.stratified_split`, same seed) is topped up to its largest label's count with real training cells
drawn with replacement (no model at all), and the same two classifiers (`harness.classifier_gains`) are
trained on it and tested on the held-out half. Two kinds of copies: `exact` (plain oversampling) and `noisy`
(plus Gaussian noise of 0.1 x each gene's sd in the training half, clipped at 0: benchmarks/calibration.py's
`copy`, a memorising generator). Balanced accuracy rewards rebalancing by itself; a generator is worth its
top-up only where its gain beats these.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.quality import Dataset, clean, write_atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NOISE = 0.1  # x each gene's sd, as benchmarks/calibration.py's `copy`


def copies_topup(labels: np.ndarray, tr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of `tr` drawn with replacement, label by label, to bring each label up to the largest one."""
    want = harness.topup_counts(harness.label_counts(labels[tr]))
    picks = [rng.choice(tr[labels[tr] == k], v, replace=True) for k, v in sorted(want.items())]
    return np.concatenate(picks) if picks else np.array([], dtype=int)


def control(ds: Dataset, seed: int) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    tr, te = harness.stratified_split(ds.labels, 0.5, seed, min_first=2)
    rows = copies_topup(ds.labels, tr, rng)
    if rows.size == 0:
        return None
    exact = ds.real[rows]
    sd = ds.real[tr].std(0, keepdims=True)
    noisy = np.clip(exact + rng.standard_normal(exact.shape).astype(np.float32) * (NOISE * sd), 0, None)
    out: dict[str, Any] = {"seed": seed, "n_copies": int(rows.size)}
    for kind, cells in (("exact", exact), ("noisy", noisy)):
        out[kind] = harness.classifier_gains(ds.real, ds.labels, tr, te, cells, ds.labels[rows], seed)
    return out


def main() -> int:
    study = json.loads((RESULTS / "quality.json").read_text())
    out: dict[str, Any] = {"study": study["study"]["command"], "commit": study["environment"].get("git_commit"),
                           "rows": []}  # fmt: skip
    for row in study["rows"]:
        topped = [r for r in row["aug_runs"] if "topup" in r]
        if not topped:
            continue
        seeds = [r["seed"] for r in topped]
        ds = Dataset(row["dataset"], study["study"].get("data_seed", 0))
        runs = [c for c in (control(ds, s) for s in seeds) if c is not None]
        summaries = {"generated": harness.summarize_augmentation([r["topup"] for r in topped])}
        for kind in ("exact", "noisy"):
            summaries[f"{kind}_copies"] = harness.summarize_augmentation([r[kind] for r in runs])
        line = {"dataset": row["dataset"], "seeds": seeds, "runs": runs}
        for clf in ("lr", "rf"):
            for name, summary in summaries.items():
                line[f"{clf}_{name}"] = summary[f"{clf}_bal_acc_gain_mean"]
        out["rows"].append(line)
        print(json.dumps({k: v for k, v in clean(line).items() if k != "runs"}), file=sys.stderr)
    write_atomic(RESULTS / "augmentation_control.json", json.dumps(clean(out), indent=1) + "\n")
    print(json.dumps([{k: v for k, v in r.items() if k != "runs"} for r in clean(out)["rows"]], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
