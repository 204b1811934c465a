"""Signed values (z-scores, batch-corrected or log-ratio values): the gaussian head.

Before it, likelihood=auto had only bce for such data (the hurdle is truncated at 0, the count heads need
counts), and VAExprs' decoder mean is told from real cells every time (vignette z-scored: RF AUC 1.00).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

import vaexprs
from vaexprs.bundle.schema import load_bundle
from vaexprs.errors import InputError, OptionError
from vaexprs.model import selection
from vaexprs.model.network import SignedGaussianHead


def _zscored(adata):
    """Each gene centred and scaled to unit variance, clipped at 10 (what scanpy's sc.pp.scale gives)."""
    x = np.asarray(adata.X, dtype=np.float64)
    sd = x.std(0)
    adata = adata.copy()
    adata.X = np.clip((x - x.mean(0)) / np.where(sd > 0, sd, 1.0), None, 10).astype(np.float32)
    return adata


@pytest.fixture(scope="module")
def signed(small_sim):
    return _zscored(small_sim)


@pytest.fixture(scope="module")
def signed_auto(signed):
    return vaexprs.fit_vae(signed, "cell_type", epochs=40, hidden=(32,), seed=1)


def test_auto_on_signed_values_trains_gaussian_against_bce_and_keeps_it(signed_auto):
    rows = {r.get("candidate", r["likelihood"]): r for r in signed_auto.selection}
    assert "integer" in rows["nb"]["skipped"] and "negative" in rows["hurdle"]["skipped"]
    assert {"gaussian", "bce"} <= {name for name, r in rows.items() if "score" in r}
    # the decoder mean is told from real cells; sampled cells are not (here ~0.55 against ~1.0)
    assert rows["gaussian"]["auc"] < rows["bce"]["auc"] - 0.2
    assert signed_auto.model_config.likelihood == "gaussian"


def test_gaussian_cells_are_signed_and_within_the_plausible_range(signed, signed_auto):
    x = np.asarray(signed.X, dtype=np.float64)
    np.testing.assert_allclose(signed_auto.value_floor, x.min(0) - x.std(0), atol=1e-4)
    np.testing.assert_allclose(signed_auto.value_cap, x.max(0) + x.std(0), atol=1e-4)
    gen = vaexprs.gen_exprs(signed_auto, num_samples=400, seed=2)
    assert gen.sampled and (gen.x_gen < 0).mean() > 0.2
    assert np.all(gen.x_gen >= signed_auto.value_floor - 1e-5) and np.all(gen.x_gen <= signed_auto.value_cap + 1e-5)
    mean = vaexprs.gen_exprs(signed_auto, num_samples=400, seed=2, output_space="mean")
    assert not mean.sampled and mean.x_gen.std(0).mean() < gen.x_gen.std(0).mean()  # no sampling noise


def test_gaussian_bundle_generates_the_api_cells_and_guards_its_bounds(signed_auto, tmp_path):
    from vaexprs.generate.pipeline import generate_array

    bundle = vaexprs.export_bundle(signed_auto, tmp_path / "b")  # raises unless the ONNX graph matches torch
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["likelihood"] == "gaussian" and len(spec["value_floor"]) == len(spec["genes"])
    assert [o["name"] for o in spec["onnx"]["decoder"]["outputs"]] == ["mu", "sigma"]
    x, labels = generate_array(bundle, n=80, seed=4)
    api = vaexprs.gen_exprs(signed_auto, num_samples=80, seed=4)
    np.testing.assert_allclose(x, api.x_gen, rtol=1e-4, atol=1e-4)  # one loop, one sampler: ORT vs torch floats
    assert list(labels) == list(api.y_gen)
    # signed values are seldom exactly 0: written dense, not as CSR as sampled counts and hurdle values are
    import anndata as ad

    from vaexprs.generate.pipeline import generate_to_file

    generate_to_file(bundle, tmp_path / "g.h5ad", n=80, seed=4)
    written = ad.read_h5ad(tmp_path / "g.h5ad")
    assert isinstance(written.X, np.ndarray) and np.array_equal(written.X, x)
    loaded = vaexprs.VAEResult.load(signed_auto.save(tmp_path / "m.pt"))
    np.testing.assert_array_equal(loaded.value_floor, signed_auto.value_floor)
    # a bundle whose floor exceeds its cap is refused with the field's name
    spec["value_floor"] = [c + 1.0 for c in spec["value_cap"]]
    (bundle / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="value_floor"):
        load_bundle(bundle)


def test_gaussian_log_prob_is_the_normal_density():
    rng = np.random.default_rng(0)
    head = SignedGaussianHead(4, vaexprs.ModelConfig(n_genes=30, likelihood="gaussian"))
    mu, sigma, x = rng.normal(0, 2, (20, 30)), np.exp(rng.uniform(-1, 1, (20, 30))), rng.normal(0, 3, (20, 30))
    params = {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}
    got = head.reconstruction_loss(params, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, -stats.norm.logpdf(x, mu, sigma).sum(-1), rtol=1e-6)


def test_the_heads_that_cannot_hold_signed_values_say_so(signed):
    with pytest.raises(OptionError, match="non-negative"):
        vaexprs.fit_vae(signed, "cell_type", likelihood="hurdle", epochs=1, hidden=(8,))
    heads, excluded = selection.candidate_heads(np.abs(np.asarray(signed.X)))
    assert "gaussian" not in heads and "hurdle" in excluded["gaussian"]  # non-negative values: the hurdle's
