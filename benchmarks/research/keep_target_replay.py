"""Which cached study units would a changed selection score choose differently? Replays each unit's selection
table (benchmarks/results/quality_runs/full) under the package's realism_score as it is now, without training.

    PYTHONPATH=. python benchmarks/research/keep_target_replay.py [set,set,...]
    -> one JSON line per unit on stdout; all of them in benchmarks/results/research/keep_target_replay.json

Made for the relative keep target (selection.keep_target): per unit, the held-out real cells' own keep rate is
computed the way select_likelihood computes it (the same data, split and seed, up to the judge, then stopped),
every scored row is rescored against it, and the selection's order is replayed: the best head, then its dropout,
standardized-input and beta-4 tries, each kept only when better by TIE. `same`: the unit's chosen options stand,
so its final model and numbers do too; `rerun`: the choice changes, or the replay needs a try the cached table
does not hold (tables made before that try existed). Rows are read as they were scored; only the keep target
changes, so this answers for score changes of that kind only.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import datasets, harness
from benchmarks.quality import SEED, Dataset, write_atomic

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "benchmarks" / "results" / "quality_runs" / "full"
OUT = ROOT / "benchmarks" / "results" / "research" / "keep_target_replay.json"
CHOICE = ("likelihood", "dropout", "encoder_input", "beta")


class _Stop(Exception):
    """Raised once the value wanted is in hand: nothing after it needs to run."""


def real_keep(adata: Any, seed: int) -> float | None:
    """The held-out real cells' keep rate in `fit_vae(adata, "cell_type", seed=seed)`'s selection (the first
    call of its label judge); None when no selection runs."""
    import vaexprs
    from vaexprs.model import selection

    got: dict[str, Any] = {}
    original = selection.label_judge

    def judge_once(*args: Any, **kwargs: Any) -> Any:
        judge = original(*args, **kwargs)

        def first_call(*cells: Any) -> Any:
            got["keep"] = judge(*cells)
            raise _Stop

        return first_call

    selection.label_judge = judge_once
    try:
        with contextlib.suppress(_Stop):
            vaexprs.fit_vae(adata, "cell_type", seed=seed, progress=False)
    finally:
        selection.label_judge = original
    return got.get("keep")


def replay(rows: list[dict[str, Any]], target: float) -> tuple[dict[str, Any], list[str]]:
    """The winner of `rows` rescored against `target`, and the tries the replay needed but the table lacks."""
    from vaexprs.model import selection

    scored = [{**r, "keep_target": target} for r in rows if "score" in r]
    for r in scored:
        r["score"] = selection.realism_score(r)
    by_name = {r.get("candidate", r["likelihood"]): r for r in scored}
    heads = [r for r in scored if r.get("candidate", r["likelihood"]) == r["likelihood"]]
    winner = heads[[r["likelihood"] for r in heads].index(selection.pick(heads))]
    missing: list[str] = []

    def try_again(suffix: str) -> None:
        nonlocal winner
        name = f"{winner.get('candidate', winner['likelihood'])}_{suffix}"
        if name not in by_name:
            missing.append(name)
        elif by_name[name]["score"] < winner["score"] - selection.TIE:
            winner = by_name[name]

    if winner["likelihood"] in selection.SAMPLED_HEADS:
        try_again("dropout")
        dense_skip = any("exact zeros" in str(r.get("skipped", "")) for r in rows)
        if not dense_skip and winner["score"] > selection.REAL_ENOUGH:
            try_again(selection.CANDIDATE_ENCODER_INPUT)
        try_again(f"beta{selection.CANDIDATE_BETA:g}")
    return winner, missing


def replay_unit(ds: Dataset, path: Path) -> dict[str, Any]:
    from vaexprs.model import selection

    unit = path.stem.split("__")[-1]
    rows = (json.loads(path.read_text())["record"].get("info") or {}).get("selection") or []
    chosen = next((r for r in rows if r.get("chosen")), None)
    out: dict[str, Any] = {"set": ds.name, "unit": unit}
    if chosen is None or not any("score" in r for r in rows):
        return {**out, "status": "no selection"}
    if unit == "insample":
        adata, seed = ds.adata, SEED
    else:  # the half split A of this seed, as quality.run_aug builds it
        seed, held = int(unit.removeprefix("aug")), {}

        def train_adata(rows_a: Any) -> Any:
            held["adata"] = ds.subset(rows_a)
            raise _Stop

        with contextlib.suppress(_Stop):
            harness.augmentation_run(ds.real, ds.labels, train_adata, None, seed, n_gen="same", realism=False)
        adata = held["adata"]
    keep = real_keep(adata, seed)
    target = selection.keep_target(keep)
    winner, missing = replay(rows, target)
    same = all(winner.get(k) == chosen.get(k) for k in CHOICE if k in chosen) and not missing
    return {
        **out,
        "real_keep": keep,
        "keep_target": round(target, 3),
        "status": "same" if same else "rerun",
        "chosen": chosen.get("candidate"),
        "replayed": winner.get("candidate"),
        "missing": missing,
    }


def main(names: list[str]) -> list[dict[str, Any]]:
    units = []
    for name in names:
        ds = Dataset(name, 0)
        for path in sorted(CACHE.glob(f"{name}__defaults__*.json")):
            units.append(replay_unit(ds, path))
            print(json.dumps(units[-1]), flush=True)
    write_atomic(OUT, json.dumps(units, indent=1) + "\n")
    return units


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else datasets.available())
