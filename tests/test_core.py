"""Core library: simulation, preprocessing, training and generation through the VAExprs-named API."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

import vaexprs
from vaexprs.data.preprocess import (
    MinMaxScaler,
    Preprocessor,
    apply_normalization,
    choose_normalization,
    unlogged_totals_hint,
)
from vaexprs.errors import InputError


def test_simulate_follows_the_vignette_recipe(sim):
    assert sim.shape == (300, 1000)
    assert list(sim.obs["cell_type"].cat.categories) == ["group1", "group2", "group3"]
    x = sim.X
    assert x.min() == 0.0 and (x == 0).mean() > 0.1  # N(5, 5) clipped at 0
    group2 = x[sim.obs["cell_type"] == "group2"]
    # genes 101-200 of group2 are genes 1-100 plus a per-gene shift: identical up to that shift (before clipping)
    diff = group2[:, 100:200] - group2[:, :100]
    both_positive = (group2[:, 100:200] > 0) & (group2[:, :100] > 0)
    per_gene_spread = np.array([diff[both_positive[:, j], j].std() for j in range(100)])
    assert np.nanmax(per_gene_spread) < 1e-4
    assert np.array_equal(vaexprs.simulate(seed=1).X, x)
    assert not np.array_equal(vaexprs.simulate(seed=2).X, x)


def test_lognorm_matches_scater():
    counts = np.array([[0, 2, 8], [4, 4, 0]], dtype=np.float32)
    lib = counts.sum(1)
    sf = lib / lib.mean()
    expected = np.log2(counts / sf[:, None] + 1)
    np.testing.assert_allclose(apply_normalization(counts, "lognorm"), expected, rtol=1e-6)
    sparse = apply_normalization(sp.csr_matrix(counts), "lognorm")
    assert sp.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), expected, rtol=1e-6)


def test_auto_normalization_says_what_it_chose():
    assert choose_normalization(np.array([[0, 3], [5, 1]], dtype=float))[0] == "lognorm"
    assert choose_normalization(np.array([[0.5, 3e4], [5.2, 1]]))[0] == "log"  # RPKM-like
    method, note = choose_normalization(np.array([[0.5, 3.2], [5.2, 1]]))
    assert method == "none" and "none" in note
    with pytest.raises(InputError, match="normalize must be one of"):
        choose_normalization(np.ones((2, 2)), "zscore")


def test_unlogged_fractions_are_flagged_and_fit_vae_warns(caplog):
    """Cells that all sum to one total below the log threshold (fractions, percentages) are normalised counts
    without the log: normalize=auto would model them unlogged, so fit_vae says how to log them."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.5, 4.0, (60, 40))).astype(np.float64) + np.eye(60, 40)
    fractions = counts / counts.sum(1, keepdims=True)
    hint = unlogged_totals_hint(fractions)
    assert hint is not None and "sum to 1:" in hint and "x * 10000" in hint
    assert "sum to 100:" in unlogged_totals_hint(sp.csr_matrix(fractions * 100.0))
    assert unlogged_totals_hint(counts) is None  # counts: lognorm
    assert unlogged_totals_hint(np.log2(counts + 1.0)) is None  # logged: the totals differ
    assert unlogged_totals_hint(fractions * 1e4) is None  # above 100: normalize=auto logs them
    labels = np.repeat(["a", "b"], 30)
    with caplog.at_level("WARNING", logger="vaexprs"):
        vaexprs.fit_vae(fractions.astype(np.float32), labels, likelihood="hurdle", epochs=1)
    assert any("look like normalised counts without the log" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="vaexprs"):
        vaexprs.fit_vae(fractions.astype(np.float32), labels, likelihood="hurdle", epochs=1, normalize="none")
    assert not any("without the log" in r.getMessage() for r in caplog.records)  # the user chose


