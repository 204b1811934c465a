"""Likelihood heads with sampling noise: nb, zinb (raw counts) and hurdle (normalised log values).

Log-likelihoods against scipy.stats; generation through the Python API and onnxruntime (same numpy function,
same cells); export parity; the CLI's output spaces; refusal of data that are not counts; and, on pbmc3k
(skipped when absent), generated cells' zero fraction against the real one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

import vaexprs
from tests.conftest import shared_file
from vaexprs.bundle.heads import LibrarySize, resolve_output_space, sample_hurdle, sample_nb
from vaexprs.bundle.schema import load_bundle, write_bundle_json
from vaexprs.cli import main
from vaexprs.errors import InputError
from vaexprs.generate.pipeline import generate_array
from vaexprs.model.export import export_bundle
from vaexprs.model.network import hurdle_log_prob, nb_log_prob, zinb_log_prob

NOISE_HEADS = ("nb", "zinb", "hurdle")


def _random_params(seed: int = 0, shape: tuple[int, int] = (64, 50)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.uniform(-3, 5, shape))
    theta = np.exp(rng.uniform(-2, 3, shape))
    x = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    x[:, :5] = 0  # make sure both branches of the zero-inflated form are hit
    return {"x": x, "mu": mu, "theta": theta, "pi_logit": rng.normal(0, 2, shape)}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def test_nb_log_prob_matches_scipy():
    p = _random_params(0)
    got = nb_log_prob(_t(p["x"]), _t(p["mu"]), _t(p["theta"])).numpy()
    want = stats.nbinom.logpmf(p["x"], n=p["theta"], p=p["theta"] / (p["theta"] + p["mu"]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_zinb_log_prob_matches_the_scipy_mixture():
    p = _random_params(1)
    pi = 1.0 / (1.0 + np.exp(-p["pi_logit"]))
    nb = stats.nbinom.pmf(p["x"], n=p["theta"], p=p["theta"] / (p["theta"] + p["mu"]))
    want = np.log(np.where(p["x"] == 0, pi + (1 - pi) * nb, (1 - pi) * nb))
    got = zinb_log_prob(_t(p["x"]), _t(p["mu"]), _t(p["theta"]), _t(p["pi_logit"])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_hurdle_log_prob_matches_scipy_truncated_normal():
    rng = np.random.default_rng(2)
    mu, sigma, logit = rng.normal(1, 2, (40, 30)), np.exp(rng.uniform(-1, 1, 30)), rng.normal(0, 2, (40, 30))
    x = np.where(rng.random((40, 30)) < 0.4, 0.0, rng.uniform(0.05, 6, (40, 30)))
    pi = 1.0 / (1.0 + np.exp(-logit))
    positive = np.log1p(-pi) + stats.truncnorm.logpdf(x, (0 - mu) / sigma, np.inf, loc=mu, scale=sigma)
    want = np.where(x > 0, positive, np.log(pi))
    got = hurdle_log_prob(_t(x), _t(mu), _t(sigma), _t(logit)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _dense_hurdle_log_prob(
    x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, pi_logit: torch.Tensor
) -> torch.Tensor:
    """The formula evaluated at every entry (the implementation before the non-zero-only one)."""
    z = (x - mu) / sigma
    positive = (
        torch.nn.functional.logsigmoid(-pi_logit)
        - 0.5 * z.pow(2)
        - torch.log(sigma)
        - 0.5 * np.log(2 * np.pi)
        - torch.special.log_ndtr(mu / sigma)
    )
    return torch.where(x > 0, positive, torch.nn.functional.logsigmoid(pi_logit))


@pytest.mark.parametrize("zero_share", [0.0, 0.94, 1.0])
def test_hurdle_log_prob_on_non_zero_entries_has_the_dense_values_and_gradients(zero_share: float) -> None:
    """The truncated normal is evaluated at the non-zero entries only (speed): the loss and every gradient must
    be those of the formula at every entry, for a mostly-zero batch and for batches without zeros or non-zeros."""
    rng = np.random.default_rng(5)
    x = _t(np.where(rng.random((32, 200)) < zero_share, 0.0, rng.uniform(0.05, 6, (32, 200))))
    params = rng.normal(1, 2, (32, 200)), rng.uniform(-1, 1, 200), rng.normal(0, 2, (32, 200))
    results = []
    for log_prob in (hurdle_log_prob, _dense_hurdle_log_prob):
        mu, log_sigma, logit = (_t(p).requires_grad_() for p in params)
        loss = -log_prob(x, mu, torch.exp(log_sigma), logit).sum(-1)
        loss.sum().backward()
        results.append((loss.detach().numpy(), [p.grad.numpy() for p in (mu, log_sigma, logit)]))
    (loss, grads), (want_loss, want_grads) = results
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(grads[0][x.numpy() == 0] == 0)  # a zero says nothing about the non-zero mean


def test_numpy_samplers_have_the_model_moments():
    rng = np.random.default_rng(3)
    mu, theta = np.full((200_000, 1), 4.0), np.full(1, 2.0)
    x = sample_nb(mu, theta, rng)
    assert np.all(x == np.round(x)) and x.min() >= 0
    assert abs(x.mean() - 4.0) < 0.05 and abs(x.var() - (4.0 + 16.0 / 2.0)) < 0.3  # var = mu + mu^2 / theta
    y = sample_hurdle(np.full((200_000, 1), -0.5), np.ones(1), np.full((200_000, 1), 0.0), rng)
    assert abs((y == 0).mean() - 0.5) < 0.01 and y.min() >= 0
    want = stats.truncnorm.mean(0.5, np.inf, loc=-0.5, scale=1.0)
    assert abs(y[y > 0].mean() - want) < 0.01


def test_output_spaces_per_head():
    assert resolve_output_space("nb", "counts", None).name == "counts"
    assert resolve_output_space("zinb", "counts", "lognorm").sampled
    mean = resolve_output_space("zinb", "counts", "mean")
    assert not mean.sampled and mean.value_space == "counts"
    assert resolve_output_space("hurdle", "log", None).name == "log"
    assert resolve_output_space("bce", "lognorm", "mean").name == "lognorm"
    with pytest.raises(InputError, match=r"output_space 'counts' is not available.*bce decoder produces 'lognorm'"):
        resolve_output_space("bce", "lognorm", "counts")
    with pytest.raises(InputError, match="output_space 'counts' is not available"):
        resolve_output_space("hurdle", "log", "counts")


@pytest.fixture(scope="module")
def counts():
    """The vignette's simulated data rounded to counts (what the quality study also uses)."""
    adata = vaexprs.simulate(groups=3, cells=30, genes=120, deg=20, seed=2)
    adata.X = np.round(adata.X)
    return adata


