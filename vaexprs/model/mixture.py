"""Fitting the latent sampler at training time: a BIC-selected Gaussian mixture over the latent means.

    sampler = fit_latent_sampler(latent_means, codes, classes, seed=1)   # one mixture per label for a CVAE

scikit-learn's GaussianMixture with BIC model selection over 1..9 components and full/diag covariances, as
VAExprs uses mclust. The result is a numpy `LatentSampler` (vaexprs.bundle.sampler) that generation uses
without scikit-learn.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

from vaexprs.bundle.sampler import GaussianMixture, LatentSampler

log = logging.getLogger(__name__)

MAX_COMPONENTS = 9  # mclust's default G = 1:9
COVARIANCE_TYPES = ("full", "diag")
MIN_CELLS_FOR_MIXTURE = 10
MAX_MIXTURE_CELLS = 5_000  # per mixture (per label): a seeded sample of the latent means beyond this
VARIANCE_FLOOR = 1e-2  # latent units; keeps a one-component fit on a handful of cells from collapsing


def _single_gaussian(z: np.ndarray) -> GaussianMixture:
    d = z.shape[1]
    cov = np.cov(z, rowvar=False).reshape(d, d) if z.shape[0] > 1 else np.zeros((d, d))
    cov = cov + np.eye(d) * VARIANCE_FLOOR
    return GaussianMixture(np.ones(1), z.mean(axis=0, keepdims=True), cov[None])


def fit_mixture(
    z: np.ndarray, seed: int = 1, max_components: int = MAX_COMPONENTS, name: str = "", warn: bool = True
) -> GaussianMixture:
    """BIC-selected Gaussian mixture over (N, D) latent means (a sample of MAX_MIXTURE_CELLS when N is larger);
    a single floored Gaussian when N is small (a warning, or a debug line where not `warn`)."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, dtype=np.float64)
    if z.shape[0] > MAX_MIXTURE_CELLS:  # EM time grows with the cells; a sample describes the shape as well
        z = z[np.random.default_rng(seed).choice(z.shape[0], MAX_MIXTURE_CELLS, replace=False)]
    if z.shape[0] < MIN_CELLS_FOR_MIXTURE:
        log.log(
            logging.WARNING if warn else logging.DEBUG,
            "label %r has %d cells (< %d): its latent sampler is one Gaussian with a variance floor of %g, "
            "not a BIC-selected mixture",
            name, z.shape[0], MIN_CELLS_FOR_MIXTURE, VARIANCE_FLOOR,
        )  # fmt: skip
        return _single_gaussian(z)
    best, best_bic = None, np.inf
    # EM on a few thousand 2-D points is tiny: BLAS threads only add overhead (and fight torch's threads).
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # sklearn ConvergenceWarning on duplicate points
        for cov_type in COVARIANCE_TYPES:
            for k in range(1, min(max_components, z.shape[0] // 3) + 1):
                gmm = SkGaussianMixture(k, covariance_type=cov_type, random_state=seed, reg_covar=1e-6).fit(z)
                bic = gmm.bic(z)
                if bic < best_bic:
                    best, best_bic = gmm, bic
    covs = best.covariances_
    if best.covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in covs])
    log.debug("mixture %s: %d component(s), %s covariance", name, best.n_components, best.covariance_type)
    return GaussianMixture(best.weights_, best.means_, covs)


def fit_latent_sampler(
    latent_means: np.ndarray,
    codes: np.ndarray | None,
    classes: Sequence[str] = (),
    seed: int = 1,
    warn: bool = True,
) -> LatentSampler:
    """One mixture over all cells (VAE), or one per label (CVAE), over the encoder's latent means. `warn`: say
    which labels are too small for a mixture (a selection candidate does not: its subset is not the model the
    user gets, and each candidate would repeat the final model's warning)."""
    latent_means = np.asarray(latent_means)
    if codes is None or not len(classes):
        return LatentSampler(latent_means.shape[1], [fit_mixture(latent_means, seed, name="all", warn=warn)])
    return LatentSampler(
        latent_means.shape[1],
        [fit_mixture(latent_means[codes == i], seed, name=label, warn=warn) for i, label in enumerate(classes)],
    )