def test_scaler_is_fitted_on_training_cells_and_guards_constant_genes():
    train = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0]], dtype=np.float32)
    scaler = MinMaxScaler.fit(train)
    assert scaler.constant.tolist() == [False, True, False]
    np.testing.assert_allclose(scaler.transform(train), [[0, 0, 0], [1, 0, 1]])
    # validation cells use the training min/max (clipped to the training range), not their own
    np.testing.assert_allclose(scaler.transform(np.array([[1.0, 5.0, 5.0]])), [[0.5, 0, 1]])
    # the de-scaling the decoder graph folds in brings scaled values back (constant genes at their value)
    np.testing.assert_allclose(scaler.transform(train) * scaler.output_scale + scaler.minimum, train)
    state, _, _ = Preprocessor.fit(train, ["a", "b", "c"], ["x", "y"], normalize="none")
    again = Preprocessor.from_dict(state.to_dict())
    assert again.to_dict() == state.to_dict()


def test_cvae_learns_and_keeps_the_planted_signal(cvae_result):
    history = cvae_result.history
    assert len(history) == 30
    assert history[-1]["loss"] < 0.95 * history[0]["loss"]
    for key in ("loss", "recon_loss", "kl_loss", "epoch_time"):
        assert np.isfinite(history[-1][key])
    assert cvae_result.model_type == "cvae" and cvae_result.labels == ["group1", "group2", "group3"]
    for i, label in enumerate(cvae_result.labels):
        gen = vaexprs.gen_exprs(cvae_result, num_samples=200, labels=label, seed=4)
        assert gen.x_gen.shape == (200, 1000) and set(gen.y_gen) == {label}
        own = gen.x_gen[:, i * 100 : (i + 1) * 100].mean()
        rest = gen.x_gen[:, 200:].mean() if i < 2 else gen.x_gen[:, 300:].mean()
        assert own > rest + 3.0, (label, own, rest)


def test_vae_on_the_vignette_data_falls_and_generates_in_range(sim):
    result = vaexprs.fit_vae(sim.X, hidden=(512,), epochs=30, batch_size=32, seed=1)
    assert result.model_type == "vae"
    # the hurdle head starts at the data's scale, so the first epoch is already close: it still falls
    assert result.history[-1]["loss"] < 0.98 * result.history[0]["loss"]
    gen = vaexprs.gen_exprs(result, num_samples=300)
    assert gen.y_gen is None and gen.x_gen.shape == (300, 1000)
    assert np.isfinite(gen.x_gen).all()
    x = np.asarray(sim.X)
    # plausible: no gene beyond its training maximum plus its own spread (what value_cap holds)
    assert gen.x_gen.min() >= 0 and (gen.x_gen.max(0) <= x.max(0) + x.std(0) + 1e-3).all()
    # as noisy as the data (a hurdle started at sigma 1 gave 0.7 of the variance: too smooth to pass as real)
    assert 0.8 < np.median(gen.x_gen.var(0) / x.var(0)) < 1.2
    # a VAE also separates the groups: the mixture finds several latent modes
    gmm_gen = gen.x_gen
    block_means = np.stack([gmm_gen[:, i * 100 : (i + 1) * 100].mean(1) for i in range(3)], axis=1)
    assert len(set(block_means.argmax(1))) == 3


def test_same_seed_same_matrices_on_cpu(small_sim):
    runs = [vaexprs.fit_vae(small_sim, "cell_type", hidden=(32,), epochs=3, seed=7) for _ in range(2)]
    gens = [vaexprs.gen_exprs(r, num_samples=50, seed=5) for r in runs]
    assert runs[0].history == [
        {**h, "epoch_time": runs[0].history[i]["epoch_time"]} for i, h in enumerate(runs[1].history)
    ]
    assert np.array_equal(gens[0].x_gen, gens[1].x_gen)
    assert np.array_equal(gens[0].y_gen, gens[1].y_gen)
    other = vaexprs.gen_exprs(runs[0], num_samples=50, seed=6)
    assert not np.array_equal(gens[0].x_gen, other.x_gen)


