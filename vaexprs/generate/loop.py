"""The one generation loop: a plan, a model spec and a decode function in, blocks of cells out.

    decode = OnnxDecoder(bundle)                   # or TorchDecoder(result) on the training side
    for block in iter_blocks(spec, plan, decode):  # block.x (b, G) float32, block.codes (b,) or None
        writer.write_chunk(block.x, block.codes)

Every path that makes cells runs `make_block`: the CLI and `generate_to_file`, the MLflow pyfunc, the Python
API's `gen_exprs` (with the torch decoder) and the Dask path (one block per task). Block k draws, from its own
stream (see `Plan.block_rng`): labels, then latents, then the likelihood's noise. That order lives here only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from vaexprs.bundle.heads import outputs_to_cells
from vaexprs.bundle.spec import GenerativeSpec
from vaexprs.errors import check_interrupted
from vaexprs.generate.request import Plan

# decode(z (b, D) float32, codes (b,) int64 or None) -> the decoder's outputs by name, each (b, G)
Decode = Callable[[np.ndarray, "np.ndarray | None"], Mapping[str, np.ndarray]]


@dataclass
class Block:
    """One block of generated cells: rows start..start + len(x) of the output."""

    index: int
    start: int
    x: np.ndarray  # (b, G) float32
    codes: np.ndarray | None  # (b,) label codes in the model's label order, None for a VAE
    latent: np.ndarray  # (b, D) the latents that were decoded


def make_block(spec: GenerativeSpec, plan: Plan, k: int, decode: Decode) -> Block:
    """Block k of a plan: a pure function of (spec, plan, k) and the decoder's weights."""
    rng = plan.block_rng(k)
    start, stop = plan.block_bounds(k)
    codes = plan.block_codes(k, rng)
    z = spec.sampler.sample(codes, stop - start, rng, plan.sampler, plan.temperature)  # (b, D) float32
    outputs = decode(z, codes)
    x = outputs_to_cells(
        spec.likelihood, outputs, rng, plan.space.name, codes=codes, library=spec.library_size, cap=spec.value_cap
    )
    x = np.asarray(x, dtype=np.float32)
    if spec.row_centred:  # the training cells each averaged 0 (CLR values): so does every generated cell
        x -= x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        if spec.value_cap is not None and plan.space.sampled:  # the shift must not lift a value over its cap
            np.minimum(x, spec.value_cap.astype(np.float32), out=x)
    return Block(k, start, x, codes, z)


def iter_blocks(
    spec: GenerativeSpec, plan: Plan, decode: Decode, blocks: Iterable[int] | None = None
) -> Iterator[Block]:
    """The plan's blocks in order (or the given block indices), made one at a time: memory holds one block."""
    for k in range(plan.n_blocks) if blocks is None else blocks:
        check_interrupted()
        yield make_block(spec, plan, k, decode)


def one_hot(codes: np.ndarray | None, n_labels: int, out: np.ndarray | None = None) -> np.ndarray | None:
    """(b, n_labels) float32 one-hot rows for a CVAE decoder; None for a VAE."""
    if codes is None:
        return None
    b = codes.shape[0]
    onehot = np.zeros((b, n_labels), dtype=np.float32) if out is None else out[:b]
    if out is not None:
        onehot.fill(0.0)
    onehot[np.arange(b), codes] = 1.0
    return onehot
