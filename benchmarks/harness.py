"""An independent realism harness: does a generator's output look like held-out real cells? numpy + scikit-learn
only (no vaexprs.evaluate), so the package cannot grade its own homework.

    real_log = log_space(adata.X, kind)                                # counts | linear | log
    ref = reference(real_log, labels, seed=0)                         # the real data against itself
    m = score(real_log, labels, gen_log, gen_labels, seed=0, ref=ref) # every realism metric + target checks
    aug = augmentation_gain(adata, make_generator, seeds=(1, 2, 3))   # with vs without generated cells

Everything is compared in one log space: counts -> lognorm log2(x / sf + 1) with sf = library / mean library
(the real data's mean library, also for generated counts); RPKM/FPKM/TPM -> log2(x + 1); log data as is.
Metrics (see `score`): RF real-vs-generated AUC (5-fold, PCA of the pooled balanced cells), label keep rate (a
classifier trained on real cells predicts the generated cells' labels), per-label gene-mean correlation (and the
real split-half value), zero fractions, per-gene maximum plausibility, plus diagnostics (variance ratio, per-cell
detection spread). The targets are the issue's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

TARGETS = {
    "auc_max": 0.75,
    "keep_min": 0.9,
    "corr_gap": 0.05,  # corr >= split-half corr - gap
    "zero_gap": 0.05,  # |zero_gen - zero_real| <= gap
    "max_share_gap": 0.0,  # share of genes over (real max + sd) <= the real split-half share + gap
}
N_PCS = 50
RF_TREES = 200  # the real-vs-generated discriminator
RF_TREES_LABELS = 100  # the augmentation random forest


# ----------------------------------------------------------------------------------------------- spaces
def dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def mean_library(x: Any) -> float:
    lib = np.asarray(x.sum(1), dtype=np.float64).ravel()
    return float(lib.mean()) if lib.size and lib.mean() > 0 else 1.0


def log_space(x: Any, kind: str, mean_lib: float | None = None) -> np.ndarray:
    """Dense float32 values in the scoring space. kind: counts | linear | log. `mean_lib`: the size-factor
    denominator for counts (pass the real data's, also for generated counts; default: these cells' own mean)."""
    if kind == "log":
        return dense(x)
    if kind == "linear":
        return np.log2(dense(x).astype(np.float64) + 1.0).astype(np.float32)
    if kind != "counts":
        raise ValueError(f"kind must be counts, linear or log; got {kind!r}")
    if hasattr(x, "tocsr"):  # sparse: normalise the stored values only, then densify once (pbmc3k: 13,714 genes)
        x = x.tocsr().astype(np.float64)
        lib = np.asarray(x.sum(1)).ravel()
        sf = lib / (mean_lib if mean_lib is not None else mean_library(x))
        sf[sf <= 0] = 1.0
        x.data /= np.repeat(sf, np.diff(x.indptr))
        x.data = np.log2(x.data + 1.0)
        return np.asarray(x.toarray(), dtype=np.float32)
    x = np.array(x, dtype=np.float64)  # one float64 copy, transformed in place (same values as log2(x / sf + 1))
    lib = x.sum(1)
    sf = lib / (mean_lib if mean_lib is not None else mean_library(x))
    sf[sf <= 0] = 1.0
    x /= sf[:, None]
    x += 1.0
    np.log2(x, out=x)
    return x.astype(np.float32)


# ----------------------------------------------------------------------------------------------- splits
def stratified_split(labels: np.ndarray, frac: float, seed: int, min_first: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted row sets, each label split `frac` / 1 - frac (rounded up for the first part, which keeps at
    least `min_first` cells; the second part keeps at least one cell when the label has more than
    max(min_first, 1) cells, none otherwise)."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for lab in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == lab))
        k = int(np.ceil(len(rows) * frac))
        k = max(min(k, len(rows) - 1), min(min_first, len(rows))) if len(rows) > 1 else len(rows)
        a.append(rows[:k])
        b.append(rows[k:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


# ----------------------------------------------------------------------------------------------- metrics
def rf_auc(real: np.ndarray, gen: np.ndarray, seed: int) -> float:
    """Random forest real vs generated, 5-fold CV AUC on a <= 50-PC PCA of the pooled balanced cells."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    m = min(real.shape[0], gen.shape[0])
    pool = np.vstack(
        [real[rng.choice(real.shape[0], m, replace=False)], gen[rng.choice(gen.shape[0], m, replace=False)]]
    )
    y = np.r_[np.zeros(m), np.ones(m)]
    n_comp = int(min(N_PCS, pool.shape[0] - 1, pool.shape[1]))
    z = PCA(n_components=n_comp, random_state=seed).fit_transform(pool)
    cv = StratifiedKFold(n_splits=min(5, m), shuffle=True, random_state=seed)
    rf = RandomForestClassifier(n_estimators=RF_TREES, random_state=seed, n_jobs=2)
    proba = cross_val_predict(rf, z, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def _adaptive_pca(seed: int) -> Any:
    """A PCA with <= 50 components that never asks for more components than a (small) training set allows."""
    from sklearn.decomposition import PCA

    class AdaptivePCA(PCA):
        def _fit(self, x: Any) -> Any:
            self.n_components = int(max(1, min(N_PCS, x.shape[0] - 1, x.shape[1])))
            return super()._fit(x)

    return AdaptivePCA(n_components=N_PCS, random_state=seed)


def label_classifier(seed: int) -> Any:
    """Logistic regression on a standardised <= 50-PC PCA: the label judge (and the augmentation classifier)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(_adaptive_pca(seed), StandardScaler(), LogisticRegression(max_iter=3000))


def rf_classifier(seed: int) -> Any:
    """Random forest on a <= 50-PC PCA: a second, non-linear augmentation classifier."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        _adaptive_pca(seed), RandomForestClassifier(n_estimators=RF_TREES_LABELS, random_state=seed, n_jobs=2)
    )