def test_labels_in_training_proportions_and_per_label_counts(small_cvae):
    gen = vaexprs.gen_exprs(small_cvae, num_samples=3000, seed=1)
    shares = {label: np.mean(gen.y_gen == label) for label in small_cvae.labels}
    assert all(abs(v - 1 / 3) < 0.05 for v in shares.values())
    gen = vaexprs.gen_exprs(small_cvae, labels={"group3": 7, "group1": 2})
    assert sorted(gen.y_gen.tolist()) == ["group1"] * 2 + ["group3"] * 7
    assert vaexprs.gen_exprs(small_cvae).x_gen.shape[0] == 300  # VAExprs' vignette count where none is given
    assert vaexprs.gen_exprs(small_cvae, num_samples=9, labels={"group3": 7, "group1": 2}).x_gen.shape[0] == 9
    # num_samples beside counts that disagree was silently ignored
    with pytest.raises(InputError, match=r"num_samples is 500 but labels=\{label: count\} asks for 9 cells"):
        vaexprs.gen_exprs(small_cvae, num_samples=500, labels={"group3": 7, "group1": 2})
    prior = vaexprs.gen_exprs(small_cvae, num_samples=20, sampler="prior")
    assert prior.x_gen.shape == (20, 120)
    cold = vaexprs.gen_exprs(small_cvae, num_samples=20, sampler="prior", temperature=0.5)
    np.testing.assert_allclose(cold.latent, 0.5 * prior.latent, rtol=1e-6)  # the same stream, half the spread
    assert cold.temperature == 0.5 and cold.to_anndata().uns["vaexprs"]["temperature"] == 0.5
    with pytest.raises(InputError, match="temperature must be between 0 and 2"):
        vaexprs.gen_exprs(small_cvae, num_samples=20, temperature=5)
    # a list of labels used to be read as one label named "['group1', ...]"; its Counter is the per-label form
    wanted = ["group1", "group2", "group1"]
    with pytest.raises(InputError, match=r"labels must be one label name or \{label: count\}; got a list"):
        vaexprs.gen_exprs(small_cvae, labels=wanted)
    assert sorted(vaexprs.gen_exprs(small_cvae, labels=Counter(wanted)).y_gen.tolist()) == sorted(wanted)


def test_to_anndata_holds_real_and_generated(small_cvae):
    both = vaexprs.gen_exprs(small_cvae, num_samples=40).to_anndata()
    assert both.n_obs == 90 + 40
    assert both.obs["origin"].value_counts().to_dict() == {"real": 90, "generated": 40}
    assert both.obs["cell_type"].notna().all()
    assert list(both.var_names[:2]) == ["gene1", "gene2"]
    with pytest.raises(InputError, match="label_key 'origin' is the column"):
        vaexprs.gen_exprs(small_cvae, num_samples=4).to_anndata(label_key="origin")


def test_to_anndata_keeps_the_real_cells_names(small_sim):
    """Real cells keep the names they had in the data (a biologist joins them back to their obs); they were
    renamed real0, real1, ... Validation cells held out by val_split take their names with them."""
    data = small_sim.copy()
    # real cells named like generated ones keep their names; the generated cells take a suffix
    data.obs_names = [f"gen{i}" for i in range(data.n_obs)]
    result = vaexprs.fit_vae(data, "cell_type", hidden=(8,), epochs=1, likelihood="bce", val_split=0.2, seed=4)
    both = vaexprs.gen_exprs(result, num_samples=3).to_anndata()
    real = both[both.obs["origin"] == "real"]
    assert real.n_obs == result.x_train.shape[0] < data.n_obs
    assert set(real.obs_names) <= set(data.obs_names)
    assert np.array_equal(real.obs["cell_type"].astype(str), data[real.obs_names].obs["cell_type"].astype(str))
    own_cells = result.preprocessor.normalize_matrix(data[real.obs_names].X)  # each name with its own cell
    assert np.allclose(real.X, own_cells, atol=1e-5)
    expected = [f"gen{i}-1" if f"gen{i}" in real.obs_names else f"gen{i}" for i in range(3)]
    assert both.obs_names.is_unique and list(both.obs_names[-3:]) == expected
    matrix = vaexprs.fit_vae(data.X, data.obs["cell_type"].to_numpy(), hidden=(8,), epochs=1, likelihood="bce")
    assert list(vaexprs.gen_exprs(matrix, num_samples=1).to_anndata().obs_names[:2]) == ["real0", "real1"]


