"""Glue between the benchmark data sets, the package's public API (fit_vae, gen_exprs) and the harness.

    gen_log, gen_labels, info = fit_generate(adata, {"likelihood": "nb", "epochs": 300}, seed=1, counts={...})
    store = Store("heads"); if not store.done(key): store.put(key, record)   # resumable per-run JSON

Generated cells come back in the harness log space (see benchmarks/harness.py), whatever head made them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "research"
COUNT_HEADS = ("nb", "zinb")
BASE = {"hidden": (128,), "latent_dim": 10, "epochs": 300, "batch_size": 32, "lr": 1e-3}  # README advice

log = logging.getLogger("research")


def setup() -> None:
    """One experiment process at a time on a shared 2-core machine: 2 torch threads, quiet warnings."""
    import torch

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("vaexprs").setLevel(logging.WARNING)


def heads_for(adata: Any) -> list[str]:
    """Candidate heads that apply: count heads only on integer data, hurdle only on non-negative data."""
    x = adata.X
    values = x.data if hasattr(x, "nnz") else np.asarray(x)
    heads = ["bce", "mse"]
    if values.min() >= 0:
        heads.append("hurdle")
    if values.min() >= 0 and np.all(values == np.round(values)):
        heads += ["nb", "zinb"]
    return heads


def to_log(gen: Any, kind: str, real_mean_lib: float, train_mean_lib: float) -> np.ndarray:
    """Generated cells (a GeneratedCells) in the harness space."""
    x = np.asarray(gen.x_gen, dtype=np.float64)
    space = gen.value_space or gen.output_space
    if space == "counts":
        return harness.log_space(x, "counts", real_mean_lib)
    if space == "lognorm" and kind == "counts":  # relative to the training cells' mean library: re-base
        return np.log2((np.exp2(x) - 1.0) * (real_mean_lib / train_mean_lib) + 1.0).astype(np.float32)
    return x.astype(np.float32)  # log (log2(x + 1)) and none are the harness spaces already


def fit(adata: Any, setting: dict[str, Any], seed: int) -> tuple[Any, float]:
    import vaexprs
    from benchmarks.research.proto import PROTOTYPES, InitFromData, patched

    private = ("head", "post", "tag", "proto", "output_space", "init")
    kw = {**BASE, **{k: v for k, v in setting.items() if k not in private}}
    kw["likelihood"] = setting.get("likelihood", setting.get("head", "bce"))
    proto = setting.get("proto")
    if proto:
        kw["likelihood"] = PROTOTYPES[proto].name
    if kw.get("patience") and kw.get("val_split", 0) > 0:
        kw.setdefault("monitor", "val_loss")
    t = time.perf_counter()
    if setting.get("init"):
        kw["callbacks"] = [InitFromData(adata, kw["likelihood"])]
    with patched(proto):
        result = vaexprs.fit_vae(adata, "cell_type", seed=seed, **kw)
    return result, time.perf_counter() - t


def generate(result: Any, counts: dict[str, int], seed: int, output_space: str | None = None) -> tuple[Any, float]:
    import vaexprs

    t = time.perf_counter()
    gen = vaexprs.gen_exprs(result, labels=counts, seed=seed, output_space=output_space)
    return gen, time.perf_counter() - t


def fit_generate(
    adata: Any, setting: dict[str, Any], seed: int, counts: dict[str, int], real_mean_lib: float
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train on `adata` with `setting`, generate `counts` cells per label; cells in the harness space."""
    kind = adata.uns["bench"]["kind"]
    result, fit_s = fit(adata, setting, seed)
    gen, gen_s = generate(result, counts, seed, setting.get("output_space"))
    raw = np.asarray(gen.x_gen)
    post = setting.get("post")
    if post is not None:
        raw = post(raw, gen, result, adata)
        gen.x_gen = raw
    train_lib = harness.mean_library(adata.X)
    x = to_log(gen, kind, real_mean_lib, train_lib)
    info = {
        "fit_s": fit_s,
        "gen_s": gen_s,
        "best_epoch": int(result.best_epoch),
        "epochs_run": len(result.history),
        "final_loss": float(result.history[-1]["loss"]),
        "final_val_loss": float(result.history[-1].get("val_loss", float("nan"))),
        "value_space": gen.value_space,
        "count_output": gen.value_space == "counts",
        "raw_min": float(raw.min()),
        "raw_integer": bool(np.all(raw == np.round(raw))),
    }
    info["_raw"] = raw
    info["_result"] = result
    return x, np.asarray(gen.y_gen).astype(str), info


