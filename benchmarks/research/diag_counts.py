"""Stage 2: why nb fails on full-length read counts, and what fixes it.

Each setting is trained on the outer 50% split A (seed 1) and generates |A| cells; the cells are scored against the
held-out half B and A. To separate the two possible causes, every count model also generates its noise-free mean
(output_space="mean": expected counts at the label's median library size): if the mean keeps its labels but the
sampled cells do not, the sampling noise (dispersion, zeros) is to blame; if the mean fails too, the latent or the
decoder is. Also recorded: the label separation of the training latents (silhouette), the learnt inverse
dispersion theta and the per-gene zero fractions by expression level.

    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.research.diag_counts --datasets fulllength
    -> benchmarks/results/research/diag_counts/<dataset>__<setting>.json
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks.research import common
from benchmarks.research.heads import Context

log = logging.getLogger("research")
FIXED = {"val_split": 0.0, "monitor": "loss", "patience": None}  # the README's fixed 300 epochs
SETTINGS: dict[str, dict[str, Any]] = {
    "nb": {"likelihood": "nb", **FIXED},
    "nb_bs8": {"likelihood": "nb", "batch_size": 8, **FIXED},
    "nb_lnenc": {"proto": "nb_lnenc", **FIXED},
    "nb_lnenc_bs8": {"proto": "nb_lnenc", "batch_size": 8, **FIXED},
    "zinb_lnenc_bs8": {"proto": "zinb_lnenc", "batch_size": 8, **FIXED},
    "zinb": {"likelihood": "zinb", **FIXED},
    "zinb_lnenc": {"proto": "zinb_lnenc", **FIXED},
    "hurdle_bs8": {"likelihood": "hurdle", "batch_size": 8, **FIXED},
    "nb_gc_bs8": {"proto": "nb_gc", "batch_size": 8, **FIXED},
    "nb_lnenc_lr3e-3": {"proto": "nb_lnenc", "lr": 3e-3, **FIXED},
    "nb_lnenc_es": {"proto": "nb_lnenc", "val_split": 0.1, "monitor": "val_loss", "patience": 20},
}


def zero_by_level(real: np.ndarray, gen: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Per-gene zero fraction, real vs generated, in quintiles of the genes' real mean (log space)."""
    mean = real.mean(0)
    expressed = mean > 0
    edges = np.quantile(mean[expressed], np.linspace(0, 1, bins + 1))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        g = expressed & (mean >= lo) & (mean <= hi)
        out.append({"mean_lo": float(lo), "mean_hi": float(hi), "zero_real": float((real[:, g] == 0).mean()),
                    "zero_gen": float((gen[:, g] == 0).mean())})  # fmt: skip
    return out


def run(ctx: Context, setting: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    from sklearn.metrics import silhouette_score

    a, b = harness.stratified_split(ctx.labels, 0.5, seed, min_first=2)
    train = ctx.subset(a)
    counts = common.label_counts(ctx.labels[a])
    gen, gl, info = common.fit_generate(train, setting, seed, counts, ctx.mean_lib)
    result = info["_result"]
    out: dict[str, Any] = {"setting": {k: v for k, v in setting.items() if k != "post"}, "info": common.plain(info)}
    judge = harness.label_classifier(0).fit(ctx.real[a], ctx.labels[a])
    for side, rows in (("heldout", b), ("train", a)):
        m = harness.score(ctx.real[rows], ctx.labels[rows], gen, gl, seed=0, judge=judge if side == "train" else None)
        out[side] = m
    out["zero_by_level"] = zero_by_level(ctx.real[b], gen)
    if result.model_config.likelihood in common.COUNT_HEADS or result.model_config.likelihood == "hurdle":
        mean_gen, _ = common.generate(result, counts, seed, "mean")
        mean_log = common.to_log(mean_gen, ctx.kind, ctx.mean_lib, harness.mean_library(train.X))
        m = harness.score(ctx.real[b], ctx.labels[b], mean_log, np.asarray(mean_gen.y_gen).astype(str), seed=0)
        out["mean_output_heldout"] = {k: v for k, v in m.items() if not isinstance(v, dict)}
    head = result.model.head
    if hasattr(head, "log_theta"):
        theta = head.log_theta.detach().exp().numpy()
        out["theta_quantiles"] = [float(q) for q in np.quantile(theta, [0.05, 0.25, 0.5, 0.75, 0.95])]
    if hasattr(head, "log_sigma"):
        out["sigma_quantiles"] = [float(q) for q in np.quantile(head.log_sigma.detach().exp().numpy(),
                                                                [0.05, 0.25, 0.5, 0.75, 0.95])]  # fmt: skip
    y = np.asarray(result.y_train).astype(str)
    out["latent_silhouette"] = float(silhouette_score(result.latent, y)) if len(set(y)) > 1 else None
    lib = np.log(np.asarray(train.X.sum(1)).ravel())
    out["latent_library_r2"] = float(_r2(result.latent, lib))
    return out


def _r2(z: np.ndarray, y: np.ndarray) -> float:
    """How much of the (log) library size a linear read-out of the latent explains: the latent's library leak."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score

    return float(np.mean(cross_val_score(LinearRegression(), z, y, cv=5, scoring="r2")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fulllength")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args(argv)
    common.setup()
    store = common.Store("diag_counts")
    for name in args.datasets.split(","):
        ctx = Context(name)
        for tag in args.settings.split(","):
            key = f"{name}__{tag}"
            if store.done(key):
                continue
            t = time.perf_counter()
            setting = {"batch_size": 32 if ctx.adata.n_obs < 1000 else 128, **SETTINGS[tag]}
            rec = run(ctx, setting)
            rec["wall_s"] = time.perf_counter() - t
            store.put(key, rec)
            h, mo = rec["heldout"], rec.get("mean_output_heldout", {})
            log.info("%s %s: heldout auc %.3f keep %.3f corr %.3f zeros %.3f/%.3f | mean-output keep %s | "
                     "silhouette %.2f lib-r2 %.2f theta %s fit %.0fs", name, tag, h["auc"], h["keep"], h["corr"],
                     h["zero_frac_gen"], h["zero_frac_real"], mo.get("keep"), rec["latent_silhouette"],
                     rec["latent_library_r2"], rec.get("theta_quantiles"), rec["info"]["fit_s"])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
