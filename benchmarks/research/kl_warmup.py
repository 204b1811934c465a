"""Does a KL warm-up make fit_vae's default cells more real? A research sweep, not a default.

    PYTHONPATH=. python benchmarks/research/kl_warmup.py insample 0.5 methylation,denoised,pearson_residuals
    PYTHONPATH=. python benchmarks/research/kl_warmup.py heldout 0.5 methylation 1,2,3
    -> one JSON line per unit; all of them in benchmarks/results/research/kl_warmup.json

With a sampled head, the per-gene sd starts at each gene's within-label spread, so from the first step the
noise explains what the latent code could: on denoised, the decoder mean at the training cells' own latent means
holds 15% of the real per-gene variance and the head's noise the rest (a scratch measurement; shrinking that
noise made the cells less real, not more). A KL warm-up (`kl_warmup`: the KL weight rising from 0 to beta over
that share of the epochs, scVI's default practice) lets the code take up the cells' structure before the prior
pulls it in. Here fit_vae runs with every default but `kl_warmup` (likelihood=auto included: candidates warm up
too, and the selection chooses again), scored as latent_size.py scores its units: `insample` next to the study's
cached default unit, `heldout` on the seed's half split next to the cached half fit, with the augmentation gains
(a lower in-sample AUC that the held-out cells do not follow means closer copies, not more real cells).
"""

from __future__ import annotations

import sys

from benchmarks.research.common import variant_sweep

if __name__ == "__main__":
    raise SystemExit(variant_sweep("kl_warmup", "kl_warmup", "kl_warmup", float, "kl_warmup0", sys.argv[1:]))
