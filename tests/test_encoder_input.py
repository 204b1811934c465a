"""encoder_input: what the encoder sees (the head's own input, or that standardized per gene), and its choice.

Why it exists: on dense log-scale data far from 0 (array intensities 4..15) the hurdle encoder's log1p squeezes
each cell's deviations to hundredths and the latent goes unused (benchmarks/research/encoder_input_results.md).
"""

from __future__ import annotations

import numpy as np
import pytest

import vaexprs
from vaexprs.config import ModelConfig
from vaexprs.errors import OptionError
from vaexprs.model import selection


def _intensities(n_per_label: int = 40, genes: int = 120, seed: int = 0):
    """Array-like log2 intensities: no zeros, values around 8, two labels and a per-sample brightness."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    codes = np.repeat([0, 1], n_per_label)
    base = rng.uniform(5.0, 11.0, genes)
    marker = np.zeros((2, genes))
    marker[0, :15] = 1.5
    marker[1, 15:30] = 1.5
    module = rng.normal(0, 1, genes)  # a gene module whose activity varies from sample to sample
    activity = rng.normal(0, 1.0, (codes.size, 1))
    brightness = rng.normal(0, 0.4, (codes.size, 1))
    x = base + marker[codes] + activity * module + brightness + rng.normal(0, 0.3, (codes.size, genes))
    x = np.maximum(x, 3.0)  # the scanner's background
    labels = pd.Categorical(np.array(["a", "b"])[codes])
    obs = pd.DataFrame({"cell_type": labels}, index=[f"s{i}" for i in range(codes.size)])
    return ad.AnnData(x.astype(np.float32), obs=obs, var=pd.DataFrame(index=[f"p{j}" for j in range(genes)]))


def test_encoder_input_auto_is_decided_with_the_likelihood():
    assert ModelConfig().encoder_input == "auto"
    assert ModelConfig(likelihood="hurdle").encoder_input == "head"  # an explicit head: VAExprs' plain input
    assert ModelConfig(likelihood="nb", encoder_input="standardized").encoder_input == "standardized"
    with pytest.raises(OptionError, match="encoder_input"):
        ModelConfig(encoder_input="zscore")


def test_standardized_input_is_each_genes_z_score_with_a_floor():
    data = _intensities()
    result = vaexprs.fit_vae(data, "cell_type", likelihood="hurdle", encoder_input="standardized", epochs=2,
                             hidden=(16,), seed=1)  # fmt: skip
    model = result.model
    logged = np.log1p(np.asarray(result.x_train, dtype=np.float64))
    sd = logged.std(0)
    np.testing.assert_allclose(model.input_center.numpy(), logged.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.input_scale.numpy(), np.maximum(sd, np.median(sd)), rtol=1e-4)
    import torch

    seen = model.encoder_values(torch.from_numpy(np.asarray(result.x_train, dtype=np.float32))).numpy()
    assert np.abs(seen.mean(0)).max() < 1e-3 and seen.std(0).max() <= 1.0 + 1e-3
    far = model.encoder_values(torch.full((1, logged.shape[1]), 1e6))  # far outside the training spread
    assert float(far.max()) == pytest.approx(10.0)  # network.INPUT_CLIP: bounded


def test_standardized_input_puts_dense_log_data_into_the_latent():
    """The reason for the option: with log1p the latent of array-like data stays near the prior's centre; with
    standardized input it carries the samples' structure (the spread of the latent means across samples)."""
    data = _intensities(seed=3)
    spread = {}
    for encoder_input in ("head", "standardized"):
        result = vaexprs.fit_vae(data, "cell_type", likelihood="hurdle", encoder_input=encoder_input, epochs=60,
                                 hidden=(32,), latent_dim=4, seed=1)  # fmt: skip
        spread[encoder_input] = float(np.asarray(result.latent).std(0).max())
    assert spread["standardized"] > 5 * spread["head"], spread  # 2.2 vs 0.065 on this set