def label_means_corr(real: np.ndarray, rl: np.ndarray, gen: np.ndarray, gl: np.ndarray) -> dict[str, float]:
    """Per label, Pearson r of the gene means (real vs generated) over genes; labels present on both sides."""
    out = {}
    for lab in np.unique(rl):
        if not np.any(gl == lab):
            continue
        a, b = real[rl == lab].mean(0, dtype=np.float64), gen[gl == lab].mean(0, dtype=np.float64)
        out[str(lab)] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return out


def max_plausibility(real: np.ndarray, gen: np.ndarray) -> dict[str, float]:
    """Per gene, generated max vs real max + real sd (log space): the worst excess and the share of genes over."""
    rmax, rsd, gmax = real.max(0), real.std(0, dtype=np.float64), gen.max(0)
    over = gmax - (rmax + rsd)
    return {
        "max_share_over": float(np.mean(over > 1e-6)),
        "max_worst_excess": float(over.max()),  # > 0: some gene beyond real max + sd (log units)
        "max_worst_over_real": float((gmax - rmax).max()),
        "gen_max": float(gmax.max()),
        "real_max": float(rmax.max()),
        "gen_min": float(gen.min()),
    }


def diagnostics(real: np.ndarray, gen: np.ndarray) -> dict[str, float]:
    """Why a discriminator wins: gene variance ratio, per-gene zero fractions, per-cell detection and totals."""
    vr, vg = real.var(0), gen.var(0)
    keep = vr > 0
    zr, zg = (real == 0).mean(0), (gen == 0).mean(0)
    dr, dg = (real > 0).mean(1), (gen > 0).mean(1)
    sr, sg = real.sum(1), gen.sum(1)
    nz_r, nz_g = real[real > 0], gen[gen > 0]
    return {
        "var_ratio_median": float(np.median(vg[keep] / vr[keep])) if keep.any() else float("nan"),
        "zero_gene_corr": float(np.corrcoef(zr, zg)[0, 1]) if zr.std() > 0 and zg.std() > 0 else float("nan"),
        "detect_cell_mean_real": float(dr.mean()),
        "detect_cell_mean_gen": float(dg.mean()),
        "detect_cell_sd_real": float(dr.std()),
        "detect_cell_sd_gen": float(dg.std()),
        "logsum_cell_sd_ratio": float(sg.std() / sr.std()) if sr.std() > 0 else float("nan"),
        "nonzero_mean_real": float(nz_r.mean()) if nz_r.size else float("nan"),
        "nonzero_mean_gen": float(nz_g.mean()) if nz_g.size else float("nan"),
        "nonzero_sd_real": float(nz_r.std()) if nz_r.size else float("nan"),
        "nonzero_sd_gen": float(nz_g.std()) if nz_g.size else float("nan"),
    }