def half_split(ds: Any, seed: int) -> tuple[np.ndarray, np.ndarray, Any, dict[str, int]]:
    """The quality study's split of seed k: training rows A, held-out rows B, A's AnnData and its label counts
    (what a same-size augmentation generates)."""
    tr, te = harness.stratified_split(ds.labels, 0.5, seed, min_first=2)
    return tr, te, ds.subset(tr), harness.label_counts(ds.labels[tr])


def label_counts(labels: np.ndarray) -> dict[str, int]:
    v, c = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return {str(a): int(b) for a, b in zip(v, c)}


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """Drop the private (non-JSON) entries."""
    return {k: v for k, v in d.items() if not k.startswith("_")}


class Store:
    """One JSON file per finished run under results/research/<experiment>/: reruns skip what is done."""

    def __init__(self, experiment: str) -> None:
        self.dir = RESULTS / experiment
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.dir / (key.replace("/", "_").replace(" ", "_") + ".json")

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.path(key).read_text())

    def put(self, key: str, record: dict[str, Any]) -> None:
        tmp = self.path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=_json_default) + "\n")
        tmp.replace(self.path(key))

    def all(self) -> dict[str, dict[str, Any]]:
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))}


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    return str(v)


def study_insample(name: str) -> tuple[Any, Any, float]:
    """The study's in-sample unit of `name` trained again: its data set (with the harness's reference) and
    fit_vae's defaults at the study's seed, the same model as the cached unit. Returns (data set, result, fit s)."""
    import vaexprs
    from benchmarks.quality import EVAL_SEED, SEED, Dataset

    ds = Dataset(name, 0)
    ds.ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED)
    started = time.perf_counter()
    result = vaexprs.fit_vae(ds.adata, "cell_type", seed=SEED)
    return ds, result, time.perf_counter() - started


def study_space(ds: Any, gen: Any) -> np.ndarray:
    """An in-sample unit's generated cells in the harness space, from whatever space the head wrote them in
    (the input's values, log or lognorm), as the study converts them."""
    from benchmarks.quality import to_log

    return to_log(gen, ds.kind, ds.mean_lib, harness.mean_library(ds.adata.X))


def score_as_study(ds: Any, gen: Any) -> dict[str, Any]:
    """gen_exprs' cells (not counts) scored exactly as the study scores its in-sample unit."""
    from benchmarks.quality import score_generated

    raw = np.asarray(gen.x_gen, dtype=np.float32)
    labels = np.asarray(gen.y_gen).astype(str)
    return score_generated(ds.real, ds.labels, study_space(ds, gen), labels, raw, False, ds.ref, judge=ds.judge)


def score_heldout(
    ds: Any, gen: Any, tr: np.ndarray, te: np.ndarray, train_ad: Any, seed: int, shown: tuple[str, ...]
) -> dict[str, Any]:
    """A half fit's cells (gen_exprs' on half A = rows `tr`, `train_ad`) scored as the study scores its held-out
    unit: the `shown` metrics against half B (rows `te`), with the gains of a same-size augmentation of half A
    (`aug_lr`, `aug_rf`)."""
    from benchmarks.quality import EVAL_SEED, score_generated, to_log

    ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED, split=(te, tr))
    x = to_log(gen, ds.kind, ds.mean_lib, harness.mean_library(train_ad.X))
    labels = np.asarray(gen.y_gen).astype(str)
    m = score_generated(ds.real[te], ds.labels[te], x, labels, gen.x_gen, False, ref)
    gains = harness.classifier_gains(ds.real, ds.labels, tr, te, x, labels, seed)
    return {**{k: m[k] for k in shown}, **{f"aug_{c}": gains[c]["gain"]["bal_acc"] for c in ("lr", "rf")}}


# ------------------------------------------------------------------ fit_vae's defaults with one option changed

CACHE = ROOT / "benchmarks" / "results" / "quality_runs" / "full"  # the study's units (quality.py --cache)
VARIANT_SHOWN = ("auc", "keep", "corr", "auc_cell_max")


def chosen(result: Any) -> str:
    """The selection's winning candidate (e.g. log_hurdle_dropout)."""
    return next(r["candidate"] for r in result.selection if r.get("chosen"))


