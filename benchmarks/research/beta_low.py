"""Does a lighter KL term make fit_vae's default cells more real? A research sweep, not a default.

    PYTHONPATH=. python benchmarks/research/beta_low.py insample 0.25 denoised,methylation,pearson_residuals
    PYTHONPATH=. python benchmarks/research/beta_low.py heldout 0.25 methylation 1,2,3
    -> one JSON line per unit; all of them in benchmarks/results/research/beta_low.json

kl_weight.py tried a heavier KL term (beta 4, now the selection's last try). The in-sample misses point the other
way: on denoised the decoder mean holds only 15% of the per-gene variance and the head's noise the rest, so a
lighter KL term (beta < 1) should let the latent code carry more of the cells' structure. Here fit_vae runs with
every default but `beta` (likelihood=auto included; a fixed beta also skips the selection's beta-4 try), scored as
latent_size.py scores its units: `insample` next to the study's cached default unit (key `beta_auto`), `heldout`
on the seed's half split next to the cached half fit, with the augmentation gains.
"""

from __future__ import annotations

import sys

from benchmarks.research.common import variant_sweep

if __name__ == "__main__":
    raise SystemExit(variant_sweep("beta_low", "beta", "beta", float, "beta_auto", sys.argv[1:]))
