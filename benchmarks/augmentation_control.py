"""Is an augmentation gain the generator's, or would copies of real cells do as well? The quality study's gains,
against adding copies of real training cells instead.

    PYTHONPATH=. python benchmarks/augmentation_control.py      # after benchmarks/quality.py (reads its JSON)
    -> JSON on stdout and in benchmarks/results/augmentation_control.json
    PYTHONPATH=. python benchmarks/augmentation_control.py --study benchmarks/results/quality_unseen.json \
        --out benchmarks/results/augmentation_control_unseen.json   # another run of the study

For every data set and augmentation seed of `results/quality.json`, the study's own split (the same
`harness.stratified_split`, same seed) is topped up to its largest label's count with real training cells
drawn with replacement (no model at all), and the same two classifiers (`harness.classifier_gains`) are
trained on it and tested on the held-out half. Two kinds of copies: `exact` (plain oversampling) and `noisy`
(plus Gaussian noise of 0.1 x each gene's sd in the training half, clipped at 0: benchmarks/calibration.py's
`copy`, a memorising generator). Balanced accuracy rewards rebalancing by itself; a generator is worth its
top-up only where its gain beats these. The same two kinds of copies stand in for the same-size augmentation
too (every label doubled with cells drawn with replacement, no rebalancing): where the real-only classifier is
already at its ceiling, or the test half is a few dozen cells, copies move the RF as much as generated cells do,
so a small same-size loss there says little about the generator.
"""

from __future__ import annotations

import argparse
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


def copies_of(labels: np.ndarray, tr: np.ndarray, want: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """Rows of `tr` drawn with replacement, label by label, as many as `want` asks of each label."""
    picks = [rng.choice(tr[labels[tr] == k], v, replace=True) for k, v in sorted(want.items())]
    return np.concatenate(picks) if picks else np.array([], dtype=int)


def noisy_copies(real: np.ndarray, tr: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The cells `rows` plus Gaussian noise of NOISE x each gene's sd over the training rows `tr`, clipped at 0
    (non-negative data): a memorising generator's output."""
    sd = real[tr].std(0, keepdims=True)
    return np.clip(
        real[rows] + rng.standard_normal((rows.size, real.shape[1])).astype(np.float32) * (NOISE * sd), 0, None
    )


def copies_gains(ds: Dataset, tr: np.ndarray, te: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
                 seed: int) -> dict[str, Any]:  # fmt: skip
    """Classifier gains from adding the real training cells `rows`, exact and with NOISE x each gene's sd."""
    exact = ds.real[rows]
    noisy = noisy_copies(ds.real, tr, rows, rng)
    out: dict[str, Any] = {"n_copies": int(rows.size)}
    for kind, cells in (("exact", exact), ("noisy", noisy)):
        out[kind] = harness.classifier_gains(ds.real, ds.labels, tr, te, cells, ds.labels[rows], seed)
    return out


def control(ds: Dataset, seed: int) -> dict[str, Any]:
    """One seed's split (the study's): top-up copies (None where the labels are balanced) and same-size copies."""
    tr, te = harness.stratified_split(ds.labels, 0.5, seed, min_first=2)
    counts = harness.label_counts(ds.labels[tr])
    rng = np.random.default_rng(seed)
    rows = copies_of(ds.labels, tr, harness.topup_counts(counts), rng)
    out: dict[str, Any] = {"seed": seed, "topup": copies_gains(ds, tr, te, rows, rng, seed) if rows.size else None}
    same_rng = np.random.default_rng([seed, 1])  # its own stream: the top-up draws stay those of earlier runs
    out["same"] = copies_gains(ds, tr, te, copies_of(ds.labels, tr, counts, same_rng), same_rng, seed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=RESULTS / "quality.json", help="the quality study's JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "augmentation_control.json", help="where to write")
    args = parser.parse_args(argv)
    study = json.loads(args.study.read_text())
    out: dict[str, Any] = {"study": study["study"]["command"], "commit": study["environment"].get("git_commit"),
                           "rows": []}  # fmt: skip
    for row in study["rows"]:
        done = [r for r in row["aug_runs"] if "lr" in r]
        if not done:
            continue
        ds = Dataset(row["dataset"], study["study"].get("data_seed", 0))
        runs = [control(ds, r["seed"]) for r in done]
        parts = {"same": done, "topup": [r["topup"] for r in done if "topup" in r]}
        line: dict[str, Any] = {"dataset": row["dataset"], "seeds": [r["seed"] for r in done], "runs": runs}
        for part, generated in parts.items():
            copies = [c[part] for c in runs if c[part] is not None]
            if not generated or not copies:
                continue
            summaries = {"generated": harness.summarize_augmentation(generated)}
            for kind in ("exact", "noisy"):
                summaries[f"{kind}_copies"] = harness.summarize_augmentation([c[kind] for c in copies])
            for clf in ("lr", "rf"):
                for name, summary in summaries.items():
                    line[f"{part}_{clf}_{name}"] = summary[f"{clf}_bal_acc_gain_mean"]
        out["rows"].append(line)
        print(json.dumps({k: v for k, v in clean(line).items() if k != "runs"}), file=sys.stderr)
    write_atomic(args.out, json.dumps(clean(out), indent=1) + "\n")
    print(json.dumps([{k: v for k, v in r.items() if k != "runs"} for r in clean(out)["rows"]], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
