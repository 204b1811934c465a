"""The hurdle head's training epoch: the loss on non-zero entries only with multi-tensor Adam, against the loss
evaluated at every entry with single-tensor Adam (the code before), side by side in one run.

    .venv/bin/python benchmarks/hurdle_epoch.py            # -> benchmarks/results/hurdle_epoch.json

The hurdle is what `likelihood="auto"` picks on most data (the quality study: 15 of 18 sets), and its truncated
normal's log Phi term, evaluated at every entry of a mostly-zero batch, was most of a training step's time.
Same data, seed, settings and process for both arms: `fit_vae(adata, "cell_type", likelihood="hurdle")`
for a few epochs, in alternating rounds (before, after, before, ...) so that load from other processes hits
both alike; the first epoch of each round is warm-up and dropped; the figure is the median seconds per epoch.
Both arms must end with the same weights (bit for bit on this machine): the change is speed only, so the
quality study's numbers stand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import write_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "hurdle_epoch.json"
SETS = ("pbmc3k", "yan")  # sparse UMI counts, all 13,714 genes; dense RPKM, 44% zeros


def dense_hurdle_log_prob(x: Any, mu: Any, sigma: Any, pi_logit: Any) -> Any:
    """The loss before: the truncated normal evaluated at every entry, zeros included, then masked."""
    import torch
    import torch.nn.functional as F

    z = (x - mu) / sigma
    positive = (
        F.logsigmoid(-pi_logit)
        - 0.5 * z.pow(2)
        - torch.log(sigma)
        - 0.5 * math.log(2 * math.pi)
        - torch.special.log_ndtr(mu / sigma)
    )
    return torch.where(x > 0, positive, F.logsigmoid(pi_logit))


@contextmanager
def code_before() -> Iterator[None]:
    """The dense loss and single-tensor Adam, patched in for one round."""
    import torch

    from vaexprs.model import network

    loss, adam = network.hurdle_log_prob, torch.optim.Adam

    def single_tensor_adam(params: Any, **kwargs: Any) -> Any:
        return adam(params, **{**kwargs, "foreach": False})

    network.hurdle_log_prob, torch.optim.Adam = dense_hurdle_log_prob, single_tensor_adam
    try:
        yield
    finally:
        network.hurdle_log_prob, torch.optim.Adam = loss, adam


def one_round(adata: Any, epochs: int, seed: int) -> dict[str, Any]:
    import vaexprs

    result = vaexprs.fit_vae(adata, "cell_type", likelihood="hurdle", epochs=epochs, seed=seed, progress=False)
    digest = hashlib.sha256()
    for _, tensor in sorted(result.model.state_dict().items()):
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return {
        "epoch_seconds": [h["epoch_time"] for h in result.history],
        "final_loss": result.history[-1]["loss"],
        "weights_sha256": digest.hexdigest(),
        "batch_size": result.train_config.batch_size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per round (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import anndata
    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": {"epochs_per_round": args.epochs, "rounds": args.rounds, "torch_threads": args.threads},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus_used": args.threads},
        "data": {},
    }
    for name in SETS:
        path = DATA / f"{name}.h5ad"
        if not path.exists():
            print(f"{path} is absent: skipped", file=sys.stderr)
            continue
        adata = anndata.read_h5ad(path)
        rounds: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for r in range(args.rounds):
            for arm in ("before", "after"):
                if arm == "before":
                    with code_before():
                        out = one_round(adata, args.epochs, seed=r + 1)
                else:
                    out = one_round(adata, args.epochs, seed=r + 1)
                rounds[arm].append(out)
                print(f"{name} round {r + 1} {arm}: " + " ".join(f"{s:.2f}" for s in out["epoch_seconds"]),
                      file=sys.stderr)  # fmt: skip
        median = {
            arm: statistics.median(s for o in outs for s in o["epoch_seconds"][1:]) for arm, outs in rounds.items()
        }
        report["data"][name] = {
            "n_cells": adata.n_obs,
            "n_genes": adata.n_vars,
            "batch_size": rounds["after"][0]["batch_size"],
            "median_seconds_per_epoch": median,
            "speedup": median["before"] / median["after"],
            "same_weights": all(
                b["weights_sha256"] == a["weights_sha256"]
                for b, a in zip(rounds["before"], rounds["after"], strict=True)
            ),
            "rounds": rounds,
        }
        d = report["data"][name]
        print(f"{name}: {median['before']:.3f} -> {median['after']:.3f} s/epoch ({d['speedup']:.2f}x), "
              f"same weights: {d['same_weights']}")  # fmt: skip
    if not report["data"]:
        print(f"no data set found under {DATA}", file=sys.stderr)
        return 2
    write_atomic(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
