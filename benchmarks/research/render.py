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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default="heads")
    args = parser.parse_args(argv)
    store = common.Store(args.experiment)
    print("\n".join([*datasets_table(store), "", *heads_table(store)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
