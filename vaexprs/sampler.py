"""Latent samplers: where generated cells come from in the latent space.

    sampler = fit_latent_sampler(latent_means, codes, n_labels, seed=1)   # scikit-learn, at training time
    codes = plan_labels(1000, None, classes, proportions, rng)            # numpy only
    z = sampler.sample(codes, rng, kind="gmm")                            # numpy only, (N, latent_dim)

Fitting uses scikit-learn's GaussianMixture with BIC model selection (as VAExprs uses mclust); the fitted
mixtures are plain arrays, so sampling needs numpy alone and survives a JSON round trip into bundle.json.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vaexprs.errors import InputError

log = logging.getLogger(__name__)

SamplerKind = Literal["gmm", "prior"]
SAMPLER_CHOICES = ("gmm", "prior")
MAX_COMPONENTS = 9  # mclust's default G = 1:9
COVARIANCE_TYPES = ("full", "diag")
MIN_CELLS_FOR_MIXTURE = 10
VARIANCE_FLOOR = 1e-2  # latent units; keeps a one-component fit on a handful of cells from collapsing


@dataclass
class GaussianMixture:
    """A fitted mixture as arrays: weights (K,), means (K, D), covariances (K, D, D)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.weights = self.weights / self.weights.sum()
        self.means = np.asarray(self.means, dtype=np.float64)
        self.covariances = np.asarray(self.covariances, dtype=np.float64)
        self._chol = np.linalg.cholesky(self.covariances)

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, D) draws: pick a component by weight, then mean + L @ eps."""
        component = rng.choice(self.n_components, size=n, p=self.weights)
        eps = rng.standard_normal((n, self.means.shape[1]))
        z = np.empty_like(eps)
        for k in range(self.n_components):
            rows = component == k
            z[rows] = self.means[k] + eps[rows] @ self._chol[k].T
        return z

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GaussianMixture:
        return cls(d["weights"], d["means"], d["covariances"])


@dataclass
class LatentSampler:
    """One mixture per label (a single one, `mixtures[0]`, for a VAE), plus the N(0, I) prior."""

    latent_dim: int
    mixtures: list[GaussianMixture]

    def sample(self, codes: np.ndarray | None, n: int, rng: np.random.Generator, kind: str = "gmm") -> np.ndarray:
        """Latents (n, D) float32 for cells whose label codes are `codes` (None for a VAE)."""
        if kind not in SAMPLER_CHOICES:
            raise InputError(f"sampler must be one of {', '.join(SAMPLER_CHOICES)}; got {kind!r}")
        if kind == "prior":
            return rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        if codes is None:
            return self.mixtures[0].sample(n, rng).astype(np.float32)
        z = np.empty((n, self.latent_dim), dtype=np.float64)
        for code in np.unique(codes):
            rows = codes == code
            z[rows] = self.mixtures[int(code)].sample(int(rows.sum()), rng)
        return z.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gmm", "latent_dim": self.latent_dim, "mixtures": [m.to_dict() for m in self.mixtures]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatentSampler:
        return cls(int(d["latent_dim"]), [GaussianMixture.from_dict(m) for m in d["mixtures"]])


def _single_gaussian(z: np.ndarray) -> GaussianMixture:
    d = z.shape[1]
    cov = np.cov(z, rowvar=False).reshape(d, d) if z.shape[0] > 1 else np.zeros((d, d))
    cov = cov + np.eye(d) * VARIANCE_FLOOR
    return GaussianMixture(np.ones(1), z.mean(axis=0, keepdims=True), cov[None])


def fit_mixture(z: np.ndarray, seed: int = 1, max_components: int = MAX_COMPONENTS, name: str = "") -> GaussianMixture:
    """BIC-selected Gaussian mixture over (N, D) latent means; a single floored Gaussian when N is small."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, dtype=np.float64)
    if z.shape[0] < MIN_CELLS_FOR_MIXTURE:
        warnings.warn(
            f"label {name!r} has {z.shape[0]} cells (< {MIN_CELLS_FOR_MIXTURE}): using a single Gaussian with "
            f"a variance floor of {VARIANCE_FLOOR} instead of a BIC-selected mixture",
            UserWarning,
            stacklevel=2,
        )
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
    latent_means: np.ndarray, codes: np.ndarray | None, classes: Sequence[str] = (), seed: int = 1
) -> LatentSampler:
    """One mixture over all cells (VAE), or one per label (CVAE), over the encoder's latent means."""
    latent_means = np.asarray(latent_means)
    if codes is None or not len(classes):
        return LatentSampler(latent_means.shape[1], [fit_mixture(latent_means, seed, name="all")])
    return LatentSampler(
        latent_means.shape[1],
        [fit_mixture(latent_means[codes == i], seed, name=label) for i, label in enumerate(classes)],
    )


def parse_per_label(spec: str) -> dict[str, int]:
    """'L1=300,L2=50' -> {'L1': 300, 'L2': 50}; anything else is an InputError naming the bad part."""
    out: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, count = part.strip().rpartition("=")
        if not sep or not name.strip():
            raise InputError(f"--per-label expects LABEL=COUNT[,LABEL=COUNT...]; cannot parse {part.strip()!r}")
        try:
            out[name.strip()] = int(count)
        except ValueError:
            raise InputError(f"--per-label count for {name.strip()!r} is not an integer: {count!r}") from None
    return out


def plan_labels(
    n: int | None,
    request: str | Mapping[str, int] | None,
    classes: Sequence[str],
    proportions: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """Label codes of the cells to generate: training proportions, one label, or a count per label.

    Returns None for a VAE (no labels). A dict request ignores `n` (its counts decide).
    """
    if not len(classes):
        if request:
            raise InputError("this model has no labels (a VAE); --label/--per-label need a CVAE")
        _check_n(n)
        return None
    index = {c: i for i, c in enumerate(classes)}

    def code(label: Any) -> int:
        if str(label) not in index:
            raise InputError(f"unknown label {label!r}; this model knows: {', '.join(classes)}")
        return index[str(label)]

    if isinstance(request, Mapping):
        if not request:
            raise InputError("--per-label is empty")
        parts = []
        for label, count in request.items():
            if int(count) <= 0:
                raise InputError(f"count for label {label!r} must be a positive integer; got {count}")
            parts.append(np.full(int(count), code(label), dtype=np.int64))
        return np.concatenate(parts)
    _check_n(n)
    if request is not None:
        return np.full(n, code(request), dtype=np.int64)
    return rng.choice(len(classes), size=n, p=np.asarray(proportions, dtype=np.float64)).astype(np.int64)


def _check_n(n: int | None) -> None:
    if n is None or int(n) <= 0:
        raise InputError(f"the number of cells to generate must be a positive integer; got {n}")