@pytest.fixture(scope="module")
def results(counts):
    return {
        lik: vaexprs.fit_vae(counts, "cell_type", likelihood=lik, hidden=(32,), epochs=2, seed=3) for lik in NOISE_HEADS
    }


@pytest.fixture(scope="module")
def bundles(results, tmp_path_factory):
    root = tmp_path_factory.mktemp("noise_bundles")
    return {lik: export_bundle(result, root / lik) for lik, result in results.items()}


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_count_heads_generate_integer_counts_api_and_onnx_alike(results, bundles, likelihood):
    api = vaexprs.gen_exprs(results[likelihood], num_samples=200, seed=7)
    ort, labels = generate_array(bundles[likelihood], n=200, seed=7, provider="cpu")
    for x in (api.x_gen, ort):
        assert x.dtype == np.float32 and x.min() >= 0 and np.all(x == np.round(x))
        assert 0 < (x == 0).mean() < 1
    assert list(labels) == list(api.y_gen)
    assert np.mean(api.x_gen == ort) > 0.999  # one numpy function on the same draws; torch vs ORT floats only
    assert api.output_space == "counts" and api.sampled


@pytest.mark.parametrize("likelihood", NOISE_HEADS)
def test_noise_bundles_pass_parity_and_record_their_model(bundles, likelihood):
    spec = json.loads((bundles[likelihood] / "bundle.json").read_text())
    parity = spec["onnx"]["decoder"]["parity"]
    assert set(parity) == set(spec["onnx"]["decoder"]["outputs"][i]["name"] for i in range(len(parity)))
    for name, r in parity.items():
        assert r["max_abs_diff"] <= r["atol"] + r["rtol"] * 1e3, name  # checked elementwise at export
    bundle = load_bundle(bundles[likelihood])
    if likelihood == "hurdle":
        assert bundle.library_size is None and spec["output_spaces"] == ["lognorm", "mean"]
    else:
        assert bundle.library_size.mu.shape == (3,) and bundle.library_size.train_mean > 0
        assert spec["output_spaces"] == ["counts", "lognorm", "mean"]