def test_early_stopping_restores_best_weights(small_sim):
    result = vaexprs.fit_vae(
        small_sim, "cell_type", hidden=(16,), epochs=200, val_split=0.2, monitor="val_loss", patience=2, lr=5e-2
    )
    assert len(result.history) < 200
    best = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best
    assert result.data_info["n_val_cells"] == 18 and result.data_info["n_cells"] == 72
    assert "val_recon_loss" in result.history[0]


def test_kl_warmup_raises_the_kl_weight_and_the_best_epoch_waits_for_it(small_sim):
    """kl_warmup (0 by default, VAExprs' fixed beta): the KL weight rises linearly over that share of the epochs.
    Each epoch's loss is recon + weight * KL, and early stopping never keeps an epoch of the warm-up, whose lower
    KL weight makes its loss look better than it is."""
    from vaexprs.config import TrainConfig

    config = TrainConfig(epochs=10, beta=2.0, kl_warmup=0.5)
    assert config.warmup_epochs() == 5
    assert [config.kl_weight(e) for e in range(1, 8)] == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0, 2.0, 2.0])
    assert TrainConfig(epochs=10, beta=2.0).kl_weight(1) == 2.0  # the default: no warm-up
    options = {"likelihood": "hurdle", "hidden": (16,), "seed": 1}
    warm = vaexprs.fit_vae(small_sim, "cell_type", epochs=10, beta=2.0, kl_warmup=0.5, **options)
    plain = vaexprs.fit_vae(small_sim, "cell_type", epochs=10, beta=2.0, **options)
    for result, weights in ((warm, [config.kl_weight(e) for e in range(1, 11)]), (plain, [2.0] * 10)):
        for h, weight in zip(result.history, weights, strict=True):
            # the last batch of an epoch is averaged like the others: the identity holds within rounding
            assert h["loss"] == pytest.approx(h["recon_loss"] + weight * h["kl_loss"], rel=1e-5), h
    assert warm.train_config.kl_warmup == 0.5 and warm.history != plain.history
    stopped = vaexprs.fit_vae(
        small_sim, "cell_type", epochs=40, kl_warmup=0.5, val_split=0.2, monitor="val_loss", patience=2, **options
    )
    assert stopped.best_epoch >= 20  # an epoch of the warm-up is never the best


def test_explicit_validation_data_uses_training_scaler(small_sim):
    half = small_sim[::2].copy()
    result = vaexprs.fit_vae(  # the min-max scaler belongs to the bce/mse heads (auto may choose another)
        small_sim, "cell_type", half, "cell_type", likelihood="bce", hidden=(16,), epochs=2, monitor="val_loss"
    )
    assert "val_loss" in result.history[0]
    assert result.preprocessor.scaler.minimum.shape == (120,)


def test_constant_genes_train_without_nan(small_sim):
    x = small_sim.X.copy()
    x[:, :5] = 3.0
    x[:, 5] = 0.0
    result = vaexprs.fit_vae(x, likelihood="bce", hidden=(16,), epochs=3)  # the scaler's constant genes
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert result.preprocessor.scaler.constant[:6].all()
    gen = vaexprs.gen_exprs(result, num_samples=10)
    np.testing.assert_allclose(gen.x_gen[:, :5], 3.0, atol=1e-5)
    assert np.isfinite(gen.x_gen).all()


def test_sparse_counts_are_lognormalised_and_stay_sparse():
    rng = np.random.default_rng(0)
    counts = sp.random(60, 80, density=0.3, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 30, n))
    result = vaexprs.fit_vae(counts.astype(np.float32), hidden=(16,), epochs=2, likelihood="bce")
    assert result.preprocessor.normalize == "lognorm" and "counts" in result.normalize_note
    assert sp.issparse(result.x_train)


