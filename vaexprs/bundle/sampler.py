"""Latent samplers: where generated cells come from in the latent space (numpy only).

    sampler = LatentSampler.from_dict(bundle_json["sampler"])
    z = sampler.sample(codes, n, rng, kind="gmm")          # (n, latent_dim) float32
    z = sampler.sample(codes, n, rng, temperature=0.7)     # draws nearer their components' means

The mixtures are fitted at training time (`vaexprs.model.mixture`, scikit-learn with BIC selection, as VAExprs
uses mclust) and kept as plain arrays, so sampling needs numpy alone and survives a JSON round trip into
bundle.json.

A temperature t < 1 scales every draw's deviation from its component mean (the prior's from 0) by t: the
covariances by t^2, the "truncation trick" of generative image models. Cells come out more typical of their
label and less diverse; t = 1 is the fitted distribution, and the same random stream is used at every t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaexprs.config import Sampler, choices
from vaexprs.errors import OptionError


@dataclass
class GaussianMixture:
    """A fitted mixture as arrays: weights (K,), means (K, D), covariances (K, D, D)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.weights = self.weights / self.weights.sum()  # exact sum 1 for rng.choice (checked on load)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.covariances = np.asarray(self.covariances, dtype=np.float64)
        self._chol = np.linalg.cholesky(self.covariances)

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def sample(self, n: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """(n, D) draws: pick a component by weight, then mean + L @ (temperature * eps)."""
        component = rng.choice(self.n_components, size=n, p=self.weights)
        eps = rng.standard_normal((n, self.means.shape[1])) * temperature  # x 1.0 is exact: the untempered draws
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

    def sample(
        self,
        codes: np.ndarray | None,
        n: int,
        rng: np.random.Generator,
        kind: str = "gmm",
        temperature: float = 1.0,
    ) -> np.ndarray:
        """Latents (n, D) float32 for cells whose label codes are `codes` (None for a VAE)."""
        if kind not in choices(Sampler):
            raise OptionError("sampler", f"must be one of {', '.join(choices(Sampler))}; got {kind!r}")
        if kind == "prior":
            return (rng.standard_normal((n, self.latent_dim)) * temperature).astype(np.float32)
        if codes is None:
            return self.mixtures[0].sample(n, rng, temperature).astype(np.float32)
        z = np.empty((n, self.latent_dim), dtype=np.float64)
        for code in np.unique(codes):
            rows = codes == code
            z[rows] = self.mixtures[int(code)].sample(int(rows.sum()), rng, temperature)
        return z.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gmm", "latent_dim": self.latent_dim, "mixtures": [m.to_dict() for m in self.mixtures]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatentSampler:
        return cls(int(d["latent_dim"]), [GaussianMixture.from_dict(m) for m in d["mixtures"]])