def test_lognorm_of_generated_counts_uses_the_training_mean_library(results, bundles):
    """Chunking must not change lognorm values: size factors are relative to the training mean library."""
    whole, _ = generate_array(bundles["nb"], n=60, seed=2, output_space="lognorm", batch_size=60)
    counts, _ = generate_array(bundles["nb"], n=60, seed=2, output_space="counts", batch_size=60)
    lib = counts.sum(1, keepdims=True)
    want = np.log2(counts / (lib / results["nb"].library_size.train_mean) + 1)
    np.testing.assert_allclose(whole, want, rtol=1e-5, atol=1e-5)


def test_hurdle_samples_zeros_and_mean_has_none(results):
    sampled = vaexprs.gen_exprs(results["hurdle"], num_samples=100, seed=1)
    mean = vaexprs.gen_exprs(results["hurdle"], num_samples=100, seed=1, output_space="mean")
    assert (sampled.x_gen == 0).mean() > 0.05 and sampled.x_gen.min() >= 0 and sampled.sampled
    assert (mean.x_gen == 0).mean() == 0 and not mean.sampled and mean.output_space == "mean"


@pytest.mark.parametrize("space", ["counts", "lognorm", "mean"])
def test_cli_generate_output_spaces(bundles, tmp_path, space):
    import anndata as ad

    out = tmp_path / f"{space}.h5ad"
    assert main(["generate", str(bundles["zinb"]), "-n", "100", "--output-space", space, "-o", str(out), "-q"]) == 0
    gen = ad.read_h5ad(out)
    assert gen.shape == (100, 120) and gen.uns["vaexprs"]["output_space"] == space
    assert hasattr(gen.X, "toarray") == (space != "mean")  # sampled cells are written as CSR, means dense
    x = gen.X.toarray() if hasattr(gen.X, "toarray") else np.asarray(gen.X)
    assert bool(np.all(x == np.round(x))) == (space == "counts")


