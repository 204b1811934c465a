"""likelihood="auto": train the heads that apply to the data, keep the one whose cells look most real.

    winner, table = select_likelihood(data, model_options, train, data_config)

A type rule alone ("nb for counts, hurdle for normalised values") fails on data the rule was not written for:
on full-length read counts nb loses both the zeros and the cell identity, and VAExprs' bce decoder mean is
told from real cells every time (benchmarks/research). So the candidates are trained on part of the cells, each
generates as many cells as a held-out part has (label for label), and the package's own metrics compare them
with those held-out cells in one log space: the real-vs-generated AUC (its distance from 0.5: cells that copy
real ones score below 0.5, benchmarks/results/calibration.md), penalised when the label keep rate falls below its
target or the zero fraction misses the real one by more than 0.05. The keep target is 0.9, or what the held-out
real cells themselves keep (the same judge, trained on the training cells) less 0.05 where that is lower: where
real cells of different labels are hard to tell apart (the guides of a CRISPR screen, perturb_seq: 0.44 in
cross-validation), a fixed 0.9 charged every candidate for it and rewarded caricatures, cells more typical of
their label than real ones, over realistic ones. Near-ties (0.02)
go to the head that won most often in the study (hurdle, then the count heads, then floor_hurdle, mixture, bce).
Where normalize leaves non-negative, non-integer values as they are (normalize=auto: below LOG_SCALE_MAX, taken as
log-scale) and the hurdle wins but misses the realism target (score above REAL_ENOUGH), it is tried once more as
log_hurdle: the hurdle on log2(x / s + 1), its cells mapped back to the input's values, so it is judged in the
input's own space (fractions of a cell's total, drawn unlogged, scored 0.84 in the study; a log of them scored in
the log space looked better than it was on methylation ratios). It is kept only when clearly more real. Where such
values have no exact zeros (at most LOG_MIXTURE_ZEROS: methylation ratios, denoised fractions, array intensities),
log_mixture, two Gaussians per gene on the same log2(x / s + 1), is a head of the first round beside the hurdle and
bce (where a value's spread varies from value to value, one Gaussian draws a tail the real values lack: README,
"The shape of the noise"); near-ties go to the hurdle, whose tries reach array intensities.
The winning sampled head then tries up to three more times, each kept only when clearly more real: with dropout
(it stops the latent code memorising each cell's noise), with a heavier KL term (CANDIDATE_BETA: it keeps the
latent code near the prior, so the sampler draws new cells rather than the training cells again) and, in between,
with standardized encoder input (the head's input centred and
scaled per gene: on dense log-scale data far from 0, array intensities, log1p squeezes each cell's deviations to
hundredths and the latent goes unused; elsewhere it was worse in every research fit, so it is tried only where
the winner still misses the realism target (score above REAL_ENOUGH) and at most DENSE_ENOUGH of the values are
exact zeros (more made training diverge), and the held-out cells decide).

Selection is bounded: candidates see at most MAX_TRAIN_CELLS training cells for half the final model's epochs
(never fewer than MIN_CANDIDATE_EPOCHS, or the final model's where fewer),
and no more than SELECTION_WORK cell-epochs x genes each (the decoder's output layer, one weight per gene, is
most of the cost), and are judged on at most MAX_VAL_CELLS held-out cells. So it costs at most about three final
trainings (seven candidates at half the epochs; eight where both log heads apply), and a mid-sized set with all its
genes no longer pays more for selection than a larger one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vaexprs.analysis.metrics import MIN_CELLS, evaluate, label_judge
from vaexprs.config import DataConfig, TrainConfig
from vaexprs.data.preprocess import apply_normalization, choose_normalization, library_size, value_summary

log = logging.getLogger("vaexprs")

VAL_FRACTION = 0.2  # of each label with at least MIN_VAL_LABEL cells
MIN_VAL_LABEL = 5  # smaller labels stay whole in training (a CVAE must learn every label)
MAX_TRAIN_CELLS = 600
MAX_VAL_CELLS = 400
EPOCH_SHARE = 0.5  # of the final model's epochs, per candidate
# per candidate: pbmc3k's selection (600 cells x 57 epochs x 13,714 genes = 4.7e8) fits, so every study set keeps
# its epochs; a 1,000-cell set with all genes would do 600 x 150 x 13,714 = 1.2e9 and finish after pbmc3k
SELECTION_WORK = 5e8
# half of AUTO_EPOCHS_MIN: the budget never cuts a candidate below this, and a candidate trains at least this many
# epochs (or the final model's, where fewer): at half of an explicit 20, 10 epochs left the sampled heads untrained
# and bce won on fractions (its cells told apart at AUC 1.0); candidates of 20 chose the hurdle's log try
MIN_CANDIDATE_EPOCHS = 30
KEEP_MIN = 0.9
KEEP_SLACK = 0.05  # ... or the held-out real cells' own keep rate less this, where lower (keep_target)
ZERO_GAP = 0.05
TIE = 0.02
# the order of wins in the study; breaks near-ties. log_mixture must beat the hurdle clearly: on array intensities
# every first-round head was told apart at AUC 1.0, and the hurdle's standardized try then reached 0.89 where
# log_mixture's stayed at 1.0 (the study's microarray unit, README "log_mixture in the first round")
PREFERENCE = ("hurdle", "nb", "zinb", "floor_hurdle", "mixture", "log_hurdle", "log_mixture", "bce")
# cells with sampling noise (bce/mse: the decoder mean)
SAMPLED_HEADS = ("hurdle", "log_hurdle", "log_mixture", "nb", "zinb", "floor_hurdle", "mixture")
# log_mixture competes only where at most this share of the values are exact zeros: it draws no point mass (its only
# zeros are draws clipped at a gene's minimum), so beyond the zero fraction's own tolerance it cannot meet that target
# (fractions: 28% drawn against 55% real; ambient_corrected 46% against 93%, README "The shape of the noise")
LOG_MIXTURE_ZEROS = ZERO_GAP
CANDIDATE_DROPOUT = 0.2  # dropout = auto: the winner's second try (benchmarks/results/quality.md)
# beta = auto: the winner's last try trains with this KL weight. Where the encoded training cells spread far beyond
# the prior (small deep sets: 15-70 times its variance, reconstruction summed over 20,000+ genes outweighing the KL
# term), the latent sampler draws near-copies of the training cells; 4 halved that spread
# (benchmarks/research/kl_weight_results.md). As the default for every head it lost pbmc3k's in-sample target
# (AUC 0.733 -> 0.758), so it must win on the held-out cells
CANDIDATE_BETA = 4.0
# encoder_input = auto: the winner's third try sees standardized values (benchmarks/research/encoder_input_results.md:
# it rescues dense log-scale data far from 0, array intensities, and harms sparse data, so it must win on held-out cells)
CANDIDATE_ENCODER_INPUT = "standardized"
# ... tried only where at most this share of the encoder's inputs are exact zeros (0, or a gene's floor for signed
# values): standardizing turns them into non-zero inputs, Adam moves every first-layer weight at once, and with
# 20,000+ genes training diverged (treutlein, 90% zeros; yan, 46%, once in four fits); the vignette (16%) trained
DENSE_ENOUGH = 0.25
# ... and only where the winner so far misses the realism target (AUC <= 0.75, as a score): where it already meets it
# the try only resolves near-ties by the noise of a few held-out cells (the vignette: 0.606 vs 0.640 on 60 cells chose
# it, and the in-sample AUC went 0.46 -> 0.74; three research seeds had it worse there each time)
REAL_ENOUGH = 0.75
# what a selection row (and the choice) fixes: the head's options, and the KL weight it trained with
CHOICE = ("likelihood", "dropout", "encoder_input", "beta")


def candidate_heads(matrix: Any) -> tuple[list[str], dict[str, str]]:
    """The heads that apply to these values, and why each other one does not."""
    summary = value_summary(matrix)
    non_negative = summary.size == 0 or summary.minimum >= 0
    counts = summary.counts
    heads, excluded = ["bce"], {"mse": "the decoder mean, like bce (choose it explicitly)"}
    if non_negative:
        heads.insert(0, "hurdle")
        excluded["floor_hurdle"] = "no negative values: the hurdle's floor is 0"
        excluded["mixture"] = "no negative values: the hurdle holds them"
    else:
        heads[0:0] = ["floor_hurdle", "mixture"]  # signed values: with a point mass at a floor, or spread
        excluded["hurdle"] = "the values have negative entries"
    if counts:
        heads[1:1] = ["nb", "zinb"]
    else:
        reason = "the values are not non-negative integer counts"
        excluded.update(nb=reason, zinb=reason)
    return heads, excluded


def selection_rows(
    n: int, labels: np.ndarray | None, seed: int, hold_out: bool = True
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Stratified held-out rows (VAL_FRACTION of each label with >= MIN_VAL_LABEL cells; none when not
    `hold_out`), then both sides subsampled, label-proportionally, to the selection caps (every label keeps at
    least two training cells)."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == v) for v in np.unique(labels)]
    groups = [rng.permutation(rows) for rows in groups]
    ks = held_out_counts([len(g) if hold_out and len(g) >= MIN_VAL_LABEL else 0 for g in groups])
    train = [g[k:] for g, k in zip(groups, ks, strict=True)]
    val = [g[:k] for g, k in zip(groups, ks, strict=True)]
    return _capped(train, MAX_TRAIN_CELLS, 2), _capped(val, MAX_VAL_CELLS, 1)


def held_out_counts(sizes: list[int]) -> list[int]:
    """Cells to hold out of each label: VAL_FRACTION of it, at least one; none where its size is given as 0 (too
    small to lose any, or nothing held out)."""
    return [max(1, round(size * VAL_FRACTION)) if size else 0 for size in sizes]


def _capped(groups: list[np.ndarray], cap: int, floor: int) -> np.ndarray:
    total = sum(len(g) for g in groups)
    if total > cap:
        groups = [g[: min(len(g), max(floor, math.floor(len(g) * cap / total)))] for g in groups]
    return np.sort(np.concatenate(groups)) if groups else np.array([], dtype=int)


def candidate_epochs(final_epochs: int, train_cells: int, n_genes: int) -> int:
    """Epochs per candidate: EPOCH_SHARE of the final model's, at least MIN_CANDIDATE_EPOCHS (the final model's
    where fewer: a quick run's candidates train as long as it does), cut to SELECTION_WORK (never below
    MIN_CANDIDATE_EPOCHS by the cut). Every default trains at least AUTO_EPOCHS_MIN, so only an explicit small
    `epochs` meets the floor."""
    wanted = max(1, math.ceil(final_epochs * EPOCH_SHARE), min(final_epochs, MIN_CANDIDATE_EPOCHS))
    per_epoch = max(1, train_cells * n_genes)
    if wanted * per_epoch <= SELECTION_WORK:
        return wanted
    return min(wanted, max(MIN_CANDIDATE_EPOCHS, math.floor(SELECTION_WORK / per_epoch)))


def keep_target(real_keep: float | None) -> float:
    """The keep rate a candidate's cells should reach: KEEP_MIN, or the held-out real cells' own keep rate less
    KEEP_SLACK where that is lower (a generator of new real cells scores about the real cells' rate)."""
    return KEEP_MIN if real_keep is None else min(KEEP_MIN, real_keep - KEEP_SLACK)


def realism_score(row: dict[str, Any]) -> float:
    """Lower is better, 0.5 at best: 0.5 + the AUC's distance from chance (an AUC below 0.5 is no more real
    than one as far above it: copies of real cells score 0.27-0.36 in the calibration), plus what the keep
    rate (against the row's keep_target, KEEP_MIN when absent) and the zero fraction miss of their targets."""
    keep = row.get("keep")
    penalty = max(0.0, row.get("keep_target", KEEP_MIN) - keep) if keep is not None else 0.0
    return float(0.5 + abs(row["auc"] - 0.5) + penalty + max(0.0, abs(row["zero_gap"]) - ZERO_GAP))


def pick(rows: list[dict[str, Any]]) -> str:
    """The lowest realism score; within TIE of it, the head earliest in PREFERENCE."""
    best = min(r["score"] for r in rows)
    near = [r["likelihood"] for r in rows if r["score"] <= best + TIE]
    return min(near, key=lambda h: PREFERENCE.index(h) if h in PREFERENCE else len(PREFERENCE))


def select_likelihood(
    data: Any,
    model_options: dict[str, Any],
    train: TrainConfig,
    data_config: DataConfig,
    progress: bool | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train each applicable head on part of `data` (a TrainingData), score its cells against held-out cells,
    and return the winner's options (CHOICE: likelihood, dropout, encoder_input, beta) with the whole table (one
    row per candidate, `chosen` marking the winner). With dropout auto (None), the winning sampled head competes
    once more with CANDIDATE_DROPOUT; with encoder_input auto, the winner so far once more with standardized input
    (an escalation, see the module's docstring); with beta auto (None), the winner so far once more with
    CANDIDATE_BETA. A candidate whose training diverges (a non-finite loss) is recorded as such and cannot win."""
    from vaexprs.model.fit import TrainingData, fit_head
    from vaexprs.model.scoring import generate_like

    heads, excluded = candidate_heads(data.matrix)
    fixed = model_options.get("dropout")  # None = auto: selection decides
    base_beta = 1.0 if train.beta is None else train.beta  # None = auto: 1, or CANDIDATE_BETA if it wins
    encoder_input = model_options.get("encoder_input", "auto")
    plain_input = "head" if encoder_input == "auto" else encoder_input
    skipped = [{"likelihood": h, "skipped": why} for h, why in excluded.items()]
    fallback = heads[0]  # the first sampled head (hurdle or floor_hurdle) where one applies
    labels = data.labels
    if data.val_matrix is not None:  # the caller's validation cells judge; all training cells may train
        train_rows, _ = selection_rows(data.matrix.shape[0], labels, train.seed, hold_out=False)
        val_x, val_y = data.val_matrix, data.val_labels
        if val_x.shape[0] > MAX_VAL_CELLS:
            keep = np.sort(np.random.default_rng(train.seed).choice(val_x.shape[0], MAX_VAL_CELLS, replace=False))
            val_x, val_y = val_x[keep], None if val_y is None else np.asarray(val_y)[keep]
    else:
        train_rows, val_rows = selection_rows(data.matrix.shape[0], labels, train.seed)
        val_x = data.matrix[val_rows]
        val_y = None if labels is None else labels[val_rows]
    if len(heads) == 1 or val_x.shape[0] < MIN_CELLS:
        why = "only one head applies" if len(heads) == 1 else f"fewer than {MIN_CELLS} cells to hold out"
        log.warning("likelihood=auto: %s; using %s", why, fallback)
        choice = {"likelihood": fallback, "dropout": fixed or 0.0, "encoder_input": plain_input, "beta": base_beta}
        return choice, [{**choice, "candidate": fallback, "chosen": True, "note": why}, *skipped]

    train_x = data.matrix[train_rows]
    train_y = None if labels is None else labels[train_rows]
    subset = TrainingData(train_x, data.genes, train_y)
    space, _ = choose_normalization(data.matrix, data_config.normalize)
    log_excluded = log_hurdle_excluded(data.matrix, space)
    zeros = encoder_zero_share(train_x)
    if log_excluded:  # the heads on log2(x / s + 1): log_hurdle (an escalation of the hurdle) and log_mixture
        skipped += [{"likelihood": h, "skipped": log_excluded} for h in ("log_hurdle", "log_mixture")]
    elif zeros > LOG_MIXTURE_ZEROS:
        why = f"{zeros:.0%} of the values are exact zeros: it draws none (more than {LOG_MIXTURE_ZEROS:.0%})"
        skipped.append({"likelihood": "log_mixture", "skipped": why})
    else:
        # values without exact zeros whose spread varies from value to value (a methylation ratio stays near its
        # prior where few cytosines were covered, spreads where many were): one Gaussian per value draws a tail
        # the real values lack, two per gene do not; a head of the first round, not a try after the hurdle (bce's
        # decoder mean won most of denoised's half fits, where the log_hurdle try never runs)
        heads.insert(heads.index("bce"), "log_mixture")
    mean_lib = float(np.mean(library_size(train_x))) if space == "lognorm" else None
    real_val = apply_normalization(val_x, space, mean_library=mean_lib)
    judge_x = apply_normalization(train_x, space, mean_library=mean_lib)  # the label judge learns from these
    final = train.resolved(data.matrix.shape[0])
    epochs = candidate_epochs(final.epochs, train_x.shape[0], train_x.shape[1])
    cand_train = replace(final, epochs=epochs, val_split=0.0, monitor="loss", beta=base_beta)
    n_val = int(val_x.shape[0])
    # one label judge for the table: trained on the training cells, it names the labels of the held-out real
    # cells (the keep target) and of every candidate's cells
    judge = None if train_y is None else label_judge(judge_x, train_y, seed=train.seed)
    real_keep = judge(real_val, val_y) if judge is not None and val_y is not None else None
    target = keep_target(real_keep)
    log.info(
        "likelihood=auto: %s on %d cells for %d epochs each, judged on %d held-out cells (label keep target %.2f%s)",
        ", ".join(heads), train_x.shape[0], cand_train.epochs, n_val, target,
        "" if real_keep is None else f": the held-out real cells keep {real_keep:.2f}",
    )  # fmt: skip

    def score(options: dict[str, Any], name: str) -> dict[str, Any]:
        """Train one candidate on the selection's training cells; score its cells against the held-out ones."""
        started = time.perf_counter()
        head_options = {k: v for k, v in options.items() if k != "beta"}
        cand = replace(cand_train, beta=options["beta"])
        try:
            result = fit_head(
                subset, head_options, cand, data_config, progress=progress, what=f"selection: {name}", candidate=True
            )
        except FloatingPointError as exc:  # diverged: on record, never chosen
            log.warning("  %-14s diverged: %s", name, exc)
            return {**_identity(options, name), "diverged": str(exc).split(":")[0]}
        gen = generate_like(result, n_val, val_y, train.seed)
        gen_x = gen.x_gen
        if gen.value_space == "counts":
            gen_x = apply_normalization(gen_x, space, mean_library=mean_lib)
        m = evaluate(real_val, gen_x, val_y, gen.y_gen if val_y is not None else None, seed=train.seed)
        keep = None if judge is None else judge(gen_x, gen.y_gen)
        row = {
            **_identity(options, name),
            "auc": m["auc_real_vs_gen"],
            "keep": keep,
            "keep_target": target,
            "corr": m["label_centroid_corr_mean"] if val_y is not None else m["mean_corr"],
            "zero_frac_real": m["zero_frac_real"],
            "zero_frac_gen": m["zero_frac_gen"],
            "zero_gap": m["zero_frac_gen"] - m["zero_frac_real"],
            "var_ratio": m["var_ratio"],
            "epochs": cand_train.epochs,
            "train_cells": int(train_x.shape[0]),
            "val_cells": n_val,
            "seconds": round(time.perf_counter() - started, 2),
        }
        row["score"] = realism_score(row)
        log.info(
            "  %-14s AUC %.3f  keep %s  corr %.3f  zeros %.2f/%.2f  score %.3f",
            name, row["auc"], "n/a" if keep is None else f"{keep:.2f}", row["corr"] or 0.0,
            row["zero_frac_gen"], row["zero_frac_real"], row["score"],
        )  # fmt: skip
        return row

    base = {**model_options, "dropout": fixed or 0.0, "encoder_input": plain_input, "beta": base_beta}
    rows = [score({**base, "likelihood": head}, head) for head in heads]
    scored = [r for r in rows if "score" in r]
    if not scored:
        raise FloatingPointError("likelihood=auto: every candidate's training diverged (non-finite loss)")
    winner = scored[[r["likelihood"] for r in scored].index(pick(scored))]

    def try_again(change: dict[str, Any], name: str) -> None:
        """The winner once more with `change`, as candidate `name`; kept only when its cells are clearly (by TIE)
        more real."""
        nonlocal winner
        options = {**base, **{k: winner[k] for k in CHOICE}, **change}
        rows.append(score(options, name))
        if "score" in rows[-1] and rows[-1]["score"] < winner["score"] - TIE:
            winner = rows[-1]

    if not log_excluded:
        if winner["likelihood"] != "hurdle":
            log_why = f"{winner['candidate']} won, not the hurdle"
        elif winner["score"] <= REAL_ENOUGH:
            log_why = f"hurdle already meets the realism target (score {winner['score']:.3f})"
        else:
            log_why = None
            # small linear-scale values: the hurdle once more on log2(x / s + 1), its cells in the input's values
            try_again({"likelihood": "log_hurdle"}, "log_hurdle")
        if log_why:
            rows.append({"candidate": "log_hurdle", "likelihood": "log_hurdle", "skipped": log_why})
    if winner["likelihood"] in SAMPLED_HEADS:
        if fixed is None:
            # dropout = auto: it stops the latent code from memorising each training cell's noise; on some data
            # it blurs labels
            try_again({"dropout": CANDIDATE_DROPOUT}, f"{winner['candidate']}_dropout")
        if encoder_input == "auto":
            name = f"{winner['candidate']}_{CANDIDATE_ENCODER_INPUT}"
            if zeros > DENSE_ENOUGH:
                why = f"{zeros:.0%} of the values are exact zeros (or a gene's floor): more than {DENSE_ENOUGH:.0%}"
            elif winner["score"] <= REAL_ENOUGH:
                why = f"{winner['candidate']} already meets the realism target (score {winner['score']:.3f})"
            else:
                why = None
                try_again({"encoder_input": CANDIDATE_ENCODER_INPUT}, name)
            if why:
                rows.append({"candidate": name, "likelihood": winner["likelihood"], "skipped": why})
        if train.beta is None:
            # beta = auto: a heavier KL term keeps the latent code near the prior, so sampled cells are new ones
            # rather than the training cells again; on some data it blurs them
            try_again({"beta": CANDIDATE_BETA}, f"{winner['candidate']}_beta{CANDIDATE_BETA:g}")
    for row in rows:
        row["chosen"] = row is winner
    choice = {k: winner[k] for k in CHOICE}
    log.info(
        "likelihood=auto chose %s (dropout %g, encoder input %s, beta %g)",
        choice["likelihood"], choice["dropout"], choice["encoder_input"], choice["beta"],
    )  # fmt: skip
    return choice, [*rows, *skipped]


def log_hurdle_excluded(matrix: Any, space: str) -> str | None:
    """Why the log_hurdle try does not apply to these values, or None where it does: non-negative values that
    are not counts and that the normalisation leaves as they are (normalize=auto: non-integer values below
    LOG_SCALE_MAX, which it takes as log-scale although fractions and ratios are linear)."""
    if space != "none":  # decided without a pass over the values
        return f"normalize={space} logs the values already"
    summary = value_summary(matrix)
    if summary.counts:
        return "the values are counts (nb and zinb model them)"
    if summary.size and summary.minimum < 0:
        return "the values have negative entries"
    return None


def apply_choice(
    model_options: dict[str, Any], train: TrainConfig, row: dict[str, Any]
) -> tuple[dict[str, Any], TrainConfig]:
    """A selection row (or the choice) as fit_head's arguments: the model options with its head's, and the train
    config with its KL weight (beta is an optimisation option, not the network's)."""
    head = {k: row[k] for k in CHOICE if k != "beta"}
    return {**model_options, **head}, replace(train, beta=row["beta"])


def encoder_zero_share(x: Any) -> float:
    """The share of values the hurdle heads' encoders see as exact zeros: 0, or each gene's minimum where the
    values are signed (floor_hurdle and mixture see the values above it)."""
    size = x.shape[0] * x.shape[1]
    if size == 0:
        return 0.0
    if hasattr(x, "nnz") and x.min() >= 0:  # sparse, non-negative: the stored entries are the non-zeros
        return float(1.0 - np.count_nonzero(x.data) / size)
    dense = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    floor = dense.min(0)
    low = np.where(floor < 0, floor, 0.0)
    return float(np.mean(dense == low))


def runner_up(rows: list[dict[str, Any]], failed: dict[str, Any]) -> dict[str, Any] | None:
    """The best-scored candidate other than `failed` (a choice whose final training diverged) that does not
    share its encoder input when that was standardized: what fit_vae trains instead."""
    others = [
        r for r in rows
        if "score" in r and r is not failed
        and not (failed["encoder_input"] == CANDIDATE_ENCODER_INPUT and r["encoder_input"] == CANDIDATE_ENCODER_INPUT)
    ]  # fmt: skip
    return min(others, key=lambda r: r["score"]) if others else None


def _identity(options: dict[str, Any], name: str) -> dict[str, Any]:
    """What a selection row trained: its name and the options that differ between candidates."""
    return {
        "candidate": name,
        "likelihood": options["likelihood"],
        "dropout": float(options["dropout"]),
        "encoder_input": options["encoder_input"],
        "beta": float(options["beta"]),
    }