def test_checkpoint_round_trip(tmp_path, small_cvae):
    path = small_cvae.save(tmp_path / "model.pt")
    loaded = vaexprs.VAEResult.load(path)
    a = vaexprs.gen_exprs(small_cvae, num_samples=30, seed=3)
    b = vaexprs.gen_exprs(loaded, num_samples=30, seed=3)
    np.testing.assert_allclose(a.x_gen, b.x_gen, atol=1e-6)
    assert loaded.labels == small_cvae.labels and b.x_train is None
    with pytest.raises(InputError, match="not a vaexprs checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        vaexprs.VAEResult.load(tmp_path / "junk.pt")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), {}), "NaN/inf"),
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), {}), "NaN/inf"),
        (lambda x, y: (np.zeros((0, 10)), {}), "empty"),
        (lambda x, y: (np.zeros_like(x), {}), "every value of the expression matrix is 0"),
        (lambda x, y: (sp.csr_matrix(x.shape, dtype=np.float32), {}), "every value of the expression matrix is 0"),
        (lambda x, y: (np.full_like(x, 3.0), {}), "every value of the expression matrix is 3"),
        (lambda x, y: (x.astype(np.complex64), {}), "must be real numbers; got dtype complex64"),
        (lambda x, y: (x, {"beta": -1.0}), "beta must be"),
        (lambda x, y: (x, {"epochs": 0}), "epochs must be"),
        (lambda x, y: (x, {"likelihood": "poisson"}), "likelihood must be one of"),
        (lambda x, y: (x, {"monitor": "val_loss"}), "needs validation cells"),
        (lambda x, y: (x, {"y_train": ["a"] * (len(y) - 1) + ["b"]}), "single cell"),
        (lambda x, y: (x, {"y_train": ["a"] * 3}), "3 labels for 90 cells"),
    ],
)
def test_bad_input_is_a_clear_input_error(small_sim, make, message):
    x, kwargs = make(small_sim.X.copy(), small_sim.obs["cell_type"].to_numpy())
    with pytest.raises(InputError, match=message) as info:
        vaexprs.fit_vae(x, **{"hidden": (8,), "epochs": 1, **kwargs})
    assert "\n" not in str(info.value)


def test_missing_label_column_and_gene_mismatch(small_sim, small_cvae):
    with pytest.raises(InputError, match="label column 'celltype' not found"):
        vaexprs.fit_vae(small_sim, "celltype", epochs=1)
    with pytest.raises(InputError, match="119 genes but the model was trained on 120"):
        small_cvae.encode(small_sim.X[:, :119], small_sim.obs["cell_type"].to_numpy())
    with pytest.raises(InputError, match=r"labels 'group9' is unknown"):
        vaexprs.gen_exprs(small_cvae, labels="group9")
    with pytest.raises(InputError, match="num_samples must be between 1 and"):
        vaexprs.gen_exprs(small_cvae, num_samples=0)


def test_encode_gives_latent_means(small_cvae, small_sim):
    z = small_cvae.encode(small_sim, "cell_type")
    assert z.shape == (90, 2)
    np.testing.assert_allclose(z, small_cvae.latent, atol=1e-5)


def test_only_a_truly_constant_matrix_is_refused():
    """0/1 peaks stored sparse keep only 1s, but their implicit zeros make them data, not a constant."""
    from vaexprs.data.io import single_value
    from vaexprs.data.preprocess import value_summary

    peaks = sp.random(30, 20, density=0.2, format="csr", random_state=0)
    peaks.data[:] = 1.0
    assert single_value(value_summary(peaks), 600) is None
    assert single_value(value_summary(peaks.toarray()), 600) is None
    assert single_value(value_summary(np.ones((30, 20))), 600) == 1.0
    explicit_zeros = sp.csr_matrix((np.zeros(3), ([0, 1, 2], [0, 1, 2])), shape=(30, 20))
    assert single_value(value_summary(explicit_zeros), 600) == 0.0


