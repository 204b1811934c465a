"""Small linear-scale values whose spread varies from value to value (methylation ratios): the log_mixture head.

A posterior methylation ratio stays near its nucleus' prior where a gene was covered by a few cytosines and spreads
where it was covered well, so one Gaussian per value (log_hurdle) draws a tail the real values lack: the study's
methylation cells were told apart by their per-cell maximum alone (benchmarks/research/noise_shape.py). log_mixture
draws the mixture's two Gaussians on log2(x / s + 1) and maps its cells back to the input's values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaexprs
from tests.conftest import export_and_compare
from vaexprs.analysis.metrics import evaluate
from vaexprs.bundle.heads import log_mixture_mean, outputs_to_cells
from vaexprs.model import selection
from vaexprs.model.network import LogMixtureHead, MixtureHead

OUTPUTS = ["mu", "sigma", "pi_logit", "bg_mu", "bg_sigma", "floor", "log_scale"]


def _methylation(seed: int = 1, n: int = 240, genes: int = 120):
    """snmC-seq-like gene-body ratios of three types: (mc + a) / (cov + a + b) / prior, coverage gamma-Poisson
    (uncovered genes sit exactly at 1), methylated cytosines beta-binomial around each type's level."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    codes = np.repeat([0, 1, 2], n // 3)
    rate = np.exp(rng.normal(np.log(0.04), 0.3, n))
    programme = np.exp(rng.normal(0, 0.8, (3, genes)) * (rng.random((3, genes)) < 0.3))
    level = np.clip(rate[:, None] * np.exp(rng.normal(0, 0.5, genes))[None] * programme[codes], 1e-4, 0.9)
    cov = rng.poisson(rng.gamma(2.0, np.exp(rng.normal(np.log(8), 1.0, genes))[None] / 2.0, (n, genes)))
    mc = rng.binomial(cov, rng.beta(level * 30, (1 - level) * 30))
    a, b = 2 * rate[:, None], 2 * (1 - rate[:, None])
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.array(list("abc"))[codes])},
                       index=[f"c{i}" for i in range(n)])  # fmt: skip
    return ad.AnnData(((mc + a) / (cov + a + b) / (a / (a + b))).astype(np.float32), obs=obs)


@pytest.fixture(scope="module")
def methylation():
    return _methylation()


@pytest.fixture(scope="module")
def mixture_fit(methylation):
    return vaexprs.fit_vae(methylation, "cell_type", likelihood="log_mixture", epochs=60, hidden=(64,), seed=1)


def test_log_mixture_loss_is_the_mixture_loss_on_scaled_log_values_and_its_mean_is_the_samplers():
    rng = np.random.default_rng(0)
    config = vaexprs.ModelConfig(n_genes=30, likelihood="log_mixture")
    head, mixture = LogMixtureHead(4, config), MixtureHead(4, config)
    head.log_scale.fill_(0.5)
    x = rng.uniform(0.0, 8.0, (20, 30)).astype(np.float32)
    shape = (20, 30)
    params = {
        "mu": rng.normal(1.5, 0.5, shape),
        "sigma": np.exp(rng.uniform(-2, -0.5, shape)),
        "pi_logit": rng.normal(0, 1, shape),
        "bg_mu": rng.normal(1.0, 0.2, shape),
        "bg_sigma": np.exp(rng.uniform(-3, -1.5, shape)),
    }
    params = {k: torch.from_numpy(v.astype(np.float32)) for k, v in params.items()}
    got = head.reconstruction_loss(params, torch.from_numpy(x))
    want = mixture.reconstruction_loss(params, torch.from_numpy(np.log2(x / 0.5 + 1.0)))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    # the expected value in the input's space: torch, numpy and a Monte Carlo mean of the numpy sampler agree
    one = {k: v[:1] for k, v in params.items()}
    expected = head.mean(one).numpy()[0]
    outputs = {k: np.repeat(v.numpy(), 40_000, axis=0) for k, v in one.items()}
    outputs["floor"] = np.zeros(outputs["mu"].shape, dtype=np.float32)
    outputs["log_scale"] = np.full(outputs["mu"].shape, 0.5, dtype=np.float32)
    np.testing.assert_allclose(log_mixture_mean({k: v[:1] for k, v in outputs.items()})[0], expected, rtol=1e-4)
    drawn = outputs_to_cells("log_mixture", outputs, np.random.default_rng(1), "none").mean(0)
    np.testing.assert_allclose(drawn, expected, rtol=0.05)


