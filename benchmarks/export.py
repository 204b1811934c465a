"""ONNX export cost: the graph writer (vaexprs.model.onnx_graph, the default) against torch.onnx, in one run.

    python benchmarks/export.py                      # 20,000 genes, hidden 512, CVAE with 5 labels (~1 min)
    python benchmarks/export.py --genes 2000 --quick # smoke run
    -> JSON on stdout and in benchmarks/results/export.json

One checkpoint (a CVAE fitted for one epoch on random counts: weights' values do not matter for cost) is
exported by fresh child processes, alternating the exporters for `--rounds` rounds; each child reports its
export wall time and its peak RSS (`ru_maxrss`), and a child that only loads the checkpoint gives the baseline
RSS that the export adds to. Ratios (torch / graph) are taken within the run, on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import torch
torch.set_num_threads(2)
from vaexprs.model.result import VAEResult
from vaexprs.model.export import export_bundle
result = VAEResult.load(sys.argv[1])
exporter = sys.argv[2]
seconds = None
if exporter != "none":
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_bundle(result, Path(tmp) / "bundle", exporter=exporter)
        seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_checkpoint(path: Path, genes: int, hidden: int, labels: int) -> None:
    import numpy as np

    import vaexprs

    rng = np.random.default_rng(0)
    n = 40 * labels
    x = rng.poisson(1.0, (n, genes)).astype(np.float32)
    y = np.repeat([f"type{i}" for i in range(labels)], 40)
    result = vaexprs.fit_vae(x, y, likelihood="bce", hidden=(hidden,), latent_dim=10, epochs=1, progress=False)
    result.save(path)


def child(checkpoint: Path, exporter: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint), exporter], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round (use with a small --genes)")
    parser.add_argument("--out", type=Path, default=RESULTS / "export.json")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="vaexprs-bench-export-") as tmp:
        checkpoint = Path(tmp) / "model.pt"
        make_checkpoint(checkpoint, args.genes, args.hidden, args.labels)
        runs: dict[str, list[dict[str, float]]] = {"none": [], "graph": [], "torch": []}
        for r in range(rounds):
            order = ("graph", "torch") if r % 2 == 0 else ("torch", "graph")
            for exporter in ("none", *order):
                runs[exporter].append(child(checkpoint, exporter))
    base = min(x["peak_rss_mb"] for x in runs["none"])
    summary = {
        name: {
            "seconds_best": min(x["seconds"] for x in runs[name]),
            "peak_rss_mb_max": max(x["peak_rss_mb"] for x in runs[name]),
            "added_rss_mb": max(x["peak_rss_mb"] for x in runs[name]) - base,
        }
        for name in ("graph", "torch")
    }
    report = {
        "config": {"genes": args.genes, "hidden": args.hidden, "latent": 10, "labels": args.labels, "rounds": rounds},
        "baseline_rss_mb": base,
        "summary": summary,
        "ratios_torch_over_graph": {
            "seconds": summary["torch"]["seconds_best"] / summary["graph"]["seconds_best"],
            "added_rss": summary["torch"]["added_rss_mb"] / max(summary["graph"]["added_rss_mb"], 1.0),
        },
        "runs": runs,
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    from vaexprs.files import write_json_atomic

    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