def explain_auc(real: np.ndarray, gen: np.ndarray) -> dict[str, float]:
    """What gives generated cells away: the AUC of single per-cell summaries (0.5 = no help, far from 0.5 = a
    tell), e.g. detected fraction, total, mean and sd of the non-zero values, maximum, and distance to the label-free
    centroid in PCA space (generated cells too typical -> AUC < 0.5)."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import roc_auc_score

    def feats(x: np.ndarray) -> dict[str, np.ndarray]:
        nz = np.where(x > 0, x, np.nan)
        return {
            "detected": (x > 0).mean(1),
            "total": x.sum(1),
            "nonzero_mean": np.nan_to_num(np.nanmean(nz, 1)),
            "nonzero_sd": np.nan_to_num(np.nanstd(nz, 1)),
            "cell_max": x.max(1),
        }

    fr, fg = feats(real), feats(gen)
    y = np.r_[np.zeros(real.shape[0]), np.ones(gen.shape[0])]
    out = {f"auc_{k}": float(roc_auc_score(y, np.r_[fr[k], fg[k]])) for k in fr}
    pool = np.vstack([real, gen])
    z = PCA(n_components=int(min(10, pool.shape[0] - 1, pool.shape[1])), random_state=0).fit_transform(pool)
    centre = z[: real.shape[0]].mean(0)
    dist = np.linalg.norm(z - centre, axis=1)
    out["auc_pca_distance"] = float(roc_auc_score(y, dist))
    out.update({f"auc_pc{i + 1}": float(roc_auc_score(y, z[:, i])) for i in range(min(3, z.shape[1]))})
    return out


def cv_accuracy(real: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """The label classifier's stratified k-fold accuracy on real cells (k <= 5, the smallest label's size)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    k = int(min(5, np.unique(labels, return_counts=True)[1].min()))
    if k < 2:
        return float("nan")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    clf = label_classifier(seed)
    return float(np.mean(cross_val_score(clf, real, labels, cv=cv)))


def reference(
    real: np.ndarray, labels: np.ndarray, seed: int = 0, split: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, float]:
    """The real data against itself: two label-stratified halves scored like real vs generated.

    split: the two row sets (a, b) to compare instead of a random split-half; `a` plays the real side and `b`
    the generated side (held-out scoring of a generator trained on rows T and scored against rows H: pass
    (H, T)); keep_cv is then the label classifier's cross-validated accuracy within `a`.
    """
    if split is None:
        a, b = stratified_split(labels, 0.5, seed)
        keep_cv = cv_accuracy(real, labels, seed)
    else:
        a, b = (np.asarray(rows) for rows in split)
        keep_cv = cv_accuracy(real[a], labels[a], seed)
    corr = label_means_corr(real[a], labels[a], real[b], labels[b])
    mp = max_plausibility(real[a], real[b])
    return {
        "auc": rf_auc(real[a], real[b], seed),
        "corr": float(np.nanmean(list(corr.values()))),
        "corr_by_label": corr,
        "keep_cv": keep_cv,
        "zero_frac": float(np.mean(real == 0)),
        "max_share_over": mp["max_share_over"],
        "max_worst_excess": mp["max_worst_excess"],
        "real_max": float(real.max()),
    }


