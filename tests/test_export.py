"""ONNX export: a symbolic batch axis, de-scaling folded in, parity with torch, bundle contents."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import vaexprs
from vaexprs.errors import InputError


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_decoder_has_a_symbolic_batch_axis_and_runs_1_and_10000(cvae_bundle, small_cvae):
    model = onnx.load(str(cvae_bundle / "decoder.onnx"))
    onnx.checker.check_model(model, full_check=True)
    for value in [*model.graph.input, *model.graph.output]:
        assert isinstance(_dims(value)[0], str) and _dims(value)[0], f"{value.name} batch axis is fixed"
    assert [v.name for v in model.graph.input] == ["z", "label_onehot"]
    session = ort.InferenceSession(str(cvae_bundle / "decoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = small_cvae.output_decoder()
    rng = np.random.default_rng(0)
    for n in (1, 10_000):
        z = rng.standard_normal((n, 2)).astype(np.float32)
        c = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
        (got,) = session.run(None, {"z": z, "label_onehot": c})
        with torch.inference_mode():
            want = decoder(torch.from_numpy(z), torch.from_numpy(c))[0].numpy()
        assert got.shape == (n, 120)
        assert np.max(np.abs(got - want)) <= 1e-5


def test_outputs_are_already_in_the_training_space(cvae_bundle, small_cvae, small_sim):
    """De-scaling is folded into the graph: decoded values span the real data's range, not [0, 1]."""
    session = ort.InferenceSession(str(cvae_bundle / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = small_cvae.latent.astype(np.float32)
    c = np.eye(3, dtype=np.float32)[small_cvae.preprocessor.labels.transform(small_cvae.y_train)]
    (x,) = session.run(None, {"z": z, "label_onehot": c})
    assert x.max() > 5.0
    assert x.min() >= small_sim.X.min() - 1e-4 and x.max() <= small_sim.X.max() + 1e-3


def test_bundle_json_records_parity_genes_labels_and_sampler(cvae_bundle, small_cvae):
    spec = json.loads((cvae_bundle / "bundle.json").read_text())
    assert spec["model_type"] == "cvae" and spec["labels"] == ["group1", "group2", "group3"]
    assert spec["genes"] == small_cvae.genes
    dec = spec["onnx"]["decoder"]
    assert dec["parity_max_abs_diff"] <= 1e-5 and dec["parity_n_checked"] == 1000  # the 3 labels take turns
    assert dec["inputs"][0]["shape"][1] == 2 and dec["outputs"][0]["shape"][1] == 120
    assert len(spec["sampler"]["mixtures"]) == 3
    assert abs(sum(spec["label_proportions"]) - 1) < 1e-9
    assert spec["onnx"]["encoder"]["parity_max_abs_diff"] <= 1e-4


def test_encoder_embeds_cells_like_the_python_api(cvae_bundle, small_cvae, small_sim):
    session = ort.InferenceSession(str(cvae_bundle / "encoder.onnx"), providers=["CPUExecutionProvider"])
    codes = small_cvae.preprocessor.labels.transform(small_sim.obs["cell_type"].astype(str))
    z_mean, _ = session.run(
        None, {"x": small_cvae.x_train.astype(np.float32), "label_onehot": np.eye(3, dtype=np.float32)[codes]}
    )
    np.testing.assert_allclose(z_mean, small_cvae.latent, atol=1e-4)


def test_vae_bundle_has_one_decoder_input(vae_bundle):
    bundle = vaexprs.load_bundle(vae_bundle)
    assert bundle.model_type == "vae" and [s.name for s in bundle.decoder.inputs] == ["z"]


def test_export_refuses_to_overwrite(small_vae, vae_bundle):
    with pytest.raises(InputError, match="exists and is not empty"):
        vaexprs.export_bundle(small_vae, vae_bundle)


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "elu", "batch_norm": True, "hidden": (24, 12)},
        {"activation": "gelu", "dropout": 0.2},
        {"activation": "tanh", "likelihood": "hurdle"},
        {"activation": "leaky_relu", "batch_norm": True, "likelihood": "nb"},
    ],
    ids=["elu-bn-2layers", "gelu-dropout", "tanh-hurdle", "leaky-bn-nb"],
)
def test_graph_writer_matches_torch_for_every_layer_kind(small_sim, tmp_path, options):
    """The decoder written from the weights computes what torch computes (batch norm folded, dropout off)."""
    from vaexprs.generate.pipeline import generate_array

    data = small_sim.copy()
    if options.get("likelihood") == "nb":
        data.X = np.round(data.X)
    options = {"hidden": (16,), "epochs": 2, "seed": 5, **options}
    result = vaexprs.fit_vae(data, "cell_type", **options)
    bundle = vaexprs.export_bundle(result, tmp_path / "b")  # raises unless every output matches torch
    spec = json.loads((bundle / "bundle.json").read_text())["onnx"]
    assert spec["decoder"]["parity_n_checked"] == 1000 and spec["encoder"]["parity_max_abs_diff"] < 1e-4
    x, _ = generate_array(bundle, n=50, seed=2)
    gen = vaexprs.gen_exprs(result, num_samples=50, seed=2)
    np.testing.assert_allclose(x, gen.x_gen, rtol=1e-4, atol=1e-4)  # same loop, same cells (float rounding aside)
