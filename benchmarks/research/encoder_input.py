"""Experiment (not the package's behaviour): does the hurdle encoder learn faster from standardised input?

    PYTHONPATH=. python benchmarks/research/encoder_input.py \\
        'microarray={"likelihood": "hurdle", "dropout": 0.0}' 'vignette={"likelihood": "hurdle", "dropout": 0.2}'
    PYTHONPATH=. python benchmarks/research/encoder_input.py --seeds 1,2,3 'vignette={"likelihood": "hurdle"}'
    -> one JSON line per data set, setting, seed and encoder input, on stdout

Why: the hurdle heads give the encoder log1p of the values. On dense log-scale data far from 0 (log2 array
intensities 4..15, `microarray` in benchmarks/datasets.py) that compresses each cell's deviations from its
genes' means to a few hundredths, the latent means stay within ~0.3 of 0 and the cells the model generates
lose the sample-level structure (brightness, gene modules): in-sample AUC 1.000. Standardising the encoder
input per gene, (log1p(x) - mean) / max(sd, 0.1) over the training cells, is tried here by patching
`HurdleGaussianHead` in this process only (the floor_hurdle head is left as it is). Each run is the quality
study's in-sample protocol (`benchmarks/quality.py` run_insample: fit on all cells, generate as many, score
with benchmarks/harness.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from typing import Any

import numpy as np

SCALE_FLOOR = 0.1  # log1p units: a gene that barely varies is not blown up


def patch_standardised_input(scale_floor: str = str(SCALE_FLOOR)) -> None:
    """HurdleGaussianHead: remember each gene's mean and sd of log1p(x) at start_from_data; the encoder sees
    (log1p(x) - mean) / max(sd, floor), floor a number or "median" (the median gene's sd)."""
    import torch

    from vaexprs.model import network

    head = network.HurdleGaussianHead
    start, encoder_input = head.start_from_data, head.encoder_input

    def start_from_data(self: Any, x: Any, codes: Any, n_labels: int, seed: int) -> None:
        start(self, x, codes, n_labels, seed)
        logged = np.log1p(np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64))
        self.input_centre = torch.tensor(logged.mean(0), dtype=torch.float32)
        sd = logged.std(0)
        floor = float(np.median(sd)) if scale_floor == "median" else float(scale_floor)
        self.input_scale = torch.tensor(np.maximum(sd, floor), dtype=torch.float32)

    def standardised(self: Any, x: Any) -> Any:
        v = encoder_input(self, x)
        return (v - self.input_centre) / self.input_scale if hasattr(self, "input_centre") else v

    head.start_from_data = start_from_data
    head.encoder_input = standardised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=JSON: a data set of benchmarks/datasets.py and fit_vae options")
    parser.add_argument("--seeds", default="1", help="fit / generation seeds, comma-separated")
    parser.add_argument("--inputs", default="log1p,standardised", help="encoder inputs to compare")
    parser.add_argument("--scale-floor", default=str(SCALE_FLOOR), help='the least sd divided by: a number or "median"')
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("vaexprs").setLevel(logging.ERROR)
    from benchmarks import harness, quality

    inputs = [s.strip() for s in args.inputs.split(",")]
    if "standardised" in inputs:
        inputs = [i for i in inputs if i != "standardised"] + ["standardised"]  # patched last: it stays patched
    for encoder in inputs:
        if encoder == "standardised":
            patch_standardised_input(args.scale_floor)
        for spec in args.runs:
            name, _, options = spec.partition("=")
            kwargs = json.loads(options) if options else {}
            ds = quality.Dataset(name, 0)
            ds.ref = harness.reference(ds.real, ds.labels, seed=quality.EVAL_SEED)
            for seed in [int(s) for s in args.seeds.split(",")]:
                started = time.perf_counter()
                run = quality.run_insample(ds, kwargs, seed)
                m, info = run.get("metrics", {}), run.get("info", {})
                print(json.dumps({
                    "data": name, "options": kwargs, "seed": seed, "encoder_input": encoder,
                    "scale_floor": args.scale_floor if encoder == "standardised" else None,
                    "likelihood": info.get("likelihood"), "dropout": info.get("dropout"),
                    "auc": m.get("auc"), "keep": m.get("keep"), "corr": m.get("corr"), "var_ratio": m.get("var_ratio"),
                    "seconds": round(time.perf_counter() - started, 1),
                }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
