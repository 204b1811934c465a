"""Tiny decoders built with `onnx.helper` (no torch) and matching bundles, for the light-path tests.

    bundle_dir = make_bundle(tmp_path / "cvae", conditional=True)   # decoder.onnx + bundle.json

The decoder is the VAExprs shape: x_mean = sigmoid(relu([z, onehot] @ W1 + b1) @ W2 + b2) * scale + minimum,
with a symbolic batch dimension "batch", opset 18, random weights from a fixed seed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle.schema import FORMAT_VERSION, write_bundle_json
from vaexprs.files import file_sha256

N_GENES = 50
LATENT_DIM = 2
HIDDEN = 16
LABELS = ["group1", "group2", "group3"]
PROPORTIONS = [0.5, 0.3, 0.2]
OPSET = 18


def make_decoder_onnx(
    path: Path,
    n_genes: int = N_GENES,
    latent_dim: int = LATENT_DIM,
    n_labels: int = 0,
    hidden: int = HIDDEN,
    seed: int = 0,
    z_name: str = "z",
) -> Path:
    """Write an MLP decoder; with n_labels > 0 it also takes `label_onehot` (B, n_labels), concatenated to z."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    d_in = latent_dim + n_labels
    inits = {
        "W1": rng.normal(0, 1, (d_in, hidden)).astype(np.float32),
        "b1": rng.normal(0, 0.1, hidden).astype(np.float32),
        "W2": rng.normal(0, 1 / np.sqrt(hidden), (hidden, n_genes)).astype(np.float32),
        "b2": rng.normal(0, 0.1, n_genes).astype(np.float32),
        "scale": rng.uniform(1, 5, n_genes).astype(np.float32),
        "minimum": rng.uniform(0, 1, n_genes).astype(np.float32),
    }
    inputs = [helper.make_tensor_value_info(z_name, TensorProto.FLOAT, ["batch", latent_dim])]
    nodes = []
    h_in = z_name
    if n_labels:
        inputs.append(helper.make_tensor_value_info("label_onehot", TensorProto.FLOAT, ["batch", n_labels]))
        nodes.append(helper.make_node("Concat", [z_name, "label_onehot"], ["zc"], axis=1))
        h_in = "zc"
    nodes += [
        helper.make_node("MatMul", [h_in, "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["o1"]),
        helper.make_node("Sigmoid", ["o1"], ["o2"]),
        helper.make_node("Mul", ["o2", "scale"], ["o3"]),
        helper.make_node("Add", ["o3", "minimum"], ["x_mean"]),
    ]
    output = helper.make_tensor_value_info("x_mean", TensorProto.FLOAT, ["batch", n_genes])
    graph = helper.make_graph(
        nodes, "decoder", inputs, [output], [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vaexprs-tests")
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _mixture(center: float, k: int, rng: np.random.Generator, d: int = LATENT_DIM) -> dict[str, Any]:
    means = center + rng.normal(0, 0.5, (k, d))
    covs = np.stack([np.eye(d) * rng.uniform(0.05, 0.2) for _ in range(k)])
    return {"weights": rng.dirichlet(np.ones(k)).tolist(), "means": means.tolist(), "covariances": covs.tolist()}


def bundle_dict(conditional: bool, decoder_path: Path, n_genes: int = N_GENES) -> dict[str, Any]:
    """A bundle.json matching `make_decoder_onnx` (a 3-label GMM sampler for the CVAE, one mixture for a VAE)."""
    rng = np.random.default_rng(1)
    labels = LABELS if conditional else []
    inputs = [{"name": "z", "shape": ["batch", LATENT_DIM], "dtype": "float32"}]
    if conditional:
        inputs.append({"name": "label_onehot", "shape": ["batch", len(labels)], "dtype": "float32"})
    mixtures = [_mixture(3.0 * i, 2, rng) for i in range(len(labels))] if conditional else [_mixture(0, 3, rng)]
    return {
        "format_version": FORMAT_VERSION,
        "vaexprs_version": "0.1.0",
        "model_type": "cvae" if conditional else "vae",
        "latent_dim": LATENT_DIM,
        "genes": [f"gene{i + 1}" for i in range(n_genes)],
        "labels": labels,
        "label_proportions": PROPORTIONS if conditional else [],
        "likelihood": "bce",
        "output_space": "lognorm",
        "normalize": "lognorm",
        "scaler": {"folded_into_graph": True},
        "sampler": {"kind": "gmm", "latent_dim": LATENT_DIM, "mixtures": mixtures},
        "onnx": {
            "decoder": {
                "file": decoder_path.name,
                "sha256": file_sha256(decoder_path),
                "opset": OPSET,
                "inputs": inputs,
                "outputs": [{"name": "x_mean", "shape": ["batch", n_genes], "dtype": "float32"}],
                "parity_max_abs_diff": 1.2e-7,
            }
        },
        "provenance": {
            "mlflow_run_id": None,
            "data_sha256": "0" * 64,
            "n_cells": 300,
            "created": "2026-11-25T10:00:00Z",
        },
    }


def make_bundle(folder: Path, conditional: bool = True, n_genes: int = N_GENES) -> Path:
    """A complete bundle folder: decoder.onnx + bundle.json."""
    folder.mkdir(parents=True, exist_ok=True)
    dec = make_decoder_onnx(folder / "decoder.onnx", n_genes=n_genes, n_labels=len(LABELS) if conditional else 0)
    write_bundle_json(folder, bundle_dict(conditional, dec, n_genes))
    return folder


def copy_bundle(src: Path, dst: Path) -> Path:
    """A copy of a bundle folder to tamper with."""
    import shutil

    shutil.copytree(src, dst)
    return dst


def edit_bundle_json(folder: Path, **changes: Any) -> dict[str, Any]:
    """Rewrite bundle.json with top-level fields changed (a value of ... deletes the field)."""
    data = json.loads((folder / "bundle.json").read_text())
    data = copy.deepcopy(data)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    write_bundle_json(folder, data)
    return data
