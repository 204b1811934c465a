"""Sanity checks of the independent harness: it must say 'real' for real cells and 'fake' for obvious fakes.

PYTHONPATH=. .venv/bin/python -m pytest benchmarks/tests -q
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import harness


def _toy(n: int = 200, g: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c", "d"], n // 4)
    mu = rng.gamma(0.5, 2.0, (4, g))
    codes = np.repeat(np.arange(4), n // 4)
    counts = rng.poisson(rng.gamma(2.0, mu[codes] / 2.0) * rng.lognormal(0, 0.3, (n, 1)))
    return counts.astype(np.float32), labels


def test_log_space_counts_uses_given_mean_library() -> None:
    x = np.array([[1.0, 3.0], [0.0, 8.0]])
    y = harness.log_space(x, "counts", mean_lib=4.0)
    assert np.allclose(y, np.log2(x / (x.sum(1, keepdims=True) / 4.0) + 1.0))
    assert np.allclose(harness.log_space(x, "linear"), np.log2(x + 1))
    assert np.array_equal(harness.log_space(x, "log"), x.astype(np.float32))


def test_stratified_split_keeps_every_label_on_the_first_side() -> None:
    labels = np.array(["a"] * 9 + ["b"] * 3 + ["c"] * 2)
    a, b = harness.stratified_split(labels, 0.5, seed=1, min_first=2)
    assert set(labels[a]) == {"a", "b", "c"} and np.intersect1d(a, b).size == 0 and a.size + b.size == labels.size
    assert (labels[a] == "c").sum() == 2 and (labels[b] == "b").sum() == 1


def test_real_halves_look_real_and_fakes_do_not() -> None:
    counts, labels = _toy()
    real = harness.log_space(counts, "counts")
    ref = harness.reference(real, labels, seed=0)
    assert ref["auc"] < 0.7 and ref["keep_cv"] > 0.9
    # the smooth label mean (what a bce decoder emits): no zeros, no noise
    smooth = np.vstack([np.tile(real[labels == k].mean(0), ((labels == k).sum(), 1)) for k in np.unique(labels)])
    m = harness.score(real, labels, smooth, labels, seed=0, ref=ref)
    assert (
        m["auc"] > 0.95
        and m["zero_frac_gen"] < m["zero_frac_real"] - 0.1
        and not m["targets"]["auc"]
        and not m["targets"]["zeros"]
    )
    assert m["keep"] == 1.0 and m["corr"] > 0.99
    # resampled real cells with label noise swapped: keep rate drops
    wrong = np.roll(labels, 50)
    assert harness.score(real, labels, real, wrong, seed=0)["keep"] < 0.2


def test_max_plausibility_flags_overshoot() -> None:
    counts, _ = _toy()
    real = harness.log_space(counts, "counts")
    gen = real.copy()
    gen[0, :10] = real.max(0)[:10] + 5.0
    mp = harness.max_plausibility(real, gen)
    assert mp["max_share_over"] == pytest.approx(10 / real.shape[1]) and mp["max_worst_excess"] > 3.0


def test_augmentation_gain_with_real_cells_as_generator_is_not_negative_on_average() -> None:
    counts, labels = _toy(n=160, g=200, seed=3)
    real = harness.log_space(counts, "counts")

    def generate(rows: np.ndarray, seed: int, want: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)  # an 'oracle' generator: more real cells of the asked labels
        out = [rng.choice(np.flatnonzero(labels == k), v) for k, v in want.items()]
        rows = np.concatenate(out)
        return real[rows], labels[rows]

    res = harness.augmentation_gain(real, labels, lambda rows: rows, generate, seeds=(1, 2), realism=False)
    assert res["summary"]["lr_acc_gain_mean"] > -0.05


def test_log_space_sparse_counts_match_dense() -> None:
    import scipy.sparse as sp

    counts, _ = _toy(n=40, g=50, seed=5)
    x = sp.csr_matrix(counts)
    assert np.array_equal(harness.log_space(x, "counts", mean_lib=123.0), harness.log_space(counts, "counts", 123.0))
    assert np.array_equal(harness.log_space(x, "counts"), harness.log_space(counts, "counts"))
    assert np.array_equal(x.toarray(), counts)  # the input is not modified


def test_reference_on_a_given_split_compares_those_rows() -> None:
    counts, labels = _toy(n=120, g=100, seed=4)
    real = harness.log_space(counts, "counts")
    tr, te = harness.stratified_split(labels, 0.5, seed=2, min_first=2)
    ref = harness.reference(real, labels, seed=0, split=(te, tr))
    assert ref["auc"] == pytest.approx(harness.rf_auc(real[te], real[tr], 0))
    assert ref["corr"] == pytest.approx(
        np.mean(list(harness.label_means_corr(real[te], labels[te], real[tr], labels[tr]).values()))
    )


def test_augmentation_run_and_summary_make_augmentation_gain() -> None:
    counts, labels = _toy(n=80, g=60, seed=6)
    real = harness.log_space(counts, "counts")

    def generate(rows: np.ndarray, seed: int, want: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        rows = np.concatenate([rng.choice(np.flatnonzero(labels == k), v) for k, v in want.items()])
        return real[rows], labels[rows]

    whole = harness.augmentation_gain(real, labels, lambda rows: rows, generate, seeds=(1, 2), realism=False)
    runs = [harness.augmentation_run(real, labels, lambda rows: rows, generate, s, realism=False) for s in (1, 2)]
    assert harness.summarize_augmentation(runs) == whole["summary"] and whole["summary"]["n_seeds"] == 2


def test_topup_counts_fill_each_smaller_label_up_to_the_largest() -> None:
    assert harness.topup_counts({"a": 10, "b": 3, "c": 10, "d": 1}) == {"b": 7, "d": 9}
    assert harness.topup_counts({"a": 5, "b": 5}) == {}


def test_classifier_gains_compare_with_and_without_the_generated_cells() -> None:
    counts, labels = _toy(n=80, g=60, seed=6)
    real = harness.log_space(counts, "counts")
    tr, te = harness.stratified_split(labels, 0.5, 1, min_first=2)
    none = harness.classifier_gains(real, labels, tr, te, real[:0], labels[:0], seed=1)
    for clf in ("lr", "rf"):  # nothing added: the same classifier on the same cells, so no gain
        assert none[clf]["aug"] == none[clf]["base"]
        assert all(v == 0 for v in none[clf]["gain"].values())
    wrong = harness.classifier_gains(real, labels, tr, te, real[tr], np.roll(labels[tr], 20), seed=1)
    assert wrong["lr"]["gain"]["bal_acc"] < 0  # training cells again under shuffled labels: worse, not better
