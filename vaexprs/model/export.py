"""Export a trained model to a bundle: decoder.onnx + encoder.onnx + bundle.json.

    export_bundle(result, "bundle/")            # or: vaexprs export model.pt -o bundle/

The decoder graph takes latents (and a one-hot label for a CVAE) and returns cells in the training input's
space: the min-max de-scaling is folded into the graph. The batch axis is symbolic and checked to stay so
(exporters can silently specialise it). Every export is checked with onnx.checker and against torch on 1,000
random latents (for every label of a CVAE); the largest difference is recorded in bundle.json.

Parity tolerance per decoder output: `x_mean` (bce/mse, in the training input's space) is checked as
|onnx - torch| <= 1e-5 + 1e-6 * |torch| (the absolute 1e-5, plus a few float32 ulps for values beyond ~10,
where one ulp is already ~1e-6 and 1e-5 alone fails on rounding). The distribution parameters of the noise
heads (rho: proportions down to 1e-9, theta, sigma, mu, pi_logit) are checked as |onnx - torch| <= 1e-6 +
1e-4 * |torch| (relative, as numpy.allclose): an absolute bound means nothing for proportions of ~1e-6.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs import __version__
from vaexprs.bundle.heads import output_spaces
from vaexprs.bundle.schema import BUNDLE_JSON, FORMAT_VERSION, check_bundle_output, write_bundle_json
from vaexprs.errors import OptionError, VaexprsRuntimeError
from vaexprs.files import atomic_folder, file_sha256
from vaexprs.model.onnx_graph import GRAPH_HEADS, decoder_graph, encoder_graph

if TYPE_CHECKING:  # pragma: no cover
    from vaexprs.model.result import VAEResult

log = logging.getLogger(__name__)

OPSET = 18  # the torch exporter's; vaexprs.model.onnx_graph writes the same opset
PARITY_TOLERANCE = 1e-5  # absolute part, on x_mean (float32, in the training input's space)
PARITY_RTOL = 1e-6  # relative part on x_mean: float32 rounding of values ~40 is several 1e-6
PARAM_PARITY_ATOL = 1e-6  # noise heads' parameters: |onnx - torch| <= atol + rtol * |torch|
PARAM_PARITY_RTOL = 1e-4
PARITY_SAMPLES = 1000
PARITY_CHUNK = 256  # rows compared at a time: 256 x 20,000 genes is 40 MB of float64
BATCH_DIM = "batch"
EXPORTERS = ("graph", "torch")


def _graph_signature(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs of a saved graph, with symbolic dims as names; checks the model on the way."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)

    def specs(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            out.append({"name": v.name, "shape": dims, "dtype": "float32"})
        return out

    inputs, outputs = specs(model.graph.input), specs(model.graph.output)
    for spec in inputs + outputs:
        if not isinstance(spec["shape"][0], str):
            raise VaexprsRuntimeError(
                f"{path.name}: the batch axis of {spec['name']!r} was exported as the fixed size "
                f"{spec['shape'][0]} instead of a symbolic dimension"
            )
    return inputs, outputs


def _save_model(model: Any, path: Path) -> None:
    import onnx

    onnx.save_model(model, str(path))


def _export_module(module: Any, args: tuple[Any, ...], names: list[str], outputs: list[str], path: Path) -> None:
    import torch
    from torch.export import Dim

    batch = Dim(BATCH_DIM, min=1)
    noisy = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "torch._dynamo")
    ]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_shapes={name: {0: batch} for name in names},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    for logger, level in zip(noisy, levels, strict=True):
        logger.setLevel(level)


def _tolerance(name: str) -> tuple[float, float]:
    """(atol, rtol) for one output: mostly absolute for cell values, relative for distribution parameters."""
    if name in ("x_mean", "z_mean", "z_logvar"):
        return PARITY_TOLERANCE, PARITY_RTOL
    return PARAM_PARITY_ATOL, PARAM_PARITY_RTOL


def _parity(
    module: Any, path: Path, feeds: dict[str, np.ndarray], names: list[str], keep: Any = None
) -> dict[str, dict[str, float]]:
    """Per output: max |onnxruntime - torch|, max relative difference, and the worst excess over tolerance
    (<= 0 = within tolerance). Compared PARITY_CHUNK rows at a time, so memory does not grow with the genes x
    rows of the check; `keep(outputs)` sees torch's outputs of each chunk (for the encoder's example cells)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    stats = {name: {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "excess": -np.inf} for name in names}
    n = len(next(iter(feeds.values())))
    for start in range(0, n, PARITY_CHUNK):
        chunk = {k: v[start : start + PARITY_CHUNK] for k, v in feeds.items()}
        got = session.run(None, chunk)
        with torch.inference_mode():
            want = [w.numpy() for w in module(*(torch.from_numpy(v) for v in chunk.values()))]
        if keep is not None:
            keep(dict(zip(names, want, strict=True)))
        for name, g, w in zip(names, got, want, strict=True):
            atol, rtol = _tolerance(name)
            diff = np.abs(g.astype(np.float64) - w)
            scale = np.abs(w)
            record = stats[name]
            record["max_abs_diff"] = max(record["max_abs_diff"], float(diff.max()))
            record["max_rel_diff"] = max(record["max_rel_diff"], float((diff / np.maximum(scale, 1e-30)).max()))
            record["excess"] = max(record["excess"], float((diff - (atol + rtol * scale)).max()))
    return {
        name: {**record, "atol": _tolerance(name)[0], "rtol": _tolerance(name)[1]} for name, record in stats.items()
    }


