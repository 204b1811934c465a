"""A bundle's decoder in onnxruntime (CPU or CUDA): the decode function of the generation loop, without torch.

    decoder = OnnxDecoder(bundle, provider="auto", threads=2)     # one warm session; reuse it for many requests
    outputs = decoder(z, codes)                                   # {"x_mean": (b, G)} or the head's parameters
    decoder.active_provider                                       # what really runs (read from the session)

onnxruntime is imported only when a session is created, so importing this module is cheap. A decoder call
binds its inputs and freshly allocated outputs with io_binding (one graph run, no copies), and is safe to call
from several threads at once (onnxruntime sessions are).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle.schema import Bundle, check_graph_signature
from vaexprs.config import Provider, choices
from vaexprs.errors import InputError, OptionError, VaexprsRuntimeError
from vaexprs.generate.loop import one_hot

log = logging.getLogger("vaexprs")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Wheels that all install the same top-level `onnxruntime` package folder: two of them shadow each other.
RUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-rocm",
    "onnxruntime-qnn",
    "ort-nightly",
    "ort-nightly-gpu",
)
_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


def max_threads() -> int:
    """The CPUs this process may use: the cap for --threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _normalize_name(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@functools.lru_cache(maxsize=1)
def installed_runtimes() -> tuple[str, ...]:
    """Installed onnxruntime wheels (distribution names), from package metadata; nothing is imported."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = _normalize_name(dist.metadata.get("Name") or "")
        if name in RUNTIME_DISTRIBUTIONS:
            found.add(name)
    return tuple(sorted(found))


def detect_runtime_conflict() -> str | None:
    """A message when several onnxruntime wheels are installed (they overwrite each other's files)."""
    found = installed_runtimes()
    if len(found) < 2:
        return None
    return (
        f"both {' and '.join(found)} are installed; they ship the same package folder and shadow each other: "
        f"`pip uninstall {' '.join(found)}` then install one: vaexprs[cpu] or vaexprs[gpu]"
    )


def import_onnxruntime() -> Any:
    """Import onnxruntime, or say how to install it (and about a shadowing second wheel, if there is one)."""
    conflict = detect_runtime_conflict()
    try:
        import onnxruntime as ort
    except ImportError as e:
        hint = f"; {conflict}" if conflict else ""
        raise InputError(f"onnxruntime is not importable ({e}); install vaexprs[cpu] or vaexprs[gpu]{hint}") from None
    if not hasattr(ort, "InferenceSession"):  # a half-removed second wheel leaves an empty package
        raise InputError(
            "onnxruntime is installed but broken (no InferenceSession); "
            + (conflict or "reinstall one of vaexprs[cpu] or vaexprs[gpu]")
        )
    if conflict:
        log.warning(conflict)
    return ort


def create_session(onnx: str | Path | bytes, provider: str = "auto", threads: int | None = None) -> tuple[Any, str]:
    """An onnxruntime InferenceSession (from a file, or from the bytes of one) and the provider really active.

    From bytes, the model cannot reach any other file: ONNX external data (weights kept in a side file) fails.

    onnxruntime silently falls back to CPU when CUDA libraries are missing, and `get_available_providers()`
    lists CUDA whenever the GPU wheel is installed; so the active provider is read from the session itself.
    """
    if provider not in choices(Provider):
        raise OptionError("provider", f"must be one of {', '.join(choices(Provider))}; got {provider!r}")
    cap = max_threads()
    if threads is not None and not 0 <= int(threads) <= cap:
        raise OptionError(
            "threads", f"must be between 0 (onnxruntime's choice) and {cap} (this machine's CPUs); got {threads}"
        )
    ort = import_onnxruntime()
    available = list(ort.get_available_providers())
    if provider == "cuda":
        providers = [CUDA, CPU]
    elif provider == "cpu":
        providers = [CPU]
    else:
        providers = [CUDA, CPU] if CUDA in available else [CPU]

    def cuda_missing() -> InputError:
        conflict = detect_runtime_conflict()
        return InputError(
            f"--provider cuda requested but {CUDA} is not active (available: {', '.join(available)}); "
            "install vaexprs[gpu] with matching CUDA/cuDNN or use --provider cpu"
            + (f"; {conflict}" if conflict else "")
        )

    if provider == "cuda" and CUDA not in available:
        raise cuda_missing()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    what = "the decoder" if isinstance(onnx, bytes) else str(onnx)
    try:
        model = onnx if isinstance(onnx, bytes) else str(onnx)
        session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        text = str(e).splitlines()[0]
        if "external" in text.lower():
            raise InputError(
                f"{what} keeps weights in external data files, which a bundle may not use: {text}"
            ) from None
        raise InputError(f"onnxruntime cannot load {what}: {text}") from None
    active = session.get_providers()[0]
    if provider == "cuda" and active != CUDA:
        raise cuda_missing()
    if provider == "auto":
        if CUDA in providers and active != CUDA:
            log.info("provider auto: %s is available but did not start; using %s", CUDA, active)
        else:
            log.info("provider auto: using %s", active)
    return session, active


class OnnxDecoder:
    """The decode function of the generation loop, backed by one onnxruntime session of a bundle's decoder."""

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None, session: Any = None) -> None:
        self.bundle = bundle
        if session is None:
            session, active = create_session(bundle.decoder_bytes or bundle.decoder_path, provider, threads)
        else:
            active = session.get_providers()[0]
        check_graph_signature(bundle, session.get_inputs(), session.get_outputs())
        self.session = session
        self.active_provider: str = active
        self._input_names = [s.name for s in bundle.decoder.inputs]
        self._outputs = [(s.name, _output_tail(s.shape), _NP_DTYPES.get(s.dtype)) for s in bundle.decoder.outputs]
        self._bind = all(tail is not None and dtype is not None for _, tail, dtype in self._outputs)

    def __call__(self, z: np.ndarray, codes: np.ndarray | None) -> dict[str, np.ndarray]:
        """Decoder outputs by name for latents z (b, D) and label codes (b,) (None for a VAE)."""
        feeds = {self._input_names[0]: np.ascontiguousarray(z, dtype=np.float32)}
        if self.bundle.is_conditional:
            feeds[self._input_names[1]] = one_hot(codes, self.bundle.n_labels)
        try:
            if not self._bind:
                values = self.session.run([name for name, _, _ in self._outputs], feeds)
                return dict(zip((name for name, _, _ in self._outputs), values))
            ort = import_onnxruntime()
            binding = self.session.io_binding()
            outputs = {name: np.empty((z.shape[0], *tail), dtype=dtype) for name, tail, dtype in self._outputs}
            for name, arr in feeds.items():
                binding.bind_cpu_input(name, arr)
            for name, arr in outputs.items():
                binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
            self.session.run_with_iobinding(binding)
            return outputs
        except Exception as e:  # onnxruntime raises its own types (Fail, RuntimeException, ...)
            raise VaexprsRuntimeError(f"decoder failed: {str(e).splitlines()[0]}") from None


def _output_tail(shape: list[int | str]) -> tuple[int, ...] | None:
    """The non-batch dimensions of an output when they are all fixed (then outputs are preallocated)."""
    tail = shape[1:]
    return tuple(tail) if all(isinstance(d, int) for d in tail) else None  # type: ignore[arg-type]
