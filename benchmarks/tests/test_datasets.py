"""The benchmark data sets: every builder that needs no shared file builds, is well-formed and is deterministic
for a seed (the study's cache and its reruns depend on it).

PYTHONPATH=. .venv/bin/python -m pytest benchmarks/tests -q
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import datasets, harness

LOCAL = sorted(set(datasets.BUILDERS) - datasets.SHARED_ONLY)


def _dense(x: object) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)  # type: ignore[attr-defined]


def test_every_builder_is_declared_local_or_shared() -> None:
    assert datasets.SHARED_ONLY.issubset(datasets.BUILDERS)
    assert {"fulllength", "vignette", "trajectory"} <= set(LOCAL)
    assert set(LOCAL) <= set(datasets.available())


@pytest.mark.parametrize("name", LOCAL)
def test_local_builder_is_well_formed_and_deterministic(name: str) -> None:
    a, b, c = datasets.build(name, seed=0), datasets.build(name, seed=0), datasets.build(name, seed=1)
    x = _dense(a.X)
    kind = a.uns["bench"]["kind"]
    assert kind in ("counts", "linear", "log") and a.uns["bench"]["description"]
    assert a.obs["cell_type"].dtype == "category" and a.n_obs == x.shape[0] and a.n_vars == x.shape[1]
    assert np.all(np.isfinite(x)) and (x.min() >= 0 or a.uns["bench"].get("signed"))  # clr_adt: signed
    if kind == "counts" and not a.uns["bench"].get("non_integer"):
        assert np.array_equal(x, np.round(x))
    counts = a.obs["cell_type"].value_counts()
    assert counts.min() >= 2  # fit_vae refuses a label with one cell
    # same seed: the same cells; another seed: other cells
    assert np.array_equal(x, _dense(b.X)) and list(a.obs["cell_type"]) == list(b.obs["cell_type"])
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    assert not np.array_equal(x, _dense(c.X))
    d = datasets.describe(a)
    assert d["n_cells"] == a.n_obs and sum(d["labels"].values()) == a.n_obs
    assert harness.log_space(a.X, kind).shape == a.shape


def test_trajectory_is_the_unseen_branching_data_set() -> None:
    a = datasets.build("trajectory", seed=0)
    d = datasets.describe(a)
    assert d["unseen"] and "unseen" in d["description"] and d["kind"] == "counts"
    sizes = sorted(d["labels"].values())
    assert len(sizes) == 6 and sizes[0] == 10 and sizes[-1] == 150 and len(set(sizes)) == 6
    assert d["n_genes"] == 2000 and d["integer"] and 0.5 < d["zero_frac"] < 0.95
    assert 2e3 < d["library_median"] < 8e3  # log-normal around 5e3 before dropout
    t = a.obs["pseudotime"].to_numpy()
    assert t.min() >= 0 and t.max() <= 1
    stem = t[a.obs["cell_type"] == "stem"]
    late = t[a.obs["cell_type"].astype(str).str.endswith("late")]
    assert stem.max() <= late.min()  # labels lie along pseudotime
    # labels are learnable but not trivial: nearest label centroid (fitted on half A) on held-out half B
    real = harness.log_space(a.X, "counts")
    labels = a.obs["cell_type"].astype(str).to_numpy()
    tr, te = harness.stratified_split(labels, 0.5, seed=0)
    names = np.unique(labels)
    centroids = np.stack([real[tr][labels[tr] == k].mean(0) for k in names])
    pred = names[((real[te][:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)]
    assert 0.6 < np.mean(pred == labels[te]) < 1.0


def test_microarray_is_dense_log_intensities_above_a_background() -> None:
    """The unseen array-like set: no zeros, log2 intensities that never reach below the scanner background, and
    sample-level structure beyond the labels (what a generator must reproduce)."""
    a = datasets.build("microarray", seed=0)
    d = datasets.describe(a)
    x = _dense(a.X)
    assert d["unseen"] and d["kind"] == "log" and d["zero_frac"] == 0.0
    assert x.min() >= 4.0 - 1e-6 and x.max() < 20  # log2(2^s + 16) >= 4
    assert sorted(d["labels"].values()) == [20, 30, 40, 60]
    names, codes = np.unique(a.obs["cell_type"].astype(str).to_numpy(), return_inverse=True)
    centred = x - np.stack([x[codes == k].mean(0) for k in range(names.size)])[codes]  # what the labels leave
    power = np.linalg.svd(centred - centred.mean(0), compute_uv=False) ** 2
    # brightness and five gene modules: six directions far above the noise (pure noise: < 2x the median)
    assert power[5] > 10 * np.median(power)


def test_the_other_unseen_types_have_the_shape_of_their_assay() -> None:
    """atac_binary is 0/1 and sparse; cite_adt dense counts on few features; bulk_counts deep, with almost no
    zeros and fewer samples than the selection needs to hold any out; log2tpm log-scale, a million per cell."""
    atac = _dense(datasets.build("atac_binary").X)
    assert set(np.unique(atac)) == {0.0, 1.0} and 0.85 < np.mean(atac == 0) < 0.95
    adt = _dense(datasets.build("cite_adt").X)
    assert adt.shape[1] == 30 and np.mean(adt == 0) < 0.01
    bulk = _dense(datasets.build("bulk_counts").X)
    assert bulk.shape[0] < 40 and bulk.sum(1).min() > 5e6 and np.mean(bulk == 0) < 0.02
    tpm = _dense(datasets.build("log2tpm").X).astype(np.float64)
    np.testing.assert_allclose((np.exp2(tpm) - 1.0).sum(1), 1e6, rtol=1e-3)


def test_many_labels_and_spots_are_what_their_names_promise() -> None:
    """many_labels: 24 labels, 11 of them under 10 cells, the smallest 3 (the study's split keeps 2 to train on);
    visium_spots: summed counts of several cells, so deeper and less sparse per spot than one droplet cell."""
    many = datasets.build("many_labels")
    sizes = many.obs["cell_type"].value_counts()
    assert len(sizes) == 24 and int((sizes < 10).sum()) == 11 and sizes.min() == 3
    spots = datasets.build("visium_spots")
    x, y = _dense(many.X), _dense(spots.X)
    assert spots.obs["cell_type"].nunique() == 5
    assert np.median(y.sum(1)) > 2 * np.median(x.sum(1)) and np.mean(y == 0) < np.mean(x == 0)


def test_imaging_spatial_is_volume_normalised_panel_counts() -> None:
    """imaging_spatial: a 300-gene panel, 12 labels down to 12 cells, non-integer values (counts / cell volume),
    so the count heads must not apply; segmentation bleed means no marker is exactly zero outside its label."""
    a = datasets.build("imaging_spatial")
    x = _dense(a.X)
    sizes = a.obs["cell_type"].value_counts()
    assert x.shape == (2447, 300) and len(sizes) == 12 and sizes.min() == 12
    assert a.uns["bench"]["non_integer"] and np.mean(x[x > 0] != np.round(x[x > 0])) > 0.9
    assert 0.5 < np.mean(x == 0) < 0.9 and 100 < np.median(x.sum(1)) < 400


def test_pearson_residuals_are_signed_and_clipped() -> None:
    """pearson_residuals (pbmc3k, skipped without the shared file): signed, dense, clipped at +-sqrt(cells),
    skewed right (most values a little below 0, markers far above)."""
    try:
        a = datasets.build("pearson_residuals")
    except datasets.DatasetUnavailable as exc:
        pytest.skip(str(exc))
    x = _dense(a.X)
    assert a.uns["bench"]["kind"] == "log" and x.shape[1] == 2000 and a.obs["cell_type"].nunique() == 8
    assert np.abs(x).max() <= np.sqrt(a.n_obs) + 1e-4 and np.mean(x < 0) > 0.5 and x.max() > 2 * -x.min()
    assert np.array_equal(x, _dense(datasets.build("pearson_residuals").X))


def test_perturb_seq_knocks_down_one_gene_per_guide() -> None:
    """perturb_seq: non-targeting controls and 7 guides; each guide's target gene is clearly lower than in the
    controls (the rest of its effect is weak)."""
    a = datasets.build("perturb_seq")
    x = _dense(a.X).astype(np.float64)
    x = x / x.sum(1, keepdims=True) * 1e4
    labels = a.obs["cell_type"].astype(str).to_numpy()
    sizes = a.obs["cell_type"].value_counts()
    assert sizes["non-targeting"] == 400 and len(sizes) == 8 and sizes.min() == 20
    control = x[labels == "non-targeting"].mean(0)
    expressed = control > 1.0
    for k in range(1, 8):
        ratio = x[labels == f"guide{k}"].mean(0)[expressed] / control[expressed]
        assert ratio.min() < 0.5


def test_methylation_is_positive_ratios_with_a_point_mass_at_one() -> None:
    """methylation: posterior mCH ratios, positive and non-integer, exactly 1 wherever a gene had no coverage
    (a point mass inside the range), and each label's markers hypomethylated (below 1) in it."""
    a = datasets.build("methylation")
    x = _dense(a.X)
    assert x.shape == (620, 2000) and a.obs["cell_type"].value_counts().min() == 20
    assert x.min() > 0 and a.uns["bench"]["kind"] == "log" and a.uns["bench"]["non_integer"]
    assert 0.01 < np.mean(x == 1.0) < 0.2 and x.max() > 3


def test_proteomics_misses_faint_values_not_at_random() -> None:
    """proteomics: log2 intensities with missing values as 0, far below the faintest seen value; faint proteins
    are missing more often than bright ones."""
    a = datasets.build("proteomics")
    x = _dense(a.X)
    seen = x[x > 0]
    assert x.shape == (400, 800) and 0.2 < np.mean(x == 0) < 0.5 and seen.min() > 8
    level = np.where(x > 0, x, np.nan)
    brightness = np.nanmedian(level, axis=0)
    missing = np.mean(x == 0, axis=0)
    faint, bright = brightness < np.nanquantile(brightness, 0.25), brightness > np.nanquantile(brightness, 0.75)
    assert missing[faint].mean() > 3 * missing[bright].mean()


def test_unfiltered_umi_keeps_every_gene() -> None:
    """unfiltered_umi: integer counts where a third of the genes are never seen, and mitochondrial genes take a
    few percent of every cell."""
    a = datasets.build("unfiltered_umi")
    x = _dense(a.X)
    assert x.shape == (775, 8000) and np.array_equal(x, np.round(x))
    assert 2000 < int(np.sum(x.sum(0) == 0)) < 3000
    mito = x[:, :13].sum(1) / x.sum(1)
    assert 0.015 < np.median(mito) < 0.1 and mito.max() < 0.2


def test_fractions_are_rows_that_sum_to_one() -> None:
    """fractions: non-negative, non-integer relative abundances, each cell summing to 1, far below the size at
    which normalize=auto would log them."""
    a = datasets.build("fractions")
    x = _dense(a.X).astype(np.float64)
    assert x.shape == (862, 1500) and a.obs["cell_type"].value_counts().min() == 12
    assert np.allclose(x.sum(1), 1.0, atol=1e-4) and x.min() == 0 and x.max() < 1
    assert np.mean(x[x > 0] != np.round(x[x > 0])) == 1.0 and a.uns["bench"]["kind"] == "linear"


def test_denoised_fractions_are_dense_positive_rows_that_sum_to_one() -> None:
    """denoised (pbmc3k, skipped without the shared file): scVI-like expected fractions, no zeros, each cell
    summing to 1, values far below the size at which normalize=auto would log them; deterministic."""
    try:
        a = datasets.build("denoised")
    except datasets.DatasetUnavailable as exc:
        pytest.skip(str(exc))
    x = _dense(a.X).astype(np.float64)
    assert x.shape == (1009, 2000) and a.obs["cell_type"].nunique() == 8 and a.uns["bench"]["kind"] == "linear"
    assert np.allclose(x.sum(1), 1.0, atol=1e-4) and x.min() > 0 and x.max() < 1
    assert np.array_equal(x, _dense(datasets.build("denoised").X))


def test_clr_adt_is_signed_and_centred_per_cell() -> None:
    """clr_adt: CLR-transformed protein values (per cell, log1p minus the cell's mean): 700 x 40, 8 labels of 240
    to 12, signed and dense, every row centred at 0, scored as is (kind log); each label's markers stand above
    the other labels' mean; deterministic for a seed."""
    a = datasets.build("clr_adt", seed=0)
    x = _dense(a.X).astype(np.float64)
    d = datasets.describe(a)
    assert x.shape == (700, 40) and d["kind"] == "log" and d["unseen"] and a.uns["bench"]["signed"]
    assert sorted(d["labels"].values(), reverse=True) == list(datasets.CLR_ADT_SIZES)
    assert sum(datasets.CLR_ADT_SIZES) == 700 and min(datasets.CLR_ADT_SIZES) == 12
    assert np.allclose(x.mean(1), 0.0, atol=1e-5) and d["zero_frac"] == 0.0
    assert 0.3 < np.mean(x < 0) < 0.7 and x.min() < -1 and x.max() > 2 and not d["integer"]
    assert np.all(x.max(1) - x.min(1) > 1)  # every cell has proteins above and below its mean
    labels = a.obs["cell_type"].astype(str).to_numpy()
    for lab in np.unique(labels):  # a label's best protein is far above its level in the other cells
        inside, outside = x[labels == lab].mean(0), x[labels != lab].mean(0)
        assert (inside - outside).max() > 1.0
    b, c = datasets.build("clr_adt", seed=0), datasets.build("clr_adt", seed=1)
    assert np.array_equal(x, _dense(b.X).astype(np.float64)) and list(labels) == list(b.obs["cell_type"])
    assert not np.array_equal(x, _dense(c.X).astype(np.float64))


def test_metacells_are_deep_integer_sums_of_about_20_cells() -> None:
    """metacells (pbmc3k, skipped without the shared file): raw UMIs summed over groups of 18 to 21 cells within
    each label; 129 metacells x 2,000 genes, 6 labels (Dendritic and Megakaryocytes dropped: fewer than 4
    metacells), integer, far deeper and with far fewer zeros than single cells; deterministic for a seed, and
    another seed groups the cells otherwise (the same totals)."""
    try:
        a = datasets.build("metacells", seed=0)
    except datasets.DatasetUnavailable as exc:
        pytest.skip(str(exc))
    x = _dense(a.X).astype(np.float64)
    d = datasets.describe(a)
    assert x.shape == (129, 2000) and d["kind"] == "counts" and d["unseen"] and d["integer"]
    assert d["labels"] == {"CD4 T": 57, "CD14 Monocytes": 24, "B": 17, "CD8 T": 15, "NK": 8, "FCGR3A Monocytes": 8}
    assert a.uns["bench"]["dropped_labels"] == {"Dendritic": 36, "Megakaryocytes": 13}
    sizes = a.obs["n_cells"].to_numpy()
    assert sizes.min() >= 15 and sizes.max() <= 25 and sizes.sum() == 2638 - 36 - 13
    src = datasets._read_shared("pbmc3k")
    cells = _dense(src.X[:, [list(src.var_names).index(g) for g in a.var_names]])
    assert np.mean(x == 0) < 0.6 < np.mean(cells == 0)  # summing fills most of the single cells' zeros
    assert np.median(x.sum(1)) > 10 * np.median(cells.sum(1))  # ~20 cells deep
    assert x.min() == 0 and np.all(x.sum(1) > 0) and np.all(x.sum(0) > 0)
    for lab, n in d["labels"].items():  # each label's metacells hold all of its cells' UMIs on these genes
        rows = src.obs["cell_type"].astype(str).to_numpy() == lab
        assert np.allclose(x[a.obs["cell_type"].astype(str).to_numpy() == lab].sum(0), cells[rows].sum(0))
        assert sizes[a.obs["cell_type"].astype(str).to_numpy() == lab].sum() == rows.sum() and n >= 4
    b, c = datasets.build("metacells", seed=0), datasets.build("metacells", seed=1)
    assert np.array_equal(x, _dense(b.X)) and list(a.obs["cell_type"]) == list(b.obs["cell_type"])
    common = sorted(set(a.var_names) & set(c.var_names))  # another seed: other groups of the same cells
    xa = x[:, [list(a.var_names).index(g) for g in common]]
    xc = _dense(c.X).astype(np.float64)[:, [list(c.var_names).index(g) for g in common]]
    assert len(common) > 1500 and np.allclose(xa.sum(0), xc.sum(0))
    assert len(set(map(tuple, xa)) & set(map(tuple, xc))) < xa.shape[0] // 2