@pytest.mark.parametrize("as_matrix", [np.asarray, sp.csr_matrix], ids=["dense", "sparse"])
def test_a_boolean_matrix_trains_as_0_1_values(small_sim, as_matrix):
    present = as_matrix(small_sim.X > 0)
    labels = small_sim.obs["cell_type"].to_numpy()
    result = vaexprs.fit_vae(present, y_train=labels, likelihood="hurdle", hidden=(8,), epochs=1)
    gen = vaexprs.gen_exprs(result, num_samples=5, seed=1)
    assert gen.x_gen.shape == (5, small_sim.n_vars) and np.isfinite(gen.x_gen).all()


# ------------------------------------------------------------------ the Python API with awkward input (a probe's)


@pytest.fixture(scope="module")
def quick(small_sim):
    """A 2-epoch bce CVAE on the small simulated data (normalize resolves to none: the values pass as they are)."""
    data = small_sim.copy()
    return data, vaexprs.fit_vae(data, "cell_type", likelihood="bce", epochs=2, hidden=(8,), seed=1)


def test_a_result_never_shares_memory_with_the_callers_data(quick):
    """result.x_train was the caller's adata.X itself: an in-place normalisation of the AnnData changed what
    to_anndata called the real cells, and editing gen.x_train edited the caller's data."""
    data, result = quick
    gen = vaexprs.gen_exprs(result, num_samples=5)
    for kept in (result.x_train, gen.x_train):
        assert not np.shares_memory(kept, data.X)
    before = np.array(result.x_train, copy=True)
    data.X *= 2
    try:
        np.testing.assert_array_equal(result.x_train, before)
    finally:
        data.X /= 2


def test_gen_exprs_refuses_cells_that_would_not_fit_in_memory(quick, monkeypatch):
    from vaexprs.errors import OptionError
    from vaexprs.model import fit

    _, result = quick
    with pytest.raises(OptionError, match=r"num_samples of 10000000000 cells would hold .*generate_to_file"):
        vaexprs.gen_exprs(result, num_samples=10**10)  # refused at once, not after minutes of blocks
    per_cell = 4 * (result.spec.n_genes + result.spec.latent_dim)
    monkeypatch.setattr(fit, "memory_limit", lambda: 50 * per_cell)
    assert vaexprs.gen_exprs(result, num_samples=50, batch_size=7).x_gen.shape == (50, 120)
    with pytest.raises(OptionError, match="num_samples of 51 cells"):
        vaexprs.gen_exprs(result, labels={"group1": 50, "group2": 1})


def test_gen_exprs_fills_its_blocks_in_order(quick):
    """gen_exprs fills one array block by block (it joined a list of blocks, holding the cells twice): the same
    cells, labels and latents as the blocks themselves, in order."""
    from vaexprs.generate.loop import iter_blocks
    from vaexprs.generate.request import plan_generation, request_from
    from vaexprs.model.fit import TorchDecoder

    _, result = quick
    gen = vaexprs.gen_exprs(result, num_samples=40, seed=3, batch_size=7)
    plan = plan_generation(result.spec, request_from(40, None, seed=3, batch_size=7))
    blocks = list(iter_blocks(result.spec, plan, TorchDecoder(result)))
    assert len(blocks) == 6
    np.testing.assert_array_equal(gen.x_gen, np.concatenate([b.x for b in blocks]))
    np.testing.assert_array_equal(gen.latent, np.concatenate([b.latent for b in blocks]))
    codes = np.concatenate([b.codes for b in blocks])
    np.testing.assert_array_equal(gen.y_gen, np.asarray(result.labels)[codes])


def test_counts_may_be_numpy_numbers_and_a_missing_count_is_refused(quick):
    from vaexprs.errors import OptionError

    _, result = quick
    assert vaexprs.gen_exprs(result, num_samples=np.int64(4)).x_gen.shape == (4, 120)  # e.g. counts.sum()
    assert vaexprs.gen_exprs(result, labels={"group1": np.int64(3)}).x_gen.shape == (3, 120)
    for bad, shown in ((None, "None"), ("3", "'3'"), (2.5, "2.5")):
        with pytest.raises(OptionError, match=f"count for label 'group1' must be a positive integer; got {shown}"):
            vaexprs.gen_exprs(result, labels={"group1": bad})


