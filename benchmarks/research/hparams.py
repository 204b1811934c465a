"""Stage 3: hyper-parameter defaults across data sets, one factor at a time from stage 1's base (hidden 128,
latent 10, lr 1e-3, batch 32 below 1,000 cells else 128, 300 epochs, no early stopping), each variant trained on
the stratified 50% split A and scored on the held-out half B exactly like stage 1 (heads.score_split).

    PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.research.hparams --datasets umi_hvg --head nb \\
        --variants latent2,latent16
    -> benchmarks/results/research/hparams/<dataset>__<head>__<variant>.json ("base" is copied from stage 1)
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from typing import Any

import numpy as np

from benchmarks.research import common
from benchmarks.research.heads import Context, score_split
from benchmarks.research.proto import PROTOTYPES

log = logging.getLogger("research")
ES = {"val_split": 0.1, "monitor": "val_loss"}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "latent2": {"latent_dim": 2},
    "latent16": {"latent_dim": 16},
    "hidden256": {"hidden": (256,)},
    "hidden512": {"hidden": (512,)},
    "hidden256x128": {"hidden": (256, 128)},
    "bs64": {"batch_size": 64},
    "bs128": {"batch_size": 128},
    "bs16": {"batch_size": 16},
    "lr3e-3": {"lr": 3e-3},
    "lr3e-4": {"lr": 3e-4},
    "epochs100": {"epochs": 100},
    "epochs600": {"epochs": 600},
    "es_p20": {**ES, "patience": 20},
    "es_p50": {**ES, "patience": 50, "epochs": 600},
    "init": {"init": True},
    "init_lr3e-3": {"init": True, "lr": 3e-3},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="umi_hvg")
    parser.add_argument("--head", default="", help="one head for all data sets, or per data set: yan=hurdle,...")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    common.setup()
    store, stage1 = common.Store("hparams"), common.Store("heads")
    per = dict(p.split("=") for p in args.head.split(",")) if "=" in args.head else {}
    for name in args.datasets.split(","):
        head = per.get(name, args.head)
        base_key = f"{name}__{head}__split"
        if stage1.done(base_key) and not store.done(f"{name}__{head}__base"):
            shutil.copy(stage1.path(base_key), store.path(f"{name}__{head}__base"))
        ctx = None
        tags = args.variants.split(",")
        if "base" not in tags:
            tags = ["base", *tags]  # run the base here when stage 1 has none for this head (e.g. a prototype)
        for tag in tags:
            key = f"{name}__{head}__{tag}"
            if store.done(key):
                continue
            ctx = ctx or Context(name)
            model = {"proto": head} if head in PROTOTYPES else {"likelihood": head}
            setting = {**model, "batch_size": 32 if ctx.adata.n_obs < 1000 else 128, **VARIANTS[tag]}
            t = time.perf_counter()
            rec = score_split(ctx, setting)
            rec["setting"] = setting
            rec["wall_s"] = time.perf_counter() - t
            store.put(key, rec)
            h = rec["heldout"]
            log.info("%s %s %s: heldout auc %.3f keep %.3f corr %.3f zeros %.3f/%.3f train auc %.3f aug %+.3f "
                     "fit %.0fs epochs %d (best %d)", name, head, tag, h["auc"], h["keep"], h["corr"],
                     h["zero_frac_gen"], h["zero_frac_real"], rec["train"]["auc"],
                     rec["aug"]["same"]["lr"]["gain"]["bal_acc"], rec["info"]["fit_s"], rec["info"]["epochs_run"],
                     rec["info"]["best_epoch"])  # fmt: skip
    return 0


def table(heads_by_dataset: dict[str, str] | None = None) -> list[str]:
    """Variant x data set: held-out AUC / keep, and the fit time; for the report."""
    store = common.Store("hparams")
    recs = store.all()
    names = sorted({k.split("__")[0] for k in recs})
    tags = list(VARIANTS)
    out = ["| variant | " + " | ".join(f"{n} ({next(k.split('__')[1] for k in recs if k.startswith(n + '__'))})"
                                        for n in names) + " | mean AUC |",
           "|---|" + "---|" * (len(names) + 1)]  # fmt: skip
    for tag in tags:
        cells, aucs = [], []
        for n in names:
            r = next((v for k, v in recs.items() if k.startswith(n + "__") and k.endswith("__" + tag)), None)
            if r is None:
                cells.append("")
                continue
            h = r["heldout"]
            aucs.append(h["auc"])
            cells.append(f"{h['auc']:.3f} / {h['keep']:.2f} / {r['aug']['same']['lr']['gain']['bal_acc']:+.3f} "
                         f"({r['info']['fit_s']:.0f}s, {r['info']['epochs_run']}ep)")  # fmt: skip
        if any(cells):
            out.append(f"| {tag} | " + " | ".join(cells) + f" | {np.mean(aucs):.3f} ({len(aucs)}) |")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
