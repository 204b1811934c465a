"""Training out of core (`vaexprs train --backed`) against in memory: peak RSS and cells/s, in one run.

    python benchmarks/backed_train.py                       # 1,000,000 x 2,000 sparse counts, a 100,000-cell slice
    python benchmarks/backed_train.py --cells 200000 --slice 50000 --epochs 1
    -> JSON on stdout and in benchmarks/results/backed_train.json

The data: gamma-Poisson counts (10 labels with their own gene means, log-normal library sizes, ~93% zeros,
like droplet UMI data), written as CSR in chunks with anndata (`anndata.io.sparse_dataset(...).append`), so
making it needs no more memory than one chunk; kept in --dir and reused when its size matches. Each training
is `python -m vaexprs train DATA -o BUNDLE --epochs E` with the default options otherwise (likelihood=auto),
in a child process whose peak RSS (ru_maxrss) is read when it ends: `--backed` on the whole file, `--backed`
on the slice, and in memory on the slice. Peak RSS that does not grow from the slice to the whole file is
what "flat in the number of cells" means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CHUNK = 20_000
LABELS = 10


def make_counts(path: Path, cells: int, genes: int, seed: int = 0) -> Path:
    """cells x genes gamma-Poisson counts as a CSR .h5ad, written chunk by chunk (reused when it exists)."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import sparse_dataset, write_elem

    if path.exists():
        with h5py.File(path, "r") as f:
            if tuple(f["X"].attrs["shape"]) == (cells, genes):
                return path
        path.unlink()
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.25, 1.0, size=genes)
    means = base * rng.lognormal(0.0, 0.6, size=(LABELS, genes))  # each label shifts every gene a little
    labels = rng.integers(0, LABELS, size=cells)
    tmp = path.with_suffix(".tmp.h5ad")
    with h5py.File(tmp, "w") as f:
        for start in range(0, cells, CHUNK):
            rows = labels[start : start + CHUNK]
            library = rng.lognormal(0.0, 0.4, size=(rows.size, 1))
            chunk = sp.csr_matrix(rng.poisson(rng.gamma(2.0, means[rows] * library / 2.0)).astype(np.float32))
            if start == 0:
                write_elem(f, "X", chunk)  # resizable: anndata writes sparse arrays with maxshape None
            else:
                sparse_dataset(f["X"]).append(chunk)
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical([f"type{k}" for k in labels])}, index=[f"cell{i}" for i in range(cells)]
        )
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(index=[f"gene{j}" for j in range(genes)]))
        for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, name, {})
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
    tmp.rename(path)
    ad.read_h5ad(path, backed="r").file.close()  # anndata can open what was written
    return path


def make_slice(source: Path, path: Path, cells: int) -> Path:
    """The first `cells` cells of source, as their own .h5ad (reused when it exists)."""
    import anndata as ad

    if path.exists() and ad.read_h5ad(path, backed="r").n_obs == cells:
        return path
    backed = ad.read_h5ad(source, backed="r")
    backed[:cells].to_memory().write_h5ad(path)
    return path


def train(data: Path, bundle: Path, epochs: int, backed: bool) -> dict[str, float]:
    """One `vaexprs train` in a child process: wall time and the child's peak RSS."""
    cmd = [sys.executable, "-m", "vaexprs", "train", str(data), "-o", str(bundle), "--force", "--quiet"]
    cmd += ["--epochs", str(epochs)] + (["--backed"] if backed else [])
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{bundle.parent / 'mlflow.db'}"}
    start = time.perf_counter()
    pid = subprocess.Popen(cmd, env=env).pid
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"training failed ({status}): {' '.join(cmd)}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--slice", type=int, default=100_000, help="cells of the in-memory comparison")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vaexprs-backed-bench"))
    parser.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.make_only:
        big = make_counts(args.dir / f"counts_{args.cells}x{args.genes}.h5ad", args.cells, args.genes)
        make_slice(big, args.dir / f"slice_{args.slice}.h5ad", args.slice)
        return 0
    # made in a child process: a child forked from a large parent reports the parent's peak as its own
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--make-only", *(argv if argv is not None else sys.argv[1:])], check=True)
    made = time.perf_counter() - started
    big = args.dir / f"counts_{args.cells}x{args.genes}.h5ad"
    small = args.dir / f"slice_{args.slice}.h5ad"
    runs = {
        "backed_full": train(big, args.dir / "bundle_full", args.epochs, backed=True),
        "backed_slice": train(small, args.dir / "bundle_slice", args.epochs, backed=True),
        "in_memory_slice": train(small, args.dir / "bundle_memory", args.epochs, backed=False),
    }
    for name, cells in (("backed_full", args.cells), ("backed_slice", args.slice), ("in_memory_slice", args.slice)):
        runs[name]["cells"] = cells
        runs[name]["cells_per_s"] = round(cells * args.epochs / runs[name]["seconds"], 1)
    report = {
        "benchmark": "backed_train",
        "command": " ".join(["python benchmarks/backed_train.py", *(argv if argv is not None else sys.argv[1:])]),
        "cells": args.cells,
        "genes": args.genes,
        "epochs": args.epochs,
        "file_mb": round(big.stat().st_size / 2**20, 1),
        "density": None,
        "make_seconds": round(made, 1),
        "runs": runs,
        "rss_ratio_full_vs_slice_backed": round(
            runs["backed_full"]["peak_rss_mb"] / runs["backed_slice"]["peak_rss_mb"], 3
        ),
        "rss_ratio_backed_vs_in_memory_slice": round(
            runs["backed_slice"]["peak_rss_mb"] / runs["in_memory_slice"]["peak_rss_mb"], 3
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    import h5py

    with h5py.File(big, "r") as f:
        report["density"] = round(f["X/data"].shape[0] / (args.cells * args.genes), 4)
    report["max_rss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(report, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backed_train.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