def score(
    real: np.ndarray,
    real_labels: np.ndarray,
    gen: np.ndarray,
    gen_labels: np.ndarray,
    seed: int = 0,
    ref: dict[str, float] | None = None,
    judge: Any = None,
    gen_raw: np.ndarray | None = None,
    count_output: bool = False,
) -> dict[str, Any]:
    """All realism metrics of generated cells against real cells (both in the log space, same genes).

    judge: a label classifier already fitted on real cells (else fitted here). gen_raw: the generated cells in
    their output space, to check integrality (count_output) and non-negativity. ref: `reference(real, ...)`,
    for the target checks.
    """
    real_labels, gen_labels = np.asarray(real_labels).astype(str), np.asarray(gen_labels).astype(str)
    if judge is None:
        judge = label_classifier(seed).fit(real, real_labels)
    pred = judge.predict(gen)
    corr = label_means_corr(real, real_labels, gen, gen_labels)
    m: dict[str, Any] = {
        "auc": rf_auc(real, gen, seed),
        "keep": float(np.mean(pred == gen_labels)),
        "keep_by_label": {str(k): float(np.mean(pred[gen_labels == k] == k)) for k in np.unique(gen_labels)},
        "corr": float(np.nanmean(list(corr.values()))),
        "corr_by_label": corr,
        "zero_frac_real": float(np.mean(real == 0)),
        "zero_frac_gen": float(np.mean(gen == 0)),
        **max_plausibility(real, gen),
        **diagnostics(real, gen),
        **explain_auc(real, gen),
        "finite": bool(np.all(np.isfinite(gen))),
    }
    m["zero_gap"] = m["zero_frac_gen"] - m["zero_frac_real"]
    raw = gen if gen_raw is None else gen_raw
    # no value below what the data hold: 0, or for signed data (z-scores) the real minimum
    m["nonnegative"] = bool(np.min(raw) >= min(0.0, float(np.min(real))))
    m["integer"] = bool(np.all(raw == np.round(raw))) if count_output else None
    if ref is not None:
        m["targets"] = check_targets(m, ref)
    return m


def check_targets(m: dict[str, Any], ref: dict[str, float]) -> dict[str, bool]:
    """Which of the issue's realism targets a score meets (augmentation and time are checked elsewhere)."""
    t = TARGETS
    return {
        "auc": m["auc"] <= t["auc_max"],
        "keep": m["keep"] >= t["keep_min"],
        "corr": m["corr"] >= ref["corr"] - t["corr_gap"],
        "zeros": abs(m["zero_gap"]) <= t["zero_gap"],
        "max": m["max_share_over"] <= ref["max_share_over"] + t["max_share_gap"]
        and m["nonnegative"]
        and m["integer"] is not False,
    }


# ----------------------------------------------------------------------------------------------- augmentation
Generator = Callable[[Any, int, dict[str, int]], tuple[np.ndarray, np.ndarray]]