def _encoder_example(result: VAEResult, decoder_outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Cells in the encoder's input space from decoder outputs (expected counts for the count heads)."""
    if "x_mean" in decoder_outputs:
        return decoder_outputs["x_mean"]
    if "rho" in decoder_outputs:
        typical = float(np.exp(np.median(result.library_size.mu))) if result.library_size is not None else 1e4
        return (decoder_outputs["rho"] * typical).astype(np.float32)
    return np.clip(decoder_outputs["mu"], 0.0, None).astype(np.float32)


def _parity_inputs(result: VAEResult, seed: int) -> dict[str, np.ndarray]:
    """1,000 latents (or one per label, if there are more labels), half from N(0, 4 I), half from the latent
    mixtures; for a CVAE the labels take turns, so every label is checked on prior and mixture latents."""
    rng = np.random.default_rng(seed)
    cfg = result.model_config
    rows = max(PARITY_SAMPLES, cfg.n_labels)
    codes = np.arange(rows) % cfg.n_labels if cfg.is_conditional else None
    half = rows // 2
    prior = rng.standard_normal((half, cfg.latent_dim)) * 2
    mixture = result.sampler.sample(None if codes is None else codes[half:], rows - half, rng)
    z = np.concatenate([prior, mixture]).astype(np.float32)
    if codes is None:
        return {"z": z}
    return {"z": z, "label_onehot": np.eye(cfg.n_labels, dtype=np.float32)[codes]}


def export_bundle(
    result: VAEResult,
    out_dir: str | Path,
    *,
    force: bool = False,
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
    protected: Sequence[str | Path] = (),
    exporter: str = "graph",
) -> Path:
    """Write decoder.onnx, encoder.onnx and bundle.json to `out_dir` (atomically: a temp folder, then rename).

    force replaces an earlier bundle in `out_dir`, never a folder holding other files (or a `protected` path).
    exporter: `graph` writes the ONNX graphs from the weights (vaexprs.model.onnx_graph); `torch` traces the
    torch modules with torch.onnx (slower, ~10x the memory; used for heads the graph writer does not know).
    Both are checked against torch the same way before anything is written.
    """
    if exporter not in EXPORTERS:
        raise OptionError("exporter", f"must be one of {', '.join(EXPORTERS)}; got {exporter!r}")
    import torch

    out_dir = check_bundle_output(out_dir, force, protected)
    cfg = result.model_config
    conditional = cfg.is_conditional
    with atomic_folder(out_dir, force=force) as tmp:
        decoder = result.output_decoder()
        encoder = result.output_encoder()
        example_z = torch.zeros(2, cfg.latent_dim)
        example_c = torch.eye(max(cfg.n_labels, 1))[[0, -1]] if conditional else None
        dec_inputs = ["z", "label_onehot"] if conditional else ["z"]
        enc_inputs = ["x", "label_onehot"] if conditional else ["x"]
        dec_args = (example_z, example_c) if conditional else (example_z,)
        enc_args = (torch.zeros(2, cfg.n_genes), example_c) if conditional else (torch.zeros(2, cfg.n_genes),)
        try:
            if exporter == "graph" and cfg.likelihood in GRAPH_HEADS:
                _save_model(decoder_graph(result), tmp / "decoder.onnx")
                _save_model(encoder_graph(result), tmp / "encoder.onnx")
            else:  # torch.onnx traces the modules: any head, but ~10x the time and memory of the weights
                _export_module(decoder, dec_args, dec_inputs, list(decoder.output_names), tmp / "decoder.onnx")
                _export_module(encoder, enc_args, enc_inputs, ["z_mean", "z_logvar"], tmp / "encoder.onnx")
        except Exception as exc:
            raise VaexprsRuntimeError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc

        dec_feeds = _parity_inputs(result, seed)
        dec_names = list(decoder.output_names)
        examples: list[np.ndarray] = []  # the decoder's cells, as the encoder's example input
        dec_report = _parity(
            decoder,
            tmp / "decoder.onnx",
            dec_feeds,
            dec_names,
            keep=lambda out: examples.append(_encoder_example(result, out)),
        )
        enc_feeds = {"x": np.concatenate(examples)}
        if conditional:
            enc_feeds["label_onehot"] = dec_feeds["label_onehot"]
        enc_report = _parity(encoder, tmp / "encoder.onnx", enc_feeds, ["z_mean", "z_logvar"])
        worst = max(dec_report, key=lambda k: dec_report[k]["excess"])
        if dec_report[worst]["excess"] > 0:
            r = dec_report[worst]
            raise VaexprsRuntimeError(
                f"decoder.onnx output {worst!r} disagrees with torch by {r['max_abs_diff']:.3g} "
                f"(tolerance {r['atol']:g} + {r['rtol']:g} x |value|); not exported"
            )
        dec_diff = max(r["max_abs_diff"] for r in dec_report.values())
        enc_diff = max(r["max_abs_diff"] for r in enc_report.values())
        log.info("ONNX parity: decoder %.3g, encoder %.3g (max abs difference)", dec_diff, enc_diff)

        def onnx_entry(name: str, report: dict[str, dict[str, float]], n_checked: int) -> dict[str, Any]:
            inputs, outputs = _graph_signature(tmp / name)
            return {
                "file": name,
                "sha256": file_sha256(tmp / name),
                "opset": OPSET,
                "inputs": inputs,
                "outputs": outputs,
                "parity_max_abs_diff": max(r["max_abs_diff"] for r in report.values()),
                "parity": {k: {f: v for f, v in r.items() if f != "excess"} for k, r in report.items()},
                "parity_n_checked": n_checked,
            }

        spec = bundle_spec(result, provenance)
        spec["onnx"] = {
            "decoder": onnx_entry("decoder.onnx", dec_report, len(dec_feeds["z"])),
            "encoder": {
                **onnx_entry("encoder.onnx", enc_report, len(enc_feeds["x"])),
                "input_space": result.output_space,
            },
        }
        write_bundle_json(tmp / BUNDLE_JSON, spec)
    return out_dir


def bundle_spec(result: VAEResult, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """bundle.json without its `onnx` section: model description, genes, labels, sampler, provenance."""
    cfg = result.model_config
    labels = result.labels
    extra: dict[str, Any] = {"output_spaces": list(output_spaces(cfg.likelihood, result.output_space))}
    if result.library_size is not None:
        extra["library_size"] = result.library_size.to_dict()
    if result.value_cap is not None:
        extra["value_cap"] = np.asarray(result.value_cap, dtype=np.float64).tolist()
    if result.row_centred:
        extra["row_centred"] = True
    return {
        "format_version": FORMAT_VERSION,
        "vaexprs_version": __version__,
        "model_type": result.model_type,
        "latent_dim": cfg.latent_dim,
        "genes": result.genes,
        "labels": labels,
        "label_proportions": result.preprocessor.label_proportions.tolist() if labels else [],
        "likelihood": cfg.likelihood,
        "output_space": result.output_space,
        "normalize": result.preprocessor.normalize,
        "scaler": {"folded_into_graph": result.preprocessor.scaler is not None},
        "sampler": result.sampler.to_dict(),
        **extra,
        "model_config": cfg.to_dict(),
        "provenance": {
            "mlflow_run_id": None,
            "data_sha256": result.data_info.get("sha256"),
            "data_path": result.data_info.get("path"),
            "n_cells": result.data_info.get("n_cells"),
            "best_epoch": result.best_epoch,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **(provenance or {}),
        },
    }