def test_log_mixture_cells_are_in_the_input_values_and_plausible(methylation, mixture_fit):
    x = np.asarray(methylation.X)
    assert mixture_fit.output_space == "none"
    np.testing.assert_allclose(mixture_fit.value_cap, x.max(0) + x.std(0), rtol=1e-5, atol=1e-7)
    gen = vaexprs.gen_exprs(mixture_fit, num_samples=240, seed=2)
    cells = np.asarray(gen.x_gen)
    assert gen.sampled and np.all(cells > 0) and np.all(cells <= mixture_fit.value_cap + 1e-6)
    assert 0.7 < np.median(cells) / np.median(x) < 1.4  # ratios around the prior, not their log
    mean = vaexprs.gen_exprs(mixture_fit, num_samples=240, seed=2, output_space="mean")
    assert not mean.sampled and np.all(mean.x_gen >= 0)
    np.testing.assert_allclose(np.asarray(mean.x_gen).mean(), cells.mean(), rtol=0.15)


def test_log_mixture_cells_are_harder_to_tell_from_real_than_log_hurdles(methylation, mixture_fit):
    """The reason for the head: the same ratios, the same options, scored in the input's own values."""
    hurdle = vaexprs.fit_vae(methylation, "cell_type", likelihood="log_hurdle", epochs=60, hidden=(64,), seed=1)
    x, labels = np.asarray(methylation.X), methylation.obs["cell_type"].to_numpy()
    distance = {}
    for name, result in (("log_hurdle", hurdle), ("log_mixture", mixture_fit)):
        gen = vaexprs.gen_exprs(result, num_samples=240, seed=2)
        distance[name] = abs(evaluate(x, gen.x_gen, labels, gen.y_gen, seed=0)["auc_real_vs_gen"] - 0.5)
    # 0.14-0.21 for log_hurdle, 0.02-0.06 for log_mixture over two data seeds
    assert distance["log_mixture"] < distance["log_hurdle"] - 0.08, distance


def test_log_mixture_bundle_generates_the_api_cells(mixture_fit, tmp_path):
    _, x = export_and_compare(mixture_fit, tmp_path / "b", OUTPUTS, atol=1e-6)
    assert np.all(x > 0)
    loaded = vaexprs.VAEResult.load(mixture_fit.save(tmp_path / "m.pt"))
    head = loaded.model.head
    assert float(head.log_scale[0]) == float(mixture_fit.model.head.log_scale[0])
    torch.testing.assert_close(head.floor, mixture_fit.model.head.floor)


def test_log_mixture_refuses_negative_values_with_one_line(methylation):
    from vaexprs.errors import OptionError

    signed = methylation.copy()
    signed.X = np.asarray(signed.X) - 1.0
    with pytest.raises(OptionError, match="non-negative") as info:
        vaexprs.fit_vae(signed, "cell_type", likelihood="log_mixture", epochs=1, hidden=(8,))
    assert "\n" not in str(info.value)


def test_auto_trains_log_mixture_on_zero_free_ratios_and_keeps_it_when_more_real(methylation):
    """likelihood=auto trains the head in its first round where it applies (values without exact zeros that
    normalize leaves as they are), beside the hurdle and bce, and keeps it where its cells are the most real."""
    result = vaexprs.fit_vae(methylation, "cell_type", epochs=60, hidden=(64,), seed=1)
    scored = [r for r in result.selection if "score" in r]
    first = scored[:3]
    assert [r["candidate"] for r in first] == ["hurdle", "log_mixture", "bce"]
    assert first[1]["likelihood"] == "log_mixture" and first[1]["epochs"] == 30
    assert selection.pick(first) == "log_mixture"  # 1.04 against the hurdle's 1.40 and bce's 1.57
    # the hurdle lost, so it does not try log_hurdle; the winner's own tries follow it
    not_tried = next(r for r in result.selection if r.get("candidate") == "log_hurdle")
    assert "log_mixture won" in not_tried["skipped"]
    assert all(r["likelihood"] == "log_mixture" for r in scored[3:])
    chosen = next(r for r in result.selection if r.get("chosen"))
    assert result.model_config.likelihood == chosen["likelihood"] == "log_mixture"
    gen = vaexprs.gen_exprs(result, num_samples=120, seed=2)
    assert np.all(gen.x_gen > 0)


def test_auto_does_not_try_log_mixture_where_values_hold_exact_zeros(methylation):
    zeros = methylation.copy()
    x = np.asarray(zeros.X).copy()
    x[np.random.default_rng(0).random(x.shape) < 0.2] = 0.0  # 20% exact zeros: log_mixture draws none
    zeros.X = x
    result = vaexprs.fit_vae(zeros, "cell_type", epochs=4, hidden=(16,), seed=1)
    (row,) = [r for r in result.selection if r["likelihood"] == "log_mixture"]
    assert "score" not in row and "exact zeros" in row["skipped"] and result.model_config.likelihood != "log_mixture"
