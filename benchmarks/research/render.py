"""Markdown tables from the research stores (benchmarks/results/research/<experiment>/*.json).

PYTHONPATH=. .venv/bin/python -m benchmarks.research.render heads      # the data set x head table
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from typing import Any

from benchmarks.research import common

ORDER = ("yan", "treutlein", "pbmc3k", "fulllength", "umi_hvg", "rare_label", "vignette", "scanpy_log")


def f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def mark(ok: bool | None) -> str:
    return "" if ok is None or ok else "**x**"


def datasets_table(store: common.Store) -> list[str]:
    recs = store.all()
    lines = ["| data set | kind | cells x genes | labels (sizes) | zeros | library sizes | max value |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ORDER:
        r = recs.get(f"{name}__ref")
        if not r:
            continue
        d = r["describe"]
        sizes = "/".join(str(v) for v in d["labels"].values())
        lines.append(f"| {name} | {d['kind']} | {d['n_cells']} x {d['n_genes']} | {len(d['labels'])} ({sizes}) | "
                     f"{d['zero_frac']:.2f} | {d['library_min']:.3g}..{d['library_max']:.3g} | {d['max']:.4g} |")  # fmt: skip
    return lines


def heads_table(store: common.Store, heads: tuple[str, ...] = ("bce", "mse", "hurdle", "nb", "zinb")) -> list[str]:
    recs = store.all()
    by: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for key, rec in recs.items():
        parts = key.split("__")
        if len(parts) == 3:
            by[parts[0]][f"{parts[1]}__{parts[2]}"] = rec
    out = []
    for name in ORDER:
        if name not in by:
            continue
        ref = recs[f"{name}__ref"]["ref"]
        out += [f"**{name}** (real split-half: AUC {f(ref['auc'])}, corr {f(ref['corr'])}, label CV acc "
                f"{f(ref['keep_cv'])}, zeros {f(ref['zero_frac'])}, max share over {f(ref['max_share_over'])})", "",
                "| head | AUC | keep | corr | zeros gen | max over (worst) | held-out AUC | held-out keep | aug gain "
                "bal-acc LR / RF | val AUC | train AUC (inner) | fit s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for head in heads:
            full = by[name].get(f"{head}__full")
            if not full:
                continue
            m, t = full["metrics"], full["metrics"].get("targets", {})
            outer = by[name].get(f"{head}__outer")
            inner = by[name].get(f"{head}__inner")
            s = outer["summary"] if outer else {}
            out.append(
                f"| {head} | {f(m['auc'])}{mark(t.get('auc'))} | {f(m['keep'])}{mark(t.get('keep'))} | "
                f"{f(m['corr'])}{mark(t.get('corr'))} | {f(m['zero_frac_gen'])}{mark(t.get('zeros'))} | "
                f"{f(m['max_share_over'])} ({f(m['max_worst_excess'], 1)}){mark(t.get('max'))} | "
                f"{f(s.get('heldout_auc_mean'))} | {f(s.get('heldout_keep_mean'))} | "
                f"{f(s.get('lr_bal_acc_gain_mean'), 3) if s else 'n/a'} / {f(s.get('rf_bal_acc_gain_mean')) if s else ''} | "
                f"{f(inner['val']['auc']) if inner else 'n/a'} | {f(inner['train']['auc']) if inner else 'n/a'} | "
                f"{full['info']['fit_s']:.0f} |"
            )
        out.append("")
    return out


def judge_reference(store: common.Store, name: str, seed: int = 1) -> float:
    """Accuracy on the real held-out half B of the label judge trained on real A: what 'keep' can reach there."""
    key = f"{name}__judge"
    if not store.done(key):
        from benchmarks import harness
        from benchmarks.research.heads import Context

        ctx = Context(name)
        a, b = harness.stratified_split(ctx.labels, 0.5, seed, min_first=2)
        judge = harness.label_classifier(seed).fit(ctx.real[a], ctx.labels[a])
        store.put(key, {"acc_real_heldout": float((judge.predict(ctx.real[b]) == ctx.labels[b]).mean())})
    return store.get(key)["acc_real_heldout"]


def winner(runs: dict[str, float], keeps: dict[str, float], zeros: dict[str, float], tie: float = 0.0) -> str:
    """The selection rule on one set of scores: lowest AUC among heads with keep >= 0.9 and |zero gap| <= 0.05."""
    ok = [h for h in runs if keeps[h] >= 0.9 and abs(zeros[h]) <= 0.05] or list(runs)
    return min(ok, key=lambda h: runs[h])


def split_table(store: common.Store, heads: tuple[str, ...] = ("bce", "hurdle", "nb", "zinb")) -> list[str]:
    """Per data set x head, one fit on the 50% split A, scored against A (train side: what the issue's targets
    measure) and against the held-out half B (see heads.score_split). **x** = misses the target."""
    recs = store.all()
    out = []
    for name in ORDER:
        rows = {h: recs.get(f"{name}__{h}__split") for h in heads}
        rows = {h: r for h, r in rows.items() if r}
        if not rows:
            continue
        ref = recs[f"{name}__ref"]["ref"]
        jr = judge_reference(store, name)
        out += [f"**{name}** (real split-half: AUC {f(ref['auc'])}, corr {f(ref['corr'])}, zeros "
                f"{f(ref['zero_frac'])}, max share over {f(ref['max_share_over'])}; label judge accuracy on real "
                f"held-out cells {f(jr)})", "",
                "| head | train AUC | keep | corr | zeros gen (real) | max over (worst) | held-out AUC | held-out "
                "keep | val-sized AUC mean (sd) | clipped held-out AUC, max over | aug gain LR bal-acc same / "
                "balanced / double | RF same | fit s (epochs) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for h, r in rows.items():
            m, t, c, aug = r["heldout"], r["train"], r["clipped_heldout"], r["aug"]
            vd = r["val_draws"]["auc"]
            gains = " / ".join(f(aug[k]["lr"]["gain"]["bal_acc"], 3) if k in aug else "-"
                               for k in ("same", "balanced", "double"))  # fmt: skip
            ok_max = t["max_share_over"] <= ref["max_share_over"] and t["nonnegative"]
            out.append(
                f"| {h} | {f(t['auc'])}{mark(t['auc'] <= 0.75)} | {f(t['keep'])}{mark(t['keep'] >= 0.9)} | "
                f"{f(t['corr'])}{mark(t['corr'] >= ref['corr'] - 0.05)} | {f(t['zero_frac_gen'])} "
                f"({f(t['zero_frac_real'])}){mark(abs(t['zero_gap']) <= 0.05)} | {f(t['max_share_over'])} "
                f"({f(t['max_worst_excess'], 1)}){mark(ok_max)} | {f(m['auc'])} | {f(m['keep'])} | "
                f"{f(sum(vd) / len(vd))} ({f(float(np_std(vd)))}) | {f(c['auc'])}, {f(c['max_share_over'])} | "
                f"{gains} | {f(aug['same']['rf']['gain']['bal_acc'])} | "
                f"{r['info']['fit_s']:.0f} ({r['info']['epochs_run']}) |"
            )
        out.append("")
    return out


def selection_table(store: common.Store, heads: tuple[str, ...] = ("bce", "hurdle", "nb", "zinb")) -> list[str]:
    """Which head the rule (lowest AUC among heads with keep >= 0.9 and |zero gap| <= 0.05) picks from each
    score: the training-side one (the targets' view), the held-out half B, and five validation-sized draws of B
    (what a selection split inside fit_vae would see)."""
    recs = store.all()
    out = ["| data set | pick on train side | pick on held-out B | picks on val-sized draws of B | "
           "val picks = train pick | val picks = held-out pick |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name in ORDER:
        rows = {h: recs.get(f"{name}__{h}__split") for h in heads}
        rows = {h: r for h, r in rows.items() if r}
        if len(rows) < 2:
            continue
        tkeeps = {h: r["train"]["keep"] for h, r in rows.items()}
        tzeros = {h: r["train"]["zero_gap"] for h, r in rows.items()}
        held = winner({h: r["heldout"]["auc"] for h, r in rows.items()}, {h: r["heldout"]["keep"] for h, r in
                      rows.items()}, {h: r["heldout"]["zero_gap"] for h, r in rows.items()})  # fmt: skip
        train_pick = winner({h: r["train"]["auc"] for h, r in rows.items()}, tkeeps, tzeros)
        picks = [winner({h: r["val_draws"]["auc"][d] for h, r in rows.items()}, tkeeps, tzeros) for d in range(5)]
        out.append(f"| {name} | {train_pick} | {held} | {', '.join(picks)} | "
                   f"{sum(p == train_pick for p in picks)}/5 | {sum(p == held for p in picks)}/5 |")  # fmt: skip
    return out


def diag_table(store: common.Store) -> list[str]:
    """Stage 2 (diag_counts): one row per data set x setting."""
    out = ["| data set / setting | train AUC | train keep | held-out AUC | held-out keep | zeros gen (real) | "
           "mean-output keep | latent silhouette | latent library R2 | theta median | held-out tells: detected, "
           "non-zero mean, non-zero sd | fit s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, r in store.all().items():
        h, t, mo = r["heldout"], r["train"], r.get("mean_output_heldout", {})
        th = r.get("theta_quantiles")
        out.append(
            f"| {key.replace('__', ' / ')} | {f(t['auc'])} | {f(t['keep'], 2)} | {f(h['auc'])} | {f(h['keep'], 2)} | "
            f"{f(h['zero_frac_gen'])} ({f(h['zero_frac_real'])}) | {f(mo.get('keep'), 2)} | "
            f"{f(r['latent_silhouette'], 2)} | {f(r['latent_library_r2'], 2)} | {f(th[2] if th else None, 2)} | "
            f"{f(h.get('auc_detected'), 2)}, {f(h.get('auc_nonzero_mean'), 2)}, {f(h.get('auc_nonzero_sd'), 2)} | "
            f"{r['info']['fit_s']:.0f} |"
        )
    return out


def np_std(v: list[float]) -> float:
    m = sum(v) / len(v)
    return (sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1)) ** 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default="heads")
    args = parser.parse_args(argv)
    store = common.Store(args.experiment)
    if args.experiment == "diag_counts":
        print("\n".join(diag_table(store)))
        return 0
    if args.experiment == "hparams":
        from benchmarks.research.hparams import table

        print("\n".join(table()))
        return 0
    parser_tables = [*datasets_table(store), ""]
    if any(k.endswith("__split") for k in store.all()):
        parser_tables += [*split_table(store), *selection_table(store)]
    else:
        parser_tables += heads_table(store)
    print("\n".join(parser_tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
