"""How noisy is likelihood=auto's judge, and which part of the noise would a sturdier judge remove?

    python -m benchmarks.research.judge_noise SET[,SET...] [SEED[,SEED...]] [DRAWS]

For each data set and seed, fit_vae's defaults run the selection as they do in the study (the seed also draws
the held-out split), but every candidate's cells are scored DRAWS times (default 5): generated again with other
seeds and judged with other forest seeds, on the same trained candidate. Per candidate it records the first draw's
AUC (the one the selection used) and the spread over draws; across seeds, the spread of the mean says how much
comes from training and the split. Averaging draws only helps where the within-candidate spread is the larger part
(a candidate trains for far longer than it takes to generate and score). Writes results/research/judge_noise.json.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from benchmarks.research.common import RESULTS, Store, setup

DRAW_SEED_STEP = 1000  # draw d generates with seed + d * step and judges with the forest seed + d * step


class Selected(Exception):
    """Raised once the selection has chosen: the final model's training is not needed here."""

    def __init__(self, table: list[dict[str, Any]]) -> None:
        self.table = table


def scored_draws(name: str, seed: int, draws: int) -> dict[str, Any]:
    """The study's fit_vae defaults on `name`, with every candidate's cells scored `draws` times."""
    import vaexprs
    from benchmarks.quality import Dataset
    from vaexprs.model import scoring, selection

    ds = Dataset(name, 0)
    plain = (scoring.generate_like, selection.evaluate, selection.apply_normalization)
    plain_generate, plain_evaluate, plain_normalize = plain
    plain_select, plain_choice = selection.select_likelihood, selection.apply_choice
    tables: list[list[dict[str, Any]]] = []

    def select_likelihood(*args: Any, **kwargs: Any) -> Any:
        choice, table = plain_select(*args, **kwargs)
        tables.append(table)
        return choice, table

    def apply_choice(*args: Any) -> Any:
        raise Selected(tables[-1])

    pending: list[Any] = []
    aucs: list[list[float]] = []
    space: dict[str, Any] = {}  # how the selection brings counts to the held-out cells' space (its last call)

    def apply_normalization(x: Any, method: Any, mean_library: Any = None) -> Any:
        space.update(method=method, mean_library=mean_library)
        return plain_normalize(x, method, mean_library=mean_library)

    def generate_like(result: Any, n: int, labels: Any, gen_seed: int) -> Any:
        pending[:] = [plain_generate(result, n, labels, gen_seed + d * DRAW_SEED_STEP) for d in range(draws)]
        return pending[0]

    def evaluate(real_x: Any, gen_x: Any, real_y: Any, gen_y: Any, seed: int = 0) -> dict[str, Any]:
        first = plain_evaluate(real_x, gen_x, real_y, gen_y, seed=seed)
        row = [first["auc_real_vs_gen"]]
        for d, gen in enumerate(pending[1:], start=1):
            x = gen.x_gen
            if gen.value_space == "counts":  # judged in the held-out cells' space, as the selection does
                x = plain_normalize(x, space["method"], mean_library=space["mean_library"])
            labels = gen.y_gen if real_y is not None else None
            row.append(plain_evaluate(real_x, x, real_y, labels, seed=seed + d * DRAW_SEED_STEP)["auc_real_vs_gen"])
        aucs.append(row)
        return first

    scoring.generate_like, selection.evaluate, selection.apply_normalization = (
        generate_like, evaluate, apply_normalization
    )  # fmt: skip
    selection.select_likelihood, selection.apply_choice = select_likelihood, apply_choice
    try:
        vaexprs.fit_vae(ds.adata, "cell_type", seed=seed)
        raise RuntimeError("fit_vae trained without a selection: likelihood is not auto")
    except Selected as done:
        table = done.table
    finally:
        scoring.generate_like, selection.evaluate, selection.apply_normalization = plain
        selection.select_likelihood, selection.apply_choice = plain_select, plain_choice
    scored = [r for r in table if "score" in r]
    rows = []
    for r, draw in zip(scored, aucs, strict=True):
        rows.append(
            {
                "candidate": r["candidate"],
                "auc_used": r["auc"],
                "auc_draws": draw,
                "auc_mean": float(np.mean(draw)),
                "auc_sd": float(np.std(draw, ddof=1)) if len(draw) > 1 else 0.0,
                "score": r["score"],
                "chosen": bool(r.get("chosen")),
            }
        )
    winner = next(r["candidate"] for r in table if r.get("chosen"))
    return {"dataset": name, "seed": seed, "draws": draws, "chosen": winner, "candidates": rows}


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2, 3):
        print("usage: judge_noise.py SET[,SET...] [SEED[,SEED...]] [DRAWS]", file=sys.stderr)
        return 2
    from benchmarks.quality import clean, write_atomic

    setup()
    store = Store("judge_noise")
    seeds = [int(s) for s in argv[1].split(",")] if len(argv) > 1 else [1]
    draws = int(argv[2]) if len(argv) > 2 else 5
    for name in argv[0].split(","):
        for seed in seeds:
            key = f"{name}_seed{seed}_draws{draws}"
            if not store.done(key):
                store.put(key, clean(scored_draws(name, seed, draws)))
            print(json.dumps(store.get(key)), flush=True)
    write_atomic(RESULTS / "judge_noise.json", json.dumps(clean(list(store.all().values())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
