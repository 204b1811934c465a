"""What generating cells needs besides the decoder: genes, labels, latent sampler, likelihood, library sizes.

    spec = bundle.spec              # from bundle.json (the light side)
    spec = result.spec              # from a trained model (the torch side's gen_exprs)

Both sides hand the same object to the one generation loop (`vaexprs.generate.loop`), so a bundle and the
model it was exported from make the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaexprs.bundle.heads import LibrarySize
from vaexprs.bundle.sampler import LatentSampler


class LabelledGenes:
    """Counts derived from `genes` and `labels` (shared by GenerativeSpec and Bundle)."""

    genes: list[str]
    labels: list[str]  # empty for a VAE

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def is_conditional(self) -> bool:
        return bool(self.labels)


@dataclass(frozen=True)
class GenerativeSpec(LabelledGenes):
    """A generator's description: everything but the decoder's weights."""

    genes: list[str]
    labels: list[str]  # empty for a VAE
    label_proportions: list[float]  # training proportions, in label order
    likelihood: str
    output_space: str  # the head's own space: counts (nb/zinb) or the normalisation (lognorm, log, none)
    sampler: LatentSampler
    library_size: LibrarySize | None = None  # nb/zinb: per-label log-normal library sizes
    value_cap: np.ndarray | None = None  # (G,) largest plausible value per gene in the head's own space
    row_centred: bool = False  # the training cells' values averaged 0 per cell (CLR): generated cells are centred

    @property
    def latent_dim(self) -> int:
        return self.sampler.latent_dim
