"""Does a larger latent code make fit_vae's default cells more real? A research sweep, not a default.

    PYTHONPATH=. python benchmarks/research/latent_size.py insample 20 methylation,pearson_residuals,umi_hvg
    PYTHONPATH=. python benchmarks/research/latent_size.py heldout 20 methylation,fulllength,many_labels 1,2,3
    -> one JSON line per unit; all of them in benchmarks/results/research/latent_size.json

The study chose latent 10 from every head on eight data sets (VAExprs' 2 could not hold real cells' variation).
Methylation's in-sample miss (0.811 with seed 1) comes from the head's noise, not the latent draws
(noise_shape.py), yet a code with room for each nucleus' coverage and depth might shape that noise. Here
fit_vae runs with every default but `latent_dim` (likelihood=auto included, so the selection chooses again at
that size), and its cells are scored as the study scores them: `insample` against all cells at the study's seed,
next to the cached latent-10 unit of benchmarks/results/quality_runs/full; `heldout` on the seed's half split
against the other half, with the same-size augmentation gains, next to the cached half fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.quality import EVAL_SEED, SEED, Dataset, clean, write_atomic
from benchmarks.research.common import Store, half_split, score_as_study, score_heldout, setup

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "research" / "latent_size.json"
CACHE = ROOT / "benchmarks" / "results" / "quality_runs" / "full"
SHOWN = ("auc", "keep", "corr", "auc_cell_max")


def chosen(result: Any) -> str:
    return next(r["candidate"] for r in result.selection if r.get("chosen"))


def table(result: Any) -> list[list[Any]]:
    """The selection's scored candidates: name, AUC, keep, score (lower is more real)."""
    return [[r["candidate"], r["auc"], r["keep"], r["score"]] for r in result.selection if "score" in r]


def insample(ds: Any, latent: int, seed: int) -> dict[str, Any]:
    """In-sample at `latent`, and the cached latent-10 unit (the study's seed only)."""
    import vaexprs

    result = vaexprs.fit_vae(ds.adata, "cell_type", seed=seed, latent_dim=latent)
    m = score_as_study(ds, vaexprs.gen_exprs(result, num_samples=ds.adata.n_obs, seed=seed))
    row = {"chosen": chosen(result), "selection": table(result), **{k: m[k] for k in SHOWN}}
    cached = CACHE / f"{ds.name}__defaults__insample.json"
    if seed == SEED and cached.is_file():
        record = json.loads(cached.read_text())["record"]
        row["latent10"] = {"chosen": _cached_choice(record), **{k: record["metrics"].get(k) for k in SHOWN}}
    return row


def heldout(ds: Any, latent: int, seed: int) -> dict[str, Any]:
    """The seed's half fit at `latent`, scored against the other half, and the cached latent-10 half fit."""
    import vaexprs

    tr, te, train_ad, want = half_split(ds, seed)
    result = vaexprs.fit_vae(train_ad, "cell_type", seed=seed, latent_dim=latent)
    gen = vaexprs.gen_exprs(result, labels=want, seed=seed)
    row = {
        "chosen": chosen(result),
        "selection": table(result),
        **score_heldout(ds, gen, tr, te, train_ad, seed, SHOWN),  # SHOWN, aug_lr, aug_rf
    }
    cached = CACHE / f"{ds.name}__defaults__aug{seed}.json"
    if cached.is_file():
        record = json.loads(cached.read_text())["record"]
        row["latent10"] = {
            "chosen": _cached_choice(record),
            **{k: record["heldout"].get(k) for k in SHOWN if k in record["heldout"]},
            "aug_lr": record["lr"]["gain"]["bal_acc"],
            "aug_rf": record["rf"]["gain"]["bal_acc"],
        }
    return row


def _cached_choice(record: dict[str, Any]) -> str | None:
    return next((r["candidate"] for r in record["info"].get("selection", []) if r.get("chosen")), None)


UNITS = {"insample": insample, "heldout": heldout}


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[0] not in UNITS:
        print("usage: latent_size.py {insample,heldout} LATENT SET[,SET...] [SEED[,SEED...]]", file=sys.stderr)
        return 2
    setup()
    store = Store("latent_size")
    unit, latent = argv[0], int(argv[1])
    seeds = [int(s) for s in argv[3].split(",")] if len(argv) == 4 else [SEED]
    for name in argv[2].split(","):
        ds = Dataset(name, 0)
        ds.ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED)
        for seed in seeds:
            key = f"{unit}_{name}_latent{latent}_seed{seed}"
            if not store.done(key):
                row = {"unit": unit, "dataset": name, "latent": latent, "seed": seed, **UNITS[unit](ds, latent, seed)}
                store.put(key, clean(row))
            print(json.dumps(store.get(key)), flush=True)
    write_atomic(OUT, json.dumps(clean(list(store.all().values())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