def selection_table(result: Any) -> list[list[Any]]:
    """The selection's scored candidates: name, AUC, keep, score (lower is more real)."""
    return [[r["candidate"], r["auc"], r["keep"], r["score"]] for r in result.selection if "score" in r]


def cached_choice(record: dict[str, Any]) -> str | None:
    return next((r["candidate"] for r in record["info"].get("selection", []) if r.get("chosen")), None)


def insample_variant(ds: Any, options: dict[str, Any], seed: int, baseline: str) -> dict[str, Any]:
    """fit_vae's defaults with `options` (the selection chooses again under them), scored as the study's in-sample
    unit, next to the cached default unit under the key `baseline` (the study's seed only)."""
    import vaexprs
    from benchmarks.quality import SEED

    result = vaexprs.fit_vae(ds.adata, "cell_type", seed=seed, **options)
    m = score_as_study(ds, vaexprs.gen_exprs(result, num_samples=ds.adata.n_obs, seed=seed))
    row = {"chosen": chosen(result), "selection": selection_table(result), **{k: m[k] for k in VARIANT_SHOWN}}
    cached = CACHE / f"{ds.name}__defaults__insample.json"
    if seed == SEED and cached.is_file():
        record = json.loads(cached.read_text())["record"]
        row[baseline] = {"chosen": cached_choice(record), **{k: record["metrics"].get(k) for k in VARIANT_SHOWN}}
    return row


def heldout_variant(ds: Any, options: dict[str, Any], seed: int, baseline: str) -> dict[str, Any]:
    """fit_vae's defaults with `options` on the seed's half split, scored against the other half with the
    same-size augmentation gains, next to the study's cached half fit under the key `baseline`."""
    import vaexprs

    tr, te, train_ad, want = half_split(ds, seed)
    result = vaexprs.fit_vae(train_ad, "cell_type", seed=seed, **options)
    gen = vaexprs.gen_exprs(result, labels=want, seed=seed)
    row = {
        "chosen": chosen(result),
        "selection": selection_table(result),
        **score_heldout(ds, gen, tr, te, train_ad, seed, VARIANT_SHOWN),  # VARIANT_SHOWN, aug_lr, aug_rf
    }
    cached = CACHE / f"{ds.name}__defaults__aug{seed}.json"
    if cached.is_file():
        record = json.loads(cached.read_text())["record"]
        row[baseline] = {
            "chosen": cached_choice(record),
            **{k: record["heldout"].get(k) for k in VARIANT_SHOWN if k in record["heldout"]},
            "aug_lr": record["lr"]["gain"]["bal_acc"],
            "aug_rf": record["rf"]["gain"]["bal_acc"],
        }
    return row


def variant_sweep(experiment: str, tag: str, option: str, parse: Any, baseline: str, argv: list[str]) -> int:
    """The command line of a one-option research sweep (latent_size.py, kl_warmup.py):

        SCRIPT {insample,heldout} VALUE SET[,SET...] [SEED[,SEED...]]

    runs fit_vae's defaults with `option` = parse(VALUE) per data set and seed (the study's seed by default),
    one stored JSON per unit (reruns skip what is done), each printed as a line; all of them are then written to
    results/research/<experiment>.json. `tag` names the value in each row and key; the cached default unit sits
    in each row under `baseline` (e.g. latent10)."""
    from benchmarks.quality import EVAL_SEED, SEED, Dataset, clean, write_atomic

    units = {"insample": insample_variant, "heldout": heldout_variant}
    if len(argv) not in (3, 4) or argv[0] not in units:
        print(f"usage: {experiment}.py {{insample,heldout}} VALUE SET[,SET...] [SEED[,SEED...]]", file=sys.stderr)
        return 2
    setup()
    store = Store(experiment)
    unit, value = argv[0], parse(argv[1])
    seeds = [int(s) for s in argv[3].split(",")] if len(argv) == 4 else [SEED]
    for name in argv[2].split(","):
        ds = Dataset(name, 0)
        ds.ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED)
        for seed in seeds:
            key = f"{unit}_{name}_{tag}{value}_seed{seed}"
            if not store.done(key):
                row = units[unit](ds, {option: value}, seed, baseline)
                store.put(key, clean({"unit": unit, "dataset": name, tag: value, "seed": seed, **row}))
            print(json.dumps(store.get(key)), flush=True)
    out = RESULTS / f"{experiment}.json"
    write_atomic(out, json.dumps(clean(list(store.all().values())), indent=1) + "\n")
    return 0
