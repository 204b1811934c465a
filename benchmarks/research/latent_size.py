"""Does a larger latent code make fit_vae's default cells more real? A research sweep, not a default.

    PYTHONPATH=. python benchmarks/research/latent_size.py insample 20 methylation,pearson_residuals,umi_hvg
    PYTHONPATH=. python benchmarks/research/latent_size.py heldout 20 methylation,fulllength,many_labels 1,2,3
    -> one JSON line per unit; all of them in benchmarks/results/research/latent_size.json

The study chose latent 10 from every head on eight data sets (VAExprs' 2 could not hold real cells' variation).
Methylation's in-sample miss (0.811 with seed 1) comes from the head's noise, not the latent draws
(noise_shape.py), yet a code with room for each nucleus' coverage and depth might shape that noise. Here
fit_vae runs with every default but `latent_dim` (likelihood=auto included, so the selection chooses again at
that size), and its cells are scored as the study scores them: `insample` against all cells at the study's seed,
next to the cached latent-10 unit of benchmarks/results/quality_runs/full; `heldout` on the seed's half split
against the other half, with the same-size augmentation gains, next to the cached half fit.
"""

from __future__ import annotations

import sys

from benchmarks.research.common import variant_sweep

if __name__ == "__main__":
    raise SystemExit(variant_sweep("latent_size", "latent", "latent_dim", int, "latent10", sys.argv[1:]))
