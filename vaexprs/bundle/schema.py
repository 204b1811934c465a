"""The deployable unit: `decoder.onnx` (+ optional `encoder.onnx`) and `bundle.json`, loaded without torch.

    bundle = load_bundle("bundle_dir")             # validates bundle.json, checks decoder.onnx's sha256
    check_graph_signature(bundle, session.get_inputs(), session.get_outputs())   # once a session exists
    write_bundle_json("bundle_dir", data)          # atomic; the exporter uses it

A bundle is the only thing the training side and the generation side share, so loading refuses anything that
disagrees (fields, types, shapes, names, checksums) with a one-line `InputError` naming what disagrees: a bundle
that loads is one the engine can run. The ONNX graph itself is only inspected once an onnxruntime session
exists (`check_graph_signature`), because `onnx` is not part of the light install and parsing twice is slow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle.fields import numeric_fields
from vaexprs.bundle.heads import COUNT_LIKELIHOODS, HEADS, LibrarySize
from vaexprs.bundle.sampler import LatentSampler
from vaexprs.bundle.spec import GenerativeSpec, LabelledGenes
from vaexprs.errors import InputError
from vaexprs.files import check_output_name, require_output_folder, write_json_atomic

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
BUNDLE_JSON = "bundle.json"
MAX_JSON_BYTES = 256 << 20  # a 60,000-gene CVAE with 500 labels is ~10 MB; beyond this it is not a bundle
MAX_JSON_DEPTH = 16  # bundle.json itself is 6 levels deep
MAX_ONNX_BYTES = 2 << 30  # protobuf cannot hold more; larger models would need external data, which bundles refuse
WEIGHT_TOLERANCE = 1e-6  # mixture weights and label proportions must sum to 1 within this
MODEL_TYPES = ("vae", "cvae")
NORMALIZATIONS = ("lognorm", "log", "none")
ONNX_DTYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)"}

# field -> accepted JSON types; checked in this order, so the first missing field is the one named.
_REQUIRED: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "vaexprs_version": (str,),
    "model_type": (str,),
    "latent_dim": (int,),
    "genes": (list,),
    "labels": (list,),
    "label_proportions": (list,),
    "likelihood": (str,),
    "output_space": (str,),
    "normalize": (str,),
    "scaler": (dict,),
    "sampler": (dict,),
    "onnx": (dict,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "provenance": (dict,),
    "library_size": (dict,),
    "output_spaces": (list,),
    "value_cap": (list,),
    "row_centred": (bool,),
    "model_config": (dict,),
}
_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object", float: "a number"}


@dataclass
class TensorSpec:
    """One graph input or output as bundle.json records it: shape entries are ints or a symbolic name."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class OnnxSpec:
    """What bundle.json says about one ONNX file."""

    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bundle(LabelledGenes):
    """A validated bundle. `sampler_spec` is the raw JSON; `sampler` builds the numpy sampler from it."""

    path: Path
    format_version: int
    vaexprs_version: str
    model_type: str
    latent_dim: int
    genes: list[str]
    labels: list[str]
    label_proportions: list[float]
    likelihood: str
    output_space: str
    normalize: str
    scaler: dict[str, Any]
    sampler_spec: dict[str, Any]
    decoder: OnnxSpec
    encoder: OnnxSpec | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    library_size: LibrarySize | None = None  # nb/zinb: per-label log-normal library sizes, training mean library
    value_cap: list[float] | None = None  # per gene: the largest plausible generated value (the head's own space)
    row_centred: bool = False  # every training cell's values averaged 0 (CLR): generated cells are centred too
    extra: dict[str, Any] = field(default_factory=dict)  # fields this loader does not know
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    decoder_bytes: bytes = field(default=b"", repr=False)  # decoder.onnx as verified at load: what the engine runs

    @property
    def is_conditional(self) -> bool:
        return self.model_type == "cvae"

    @property
    def decoder_path(self) -> Path:
        return self.path / self.decoder.file

    @cached_property
    def sampler(self) -> LatentSampler:
        return LatentSampler.from_dict(self.sampler_spec)

    @cached_property
    def spec(self) -> GenerativeSpec:
        """What the generation loop needs besides the decoder."""
        return GenerativeSpec(
            genes=self.genes,
            labels=self.labels,
            label_proportions=self.label_proportions,
            likelihood=self.likelihood,
            output_space=self.output_space,
            sampler=self.sampler,
            library_size=self.library_size,
            value_cap=None if self.value_cap is None else np.asarray(self.value_cap, dtype=np.float64),
            row_centred=self.row_centred,
        )

    @property
    def proportions(self) -> np.ndarray:
        return np.asarray(self.label_proportions, dtype=np.float64)