def test_selection_tries_standardized_input_on_the_winner_and_survives_a_divergence(monkeypatch):
    from vaexprs.model import fit

    real_fit_head = fit.fit_head

    def diverging(subset, options, *args, **kwargs):
        if options["encoder_input"] == "standardized":
            raise FloatingPointError("loss became non-finite at epoch 3: {'loss': nan}")
        return real_fit_head(subset, options, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_head", diverging)
    data = _intensities(n_per_label=30, genes=40, seed=2)
    result = vaexprs.fit_vae(data, "cell_type", epochs=40, hidden=(16,), seed=1, dropout=0.0, beta=1.0)
    rows = [r for r in result.selection if "skipped" not in r]
    # zero-free intensities: log_mixture competes in the first round (it loses here)
    assert [r["candidate"] for r in rows[:3]] == ["hurdle", "log_mixture", "bce"]
    assert selection.pick(rows[:3]) == "hurdle"  # bce's decoder mean is told from real cells
    # intensities below 100 stay as they are, so the hurdle, short of the target, tries log_hurdle first (it loses)
    assert rows[3]["candidate"] == "log_hurdle" and rows[3]["score"] > rows[0]["score"] - selection.TIE
    tried = rows[-1]  # the sampled winner tries standardized input; here it diverged
    assert len(rows) == 5 and tried["candidate"] == "hurdle_standardized" and tried["encoder_input"] == "standardized"
    assert "non-finite" in tried["diverged"] and "score" not in tried and not tried["chosen"]
    assert rows[0]["chosen"] and result.model_config.encoder_input == "head"
    monkeypatch.setattr(fit, "fit_head", lambda *a, **k: (_ for _ in ()).throw(FloatingPointError("nan")))
    with pytest.raises(FloatingPointError, match="every candidate"):
        vaexprs.fit_vae(data, "cell_type", epochs=4, hidden=(8,), seed=1)


def test_standardized_model_round_trips_and_exports(tmp_path):
    """The per-gene centre and scale are part of the model: saved, loaded, and in the ONNX encoder."""
    from vaexprs.model.result import VAEResult

    data = _intensities(seed=4)
    result = vaexprs.fit_vae(data, "cell_type", likelihood="hurdle", encoder_input="standardized", epochs=3,
                             hidden=(16,), seed=1)  # fmt: skip
    path = result.save(tmp_path / "model.pt")
    loaded = VAEResult.load(path)
    assert loaded.model_config.encoder_input == "standardized"
    np.testing.assert_array_equal(loaded.model.input_scale.numpy(), result.model.input_scale.numpy())
    np.testing.assert_allclose(
        vaexprs.gen_exprs(loaded, num_samples=30, seed=2).x_gen, vaexprs.gen_exprs(result, num_samples=30, seed=2).x_gen
    )
    import json

    bundle = vaexprs.export_bundle(result, tmp_path / "b")  # raises unless the ONNX graphs match torch
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["onnx"]["encoder"]["parity_max_abs_diff"] < 1e-4


def test_sparse_values_skip_the_standardized_try_and_a_diverged_final_fit_falls_back(monkeypatch, small_sim):
    """Standardizing turns exact zeros into non-zero inputs; on sparse data with many genes training diverged
    (treutlein), so selection does not try it there. Should the chosen model still diverge on all cells, the
    runner-up is trained instead, and the table says so."""
    import scipy.sparse as sp

    sparse = np.where(np.random.default_rng(0).random((50, 40)) < 0.6, 0.0, 3.0)
    assert selection.encoder_zero_share(sparse) == pytest.approx((sparse == 0).mean())
    assert selection.encoder_zero_share(sp.csr_matrix(sparse)) == pytest.approx((sparse == 0).mean())
    assert selection.encoder_zero_share(sparse - 3.0) == pytest.approx((sparse == 0).mean())  # signed: the floor
    data = small_sim.copy()
    data.X = np.where(np.random.default_rng(1).random(data.shape) < 0.5, 0.0, np.asarray(data.X))
    result = vaexprs.fit_vae(data, "cell_type", epochs=20, hidden=(16,), seed=1, dropout=0.0)
    skipped = [r for r in result.selection if str(r.get("candidate", "")).endswith("_standardized")]
    assert len(skipped) == 1 and "exact zeros" in skipped[0]["skipped"] and "score" not in skipped[0]

    from vaexprs.model import fit

    real_fit_head = fit.fit_head

    def final_diverges(subset, options, *args, **kwargs):
        if kwargs.get("what", "training") == "training" and options["encoder_input"] == "standardized":
            raise FloatingPointError("loss became non-finite at epoch 2: {'loss': nan}")
        return real_fit_head(subset, options, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_head", final_diverges)
    real_score = selection.realism_score
    monkeypatch.setattr(  # the standardized candidate wins on held-out cells, then diverges on all cells
        selection, "realism_score", lambda row: 0.0 if row["encoder_input"] == "standardized" else real_score(row)
    )
    dense = _intensities(n_per_label=30, genes=40, seed=2)
    result = vaexprs.fit_vae(dense, "cell_type", epochs=10, hidden=(16,), seed=1, dropout=0.0)
    rows = {r["candidate"]: r for r in result.selection if "candidate" in r}
    assert "non-finite" in rows["hurdle_standardized"]["final_diverged"] and not rows["hurdle_standardized"]["chosen"]
    chosen = [r for r in rows.values() if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["encoder_input"] == "head"
    assert result.model_config.encoder_input == "head" and result.model_config.likelihood == chosen[0]["likelihood"]


def test_a_winner_that_already_looks_real_skips_the_standardized_try(monkeypatch):
    """On dense values the third try is an escalation: where the winner already meets the realism target on
    held-out cells (the vignette), a near-tie would be decided by the noise of a few cells, so it is not trained."""
    tried = []
    from vaexprs.model import fit

    real_fit_head = fit.fit_head

    def recording(subset, options, *args, **kwargs):
        tried.append(options["encoder_input"])
        return real_fit_head(subset, options, *args, **kwargs)

    monkeypatch.setattr(fit, "fit_head", recording)
    monkeypatch.setattr(selection, "realism_score", lambda row: 0.6 if row["likelihood"] == "hurdle" else 1.0)
    data = _intensities(n_per_label=30, genes=40, seed=2)
    result = vaexprs.fit_vae(data, "cell_type", epochs=6, hidden=(16,), seed=1, dropout=0.0)
    (not_tried,) = [r for r in result.selection if r.get("candidate") == "hurdle_standardized"]
    assert "realism target" in not_tried["skipped"] and "0.600" in not_tried["skipped"]
    assert "standardized" not in tried and result.model_config.encoder_input == "head"