def test_cli_counts_from_a_bce_bundle_is_a_usage_error(tmp_path, capsys):
    from tests.onnx_fixtures import make_bundle

    bundle = make_bundle(tmp_path / "bce", conditional=True)
    code = main(["generate", str(bundle), "-n", "10", "--output-space", "counts", "-o", str(tmp_path / "x.h5ad")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--output-space 'counts' is not available" in err and not (tmp_path / "x.h5ad").exists()


def test_count_bundle_without_library_size_is_refused(bundles, tmp_path):
    import shutil

    copy = tmp_path / "nolib"
    shutil.copytree(bundles["nb"], copy)
    data = json.loads((copy / "bundle.json").read_text())
    del data["library_size"]
    write_bundle_json(copy, data)
    with pytest.raises(InputError, match="needs field 'library_size'"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.nan, "NaN/inf"),
        (-1.0, "negative value"),
        (2.5, "non-integer value"),
    ],
)
def test_cli_train_refuses_data_that_are_not_counts(tmp_path, capsys, values, message):
    import anndata as ad

    x = np.random.default_rng(0).poisson(2.0, (20, 12)).astype(np.float32)
    x[3, 4] = values
    path = tmp_path / "bad.h5ad"
    ad.AnnData(x).write_h5ad(path)
    code = main(["train", str(path), "--likelihood", "nb", "--epochs", "1", "--hidden", "8", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_round_counts_rounds_only_when_asked(counts):
    x = counts.X.copy() + 0.25
    with pytest.raises(InputError, match="or round_counts to round them"):
        vaexprs.fit_vae(x, likelihood="nb", hidden=(8,), epochs=1)
    result = vaexprs.fit_vae(x, likelihood="nb", hidden=(8,), epochs=1, round_counts=True)
    assert result.library_size is not None and result.library_size.mu.shape == (1,)  # a VAE: one log-normal


def test_library_size_fit_per_label():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1], 5000)
    lib = np.exp(np.where(codes == 0, rng.normal(7, 0.3, 10000), rng.normal(8, 0.5, 10000)))
    fit = LibrarySize.fit(lib, codes, 2)
    np.testing.assert_allclose(fit.mu, [7, 8], atol=0.02)
    np.testing.assert_allclose(fit.sigma, [0.3, 0.5], atol=0.02)
    assert LibrarySize.from_dict(fit.to_dict()).train_mean == pytest.approx(lib.mean())


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_pbmc3k_zero_fraction_of_generated_counts_is_realistic(likelihood):
    """On the same 1,000 highly variable genes, generated counts have the real data's zero fraction (+-0.05)."""
    import anndata as ad

    from vaexprs.data.preprocess import highly_variable_genes

    adata = ad.read_h5ad(shared_file("pbmc3k.h5ad"))
    adata = adata[:, highly_variable_genes(adata.X, 1000)].copy()
    torch.set_num_threads(2)
    result = vaexprs.fit_vae(
        adata, "cell_type", likelihood=likelihood, hidden=(128,), latent_dim=10, batch_size=128, epochs=4, seed=1
    )
    gen = vaexprs.gen_exprs(result, num_samples=adata.n_obs, seed=1)
    real_zero = 1.0 - adata.X.nnz / np.prod(adata.shape)
    gen_zero = float((gen.x_gen == 0).mean())
    assert np.all(gen.x_gen == np.round(gen.x_gen))
    assert abs(gen_zero - real_zero) <= 0.05, (gen_zero, real_zero)


def test_hurdle_starts_at_the_scale_of_the_data():
    """The vignette's values spread by ~5 (N(5, 5)); a hurdle started at sigma 1 reached only ~3 in 300 epochs
    and generated too little noise (AUC 0.99). It now starts at each gene's within-label spread."""
    adata = vaexprs.simulate(groups=3, cells=30, genes=120, deg=20, seed=2)
    result = vaexprs.fit_vae(adata, "cell_type", likelihood="hurdle", hidden=(32,), epochs=1, seed=3)
    sigma = np.exp(result.model.head.log_sigma.detach().numpy())
    x = np.asarray(adata.X)
    nonzero = np.where(x > 0, x, np.nan)
    within = np.nanmedian(np.nanstd(nonzero[:30], axis=0))  # one label's spread of the detected values
    assert 0.7 * within < np.median(sigma) < 1.3 * within
    bias = result.model.head.loc.bias.detach().numpy()
    np.testing.assert_allclose(np.median(bias), np.nanmedian(np.nanmean(nonzero, axis=0)), rtol=0.1)


def test_hurdle_checkpoint_from_before_the_cell_noise_factor_loads_as_trained(results, tmp_path):
    """A checkpoint saved without the per-cell noise factor (vaexprs <= this change) still loads, and its
    cells are what its per-gene sigma gives: the factor is 1 (log 0) for it."""
    import torch

    from vaexprs.model.result import VAEResult

    payload = results["hurdle"].to_checkpoint()
    old = {k: v for k, v in payload["state_dict"].items() if "cell_log_sigma" not in k}
    assert len(old) == len(payload["state_dict"]) - 2
    path = tmp_path / "old.pt"
    torch.save({**payload, "state_dict": old}, path)
    loaded = VAEResult.load(path)
    head = loaded.model.head
    assert not head.cell_log_sigma.weight.any() and not head.cell_log_sigma.bias.any()
    with torch.no_grad():
        params = head(torch.randn(5, head.loc.in_features))
    np.testing.assert_allclose(
        params["sigma"].numpy(), np.exp(head.log_sigma.detach().numpy())[None].repeat(5, 0), rtol=1e-6
    )