def test_labels_follow_the_cells_names_or_are_refused(small_sim):
    """A pandas Series of labels is aligned on obs_names (it was taken by position: shuffled, it mislabelled
    two cells in three); an index that is neither the names nor 0..n-1, a number and a table are refused."""
    from vaexprs.data.io import as_matrix
    from vaexprs.errors import InputError

    truth = small_sim.obs["cell_type"].astype(str).to_numpy()
    shuffled = small_sim.obs["cell_type"].sample(frac=1, random_state=0)
    assert (shuffled.to_numpy().astype(str) != truth).any()
    _, _, labels = as_matrix(small_sim, shuffled)
    np.testing.assert_array_equal(labels, truth)
    _, _, by_position = as_matrix(small_sim, shuffled.reset_index(drop=True))  # a 0..n-1 index: positions
    np.testing.assert_array_equal(by_position, shuffled.to_numpy().astype(str))
    foreign = shuffled.set_axis([f"x{i}" for i in range(small_sim.n_obs)])
    for bad, message in (
        (foreign, "index is neither the cells' obs_names nor 0..n-1"),
        (0, "one label per cell; got int"),
        (truth.reshape(-1, 1), r"one label per cell; got an array of shape \(90, 1\)"),
    ):
        with pytest.raises(InputError, match=message):
            vaexprs.fit_vae(small_sim, bad, epochs=1)


def test_a_network_too_large_to_export_or_train_is_refused_before_training(monkeypatch):
    """Each --hidden layer is bounded, but not their product with the genes: 8 x 16,384 on 33,000 genes died in
    torch's allocator (14 GB), and a decoder over ONNX's 2 GiB would have failed at export, after training."""
    import vaexprs.model.fit as fit

    x = np.random.default_rng(0).random((12, 20_000)).astype(np.float32)
    with pytest.raises(InputError, match=r"hidden 8192 on 20000 genes gives a decoder of about 2\.4 GiB, more than"):
        vaexprs.fit_vae(x, hidden=(8192,), likelihood="mse")
    monkeypatch.setattr(fit, "memory_limit", lambda: 1 << 30)  # a 2 GiB machine
    with pytest.raises(InputError, match=r"hidden 1024 on 20000 genes needs about 1\.5 GiB to train .* 2 GiB"):
        vaexprs.fit_vae(x, hidden=(1024,), likelihood="mse")


def test_a_data_frame_gives_its_genes_and_cells_names(small_sim):
    """A pandas DataFrame lost its gene names (gene1..) and took a Series of labels by position (45 of 60 cells
    mislabelled in a walkthrough); its columns are the genes and its index the cells, as an AnnData's names."""
    import pandas as pd

    from vaexprs.data.io import as_matrix
    from vaexprs.errors import InputError

    frame = pd.DataFrame(np.asarray(small_sim.X), index=small_sim.obs_names, columns=small_sim.var_names)
    truth = small_sim.obs["cell_type"].astype(str).to_numpy()
    shuffled = small_sim.obs["cell_type"].sample(frac=1, random_state=0)
    matrix, genes, labels = as_matrix(frame, shuffled)
    assert genes == list(small_sim.var_names) and matrix.shape == small_sim.shape
    np.testing.assert_array_equal(labels, truth)
    with_column = frame.assign(cell_type=small_sim.obs["cell_type"].to_numpy())  # the layout generate's CSV has
    _, genes, labels = as_matrix(with_column, "cell_type")
    assert genes == list(small_sim.var_names) and list(labels) == list(truth)
    with pytest.raises(InputError, match="labels='kind' is not a column of the DataFrame"):
        as_matrix(frame, "kind")
    with pytest.raises(InputError, match="index is neither the cells' obs_names"):
        as_matrix(frame.reset_index(drop=True).set_axis([f"x{i}" for i in range(90)]), shuffled)
    result = vaexprs.fit_vae(frame, shuffled, likelihood="mse", epochs=1, hidden=(8,))
    assert result.genes == list(small_sim.var_names) and list(result.y_train) == list(truth)