def write_bundle_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write bundle.json atomically (strict JSON: no NaN or Infinity); `path` is the folder or the file."""
    target = Path(path)
    if target.is_dir() or target.suffix != ".json":
        target = target / BUNDLE_JSON
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(target, dict(data))


def _short(sha: str) -> str:
    return sha[:12] + "..." if len(sha) > 12 else sha


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int to Python, never to bundle.json
        return bool in types
    return isinstance(value, types)


def _check_type(where: str, value: Any, types: tuple[type, ...]) -> None:
    if not _type_ok(value, types):
        want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise InputError(f"bundle.json field {where!r} must be {want}; got {type(value).__name__} {value!r:.60}")


def _tensor_specs(where: str, items: Any) -> list[TensorSpec]:
    _check_type(where, items, (list,))
    specs = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        _check_type(at, item, (dict,))
        for key in ("name", "shape"):
            if key not in item:
                raise InputError(f"bundle.json is missing field '{at}.{key}'")
        _check_type(f"{at}.name", item["name"], (str,))
        _check_type(f"{at}.shape", item["shape"], (list,))
        for dim in item["shape"]:
            _check_type(f"{at}.shape", dim, (int, str))
        dtype = item.get("dtype", "float32")
        _check_type(f"{at}.dtype", dtype, (str,))
        specs.append(TensorSpec(item["name"], list(item["shape"]), dtype))
    return specs


def _onnx_spec(where: str, d: Any) -> OnnxSpec:
    _check_type(where, d, (dict,))
    for key in ("file", "sha256", "inputs", "outputs"):
        if key not in d:
            raise InputError(f"bundle.json is missing field '{where}.{key}'")
    _check_type(f"{where}.file", d["file"], (str,))
    _check_type(f"{where}.sha256", d["sha256"], (str,))
    if "opset" in d and d["opset"] is not None:
        _check_type(f"{where}.opset", d["opset"], (int,))
    file = d["file"]
    if not file or "/" in file or "\\" in file or file in (".", "..") or file == BUNDLE_JSON:
        raise InputError(f"bundle.json field '{where}.file' must be a file name inside the bundle; got {file!r}")
    inputs = _tensor_specs(f"{where}.inputs", d["inputs"])
    outputs = _tensor_specs(f"{where}.outputs", d["outputs"])
    if not inputs or not outputs:
        raise InputError(f"bundle.json field '{where}' lists no {'inputs' if not inputs else 'outputs'}")
    known = {"file", "sha256", "inputs", "outputs", "opset"}
    extra = {k: v for k, v in d.items() if k not in known}
    return OnnxSpec(file, d["sha256"], inputs, outputs, d.get("opset"), extra)


def _refuse_constant(name: str) -> Any:
    raise InputError(f"bundle.json holds {name}, which JSON does not allow (numbers must be finite)")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack += [(v, level + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, level + 1) for v in item]
    return deepest


def _read_json(path: Path) -> dict[str, Any]:
    """bundle.json, strictly: a regular file inside the bundle, at most MAX_JSON_BYTES, no NaN/Infinity,
    nesting at most MAX_JSON_DEPTH deep."""
    if path.is_symlink():
        raise InputError(f"{path} is a symbolic link; a bundle's files must be plain files inside it")
    if not path.is_file():
        raise InputError(f"bundle {path.parent} has no {BUNDLE_JSON}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InputError(f"{path} is {size:,} bytes; a bundle.json is at most {MAX_JSON_BYTES:,}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{path} is nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object; got {type(data).__name__}")
    if _depth(data) > MAX_JSON_DEPTH:
        raise InputError(f"{path} is nested more than {MAX_JSON_DEPTH} levels deep")
    return data


def _bundle_json_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"bundle {p} does not exist")
    if p.is_dir():
        return p / BUNDLE_JSON
    if p.name != BUNDLE_JSON and p.suffix != ".json":
        raise InputError(f"bundle {p} is neither a folder nor a {BUNDLE_JSON} file")
    return p


def _dim(spec: TensorSpec, axis: int) -> int | str | None:
    return spec.shape[axis] if len(spec.shape) > axis else None


def _check_shapes(b: Bundle) -> None:
    """latent_dim, sampler, label count and gene count must agree with the recorded decoder signature."""
    dec = b.decoder
    n_inputs = 2 if b.is_conditional else 1
    if len(dec.inputs) != n_inputs:
        names = [s.name for s in dec.inputs]
        raise InputError(
            f"a {b.model_type} decoder takes {n_inputs} input(s) (z{', label_onehot' if n_inputs == 2 else ''}); "
            f"bundle.json lists {len(dec.inputs)}: {names}"
        )
    z = dec.inputs[0]
    if len(z.shape) != 2 or z.shape[1] != b.latent_dim:
        raise InputError(
            f"latent_dim is {b.latent_dim} but decoder input {z.name!r} has shape {z.shape} "
            f"(expected [batch, {b.latent_dim}])"
        )
    if b.is_conditional:
        onehot = dec.inputs[1]
        if len(onehot.shape) != 2 or onehot.shape[1] != b.n_labels:
            raise InputError(
                f"bundle.json has {b.n_labels} labels but decoder input {onehot.name!r} has shape "
                f"{onehot.shape} (expected [batch, {b.n_labels}])"
            )
    # every output is (batch, genes): x_mean for bce/mse; rho, theta, pi_logit for nb/zinb; mu, sigma, pi_logit
    for spec in dec.outputs:
        if _dim(spec, len(spec.shape) - 1) != b.n_genes or len(spec.shape) != 2:
            raise InputError(
                f"bundle.json lists {b.n_genes} genes but decoder output {spec.name!r} has shape {spec.shape} "
                f"(expected [batch, {b.n_genes}])"
            )
    head = HEADS[b.likelihood]
    needed = head.outputs if head.sampled else ()  # bce/mse: the graph's one output, whatever its name
    missing = [name for name in needed if name not in {s.name for s in dec.outputs}]
    if missing:
        raise InputError(
            f"a {b.likelihood} decoder must output {', '.join(needed)}; "
            f"bundle.json's decoder lacks {', '.join(missing)}"
        )


def _check_sampler(b: Bundle) -> None:
    spec = b.sampler_spec
    for key in ("latent_dim", "mixtures"):
        if key not in spec:
            raise InputError(f"bundle.json is missing field 'sampler.{key}'")
    _check_type("sampler.latent_dim", spec["latent_dim"], (int,))
    _check_type("sampler.mixtures", spec["mixtures"], (list,))
    if spec["latent_dim"] != b.latent_dim:
        raise InputError(f"latent_dim is {b.latent_dim} but sampler.latent_dim is {spec['latent_dim']}")
    want = b.n_labels if b.is_conditional else 1
    if len(spec["mixtures"]) != want:
        raise InputError(
            f"sampler has {len(spec['mixtures'])} mixture(s); a {b.model_type} with {b.n_labels} label(s) "
            f"needs {want} (one per label, in label order)"
        )
    for i, m in enumerate(spec["mixtures"]):
        _check_mixture(f"sampler.mixtures[{i}]", m, b.latent_dim)
    _ = b.sampler  # builds (and factorises) every mixture once


def _check_mixture(at: str, m: Any, d: int) -> None:
    """Weights >= 0 summing to 1, finite means, symmetric positive definite covariances of the latent size."""
    weights, means, covs = numeric_fields(m, at, ("weights", "means", "covariances"))
    k = weights.shape[0] if weights.ndim == 1 else -1
    if k < 1 or means.shape != (k, d) or covs.shape != (k, d, d):
        raise InputError(
            f"{at} shapes disagree with latent_dim {d}: weights {list(weights.shape)}, means "
            f"{list(means.shape)}, covariances {list(covs.shape)} (expected [K], [K, {d}], [K, {d}, {d}])"
        )
    if np.any(weights < 0) or abs(weights.sum() - 1.0) > WEIGHT_TOLERANCE:
        raise InputError(f"{at}.weights must be >= 0 and sum to 1; they sum to {weights.sum():.9g}")
    scale = np.maximum(np.abs(covs).max(axis=(1, 2)), 1e-300)
    asymmetry = np.abs(covs - covs.transpose(0, 2, 1)).max(axis=(1, 2)) / scale
    if np.any(asymmetry > 1e-9):
        raise InputError(f"{at}.covariances must be symmetric (component {int(np.argmax(asymmetry))} is not)")
    try:
        np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:
        raise InputError(f"{at}.covariances must be positive definite") from None


def _check_library(b: Bundle) -> None:
    """Count heads draw a library size per cell: one log-normal per label (one for a vae)."""
    if b.likelihood not in COUNT_LIKELIHOODS:
        return
    if b.library_size is None:
        raise InputError(f"a {b.likelihood} bundle needs field 'library_size' (per-label library-size model)")
    want = b.n_labels if b.is_conditional else 1
    if b.library_size.mu.shape[0] != want:
        raise InputError(
            f"library_size has {b.library_size.mu.shape[0]} entries; a {b.model_type} with {b.n_labels} label(s) "
            f"needs {want} (one per label, in label order)"
        )


def _validate(b: Bundle) -> None:
    if b.model_type not in MODEL_TYPES:
        raise InputError(f"model_type must be one of {', '.join(MODEL_TYPES)}; got {b.model_type!r}")
    if b.likelihood not in HEADS:
        raise InputError(
            f"bundle.json likelihood {b.likelihood!r} is not one this vaexprs knows ({', '.join(HEADS)}); "
            "upgrade vaexprs or re-export the bundle"
        )
    if b.normalize not in NORMALIZATIONS:
        raise InputError(
            f"bundle.json field 'normalize' must be one of {', '.join(NORMALIZATIONS)}; got {b.normalize!r}"
        )
    native = ("counts",) if b.likelihood in COUNT_LIKELIHOODS else NORMALIZATIONS
    if b.output_space not in native:
        raise InputError(
            f"bundle.json field 'output_space' of a {b.likelihood} model must be one of {', '.join(native)}; "
            f"got {b.output_space!r}"
        )
    folded = b.scaler.get("folded_into_graph")
    if not isinstance(folded, bool):
        raise InputError(f"bundle.json field 'scaler.folded_into_graph' must be true or false; got {folded!r}")
    for spec in (b.decoder, b.encoder):
        for tensor in [] if spec is None else spec.inputs + spec.outputs:
            if tensor.dtype not in ONNX_DTYPES:
                raise InputError(
                    f"bundle.json records dtype {tensor.dtype!r} for {tensor.name!r}; expected one of "
                    f"{', '.join(ONNX_DTYPES)}"
                )
    if b.value_cap is not None:
        if not all(_type_ok(v, (int, float)) for v in b.value_cap):
            raise InputError("bundle.json field 'value_cap' must hold numbers")
        (cap,) = numeric_fields({"value_cap": b.value_cap}, "bundle", ("value_cap",))
        signed = b.likelihood in HEADS and HEADS[b.likelihood].input == "signed"  # a gene's cap may be below 0
        if cap.shape != (b.n_genes,) or (not signed and (cap < 0).any()):
            kind = "" if signed else " non-negative"
            raise InputError(f"bundle.json field 'value_cap' must hold {b.n_genes}{kind} numbers")
    if b.latent_dim <= 0:
        raise InputError(f"latent_dim must be a positive integer; got {b.latent_dim}")
    for name, items in (("genes", b.genes), ("labels", b.labels)):
        bad = [x for x in items if not isinstance(x, str)]
        if bad:
            raise InputError(f"bundle.json field {name!r} must hold strings; got {bad[0]!r}")
    if not b.genes:
        raise InputError("bundle.json field 'genes' is empty")
    if len(set(b.genes)) != len(b.genes):
        seen: set[str] = set()
        dups = [g for g in b.genes if g in seen or seen.add(g)]  # type: ignore[func-returns-value]
        raise InputError(f"bundle.json field 'genes' has duplicate names: {', '.join(dups[:5])}")
    if len(set(b.labels)) != len(b.labels):
        raise InputError("bundle.json field 'labels' has duplicate names")
    if b.is_conditional and not b.labels:
        raise InputError("model_type is cvae but bundle.json field 'labels' is empty")
    if not b.is_conditional and b.labels:
        raise InputError(f"model_type is vae but bundle.json lists {len(b.labels)} labels (a vae has none)")
    if len(b.label_proportions) != len(b.labels):
        raise InputError(f"bundle.json has {len(b.labels)} labels but {len(b.label_proportions)} label_proportions")
    if b.labels:
        p = b.label_proportions
        if not all(_type_ok(x, (int, float)) for x in p):
            raise InputError("bundle.json field 'label_proportions' must hold numbers")
        arr = np.asarray(p, dtype=np.float64)
        if np.any(arr < 0) or not np.isfinite(arr).all() or abs(arr.sum() - 1.0) > WEIGHT_TOLERANCE:
            raise InputError(f"label_proportions must be non-negative and sum to 1; they sum to {arr.sum():.6g}")
    _check_sampler(b)
    _check_shapes(b)
    _check_library(b)


def load_bundle(path: str | os.PathLike[str], verify_sha256: bool = True) -> Bundle:
    """Read and validate a bundle folder (or its bundle.json); refuse with an InputError naming what disagrees."""
    json_path = _bundle_json_path(path)
    data = _read_json(json_path)
    if "format_version" not in data:
        raise InputError(f"{json_path} is missing field 'format_version' (is it a vaexprs bundle?)")
    version = data["format_version"]
    if not _type_ok(version, (int,)) or version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
        raise InputError(
            f"bundle format_version {version!r} is not supported by this vaexprs (supports {supported}); "
            "upgrade vaexprs or re-export the bundle"
        )
    for name, types in _REQUIRED.items():
        if name not in data:
            raise InputError(f"bundle.json is missing field {name!r}")
        _check_type(name, data[name], types)
    for name, types in _OPTIONAL.items():
        if data.get(name) is not None:
            _check_type(name, data[name], types)
    onnx = data["onnx"]
    if "decoder" not in onnx:
        raise InputError("bundle.json is missing field 'onnx.decoder'")
    decoder = _onnx_spec("onnx.decoder", onnx["decoder"])
    encoder = _onnx_spec("onnx.encoder", onnx["encoder"]) if onnx.get("encoder") else None
    known = set(_REQUIRED) | set(_OPTIONAL)
    bundle = Bundle(
        path=json_path.parent.resolve(),
        format_version=version,
        vaexprs_version=data["vaexprs_version"],
        model_type=data["model_type"],
        latent_dim=data["latent_dim"],
        genes=list(data["genes"]),
        labels=list(data["labels"]),
        label_proportions=list(data["label_proportions"]),
        likelihood=data["likelihood"],
        output_space=data["output_space"],
        normalize=data["normalize"],
        scaler=data["scaler"],
        sampler_spec=data["sampler"],
        decoder=decoder,
        encoder=encoder,
        provenance=data.get("provenance") or {},
        library_size=LibrarySize.from_dict(data["library_size"]) if data.get("library_size") else None,
        value_cap=data.get("value_cap"),
        row_centred=data.get("row_centred", False),
        extra={k: v for k, v in data.items() if k not in known},
        raw=data,
    )
    _validate(bundle)
    bundle.decoder_bytes = _verified_bytes(bundle.path, decoder, "decoder", verify_sha256)
    if encoder is not None:
        _verified_bytes(bundle.path, encoder, "encoder", verify_sha256)
    return bundle


def _verified_bytes(folder: Path, spec: OnnxSpec, role: str, verify: bool) -> bytes:
    """An ONNX file of the bundle, read once: a plain file directly inside the bundle folder (no link, no
    path outside), at most MAX_ONNX_BYTES, whose sha256 is the one bundle.json records. The engine runs these
    very bytes, so what was checked is what runs."""
    path = folder / spec.file
    if path.is_symlink():
        raise InputError(f"{path} is a symbolic link; a bundle's files must be plain files inside it")
    if not path.is_file():
        raise InputError(f"bundle {folder} has no {spec.file} (bundle.json names it as the {role})")
    if path.resolve().parent != folder.resolve():
        raise InputError(f"{spec.file} resolves outside the bundle {folder}")
    size = path.stat().st_size
    if size > MAX_ONNX_BYTES:
        raise InputError(f"{path} is {size:,} bytes; an ONNX file is at most {MAX_ONNX_BYTES:,} (protobuf's limit)")
    data = path.read_bytes()
    if verify:
        import hashlib

        actual = hashlib.sha256(data).hexdigest()
        if actual != spec.sha256.lower():
            raise InputError(
                f"{spec.file} sha256 mismatch: bundle.json says {_short(spec.sha256)}, file is "
                f"{_short(actual)} (file changed after export?)"
            )
    return data


def _node_shape(arg: Any) -> list[Any]:
    return list(arg.shape) if getattr(arg, "shape", None) is not None else []


def _compare(kind: str, recorded: Sequence[TensorSpec], actual: Sequence[Any], file: str) -> None:
    rec_names = [s.name for s in recorded]
    act_names = [a.name for a in actual]
    if rec_names != act_names:
        raise InputError(f"{file} {kind} are {act_names} but bundle.json records {rec_names}")
    for spec, arg in zip(recorded, actual):
        shape = _node_shape(arg)
        if len(shape) != len(spec.shape):
            raise InputError(f"{file} {kind[:-1]} {spec.name!r} has shape {shape} but bundle.json records {spec.shape}")
        # axis 0 is the batch; any dimension that is a fixed int on both sides must match
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if axis and isinstance(want, int) and isinstance(got, int) and want != got:
                raise InputError(
                    f"{file} {kind[:-1]} {spec.name!r} has shape {shape} but bundle.json records {spec.shape}"
                )
        want_type = ONNX_DTYPES.get(spec.dtype)
        got_type = getattr(arg, "type", None)
        if want_type and got_type and want_type != got_type:
            raise InputError(
                f"{file} {kind[:-1]} {spec.name!r} has type {got_type} but bundle.json records {spec.dtype}"
            )


def check_graph_signature(bundle: Bundle, session_inputs: Sequence[Any], session_outputs: Sequence[Any]) -> None:
    """Compare the decoder graph's inputs/outputs (onnxruntime NodeArgs) with bundle.json's record.

    Names must match in order; non-batch dimensions that are fixed on both sides must be equal.
    """
    file = bundle.decoder.file
    _compare("inputs", bundle.decoder.inputs, session_inputs, file)
    _compare("outputs", bundle.decoder.outputs, session_outputs, file)


BUNDLE_FILES = ("bundle.json", "decoder.onnx", "encoder.onnx")


def check_bundle_output(
    out_dir: str | os.PathLike[str], force: bool = False, protected: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Refuse (InputError, before any work) a bundle folder that vaexprs must not write or replace.

    A new or empty folder is fine. An existing bundle (it holds bundle.json and nothing but bundle files) is
    replaced with `force` only. Anything else is refused even with `force`: a folder holding other files, the
    working folder or one of its ancestors, and a folder that holds one of the `protected` paths (the input).
    """
    out = Path(out_dir)
    resolved = out.expanduser().resolve()
    require_output_folder(resolved.parent)
    check_output_name(resolved)
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(f"{out} is the working folder or one of its parents; give a new folder for the bundle")
    for path in protected:
        p = Path(path).expanduser().resolve()
        if p == resolved or resolved in p.parents:
            raise InputError(f"{out} holds the input {path}; give a new folder for the bundle")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"{out} exists and is not a folder")
    if not out.exists():
        return out
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return out
    if not force:
        raise InputError(f"{out} exists and is not empty; pass --force to replace the bundle in it")
    foreign = [name for name in entries if name not in BUNDLE_FILES]
    if BUNDLE_JSON not in entries or foreign:
        shown = ", ".join(foreign[:5]) if foreign else "no bundle.json"
        raise InputError(
            f"{out} is not a vaexprs bundle folder ({shown}); --force replaces only a bundle: "
            "move those files or give another folder"
        )
    return out
