"""The layout of generated cells on disk: CSR only where at least half the values are exact zeros.

    python benchmarks/output_layout.py [--n 20000] [--genes 2000] [--rounds 3] [--out FILE]
    -> JSON on stdout (and in FILE): MB and wall seconds per layout, and their ratios measured in one run

Two bundles, each trained for one epoch (the layout depends on the cells' zeros, not on the fit): a hurdle on
dense, zero-free log values (array intensities, methylation ratios: what a hurdle draws few zeros for) and an nb
model on UMI-like counts (mostly zeros). For each, `generate_to_file` to .h5ad with today's rule (the default) and
with the rule before it, CSR for every sampled head (SPARSE_ENOUGH = 0), in alternating rounds in one process:
the medians of both and their ratio. The nb cells are CSR either way (the control).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import describe


def bundles(workdir: Path, genes: int) -> dict[str, Path]:
    """A hurdle on zero-free log values and an nb model on sparse counts, 200 cells x `genes`, one epoch each."""
    import vaexprs

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c", "d"], 50)
    dense = (8.0 + rng.normal(0, 1.5, (200, genes))).clip(0.5).astype(np.float32)  # log2 intensities, no zeros
    counts = rng.poisson(0.15, (200, genes)).astype(np.float32)
    out = {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for name, x, head in (("hurdle_dense_values", dense, "hurdle"), ("nb_counts", counts, "nb")):
            result = vaexprs.fit_vae(x, labels, likelihood=head, hidden=(256,), epochs=1, progress=False)
            out[name] = vaexprs.export_bundle(result, workdir / name, force=True)
    return out


def timed(bundle: Path, path: Path, n: int, rule: float) -> dict[str, Any]:
    """One generation to `path` with SPARSE_ENOUGH = `rule`: wall seconds, MB, and whether X came out CSR."""
    import h5py

    from vaexprs.generate import pipeline

    saved = pipeline.SPARSE_ENOUGH
    pipeline.SPARSE_ENOUGH = rule
    try:
        start = time.perf_counter()
        pipeline.generate_to_file(bundle, path, n=n, seed=1, force=True)
        wall = time.perf_counter() - start
    finally:
        pipeline.SPARSE_ENOUGH = saved
    with h5py.File(path, "r") as f:
        csr = isinstance(f["X"], h5py.Group)
    return {"wall_s": wall, "mb": path.stat().st_size / 1e6, "csr": csr}


def main(argv: list[str] | None = None) -> int:
    from vaexprs.generate.pipeline import SPARSE_ENOUGH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not (1 <= args.n <= 1_000_000 and 1 <= args.genes <= 50_000 and 1 <= args.rounds <= 20):
        parser.error("--n 1..1,000,000, --genes 1..50,000, --rounds 1..20")
    report: dict[str, Any] = {"machine": describe(["vaexprs", "onnxruntime", "h5py", "anndata"]),
                              "n": args.n, "genes": args.genes, "rounds": args.rounds, "sets": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vaexprs-layout-") as tmp:
        workdir = Path(tmp)
        for name, bundle in bundles(workdir, args.genes).items():
            arms: dict[str, list[dict[str, Any]]] = {"now": [], "before": []}
            for _ in range(args.rounds):  # alternating rounds: the machine's drift hits both arms alike
                for arm, rule in (("now", SPARSE_ENOUGH), ("before", 0.0)):
                    arms[arm].append(timed(bundle, workdir / f"{name}_{arm}.h5ad", args.n, rule))
            summary = {
                arm: {
                    "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 3),
                    "mb": round(runs[0]["mb"], 1),
                    "csr": runs[0]["csr"],
                }
                for arm, runs in arms.items()
            }
            summary["size_ratio_now_to_before"] = round(summary["now"]["mb"] / summary["before"]["mb"], 3)
            summary["wall_ratio_now_to_before"] = round(
                summary["now"]["wall_s_median"] / summary["before"]["wall_s_median"], 3
            )
            report["sets"][name] = summary
    report["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(text + "\n")
        tmp_out.replace(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
