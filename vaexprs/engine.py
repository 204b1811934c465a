"""Run a bundle's decoder with onnxruntime (CPU or CUDA) and turn latent draws into cells, chunk by chunk.

    gen = Generator(load_bundle("bundle_dir"), provider="auto")
    for x, codes in gen.generate_chunks(n=1_000_000, seed=1, batch_size=8192, reuse_buffers=True):
        writer.write_chunk(x, codes)                  # x: (b, G) float32; codes: (b,) label codes or None

No torch here, and onnxruntime is imported only when a session is created, so `import vaexprs.engine` is cheap.
All labels are planned up front from one `np.random.default_rng(seed)`; latents (and, for the noise heads, the
library sizes, counts, dropouts) come from the same generator chunk by chunk, so a seed (with the same batch
size) fixes the output bytes; `vaexprs.gen_exprs` draws in the same order through the same numpy function.
Inputs, one-hot labels and outputs live in buffers allocated once per run and bound with io_binding, so a chunk
costs one decoder call and no allocation.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle import Bundle, check_graph_signature
from vaexprs.errors import InputError, VaexprsRuntimeError
from vaexprs.likelihoods import (
    COUNT_LIKELIHOODS,
    LIKELIHOODS,
    MEAN_LIKELIHOODS,
    LibrarySize,
    OutputSpace,
    output_spaces,
    outputs_to_cells,
)
from vaexprs.likelihoods import resolve_output_space as _resolve_space
from vaexprs.sampler import SAMPLER_CHOICES, parse_per_label, plan_labels

log = logging.getLogger("vaexprs")

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
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
DEFAULT_BATCH_SIZE = 8192
# Peak memory is a few copies of one output chunk (onnxruntime's intermediates and arena), so the default chunk
# is set by bytes, not cells: 8,192 cells at 2,000 genes, ~800 at 20,000 (measured: 3.5 GB peak at 20,000 genes
# with 8,192-cell chunks, 0.6 GB with 1,024, at the same speed).
CHUNK_BYTES = 64 << 20
MIN_BATCH_SIZE = 256


def default_batch_size(n_genes: int) -> int:
    """Cells per decoding chunk for `n_genes` float32 outputs: about CHUNK_BYTES per chunk."""
    return int(min(DEFAULT_BATCH_SIZE, max(MIN_BATCH_SIZE, CHUNK_BYTES // (4 * max(n_genes, 1)))))


_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


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


def create_session(onnx_path: str | Path, provider: str = "auto", threads: int | None = None) -> tuple[Any, str]:
    """An onnxruntime InferenceSession and the provider that is really active.

    onnxruntime silently falls back to CPU when CUDA libraries are missing, and `get_available_providers()`
    lists CUDA whenever the GPU wheel is installed; so the active provider is read from the session itself.
    """
    if provider not in PROVIDER_CHOICES:
        raise InputError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}; got {provider!r}")
    if threads is not None and int(threads) < 0:
        raise InputError(f"threads must be a non-negative integer (0 = onnxruntime's default); got {threads}")
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
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise InputError(f"onnxruntime cannot load {onnx_path}: {str(e).splitlines()[0]}") from None
    active = session.get_providers()[0]
    if provider == "cuda" and active != CUDA:
        raise cuda_missing()
    if provider == "auto":
        if CUDA in providers and active != CUDA:
            log.info("provider auto: %s is available but did not start; using %s", CUDA, active)
        else:
            log.info("provider auto: using %s", active)
    return session, active


def output_space_of(bundle: Bundle, output_space: str | None) -> OutputSpace:
    """The resolved output space (name, space of the numbers, whether noise is sampled) for a request."""
    check_likelihood(bundle)
    return _resolve_space(bundle.likelihood, bundle.output_space, output_space)


def resolve_output_space(bundle: Bundle, output_space: str | None) -> str:
    """The name of the space the generated values will be in (None = the head's default).

    bce/mse: only the decoder's own space (or `mean`, the same thing). nb/zinb: counts (default), lognorm,
    mean. hurdle: its own log space (default, sampled) or mean. Anything else is an InputError.
    """
    return output_space_of(bundle, output_space).name


def check_likelihood(bundle: Bundle) -> None:
    """Refuse a likelihood this engine cannot turn into cells (e.g. a bundle from a newer vaexprs)."""
    if bundle.likelihood not in LIKELIHOODS:
        output_spaces(bundle.likelihood, bundle.output_space)  # raises VaexprsRuntimeError naming it


def decoder_outputs_to_cells(
    outputs: Mapping[str, np.ndarray],
    likelihood: str | Bundle,
    rng: np.random.Generator,
    output_space: str,
    codes: np.ndarray | None = None,
    library: LibrarySize | None = None,
) -> np.ndarray:
    """Turn one chunk of decoder outputs into cells (b, G) float32: the one place each likelihood head plugs in.

    Plain arguments, so the torch-side `gen_exprs` uses it without a bundle: the head's name, its outputs by
    name, the generator to draw noise from, a resolved output space, the cells' label codes (None for a VAE)
    and, for nb/zinb, the library-size model. A Bundle may stand in for `likelihood` (and supplies `library`).
    bce/mse return the de-scaled mean (`x_mean`); nb/zinb draw library sizes, then gamma-Poisson counts
    (zeroed by the dropout for zinb); hurdle draws zeros and truncated-normal values (vaexprs.likelihoods).
    """
    if isinstance(likelihood, Bundle):
        bundle = likelihood
        check_likelihood(bundle)
        likelihood = bundle.likelihood
        library = bundle.library_size if library is None else library
        if likelihood in MEAN_LIKELIHOODS and "x_mean" not in outputs:
            outputs = {"x_mean": outputs[bundle.decoder.outputs[0].name]}
    return outputs_to_cells(likelihood, outputs, rng, output_space, codes, library)


@dataclass
class Plan:
    """A validated generation request: every label drawn up front, the rng positioned after the draw.

    Single use: running it consumes `rng`; plan again for the same cells.
    """

    codes: np.ndarray | None  # (n_total,) int64 label codes, None for a VAE
    n_total: int
    sampler: str
    seed: int
    batch_size: int
    output_space: str  # the resolved name: counts | lognorm | mean | the head's own space
    rng: np.random.Generator
    value_space: str = ""  # the space the numbers are in (mean of a count head: expected counts)
    sampled: bool = False  # whether cells carry the likelihood's sampling noise


def plan_request(
    bundle: Bundle,
    n: int | None = None,
    label: str | None = None,
    per_label: str | Mapping[str, int] | None = None,
    sampler: str = "gmm",
    seed: int = 1,
    batch_size: int | None = None,
    output_space: str | None = None,
) -> Plan:
    """Validate a request and draw every cell's label; raises InputError before any work is done."""
    if sampler not in SAMPLER_CHOICES:
        raise InputError(f"sampler must be one of {', '.join(SAMPLER_CHOICES)}; got {sampler!r}")
    if batch_size is None:
        batch_size = default_batch_size(bundle.n_genes)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise InputError(f"batch size must be a positive integer; got {batch_size!r}")
    if label is not None and per_label is not None:
        raise InputError("give either --label or --per-label, not both")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))):
        raise InputError(f"the number of cells to generate must be a positive integer; got {n!r}")
    space = output_space_of(bundle, output_space)
    request: str | Mapping[str, int] | None = label
    if per_label is not None:
        request = parse_per_label(per_label) if isinstance(per_label, str) else dict(per_label)
        if not request:
            raise InputError("--per-label is empty")
    rng = np.random.default_rng(seed)
    codes = plan_labels(n, request, bundle.labels, bundle.proportions if bundle.labels else None, rng)
    n_total = int(codes.shape[0]) if codes is not None else int(n)  # type: ignore[arg-type]
    return Plan(codes, n_total, sampler, int(seed), int(batch_size), space.name, rng, space.value_space, space.sampled)


