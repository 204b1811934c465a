"""vaexprs.evaluate pinned on synthetic cases whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import sparse

from vaexprs.analysis.metrics import evaluate, evaluate_anndata, format_table
from vaexprs.errors import InputError

N_CELLS, N_GENES, BLOCK = 200, 500, 30
GROUPS = np.array(["A", "B", "C"])


def _params(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 3.0, N_GENES), rng.uniform(0.3, 1.2, N_GENES)


def _sample(seed: int, n: int = N_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """More genes than cells; per-gene means/sds; each group shifted by +2 on its own block of genes."""
    mu, sd = _params()
    rng = np.random.default_rng(seed)
    labels = GROUPS[rng.integers(0, 3, n)]
    x = mu + sd * rng.standard_normal((n, N_GENES))
    for k, g in enumerate(GROUPS):
        x[np.ix_(labels == g, np.arange(k * BLOCK, (k + 1) * BLOCK))] += 2.0
    return np.clip(x, 0.0, None), labels


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    return _sample(10)


@pytest.fixture(scope="module")
def same(real) -> dict:
    gen_x, gen_y = _sample(11)
    return evaluate(real[0], gen_x, real[1], gen_y)


@pytest.fixture(scope="module")
def shifted(real) -> dict:
    gen_x, gen_y = _sample(12)
    return evaluate(real[0], gen_x + 3.0, real[1], gen_y)


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_same_distribution_is_indistinguishable(same):
    assert 0.4 <= same["auc_real_vs_gen"] <= 0.62
    assert abs(same["mmd_rbf"]) < 0.02
    assert same["mean_corr"] > 0.9
    assert same["var_corr"] > 0.8
    assert 0.85 < same["var_ratio"] < 1.15
    assert same["mean_absdiff"] < 0.1
    assert same["n_real"] == same["n_gen"] == N_CELLS and same["n_genes"] == N_GENES
    assert same["n_pcs_used"] == 50
    assert same["tstr_accuracy"] > 0.9 and same["trtr_accuracy"] > 0.9
    assert set(same["label_centroid_corr"]) == {"A", "B", "C"}
    assert same["label_centroid_corr_mean"] > 0.9
    assert same["marker_overlap_mean"] > 0.5  # the 30 block genes are shared; the other 20 of 50 are noise
    assert same["labels_skipped"] == []


def test_separated_sets_are_detected(same, shifted):
    assert shifted["auc_real_vs_gen"] > 0.95
    assert shifted["mmd_rbf"] > 0.2
    assert shifted["mmd_rbf"] > 20 * abs(same["mmd_rbf"])
    assert shifted["mean_absdiff"] == pytest.approx(3.0, abs=0.1)


def test_gene_shuffle_loses_label_structure(real):
    gen_x, gen_y = _sample(13)
    rng = np.random.default_rng(0)
    shuffled = np.column_stack([rng.permutation(gen_x[:, j]) for j in range(N_GENES)])
    m = evaluate(real[0], shuffled, real[1], gen_y)
    assert m["trtr_accuracy"] > 0.9
    assert m["tstr_accuracy"] < 0.6
    assert m["mean_corr"] > 0.99  # per-gene marginals are untouched; only the joint structure is gone
    assert m["marker_overlap_mean"] < 0.5


def test_noise_free_label_means_have_no_variance(real):
    x, y = real
    means = {g: x[y == g].mean(axis=0) for g in GROUPS}
    gen_x = np.vstack([means[g] for g in y])
    m = evaluate(x, gen_x, y, y)
    assert m["var_ratio"] < 0.05
    assert m["mean_corr"] > 0.99
    assert m["label_centroid_corr_mean"] > 0.99
    assert m["auc_real_vs_gen"] > 0.9


def test_unlabelled_has_none_label_metrics(real):
    gen_x, _ = _sample(14)
    m = evaluate(real[0], gen_x)
    for key in ("tstr_accuracy", "trtr_accuracy", "label_centroid_corr", "marker_overlap", "labels_skipped"):
        assert key in m and m[key] is None


def test_sparse_matches_dense(real):
    gen_x, gen_y = _sample(15, n=120)
    dense = evaluate(real[0], gen_x, real[1], gen_y)
    sp = evaluate(sparse.csr_matrix(real[0]), sparse.csc_matrix(gen_x), real[1], gen_y)
    assert dense["n_pool"] == 120
    for key, value in _scalars(dense).items():
        assert sp[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert sp["marker_overlap"] == dense["marker_overlap"]


def test_json_serialisable_and_finite(same):
    json.dumps(same)
    for key, value in _scalars(same).items():
        assert math.isfinite(value), key
    for d in (same["label_centroid_corr"], same["marker_overlap"]):
        assert all(v is None or math.isfinite(v) for v in d.values())


def test_one_sided_labels_are_skipped(real):
    gen_x, gen_y = _sample(16)
    gen_y = np.where(gen_y == "C", "D", gen_y)
    m = evaluate(real[0], gen_x, real[1], gen_y)
    assert m["labels_skipped"] == ["C", "D"]
    assert set(m["marker_overlap"]) == {"A", "B"}
    assert "skipped" in format_table(m)


def test_format_table(same):
    table = format_table(same)
    line = next(row for row in table.splitlines() if row.startswith("auc_real_vs_gen"))
    assert "0.5 = indistinguishable" in line
    assert "marker_overlap" in table and "label_centroid_corr" in table
    assert "n/a" in format_table({"auc_real_vs_gen": 0.5, "tstr_accuracy": None})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gen_x": np.zeros((20, 7))}, "gene counts differ"),
        ({"real_x": np.ones((9, 5))}, "at least 10"),
        ({"gen_x": np.full((20, 5), np.nan)}, "generated data contains 100 NaN/inf"),
        ({"real_labels": ["a"] * 20}, "real cells only"),
        ({"real_labels": ["a"] * 19, "gen_labels": ["a"] * 20}, "19 entries"),
        ({"real_labels": ["a"] * 20, "gen_labels": ["b"] * 20}, "no cell label is shared"),
    ],
)
def test_input_errors(kwargs, match):
    args = {"real_x": np.ones((20, 5)), "gen_x": np.ones((20, 5)), **kwargs}
    with pytest.raises(InputError, match=match):
        evaluate(**args)


def test_nan_in_sparse_generated_data():
    gen = sparse.csr_matrix(np.eye(20, 5))
    gen.data[0] = np.inf
    with pytest.raises(InputError, match="generated data contains 1 NaN/inf"):
        evaluate(np.ones((20, 5)), gen)


def _adata(x: np.ndarray, labels: np.ndarray, genes: list[str]):
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))


def test_evaluate_anndata_aligns_reordered_genes(real):
    genes = [f"g{j}" for j in range(N_GENES)]
    gen_x, gen_y = _sample(17, n=100)
    ordered = evaluate_anndata(_adata(*real, genes), _adata(gen_x, gen_y, genes))
    perm = np.random.default_rng(3).permutation(N_GENES)
    shuffled = evaluate_anndata(_adata(*real, genes), _adata(gen_x[:, perm], gen_y, [genes[j] for j in perm]))
    direct = evaluate(real[0], gen_x, real[1], gen_y)
    for other in (shuffled, direct):  # equal up to float summation order
        assert other.keys() == ordered.keys()
        for key, value in ordered.items():
            expected = pytest.approx(value, rel=1e-9) if isinstance(value, (float, dict)) else value
            assert other[key] == expected, key


def test_evaluate_anndata_errors(real):
    genes = [f"g{j}" for j in range(N_GENES)]
    x, y = real
    other = [*genes[:-2], "x1", "x2"]
    with pytest.raises(InputError, match=r"gene sets differ: 2 real genes missing from generated \(e.g. g498"):
        evaluate_anndata(_adata(x, y, genes), _adata(x, y, other))
    gen = _adata(x, y, genes)
    gen.obs = gen.obs.rename(columns={"cell_type": "celltype"})
    with pytest.raises(InputError, match="label_key 'cell_type' is not in the generated obs"):
        evaluate_anndata(_adata(x, y, genes), gen)
    m = evaluate_anndata(_adata(x[:50], y[:50], genes), gen[:50], label_key=None)
    assert m["tstr_accuracy"] is None
