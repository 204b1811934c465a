"""Calibration rows for the quality table: where good and bad lie, scored by the same code as vaexprs' cells.

    .venv/bin/python benchmarks/calibration.py      # ~2 min; results/calibration.json and results/calibration.md

For each data set of the quality study (same genes, same scored space: lognorm for counts, log2(x + 1) for
RPKM/FPKM), two generated sets that need no model:
- `copy`: real cells resampled with replacement, plus small Gaussian noise (0.1 x each gene's sd): near-perfect
  "generated" cells, what a memorising generator would give;
- `shuffle`: each gene permuted independently across cells (labels kept): right per-gene distributions, but no
  cell-level structure, what a generator that ignores gene-gene covariance would give.
Their metrics sit beside vaexprs' rows (bce, the VAExprs default, and the best head with GMM sampling, read
from results/quality.json), so a reader can place an AUC or a TSTR between the two.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import RESULTS, label_classifier, load_datasets, score, scored_space

SEED = 3
NOISE = 0.1  # x per-gene sd
VAEXPRS_ROWS = {"pbmc3k": ("bce/gmm", "nb/gmm"), "yan": ("bce/gmm", "hurdle/gmm"),
                "treutlein": ("bce/gmm", "hurdle/gmm"), "sim": ("bce/gmm", "nb/gmm")}  # fmt: skip
COLUMNS = [
    ("AUC", "auc_real_vs_gen"), ("MMD", "mmd_rbf"), ("mean r", "mean_corr"), ("var ratio", "var_ratio"),
    ("TSTR", "tstr_accuracy"), ("TRTR", "trtr_accuracy"), ("keeps", "keeps_labels"),
    ("markers", "marker_overlap_mean"), ("zeros", "zero_frac_gen"),
]  # fmt: skip


def calibration_sets(real: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    rows = rng.integers(0, real.shape[0], real.shape[0])
    noise = rng.standard_normal(real.shape).astype(np.float32) * (NOISE * real.std(0, keepdims=True))
    copy = np.clip(real[rows] + noise, 0, None)
    shuffle = np.empty_like(real)
    for j in range(real.shape[1]):
        shuffle[:, j] = real[rng.permutation(real.shape[0]), j]
    return {"copy": (copy, labels[rows]), "shuffle": (shuffle, labels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="pbmc3k,yan,treutlein,sim")
    parser.add_argument("--hvg", type=int, default=2000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("vaexprs").setLevel(logging.WARNING)
    quality = json.loads((RESULTS / "quality.json").read_text())["datasets"]
    report: dict[str, Any] = {}
    for name, d in load_datasets(args.datasets.split(","), args.hvg).items():
        real = scored_space(d["adata"].X, d["kind"])
        clf = label_classifier(real, d["labels"], SEED)
        rows: dict[str, Any] = {}
        for kind, (gen, gen_labels) in calibration_sets(real, d["labels"], np.random.default_rng(SEED)).items():
            m = score(real, gen, d["labels"], gen_labels, clf)
            rows[kind] = {k: m.get(k) for _, k in COLUMNS} | {"zero_frac_real": m["zero_frac_real"]}
            logging.info("%s %s: AUC %.3f", name, kind, m["auc_real_vs_gen"])
        for key in VAEXPRS_ROWS.get(name, ()):
            run = quality.get(name, {}).get("runs", {}).get(key)
            if run:
                rows[f"vaexprs {key.split('/')[0]}"] = {k: run.get(k) for _, k in COLUMNS}
        report[name] = rows
    (RESULTS / "calibration.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    lines = ["| data | cells | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for name, rows in report.items():
        for i, (kind, m) in enumerate(rows.items()):
            cells = ["n/a" if m.get(k) is None else f"{m[k]:.3f}" for _, k in COLUMNS]
            lines.append(f"| {name if i == 0 else ''} | {kind} | " + " | ".join(cells) + " |")
    (RESULTS / "calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