class Generator:
    """A bundle's decoder in an onnxruntime session; draws latents and yields cells in chunks."""

    def __init__(
        self,
        bundle: Bundle,
        provider: str = "auto",
        threads: int | None = None,
        session: Any = None,
    ) -> None:
        check_likelihood(bundle)
        if bundle.likelihood in COUNT_LIKELIHOODS and bundle.library_size is None:
            raise InputError(f"a {bundle.likelihood} bundle needs 'library_size' in bundle.json")
        self.bundle = bundle
        if session is None:
            session, active = create_session(bundle.decoder_path, provider, threads)
        else:
            active = session.get_providers()[0]
        check_graph_signature(bundle, session.get_inputs(), session.get_outputs())
        self.session = session
        self.active_provider: str = active
        self.n_total: int | None = None
        self._input_names = [s.name for s in bundle.decoder.inputs]
        self._output_names = [s.name for s in bundle.decoder.outputs]
        self._output_tail: dict[str, tuple[int, ...]] | None = self._fixed_output_shapes()

    def _fixed_output_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Non-batch output shapes when all are fixed ints (then outputs go into preallocated buffers)."""
        tails = {}
        for spec in self.bundle.decoder.outputs:
            tail = spec.shape[1:]
            if not all(isinstance(d, int) for d in tail) or spec.dtype not in _NP_DTYPES:
                return None
            tails[spec.name] = tuple(tail)  # type: ignore[arg-type]
        return tails

    def plan(
        self,
        n: int | None = None,
        label: str | None = None,
        per_label: str | Mapping[str, int] | None = None,
        sampler: str = "gmm",
        seed: int = 1,
        batch_size: int | None = None,
        output_space: str | None = None,
    ) -> Plan:
        """`plan_request` for this generator's bundle (and remember the number of cells)."""
        plan = plan_request(self.bundle, n, label, per_label, sampler, seed, batch_size, output_space)
        self.n_total = plan.n_total
        return plan

    def generate_chunks(
        self,
        n: int | None = None,
        label: str | None = None,
        per_label: str | Mapping[str, int] | None = None,
        sampler: str = "gmm",
        seed: int = 1,
        batch_size: int | None = None,
        output_space: str | None = None,
        reuse_buffers: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Plan now (errors raise here, not on first iteration), then yield (x (b, G) float32, codes or None).

        With `reuse_buffers`, each x is a view into a buffer the next chunk overwrites: consume it (write it)
        before asking for the next one. Without it every chunk is a fresh array.
        """
        plan = self.plan(n, label, per_label, sampler, seed, batch_size, output_space)
        return self.run_plan(plan, reuse_buffers=reuse_buffers)

    def run_plan(self, plan: Plan, reuse_buffers: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield the planned cells chunk by chunk (see `generate_chunks`)."""
        bundle, rng = self.bundle, plan.rng
        sampler = bundle.sampler
        bs = min(plan.batch_size, plan.n_total)
        z_name = self._input_names[0]
        onehot = np.zeros((bs, bundle.n_labels), dtype=np.float32) if bundle.is_conditional else None
        ort = import_onnxruntime()
        binding = self.session.io_binding() if self._output_tail is not None else None
        buffers: dict[str, np.ndarray] = {}

        for start in range(0, plan.n_total, bs):
            stop = min(start + bs, plan.n_total)
            b = stop - start
            codes = None if plan.codes is None else plan.codes[start:stop]
            z = np.ascontiguousarray(sampler.sample(codes, b, rng, plan.sampler), dtype=np.float32)  # (b, D)
            feeds = {z_name: z}
            if onehot is not None:
                oh = onehot[:b]
                oh.fill(0.0)
                oh[np.arange(b), codes] = 1.0
                feeds[self._input_names[1]] = oh
            if binding is not None:
                if not buffers or not reuse_buffers:
                    buffers = {
                        name: np.empty((bs, *tail), dtype=_NP_DTYPES[spec.dtype])
                        for (name, tail), spec in zip(self._output_tail.items(), bundle.decoder.outputs)  # type: ignore[union-attr]
                    }
                outputs = {name: buf[:b] for name, buf in buffers.items()}
                for name, arr in feeds.items():
                    binding.bind_cpu_input(name, arr)
                for name, arr in outputs.items():
                    binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))
                try:
                    self.session.run_with_iobinding(binding)
                except Exception as e:
                    raise VaexprsRuntimeError(f"decoder failed: {str(e).splitlines()[0]}") from None
            else:
                try:
                    values = self.session.run(self._output_names, feeds)
                except Exception as e:
                    raise VaexprsRuntimeError(f"decoder failed: {str(e).splitlines()[0]}") from None
                outputs = dict(zip(self._output_names, values))
            x = decoder_outputs_to_cells(outputs, bundle, rng, plan.output_space, codes)
            yield x, codes