def _accuracies(clf: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
                ) -> dict[str, float]:  # fmt: skip
    from sklearn.metrics import balanced_accuracy_score, f1_score

    pred = clf.fit(x_train, y_train).predict(x_test)
    return {
        "acc": float(np.mean(pred == y_test)),
        "bal_acc": float(balanced_accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro")),
    }


def label_counts(labels: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(*np.unique(np.asarray(labels).astype(str), return_counts=True))}


def topup_counts(counts: dict[str, int]) -> dict[str, int]:
    """How many cells each label needs to reach the largest label's count (labels already there: none): the
    augmentation a small, unbalanced study asks a conditional generator for."""
    top = max(counts.values())
    return {k: top - v for k, v in counts.items() if top > v}


def classifier_gains(real: np.ndarray, labels: np.ndarray, tr: np.ndarray, te: np.ndarray, gen: np.ndarray,
                     gl: np.ndarray, seed: int) -> dict[str, Any]:  # fmt: skip
    """LR and RF trained on the real rows `tr` with and without the generated cells, tested on the real rows
    `te`: {"lr"|"rf": {"base", "aug", "gain"}}, each of acc, bal_acc and macro_f1."""
    labels = np.asarray(labels).astype(str)
    gl = np.asarray(gl).astype(str)
    out: dict[str, Any] = {}
    for name, make in (("lr", label_classifier), ("rf", rf_classifier)):
        base = _accuracies(make(seed), real[tr], labels[tr], real[te], labels[te])
        aug = _accuracies(make(seed), np.vstack([real[tr], gen]), np.r_[labels[tr], gl], real[te], labels[te])
        out[name] = {"base": base, "aug": aug, "gain": {k: aug[k] - base[k] for k in base}}
    return out


def augmentation_run(
    real: np.ndarray,
    labels: np.ndarray,
    train_adata: Callable[[np.ndarray], Any],
    generate: Generator,
    seed: int,
    train_frac: float = 0.5,
    n_gen: str | Callable[[dict[str, int]], dict[str, int]] = "same",
    realism: bool = True,
) -> dict[str, Any]:
    """One seed of `augmentation_gain` (the split, the generator's fit, both classifiers with and without)."""
    labels = np.asarray(labels).astype(str)
    tr, te = stratified_split(labels, train_frac, seed, min_first=2)
    y_tr = labels[tr]
    counts = label_counts(y_tr)
    if n_gen == "same":
        want = counts
    elif n_gen == "balanced":
        want = topup_counts(counts) or counts
    else:
        want = n_gen(counts)
    gen, gl = generate(train_adata(tr), seed, want)
    gl = np.asarray(gl).astype(str)
    run: dict[str, Any] = {"seed": seed, "n_train": int(tr.size), "n_test": int(te.size), "n_gen": int(gl.size)}
    run.update(classifier_gains(real, labels, tr, te, gen, gl, seed))
    if realism:
        run["heldout"] = {k: v for k, v in score(real[te], labels[te], gen, gl, seed=seed).items()
                          if not isinstance(v, dict)}  # fmt: skip
        run["train"] = {k: v for k, v in score(real[tr], y_tr, gen, gl, seed=seed).items()
                        if not isinstance(v, dict)}  # fmt: skip
    return run


def summarize_augmentation(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd (over seeds, ddof 1; 0 for one seed) of the gains, the base accuracies, and (when the runs
    have them) the held-out and training-side realism means."""
    summary: dict[str, Any] = {"n_seeds": len(runs)}
    for name in ("lr", "rf"):
        for k in ("acc", "bal_acc", "macro_f1"):
            g = np.array([r[name]["gain"][k] for r in runs])
            b = np.array([r[name]["base"][k] for r in runs])
            summary[f"{name}_{k}_gain_mean"] = float(g.mean())
            summary[f"{name}_{k}_gain_std"] = float(g.std(ddof=1)) if g.size > 1 else 0.0
            summary[f"{name}_{k}_base_mean"] = float(b.mean())
    if runs and all("heldout" in r and "train" in r for r in runs):
        for side in ("heldout", "train"):
            for k in ("auc", "keep", "corr", "zero_gap", "max_share_over"):
                summary[f"{side}_{k}_mean"] = float(np.mean([r[side][k] for r in runs]))
    return summary


def augmentation_gain(
    real: np.ndarray,
    labels: np.ndarray,
    train_adata: Callable[[np.ndarray], Any],
    generate: Generator,
    seeds: Sequence[int] = (1, 2, 3),
    train_frac: float = 0.5,
    n_gen: str | Callable[[dict[str, int]], dict[str, int]] = "same",
    realism: bool = True,
) -> dict[str, Any]:
    """Classifier trained on a small real train split with vs without generated cells, tested on held-out real.

    real/labels: all real cells in the log space. train_adata(rows): the generator's training data (the raw
    AnnData of those rows). generate(train_ad, seed, counts): generated cells (log space) and labels, trained
    on train_ad only. n_gen: "same" (as many as the real train split, same label counts), "balanced" (every
    label topped up to the largest label's train count) or a function of the train label counts.
    Also scores the generated cells' realism against the held-out half (`realism`): the truly-held-out check.
    One seed = `augmentation_run`; the summary = `summarize_augmentation`.
    """
    runs = [augmentation_run(real, labels, train_adata, generate, seed, train_frac, n_gen, realism) for seed in seeds]
    return {"summary": summarize_augmentation(runs), "runs": runs}
