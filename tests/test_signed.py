"""Signed values (z-scores, batch-corrected or log-ratio values): the floor_hurdle head.

Before it, likelihood=auto had only bce for such data (the hurdle is truncated at 0, the count heads need
counts), and VAExprs' decoder mean is told from real cells every time (pbmc3k HVGs after sc.pp.scale: RF AUC
0.999, benchmarks/results/quality_signed.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaexprs
from vaexprs.errors import OptionError
from vaexprs.model import selection
from vaexprs.model.network import FloorHurdleHead, HurdleGaussianHead


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
    return vaexprs.fit_vae(signed, "cell_type", likelihood="floor_hurdle", epochs=40, hidden=(32,), seed=1)


def test_auto_on_signed_values_trains_floor_hurdle_against_bce(signed):
    result = vaexprs.fit_vae(signed, "cell_type", epochs=40, hidden=(32,), seed=1)
    rows = {r.get("candidate", r["likelihood"]): r for r in result.selection}
    assert "integer" in rows["nb"]["skipped"] and "negative" in rows["hurdle"]["skipped"]
    assert {"floor_hurdle", "bce"} <= {name for name, r in rows.items() if "score" in r}
    # the decoder mean is told from real cells (AUC 1.0); sampled cells much less (0.34-0.69 over three seeds
    # of this toy fit; which one wins also weighs the label keep rate of 72 training cells)
    floor_hurdle, bce = abs(rows["floor_hurdle"]["auc"] - 0.5), abs(rows["bce"]["auc"] - 0.5)
    assert floor_hurdle < bce - 0.2
    chosen = next(r for r in rows.values() if r.get("chosen"))
    assert result.model_config.likelihood == chosen["likelihood"] in ("floor_hurdle", "bce")


def test_floor_hurdle_cells_keep_each_genes_floor_and_stay_plausible(signed, signed_auto):
    x = np.asarray(signed.X)
    floor = signed_auto.model.head.floor.numpy()
    np.testing.assert_array_equal(floor, x.min(0))
    np.testing.assert_allclose(signed_auto.value_cap, x.max(0) + x.std(0), atol=1e-4)
    gen = vaexprs.gen_exprs(signed_auto, num_samples=400, seed=2)
    assert gen.sampled and (gen.x_gen < 0).mean() > 0.2
    assert np.all(gen.x_gen >= floor) and np.all(gen.x_gen <= signed_auto.value_cap + 1e-5)
    at_floor_real, at_floor_gen = (x == floor).mean(), (gen.x_gen == floor).mean()
    assert at_floor_real > 0.05 and abs(at_floor_gen - at_floor_real) < 0.1  # the undetected cells' point mass
    mean = vaexprs.gen_exprs(signed_auto, num_samples=400, seed=2, output_space="mean")
    assert not mean.sampled and np.all(mean.x_gen >= floor - 1e-5) and (mean.x_gen == floor).mean() < 0.01


def test_floor_hurdle_bundle_generates_the_api_cells_and_writes_them_dense(signed_auto, tmp_path):
    import anndata as ad

    from vaexprs.generate.pipeline import generate_array, generate_to_file

    bundle = vaexprs.export_bundle(signed_auto, tmp_path / "b")  # raises unless the ONNX graphs match torch
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["likelihood"] == "floor_hurdle" and spec["onnx"]["encoder"]["parity_max_abs_diff"] < 1e-4
    assert [o["name"] for o in spec["onnx"]["decoder"]["outputs"]] == ["mu", "sigma", "pi_logit", "floor"]
    x, labels = generate_array(bundle, n=80, seed=4)
    api = vaexprs.gen_exprs(signed_auto, num_samples=80, seed=4)
    np.testing.assert_allclose(x, api.x_gen, rtol=1e-4, atol=1e-4)  # one loop, one sampler: ORT vs torch floats
    assert list(labels) == list(api.y_gen)
    # signed values are seldom exactly 0: written dense, not as CSR as sampled counts and hurdle values are
    generate_to_file(bundle, tmp_path / "g.h5ad", n=80, seed=4)
    written = ad.read_h5ad(tmp_path / "g.h5ad")
    assert isinstance(written.X, np.ndarray) and np.array_equal(written.X, x)
    loaded = vaexprs.VAEResult.load(signed_auto.save(tmp_path / "m.pt"))
    np.testing.assert_array_equal(loaded.model.head.floor.numpy(), signed_auto.model.head.floor.numpy())


def test_floor_hurdle_loss_is_the_hurdle_loss_above_the_floor():
    rng = np.random.default_rng(0)
    config = vaexprs.ModelConfig(n_genes=30, likelihood="floor_hurdle")
    head, hurdle = FloorHurdleHead(4, config), HurdleGaussianHead(4, config)
    floor = rng.normal(-1, 0.5, 30).astype(np.float32)
    head.set_floor(floor)
    above = np.where(rng.random((20, 30)) < 0.4, 0.0, rng.uniform(0.05, 4, (20, 30))).astype(np.float32)
    params = {
        "mu": torch.from_numpy(rng.normal(0, 2, (20, 30)).astype(np.float32)),
        "sigma": torch.from_numpy(np.exp(rng.uniform(-1, 1, (20, 30))).astype(np.float32)),
        "pi_logit": torch.from_numpy(rng.normal(0, 1, (20, 30)).astype(np.float32)),
    }
    got = head.reconstruction_loss(params, torch.from_numpy(above + floor))
    want = hurdle.reconstruction_loss(params, torch.from_numpy(above))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)


def test_the_heads_that_cannot_hold_signed_values_say_so(signed):
    with pytest.raises(OptionError, match="non-negative"):
        vaexprs.fit_vae(signed, "cell_type", likelihood="hurdle", epochs=1, hidden=(8,))
    heads, excluded = selection.candidate_heads(np.abs(np.asarray(signed.X)))
    assert "floor_hurdle" not in heads and "floor is 0" in excluded["floor_hurdle"]  # the hurdle's values