def test_validation_cells_must_have_the_training_genes_in_order(small_sim):
    from vaexprs.errors import InputError

    order = np.random.default_rng(0).permutation(small_sim.n_vars)
    renamed = small_sim.copy()
    renamed.var_names = [f"other{i}" for i in range(small_sim.n_vars)]
    for x_val, message in (
        (small_sim[:, order].copy(), "x_val has x_train's genes in another order"),
        (renamed, "x_val has other genes than x_train"),
    ):
        with pytest.raises(InputError, match=message):
            vaexprs.fit_vae(small_sim, "cell_type", x_val, "cell_type", likelihood="bce", epochs=1)


def test_a_checkpoint_in_a_missing_folder_is_a_clear_error(quick, tmp_path):
    from vaexprs.errors import InputError

    _, result = quick
    with pytest.raises(InputError, match=r"output folder .*nowhere does not exist"):
        result.save(tmp_path / "nowhere" / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_results_print_as_a_summary(quick, tmp_path):
    """repr(result) printed every gene and array (247 KB for yan); a folder given as a checkpoint is named."""
    from vaexprs.errors import InputError

    _, result = quick
    gen = vaexprs.gen_exprs(result, num_samples=7)
    assert repr(result) == (
        "VAEResult(CVAE, likelihood=bce, 120 genes, 3 labels, trained on 90 cells for 2 epochs, latent_dim=10)"
    )
    assert repr(gen).startswith("GeneratedCells(7 cells x 120 genes, ") and repr(gen).endswith("; 90 real cells)")
    with pytest.raises(InputError, match="is a folder; give the checkpoint file"):
        vaexprs.VAEResult.load(tmp_path)


def test_an_unknown_option_lists_what_a_caller_may_set(small_sim):
    from vaexprs.errors import OptionError

    with pytest.raises(OptionError, match="epoch is not an option of fit_vae; known: activation, ") as caught:
        vaexprs.fit_vae(small_sim, "cell_type", epoch=3)
    known = str(caught.value).split("known: ")[1].split(", ")
    assert {"epochs", "kl_warmup", "likelihood"} <= set(known)
    assert "n_genes" not in known and "n_labels" not in known  # the data decides them (and they are refused)


def test_values_centred_per_cell_stay_centred_in_every_generation_path(tmp_path):
    """CLR-transformed protein counts (log1p minus each cell's mean) average 0 in every cell; sampled cells did
    not (their rows averaged -0.23 to 0.23 on the study's clr_adt, and the row mean alone told them from real
    cells at AUC 1.0). A model of such values centres its cells, in gen_exprs, in a bundle and after a reload."""
    rng = np.random.default_rng(5)
    labels = np.repeat(["a", "b"], 40)
    rates = rng.gamma(3.0, 10.0, (1, 25)) * np.where(labels[:, None] == "a", 1.0, rng.uniform(0.2, 5.0, (1, 25)))
    logged = np.log1p(rng.poisson(rates * rng.lognormal(0.0, 0.3, (80, 1))))
    clr = (logged - logged.mean(axis=1, keepdims=True)).astype(np.float32)
    result = vaexprs.fit_vae(clr, labels, likelihood="mixture", hidden=(16,), epochs=3, progress=False)
    assert result.row_centred
    assert np.abs(vaexprs.gen_exprs(result, num_samples=60, seed=2).x_gen.mean(axis=1)).max() < 1e-5
    bundle = vaexprs.export_bundle(result, tmp_path / "bundle")
    assert vaexprs.load_bundle(bundle).row_centred
    cells, _ = vaexprs.generate_array(bundle, n=60, seed=2, provider="cpu")
    assert np.abs(cells.mean(axis=1)).max() < 1e-5
    reloaded = vaexprs.VAEResult.load(result.save(tmp_path / "model.pt"))
    assert reloaded.row_centred and reloaded.spec.row_centred
    # signed values that are not centred per cell are left as they are
    shifted = clr + rng.normal(0.0, 0.5, (80, 1)).astype(np.float32)
    assert not vaexprs.fit_vae(shifted, labels, likelihood="mixture", hidden=(8,), epochs=1).row_centred
