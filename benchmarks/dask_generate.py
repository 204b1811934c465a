"""Generation into .zarr: one process vs Dask with 1 and 2 local workers, cells/s, in interleaved rounds.

    python benchmarks/dask_generate.py                       # 200,000 cells x 3 rounds; JSON on stdout and in results/
    python benchmarks/dask_generate.py --n 50000 --rounds 2  # smaller
    python benchmarks/dask_generate.py --workdir /big/disk --out my.json

The model: a CVAE (3 labels, latent 2, hidden 256, 2,000 genes) fitted for one epoch on random data and exported
with `export_bundle` (speed does not depend on the weights), so the decoder is the served ONNX graph. Methods, each
writing the same cells (same seed and --batch-size) into a fresh .zarr store with `generate_to_file`:

  single   no Dask: one process, onnxruntime's default threads, blocks written in order (ZarrWriter)
  dask1    --dask local:1: a LocalCluster of one worker process (onnxruntime threads = the CPUs)
  dask2    --dask local:2: two worker processes, one onnxruntime thread each (the CPUs shared between them)

Each round runs every method once, in an order that rotates from round to round (so a busy moment on the shared
machine does not land on one method only); the store is deleted after each run. Reported per method: the median
and best over rounds of cells/s end to end (`seconds`: resolving the model, starting the cluster, every block,
publishing the store) and, for the Dask methods, cells/s of the blocks alone (`blocks_seconds`: what a long run
approaches, without the cluster start). Ratios, from the medians: dask2 / dask1 (what a second worker adds) and
dask1 / single (what Dask costs for the same compute). The stores of one round are checked to hold the same X.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `python benchmarks/....py` without PYTHONPATH
    sys.path.insert(0, str(HERE.parent))

from benchmarks import machine  # noqa: E402

DEFAULT_OUT = HERE / "results" / "dask_generate.json"
GENES, HIDDEN, LATENT = 2000, 256, 2
METHODS = {"single": None, "dask1": "local:1", "dask2": "local:2"}


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_bundle(folder: Path) -> Path:
    """A CVAE (3 labels) fitted for one epoch on random data, exported to `folder`."""
    import vaexprs

    rng = np.random.default_rng(0)
    x = rng.random((96, GENES), dtype=np.float32)
    labels = np.repeat(["a", "b", "c"], 32)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        result = vaexprs.fit_vae(
            x, labels, hidden=(HIDDEN,), epochs=1, normalize="none", latent_dim=LATENT, device="cpu", likelihood="bce"
        )
        vaexprs.export_bundle(result, folder, force=True)
    return folder


def run_once(bundle: Path, out: Path, n: int, batch_size: int, dask: str | None) -> dict[str, Any]:
    from vaexprs.generate.pipeline import generate_to_file

    t0 = time.perf_counter()
    summary = generate_to_file(bundle, out, n=n, seed=1, batch_size=batch_size, provider="cpu", dask=dask)
    wall = time.perf_counter() - t0
    row = {
        "wall_s": round(wall, 3),
        "cells_per_s": round(n / wall),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    if dask is not None:
        row["startup_s"] = round(summary["startup_seconds"], 3)
        row["blocks_s"] = round(summary["blocks_seconds"], 3)
        row["blocks_cells_per_s"] = round(n / summary["blocks_seconds"])
        row["sessions"] = sorted(summary["sessions"].values())
    return row


def x_digest(store: Path) -> str:
    """A digest of X, chunk by chunk (flat memory), to check every method wrote the same cells."""
    import hashlib

    import zarr

    x = zarr.open_group(str(store), mode="r")["X"]
    digest = hashlib.sha256()
    rows = x.chunks[0]
    for start in range(0, x.shape[0], rows):
        digest.update(np.ascontiguousarray(x[start : start + rows]).tobytes())
    return digest.hexdigest()


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        rates = [r["cells_per_s"] for r in mine]
        entry = {"median_cells_per_s": round(statistics.median(rates)), "best_cells_per_s": max(rates)}
        if method != "single":
            blocks = [r["blocks_cells_per_s"] for r in mine]
            entry["median_blocks_cells_per_s"] = round(statistics.median(blocks))
            entry["best_blocks_cells_per_s"] = max(blocks)
            entry["median_startup_s"] = round(statistics.median(r["startup_s"] for r in mine), 2)
        out[method] = entry
    single, d1, d2 = (out[m] for m in METHODS)
    out["ratios"] = {
        "dask2_over_dask1": round(d2["median_cells_per_s"] / d1["median_cells_per_s"], 3),
        "dask2_over_dask1_blocks": round(d2["median_blocks_cells_per_s"] / d1["median_blocks_cells_per_s"], 3),
        "dask1_over_single": round(d1["median_cells_per_s"] / single["median_cells_per_s"], 3),
        "dask1_blocks_over_single": round(d1["median_blocks_cells_per_s"] / single["median_cells_per_s"], 3),
        "dask2_over_single": round(d2["median_cells_per_s"] / single["median_cells_per_s"], 3),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="cells per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8192, help="cells per block (= zarr chunk)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("vaexprs").setLevel(logging.WARNING)
    info = machine.describe(("vaexprs", "onnxruntime", "numpy", "anndata", "zarr", "dask", "distributed"))
    work = Path(tempfile.mkdtemp(prefix="vaexprs-dask-bench-", dir=args.workdir))
    try:
        note(f"building the {GENES}-gene, hidden-{HIDDEN} CVAE bundle ...")
        bundle = build_bundle(work / "bundle")
        runs: list[dict[str, Any]] = []
        digests: dict[str, str] = {}
        names = list(METHODS)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for method in order:
                out = work / f"{method}.zarr"
                row = {"round": r, "method": method, **run_once(bundle, out, args.n, args.batch_size, METHODS[method])}
                if r == 0:
                    digests[method] = x_digest(out)
                shutil.rmtree(out)
                runs.append(row)
                note(f"round {r} {method:6s} {row['cells_per_s']:>9,} cells/s end to end ({row['wall_s']:.1f} s)")
        info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        result = {
            "benchmark": "dask_generate",
            "config": {
                "n_cells": args.n,
                "genes": GENES,
                "hidden": HIDDEN,
                "latent": LATENT,
                "model": "cvae (3 labels), bce, exported decoder",
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "output": ".zarr (uncompressed, one chunk per block)",
                "command": "python benchmarks/dask_generate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            },
            "machine": info,
            "same_cells": len(set(digests.values())) == 1,
            "summary": summarize(runs),
            "runs": runs,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0 if result["same_cells"] else 1


if __name__ == "__main__":  # the guard matters: local Dask workers start by importing this module afresh
    sys.exit(main())
