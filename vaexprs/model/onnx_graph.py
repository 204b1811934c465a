"""The decoder and encoder written as ONNX graphs straight from the trained weights.

    decoder = decoder_graph(result)       # onnx.ModelProto: z [, label_onehot] -> the head's outputs
    encoder = encoder_graph(result)       # x [, label_onehot] -> z_mean, z_logvar

The networks are small MLPs, so their graphs are a few standard operators (Concat, Gemm, an activation, the
head's Sigmoid/Softmax/Exp, the de-scaling Mul/Add). Building them from the weights takes milliseconds and the
memory of the weights, where tracing the torch module with torch.onnx's exporter took ~47 s and ~6 GB for a
20,000-gene model. Batch normalisation (eval mode) is folded into the preceding Gemm; dropout is the identity
at inference. vaexprs.model.export checks every graph against torch on 1,000 latents before writing it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs.errors import VaexprsRuntimeError

if TYPE_CHECKING:  # pragma: no cover
    from vaexprs.model.result import VAEResult

OPSET = 18
IR_VERSION = 10  # what onnxruntime >= 1.17 reads
BATCH = "batch"
GRAPH_HEADS = (
    "bce",
    "mse",
    "nb",
    "zinb",
    "hurdle",
    "log_hurdle",
    "floor_hurdle",
    "mixture",
    "log_mixture",
)  # heads whose decoder this module writes


class _Graph:
    """A small builder: named initializers and nodes, with fresh names for intermediate values."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def op(self, kind: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        self._count += 1
        out = output or f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, inputs, [out], name=f"{kind}_{self._count}", **attrs))
        return out

    def model(self, name: str, inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> Any:
        from onnx import TensorProto, helper

        def info(names: list[tuple[str, int]]) -> list[Any]:
            return [helper.make_tensor_value_info(n, TensorProto.FLOAT, [BATCH, width]) for n, width in names]

        graph = helper.make_graph(self.nodes, name, info(inputs), info(outputs), self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vaexprs")
        model.ir_version = IR_VERSION
        return model


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


def _dense_layers(graph: _Graph, x: str, sequential: Any, prefix: str) -> str:
    """Linear [-> BatchNorm folded] -> activation [-> Dropout: identity] for each block of an `mlp`."""
    from torch import nn

    layers = list(sequential)
    i, k = 0, 0
    while i < len(layers):
        layer = layers[i]
        if not isinstance(layer, nn.Linear):
            raise VaexprsRuntimeError(f"cannot write {type(layer).__name__} as ONNX (expected a Linear layer)")
        weight, bias = _numpy(layer.weight), _numpy(layer.bias)  # (out, in), (out,)
        i += 1
        if i < len(layers) and isinstance(layers[i], nn.BatchNorm1d):
            bn = layers[i]
            factor = _numpy(bn.weight) / np.sqrt(_numpy(bn.running_var) + bn.eps)
            weight = weight * factor[:, None]
            bias = (bias - _numpy(bn.running_mean)) * factor + _numpy(bn.bias)
            i += 1
        k += 1
        w = graph.const(f"{prefix}{k}.weight", weight)
        b = graph.const(f"{prefix}{k}.bias", bias)
        x = graph.op("Gemm", [x, w, b], transB=1)
        x = _activation(graph, x, layers[i])
        i += 1
        while i < len(layers) and isinstance(layers[i], nn.Dropout):
            i += 1
    return x


def _activation(graph: _Graph, x: str, layer: Any) -> str:
    from torch import nn

    if isinstance(layer, nn.ReLU):
        return graph.op("Relu", [x])
    if isinstance(layer, nn.Tanh):
        return graph.op("Tanh", [x])
    if isinstance(layer, nn.ELU):
        return graph.op("Elu", [x], alpha=float(layer.alpha))
    if isinstance(layer, nn.LeakyReLU):
        return graph.op("LeakyRelu", [x], alpha=float(layer.negative_slope))
    if isinstance(layer, nn.GELU) and layer.approximate == "none":  # 0.5 x (1 + erf(x / sqrt 2)), opset 18
        scaled = graph.op("Mul", [x, graph.const(f"gelu_{id(layer)}.k", np.array(1 / math.sqrt(2)))])
        one_plus = graph.op("Add", [graph.op("Erf", [scaled]), graph.const(f"gelu_{id(layer)}.one", np.array(1.0))])
        return graph.op("Mul", [graph.op("Mul", [x, one_plus]), graph.const(f"gelu_{id(layer)}.half", np.array(0.5))])
    raise VaexprsRuntimeError(f"cannot write the activation {type(layer).__name__} as ONNX")


def _linear(graph: _Graph, h: str, layer: Any, name: str) -> str:
    w = graph.const(f"{name}.weight", _numpy(layer.weight))
    b = graph.const(f"{name}.bias", _numpy(layer.bias))
    return graph.op("Gemm", [h, w, b], transB=1)


def _per_gene(graph: _Graph, like: str, values: np.ndarray, name: str, output: str) -> str:
    """A per-gene vector repeated over the batch: (G,) -> (B, G), shaped like `like`."""
    shape = graph.op("Shape", [like])
    return graph.op("Expand", [graph.const(name, values), shape], output=output)


def decoder_graph(result: VAEResult) -> Any:
    """The deployable decoder (what OutputDecoder computes) as an ONNX model."""
    model, cfg = result.model, result.model_config
    head = model.head
    graph = _Graph()
    inputs = [("z", cfg.latent_dim)] + ([("label_onehot", cfg.n_labels)] if cfg.is_conditional else [])
    x = graph.op("Concat", ["z", "label_onehot"], axis=1) if cfg.is_conditional else "z"
    h = _dense_layers(graph, x, model.decoder, "decoder")
    names = head.output_names
    g = cfg.n_genes
    if cfg.likelihood in ("bce", "mse"):
        logits = _linear(graph, h, head.linear, "head.linear")
        mean = graph.op("Sigmoid", [logits])
        scaler = result.preprocessor.scaler
        if scaler is not None:
            mean = graph.op("Mul", [mean, graph.const("output_scale", scaler.output_scale)])
            mean = graph.op("Add", [mean, graph.const("minimum", scaler.minimum)], output="x_mean")
        else:
            mean = graph.op("Identity", [mean], output="x_mean")
    elif cfg.likelihood in ("nb", "zinb"):
        rho = graph.op("Softmax", [_linear(graph, h, head.scale, "head.scale")], output="rho", axis=-1)
        _per_gene(graph, rho, np.exp(_numpy(head.log_theta)), "theta_values", "theta")
        if cfg.likelihood == "zinb":
            graph.op("Identity", [_linear(graph, h, head.dropout, "head.dropout")], output="pi_logit")
    elif cfg.likelihood in ("hurdle", "log_hurdle", "floor_hurdle", "mixture", "log_mixture"):
        mu = graph.op("Identity", [_linear(graph, h, head.loc, "head.loc")], output="mu")
        # sigma = exp(log_sigma + b tanh(cell / b)): per gene, times the cell's bounded noise factor
        bound = graph.const("cell_noise_bound", np.array(head.cell_noise_bound))
        cell = _linear(graph, h, head.cell_log_sigma, "head.cell_log_sigma")  # (B, 1)
        factor = graph.op("Mul", [graph.op("Tanh", [graph.op("Div", [cell, bound])]), bound])
        log_sigma = graph.op("Add", [factor, graph.const("log_sigma", _numpy(head.log_sigma))])
        if "bg_mu" in names:  # mixture, log_mixture: both sds stay above the gene's min_sigma
            min_sigma = graph.const("min_sigma", _numpy(head.min_sigma))
            graph.op("Max", [graph.op("Exp", [log_sigma]), min_sigma], output="sigma")
            graph.op("Identity", [_linear(graph, h, head.bg_loc, "head.bg_loc")], output="bg_mu")
            bg_sigma = np.maximum(np.exp(_numpy(head.bg_log_sigma)), _numpy(head.min_sigma))
            _per_gene(graph, mu, bg_sigma, "bg_sigma_values", "bg_sigma")
        else:
            graph.op("Exp", [log_sigma], output="sigma")
        graph.op("Identity", [_linear(graph, h, head.dropout, "head.dropout")], output="pi_logit")
        if "floor" in names:  # floor_hurdle, mixture, log_mixture
            _per_gene(graph, mu, _numpy(head.floor), "floor_values", "floor")
        if "log_scale" in names:  # log_hurdle, log_mixture
            _per_gene(graph, mu, _numpy(head.log_scale), "log_scale_values", "log_scale")
    else:
        raise VaexprsRuntimeError(f"no ONNX graph for the {cfg.likelihood!r} head")
    return graph.model("decoder", inputs, [(name, g) for name in names])


def encoder_graph(result: VAEResult) -> Any:
    """The deployable encoder (what OutputEncoder computes): cells in the output space -> z_mean, z_logvar."""
    model, cfg = result.model, result.model_config
    graph = _Graph()
    inputs = [("x", cfg.n_genes)] + ([("label_onehot", cfg.n_labels)] if cfg.is_conditional else [])
    x = "x"
    scaler = result.preprocessor.scaler
    if scaler is not None:  # clamp((x - minimum) / scale, 0, 1): the training scaler
        centred = graph.op("Sub", [x, graph.const("minimum", scaler.minimum)])
        scaled = graph.op("Div", [centred, graph.const("scale", scaler.scale)])
        x = graph.op("Clip", [scaled, graph.const("zero", np.array(0.0)), graph.const("one", np.array(1.0))])
    if "log_scale" in model.head.output_names:  # log_hurdle, log_mixture: log2(x / s + 1), first
        scaled = graph.op("Div", [graph.op("Relu", [x]), graph.const("log_scale", _numpy(model.head.log_scale))])
        logged = graph.op("Log", [graph.op("Add", [scaled, graph.const("scale_offset", np.array(1.0))])])
        x = graph.op("Div", [logged, graph.const("ln2", np.array(math.log(2.0)))])
    if "floor" in model.head.output_names:  # the values above each gene's floor (none below it), as the hurdle's
        # (log_mixture's floor is in the logged values)
        x = graph.op("Relu", [graph.op("Sub", [x, graph.const("floor", _numpy(model.head.floor))])])
    if not model.head.scaled_input:  # count and hurdle heads see log1p of their input
        x = graph.op("Log", [graph.op("Add", [x, graph.const("log_offset", np.array(1.0))])])
    if model.standardizes_input:  # clip((v - center) / scale): the per-gene standardisation of the training cells
        centred = graph.op("Sub", [x, graph.const("input_center", _numpy(model.input_center))])
        scaled = graph.op("Div", [centred, graph.const("input_scale", _numpy(model.input_scale))])
        from vaexprs.model.network import INPUT_CLIP

        low, high = graph.const("input_low", np.array(-INPUT_CLIP)), graph.const("input_high", np.array(INPUT_CLIP))
        x = graph.op("Clip", [scaled, low, high])
    if cfg.is_conditional:
        x = graph.op("Concat", [x, "label_onehot"], axis=1)
    h = _dense_layers(graph, x, model.encoder, "encoder")
    _linear_to(graph, h, model.z_mean, "z_mean")
    _linear_to(graph, h, model.z_logvar, "z_logvar")
    return graph.model("encoder", inputs, [("z_mean", cfg.latent_dim), ("z_logvar", cfg.latent_dim)])


def _linear_to(graph: _Graph, h: str, layer: Any, output: str) -> str:
    return graph.op("Identity", [_linear(graph, h, layer, output)], output=output)
