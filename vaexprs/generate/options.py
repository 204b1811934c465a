"""What a user asks of the generator, checked once: the options of `vaexprs generate`, gen_exprs and the server.

numpy-free on purpose: the CLI builds its options from `GenerationRequest` at start-up, and `vaexprs --help`
should not pay for numpy. The plan (blocks, label draws, random streams) is vaexprs.generate.request's.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaexprs.config import MAX_SEED, Config, Sampler, opt
from vaexprs.config import OutputSpace as OutputSpaceName
from vaexprs.errors import OptionError

MAX_CELLS = 10_000_000_000  # ten billion cells: 80 TB of float32 at 2,000 genes; the disk check comes first
MAX_BLOCK_CELLS = 1 << 20
MAX_TEMPERATURE = 2.0  # latent draws at twice the fitted spread already leave the region the decoder learned
MAX_BLOCK_BYTES = 2 << 30  # one block's float32 output; beyond it, memory (not speed) is what grows
DEFAULT_BLOCK_CELLS = 8192
# About 64 MB of float32 output per block: 8,192 cells at 2,000 genes, ~840 at 20,000. onnxruntime's working
# memory grows with the block (measured: 3.5 GB peak at 20,000 genes with 8,192-cell blocks, 0.6 GB with 1,024,
# at the same speed), so the default is set in bytes, not cells.
BLOCK_BYTES = 64 << 20
MIN_DEFAULT_BLOCK_CELLS = 256


def default_batch_size(n_genes: int) -> int:
    """Cells per block for `n_genes` float32 outputs: about BLOCK_BYTES per block."""
    return int(min(DEFAULT_BLOCK_CELLS, max(MIN_DEFAULT_BLOCK_CELLS, BLOCK_BYTES // (4 * max(n_genes, 1)))))


def parse_per_label(spec: str) -> dict[str, int]:
    """'L1=300,L2=50' -> {'L1': 300, 'L2': 50}; a label named twice or a bad part is an error naming it."""
    out: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, count = part.strip().rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError("per_label", f"expects LABEL=COUNT[,LABEL=COUNT...]; cannot parse {part.strip()!r}")
        if name in out:
            raise OptionError("per_label", f"names label {name!r} twice")
        try:
            out[name] = int(count)
        except ValueError:
            raise OptionError("per_label", f"count for {name!r} is not an integer: {count!r}") from None
    return out


@dataclass(frozen=True)
class GenerationRequest(Config):
    """What to generate. The same request with the same seed gives the same cells everywhere."""

    n: int | None = opt(
        None, "Number of cells, labels drawn in the training proportions.", flags=("-n", "--n-cells"),
        bounds=(1, MAX_CELLS),
    )  # fmt: skip
    label: str | None = opt(None, "Generate only cells of this label (a CVAE).")
    per_label: str | dict[str, int] | None = opt(
        None, "Cells per label, e.g. L1=300,L2=50 (instead of -n and --label)."
    )
    sampler: Sampler = opt(
        "gmm", "Latent sampler: gmm (the mixture over training latents, VAExprs) or prior (N(0, I))."
    )
    temperature: float = opt(
        1.0, "Scale of the latent draws around their label's components: 1 = the fitted distribution; below 1 "
        "more typical, less diverse cells (for augmentation, try 0.6: see the README's Realism section).",
        bounds=(0.0, MAX_TEMPERATURE),
    )  # fmt: skip
    seed: int = opt(1, "Random seed: the same seed and batch size give the same cells.", bounds=(0, MAX_SEED))
    batch_size: int | None = opt(
        None, "Cells per block [default: ~64 MB of output per block: 8,192 at 2,000 genes, ~840 at 20,000].",
        bounds=(1, MAX_BLOCK_CELLS),
    )  # fmt: skip
    output_space: OutputSpaceName | None = opt(
        None,
        "counts, lognorm or mean for nb/zinb; the model's log space or mean for hurdle [default: sampled values; "
        "bce/mse give the decoder mean].",
    )
