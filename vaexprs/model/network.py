"""The VAE / CVAE in PyTorch: likelihood heads, the model, and the deployable decoder and encoder wrappers.

    model = VAE(ModelConfig(n_genes=1000, n_labels=3, hidden=(512,)))
    inf = model.inference(x, c)              # z_mean, z_logvar, z          (B, D)
    gen = model.generative(inf["z"], c)      # the head's parameters, e.g. {"logits": (B, G)}
    out = model.loss(x, c, beta=1.0)         # LossOutput: loss (scalar), recon (B,), kl (B,)

The model follows scvi-tools' small contract (inference / generative / loss) so the training loop only sees
`loss`, and a new likelihood is a new head class (`register_head`): the loop never changes. What each head
is (its input kind, its outputs) is declared once in `vaexprs.bundle.heads.HEADS`; how its decoder outputs
become cells lives there too (numpy, shared with the light generator).
Heads: bce (VAExprs' default) and mse on min-max scaled values; nb and zinb on raw counts (scVI's decoder);
hurdle on log-scale normalised values (RPKM/FPKM after log2(x + 1)); log_hurdle on small linear-scale
values (the hurdle on log2(x / s + 1), cells mapped back); floor_hurdle on signed values (z-scores);
mixture on signed values without a point mass (regressed-out). The encoder sees the head's input, or that
standardized per gene (`encoder_input`).
The CVAE concatenates a one-hot label to the encoder input and to z (VAExprs' own documentation; its code
used one integer column). The latent variance is one consistent log-variance, in sampling and in the KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vaexprs.bundle.heads import HEADS, LOG2_MAX, HeadFacts
from vaexprs.config import ModelConfig
from vaexprs.errors import InputError, OptionError

if TYPE_CHECKING:
    from vaexprs.data.preprocess import NonzeroMoments

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


@dataclass
class LossOutput:
    """Per-batch loss record: `loss` drives the optimiser; the per-cell parts feed the history."""

    loss: torch.Tensor  # scalar: mean over cells of recon + beta * kl
    recon: torch.Tensor  # (B,)
    kl: torch.Tensor  # (B,)


def mlp(sizes: list[int], config: ModelConfig) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] for each consecutive pair of sizes."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.append(nn.Linear(n_in, n_out))
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(ACTIVATIONS[config.activation]())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
    return nn.Sequential(*layers)


class LikelihoodHead(nn.Module):
    """The decoder's last layer and its reconstruction loss.

    Contract: `forward(h, library) -> params` (named tensors), `reconstruction_loss(params, x) -> (B,)`
    (negative log-likelihood summed over genes), `mean(params) -> (B, G)` in model space.
    `scaled_input`: the model sees per-gene min-max scaled values in [0, 1].
    `count_input`: the model sees raw counts (no lognorm, no scaling); fit_vae refuses anything else.
    Neither: the model sees the normalised (log-scale) values as they are (the hurdle head).
    """

    name: ClassVar[str]
    scaled_input: ClassVar[bool] = True
    count_input: ClassVar[bool] = False
    output_names: ClassVar[tuple[str, ...]] = ("x_mean",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A head's input kind and outputs come from its facts (vaexprs.bundle.heads.HEADS), written once."""
        super().__init_subclass__(**kwargs)
        facts = HEADS.get(cls.__dict__.get("name", ""))
        if facts is not None:
            cls.scaled_input, cls.count_input, cls.output_names = facts.scaled_input, facts.count_input, facts.outputs

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__()
        self.n_genes = config.n_genes

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def library(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the ONNX decoder returns, keyed by `output_names` (in model space, before de-scaling)."""
        return {"x_mean": self.mean(params)}

    def start_from_data(self, x: Any, codes: np.ndarray | None, n_labels: int, seed: int) -> None:
        """Set the output layer's starting point from the training cells `x` (dense, sparse or on disk; their
        label codes), before the first step; fit_vae calls it. Most heads need none."""


class BernoulliHead(LikelihoodHead):
    """VAExprs' default: sigmoid output, binary cross-entropy on [0, 1] values (n_genes x mean BCE)."""

    name = "bce"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.linear = nn.Linear(n_hidden, config.n_genes)

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.linear(h)}  # (B, G)

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(params["logits"], x, reduction="none").sum(-1)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(params["logits"])


class GaussianHead(BernoulliHead):
    """Squared error (a unit-variance Gaussian up to constants) on the same sigmoid output."""

    name = "mse"

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(params["logits"]) - x).pow(2).sum(-1)


HEAD_MODULES: dict[str, type[LikelihoodHead]] = {head.name: head for head in (BernoulliHead, GaussianHead)}


def register_head(head: type[LikelihoodHead], facts: HeadFacts | None = None) -> type[LikelihoodHead]:
    """Add a likelihood (the torch module; its facts too, for a head vaexprs does not know yet): the training
    loop needs no change. Use as a class decorator for known heads."""
    if facts is not None:
        HEADS[facts.name] = facts
        head.scaled_input, head.count_input, head.output_names = facts.scaled_input, facts.count_input, facts.outputs
    HEAD_MODULES[head.name] = head
    return head


SIGMA_FLOOR = 1e-2  # the hurdle's starting sigma for a gene whose non-zero values hardly vary
CELL_NOISE_BOUND = 1.0  # the hurdle's per-cell noise factor stays within e^-1 .. e^1 (tanh-bounded)
EPS = 1e-8  # as scvi-tools: keeps log(mu) and log(theta) finite
INPUT_CLIP = 10.0  # standardized encoder input: a gene far outside its training spread stays bounded
STANDARDIZE_CHUNK = 1024  # cells per step when the encoder input's per-gene moments are gathered


def nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mean mu, inverse dispersion theta), elementwise; scvi-tools' `log_nb_positive` form.

    Equals scipy.stats.nbinom.logpmf(x, n=theta, p=theta / (theta + mu)).
    """
    log_theta_mu = torch.log(theta + mu + EPS)
    return (
        theta * (torch.log(theta + EPS) - log_theta_mu)
        + x * (torch.log(mu + EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )


def zinb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logit: torch.Tensor) -> torch.Tensor:
    """log ZINB(x), elementwise: dropout probability sigmoid(pi_logit); scvi-tools' `log_zinb_positive` form.

    x = 0: log(pi + (1 - pi) NB(0)), evaluated as softplus(-pi_logit + theta log(theta / (theta + mu)))
    - softplus(-pi_logit); x > 0: log(1 - pi) + log NB(x). No exp of a large number anywhere.
    """
    softplus_pi = F.softplus(-pi_logit)  # -log(1 - pi)
    log_theta_mu = torch.log(theta + mu + EPS)
    pi_theta_log = -pi_logit + theta * (torch.log(theta + EPS) - log_theta_mu)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (
        -softplus_pi
        + pi_theta_log
        + x * (torch.log(mu + EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )
    return torch.where(x < EPS, case_zero, case_non_zero)


def hurdle_log_prob(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, pi_logit: torch.Tensor) -> torch.Tensor:
    """log density of the hurdle model, elementwise: x = 0 with probability pi = sigmoid(pi_logit), else
    x ~ N(mu, sigma^2) truncated to (0, inf): log(1 - pi) + log N(x; mu, sigma) - log Phi(mu / sigma).

    The truncated normal is evaluated at the non-zero entries only: single-cell matrices are mostly zeros
    (pbmc3k 94%), and its log Phi term was most of a training step's time when computed everywhere."""
    x, mu, sigma, pi_logit = torch.broadcast_tensors(x, mu, sigma, pi_logit)  # views, for the indexing
    where = (x > 0).nonzero(as_tuple=True)
    m, s = mu[where], sigma[where]
    z = (x[where] - m) / s
    log_positive = (
        F.logsigmoid(-pi_logit[where])
        - 0.5 * z.pow(2)
        - torch.log(s)
        - 0.5 * math.log(2 * math.pi)
        - torch.special.log_ndtr(m / s)
    )
    # the zero case everywhere, replaced at the non-zero entries (index_put's gradient leaves none to the zero case)
    return F.logsigmoid(pi_logit).index_put(where, log_positive)


@register_head
class NegativeBinomialHead(LikelihoodHead):
    """Negative binomial on raw counts (scVI's decoder): softmax proportions x the cell's library size.

    The encoder sees log1p(counts); the decoder gives per-gene proportions `rho` (rows sum to 1), the mean is
    rho * library (library = x.sum(1) in training, drawn from the label's log-normal at generation), and a
    per-gene inverse dispersion theta = exp(log_theta) is a learnt parameter.
    """

    name = "nb"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.scale = nn.Linear(n_hidden, config.n_genes)
        self.log_theta = nn.Parameter(torch.zeros(config.n_genes))

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x)

    def library(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1, keepdim=True)  # (B, 1)

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        rho = torch.softmax(self.scale(h), dim=-1)  # (B, G)
        params = {"rho": rho, "theta": torch.exp(self.log_theta)}  # theta (G,)
        if library is not None:
            params["mu"] = rho * library
        return params

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return -nb_log_prob(x, params["mu"], params["theta"]).sum(-1)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Expected counts given the library (proportions when no library was given)."""
        return params.get("mu", params["rho"])

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rho = params["rho"]
        return {"rho": rho, "theta": params["theta"].expand_as(rho)}  # theta per cell too: a batch axis


@register_head
class ZeroInflatedNegativeBinomialHead(NegativeBinomialHead):
    """ZINB: the NB head plus a per-cell, per-gene dropout logit (scVI's `px_dropout`)."""

    name = "zinb"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.dropout = nn.Linear(n_hidden, config.n_genes)

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        params = super().forward(h, library)
        params["pi_logit"] = self.dropout(h)  # (B, G)
        return params

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return -zinb_log_prob(x, params["mu"], params["theta"], params["pi_logit"]).sum(-1)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().mean(params) * torch.sigmoid(-params["pi_logit"])

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**super().export_outputs(params), "pi_logit": params["pi_logit"]}


@register_head
class HurdleGaussianHead(LikelihoodHead):
    """Hurdle Gaussian on log-scale normalised values (log2(RPKM + 1), lognorm), for data that are not counts.

    A value is exactly 0 with probability sigmoid(pi_logit) (per cell and gene), else N(mu, sigma^2) truncated
    to (0, inf), sigma = a learnt per-gene sigma times a per-cell factor within e^-1 .. e^1 (from the decoder's
    hidden layer): cells whose library sizes differ 20-fold differ in how noisy their values are, and a
    per-gene sigma alone made the latent memorise that per cell. The model sees the normalised values unscaled
    (the zeros stay exact zeros); the encoder gets log1p of them to tame large log values (treutlein reaches 31).
    """

    name = "hurdle"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.loc = nn.Linear(n_hidden, config.n_genes)
        self.dropout = nn.Linear(n_hidden, config.n_genes)
        self.log_sigma = nn.Parameter(torch.zeros(config.n_genes))
        self.cell_log_sigma = nn.Linear(n_hidden, 1)  # starts at 0: the per-gene sigma alone
        self.cell_noise_bound = CELL_NOISE_BOUND
        nn.init.zeros_(self.cell_log_sigma.weight)
        nn.init.zeros_(self.cell_log_sigma.bias)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x)

    def start_from_data(self, x: Any, codes: np.ndarray | None, n_labels: int, seed: int) -> None:
        from vaexprs.data.preprocess import nonzero_moments

        self.start_from(nonzero_moments(x, codes, n_labels))

    def start_from(self, moments: NonzeroMoments) -> None:
        """Start at the data's scale: sigma at each gene's within-label sd of its non-zero values, mu at their
        mean, the zero logit at the gene's zero rate. From sigma 1, Adam moves log sigma by about lr a step,
        so data whose values spread by 5 (the vignette's) kept sigma near 3 after 3,000 steps: too little
        noise, and cells a classifier told apart (AUC 0.99 -> 0.74 with this start)."""
        sd = moments.pooled_sd()
        known = np.isfinite(sd) & (sd > 0)
        fill = float(np.median(sd[known])) if known.any() else 1.0
        sd = np.clip(np.where(known, sd, fill), SIGMA_FLOOR, None)
        zero = np.clip(moments.zero_fraction(), 1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.log_sigma.copy_(torch.from_numpy(np.log(sd)))
            self.loc.bias.copy_(torch.from_numpy(moments.mean()))
            self.dropout.bias.copy_(torch.from_numpy(np.log(zero / (1 - zero))))

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        bound = self.cell_noise_bound
        cell = bound * torch.tanh(self.cell_log_sigma(h) / bound)  # (B, 1)
        return {"mu": self.loc(h), "sigma": torch.exp(self.log_sigma + cell), "pi_logit": self.dropout(h)}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Checkpoints from before the per-cell noise factor load as they were trained (a factor of 1)."""
        if f"{prefix}log_sigma" in state_dict:
            for name in ("weight", "bias"):
                state_dict.setdefault(
                    f"{prefix}cell_log_sigma.{name}", torch.zeros_like(getattr(self.cell_log_sigma, name))
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return -hurdle_log_prob(x, params["mu"], params["sigma"], params["pi_logit"]).sum(-1)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        mu, sigma = params["mu"], params["sigma"]
        alpha = mu / sigma
        mills = torch.exp(-0.5 * alpha.pow(2) - 0.5 * math.log(2 * math.pi) - torch.special.log_ndtr(alpha))
        return torch.sigmoid(-params["pi_logit"]) * torch.clamp(mu + sigma * mills, min=0.0)

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"mu": params["mu"], "sigma": params["sigma"], "pi_logit": params["pi_logit"]}


class ScaledLog:
    """For heads that model log2(x / s + 1) of non-negative linear-scale values that never reach 100 (fractions
    of a cell's total, methylation ratios), s = the median non-zero training value (`log_scale`): the head's own
    loss, encoder input and start see the logged values, and `export_outputs` carries s so that the cells come
    out in the input's own values, s * (2^y - 1). Mixed in before the head it wraps (log_hurdle, log_mixture)."""

    log_scale: torch.Tensor

    def add_log_scale(self, n_genes: int) -> None:
        self.register_buffer("log_scale", torch.ones(n_genes))  # type: ignore[attr-defined]  # one value, per gene

    def start_from_data(self, x: Any, codes: np.ndarray | None, n_labels: int, seed: int) -> None:
        """The scale (the median non-zero value of a seeded sample), then the wrapped head's start on the logged
        values."""
        from vaexprs.data.preprocess import positive_median, scaled_log

        scale = positive_median(x, seed)
        with torch.no_grad():
            self.log_scale.fill_(scale)
        super().start_from_data(scaled_log(x, scale), codes, n_labels, seed)  # type: ignore[misc]

    def logged(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log2(torch.clamp(x, min=0.0) / self.log_scale + 1.0)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return super().encoder_input(self.logged(x))  # type: ignore[misc]

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return super().reconstruction_loss(params, self.logged(x))  # type: ignore[misc]

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**super().export_outputs(params), "log_scale": self.log_scale.expand_as(params["mu"])}  # type: ignore[misc]


def growth(log_moment: torch.Tensor) -> torch.Tensor:
    """E[2^y] - 1 from log E[2^y], at least 0 and finite in float32."""
    return torch.clamp(torch.expm1(torch.clamp(log_moment, max=LOG2_MAX * math.log(2.0))), min=0.0)


def log_normal_growth(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[2^y] - 1 for y ~ N(mu, sigma^2) (vaexprs.bundle.heads.log_normal_growth)."""
    a = math.log(2.0)
    return growth(a * mu + 0.5 * (a * sigma).pow(2))


@register_head
class LogHurdleHead(ScaledLog, HurdleGaussianHead):
    """The hurdle on log2(x / s + 1) (`ScaledLog`). normalize=auto leaves such values as they are (it logs
    non-integer values from 100 up), and the hurdle's Gaussian drawn on their linear scale made cells a classifier
    told apart (fractions: AUC 0.84; on log2(x / s + 1), mapped back, 0.53: benchmarks/research/scaled_log.py).
    Cells come out in the input's own values, s * (2^y - 1), so the per-gene cap and every output stay in the
    space the user gave; likelihood=auto tries it only there (vaexprs.model.selection)."""

    name = "log_hurdle"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.add_log_scale(config.n_genes)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """E[s (2^y - 1)] (vaexprs.bundle.heads.log_hurdle_mean, in torch)."""
        a = math.log(2.0)
        mu, sigma = params["mu"], params["sigma"]
        log_moment = (
            a * mu + 0.5 * (a * sigma).pow(2)
            + torch.special.log_ndtr(mu / sigma + a * sigma) - torch.special.log_ndtr(mu / sigma)
        )  # fmt: skip
        return torch.sigmoid(-params["pi_logit"]) * self.log_scale * growth(log_moment)


@register_head
class FloorHurdleHead(HurdleGaussianHead):
    """The hurdle for signed values (z-scored, batch-corrected, log-ratio): its 0 moved to each gene's training
    minimum, the `floor`. Scaling keeps a gene's undetected cells together at one value below 0 (94% of the
    values of pbmc3k's HVGs after sc.pp.scale), which a Gaussian cannot draw; where the values have no such
    point mass, the zero probability goes to ~0 and what is left is a Gaussian above the gene's minimum."""

    name = "floor_hurdle"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.register_buffer("floor", torch.zeros(config.n_genes))

    def start_from_data(self, x: Any, codes: np.ndarray | None, n_labels: int, seed: int) -> None:
        """The floor (each gene's minimum over all cells), then the hurdle's start from the values above it."""
        from vaexprs.data.preprocess import moments_above_floor

        floor, moments = moments_above_floor(x, codes, n_labels, seed)
        self.set_floor(floor)
        self.start_from(moments)

    def set_floor(self, floor: np.ndarray) -> None:
        with torch.no_grad():
            self.floor.copy_(torch.as_tensor(np.asarray(floor), dtype=self.floor.dtype))

    def above_floor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x - self.floor, min=0.0)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.above_floor(x))

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return super().reconstruction_loss(params, self.above_floor(x))

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().mean(params) + self.floor

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**super().export_outputs(params), "floor": self.floor.expand_as(params["mu"])}


def mixture_log_prob(
    x: torch.Tensor, params: dict[str, torch.Tensor]
) -> torch.Tensor:  # fmt: skip
    """log of sigmoid(pi) N(x; bg_mu, bg_sigma^2) + sigmoid(-pi) N(x; mu, sigma^2), per value."""

    def normal(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x - loc) / scale).pow(2) - torch.log(scale) - 0.5 * math.log(2 * math.pi)

    background = F.logsigmoid(params["pi_logit"]) + normal(params["bg_mu"], params["bg_sigma"])
    expressed = F.logsigmoid(-params["pi_logit"]) + normal(params["mu"], params["sigma"])
    return torch.logaddexp(background, expressed)


@register_head
class MixtureHead(FloorHurdleHead):
    """Two Gaussians per gene and cell, for signed values without a point mass (regressed-out, batch-corrected):
    a regression spreads a gene's undetected cells into a narrow `background` of their own, below the expressed
    ones, which neither a hurdle (its 0 is one value: scanpy_regressed kept 0.23x the real gene variance) nor one
    Gaussian can draw. Background: `bg_loc` (per cell, from the decoder) and a per-gene sd; expressed: the
    hurdle's mean and noise (per gene, times a bounded per-cell factor), untruncated; both sds stay above 1% of
    the gene's spread, so a point mass (z-scores) cannot collapse a component. Nothing is drawn below the floor.
    """

    name = "mixture"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.bg_loc = nn.Linear(n_hidden, config.n_genes)
        self.bg_log_sigma = nn.Parameter(torch.zeros(config.n_genes))
        self.register_buffer("min_sigma", torch.full((config.n_genes,), SIGMA_FLOOR))

    def start_from_data(self, x: Any, codes: np.ndarray | None, n_labels: int, seed: int) -> None:
        """Floor, then each gene's two groups of values (a 1-d 2-means on a seeded sample): the background
        component starts at the lower group, the expressed one at the upper, pi at the lower group's share."""
        from vaexprs.data.preprocess import two_groups

        floor, groups = two_groups(x, seed)
        self.set_floor(floor)
        with torch.no_grad():
            self.min_sigma.copy_(torch.from_numpy(groups["min_sigma"]))
            self.bg_loc.bias.copy_(torch.from_numpy(groups["low_mean"]))
            self.bg_log_sigma.copy_(torch.from_numpy(np.log(groups["low_sd"])))
            self.loc.bias.copy_(torch.from_numpy(groups["high_mean"]))
            self.log_sigma.copy_(torch.from_numpy(np.log(groups["high_sd"])))
            share = np.clip(groups["low_share"], 1e-3, 1 - 1e-3)
            self.dropout.bias.copy_(torch.from_numpy(np.log(share / (1 - share))))

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        params = super().forward(h, library)  # the hurdle's mu, sigma (per gene x per cell) and pi_logit
        sigma = torch.maximum(params["sigma"], self.min_sigma)
        bg_sigma = torch.maximum(torch.exp(self.bg_log_sigma), self.min_sigma).expand_as(sigma)
        return {**params, "sigma": sigma, "bg_mu": self.bg_loc(h), "bg_sigma": bg_sigma}

    def reconstruction_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return -mixture_log_prob(x, params).sum(-1)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        background = torch.sigmoid(params["pi_logit"])
        return background * params["bg_mu"] + (1 - background) * params["mu"]

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            **{k: params[k] for k in ("mu", "sigma", "pi_logit", "bg_mu", "bg_sigma")},
            "floor": self.floor.expand_as(params["mu"]),
        }


@register_head
class LogMixtureHead(ScaledLog, MixtureHead):
    """The mixture's two Gaussians per gene and cell on log2(x / s + 1) (`ScaledLog`), for the same small
    linear-scale values as log_hurdle. Where a value's spread depends on something the latent code cannot know
    (methylation ratios: a gene covered by a few cytosines stays near the nucleus' prior, a well-covered one
    spreads), one Gaussian per value draws a tail the real values lack; two of them, a narrow and a wide one,
    draw both (benchmarks/research/noise_shape.py). Nothing is drawn below each gene's logged minimum, so a 0
    comes back as 0; but its zeros are only the draws clipped there, too few where the values hold many (fractions:
    28% against 55%), so it is for zero-free values, and likelihood=auto trains it only there."""

    name = "log_mixture"

    def __init__(self, n_hidden: int, config: ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.add_log_scale(config.n_genes)

    def mean(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """E[s (2^y - 1)] over the two components (the floor aside, as the mixture's mean;
        vaexprs.bundle.heads.log_mixture_mean in torch)."""
        background = torch.sigmoid(params["pi_logit"])
        low = log_normal_growth(params["bg_mu"], params["bg_sigma"])
        return self.log_scale * (background * low + (1 - background) * log_normal_growth(params["mu"], params["sigma"]))


class VAE(nn.Module):
    """A VAE, or a CVAE when `config.n_labels > 0`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, d, hidden = config.n_labels, config.latent_dim, list(config.hidden)
        self.encoder = mlp([config.n_genes + c, *hidden], config)
        self.z_mean = nn.Linear(hidden[-1], d)
        self.z_logvar = nn.Linear(hidden[-1], d)
        self.decoder = mlp([d + c, *reversed(hidden)], config)
        if config.likelihood not in HEAD_MODULES:
            raise OptionError(
                "likelihood", f"must be one of {', '.join(HEAD_MODULES)} to build a network; got {config.likelihood!r}"
            )
        self.head = HEAD_MODULES[config.likelihood](hidden[0], config)
        if config.encoder_input == "standardized":
            self.register_buffer("input_center", torch.zeros(config.n_genes))
            self.register_buffer("input_scale", torch.ones(config.n_genes))

    @property
    def standardizes_input(self) -> bool:
        return self.config.encoder_input == "standardized"

    def start_encoder_input(self, x: Any, seed: int) -> None:
        """encoder_input=standardized: each gene's mean and sd of the head's encoder input over a seeded sample
        of at most FLOOR_SAMPLE_CELLS training cells (bounded on disk too), the sd floored at the median gene's
        so that a barely detected gene is not blown up. Call after the head's own start (floor_hurdle's floor
        is part of its input)."""
        if not self.standardizes_input:
            return
        from vaexprs.data.backed import sample_rows
        from vaexprs.data.preprocess import FLOOR_SAMPLE_CELLS

        rows = sample_rows(x.shape[0], FLOOR_SAMPLE_CELLS, seed)
        total = np.zeros(self.config.n_genes)
        squares = np.zeros(self.config.n_genes)
        with torch.no_grad():
            for start in range(0, len(rows), STANDARDIZE_CHUNK):
                block = x[rows[start : start + STANDARDIZE_CHUNK]]
                block = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float32)
                v = self.head.encoder_input(torch.from_numpy(block)).double().numpy()
                total += v.sum(0)
                squares += (v**2).sum(0)
        n = max(len(rows), 1)
        mean = total / n
        sd = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        floor = max(float(np.median(sd)), 1e-3)
        with torch.no_grad():
            self.input_center.copy_(torch.from_numpy(mean))
            self.input_scale.copy_(torch.from_numpy(np.maximum(sd, floor)))

    def encoder_values(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees of the genes: the head's input, standardized per gene when so configured."""
        v = self.head.encoder_input(x)
        if self.standardizes_input:
            v = torch.clamp((v - self.input_center) / self.input_scale, -INPUT_CLIP, INPUT_CLIP)
        return v

    def _condition(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.config.is_conditional:
            if c is None:
                raise InputError("a CVAE needs labels (one-hot) for every cell")
            return torch.cat([x, c], dim=-1)
        return x

    def inference(self, x: torch.Tensor, c: torch.Tensor | None = None, sample: bool = True) -> dict[str, torch.Tensor]:
        """x (B, G) in model space, c (B, C) one-hot -> z_mean, z_logvar, z (B, D); z = z_mean unless sampled."""
        h = self.encoder(self._condition(self.encoder_values(x), c))
        z_mean, z_logvar = self.z_mean(h), self.z_logvar(h)
        z = z_mean + torch.randn_like(z_mean) * torch.exp(0.5 * z_logvar) if sample else z_mean
        return {"z_mean": z_mean, "z_logvar": z_logvar, "z": z}

    def generative(
        self, z: torch.Tensor, c: torch.Tensor | None = None, library: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return self.head(self.decoder(self._condition(z, c)), library)

    def loss(
        self, x: torch.Tensor, c: torch.Tensor | None = None, beta: float = 1.0, sample: bool = True
    ) -> LossOutput:
        """J = L + beta * R per cell; L summed over genes, R = KL(q(z|x) || N(0, I))."""
        inf = self.inference(x, c, sample)
        params = self.generative(inf["z"], c, self.head.library(x))
        recon = self.head.reconstruction_loss(params, x)
        kl = 0.5 * (inf["z_logvar"].exp() + inf["z_mean"].pow(2) - 1.0 - inf["z_logvar"]).sum(-1)
        return LossOutput(loss=(recon + beta * kl).mean(), recon=recon, kl=kl)


class OutputDecoder(nn.Module):
    """The deployable decoder: (z, one-hot label) -> the head's outputs (`head.output_names`), each (B, G).

    bce/mse: `x_mean` with the per-gene min-max de-scaling folded in (x = y * scale + minimum), so the ONNX
    graph exported from this module and the Python API give the same values and nothing downstream needs the
    scaler. nb/zinb/hurdle: distribution parameters (rho, theta, pi_logit / mu, sigma, pi_logit); the noise is
    drawn in numpy (vaexprs.likelihoods.outputs_to_cells), so generation keeps no torch.
    """

    def __init__(self, model: VAE, scale: Any = None, minimum: Any = None) -> None:
        super().__init__()
        self.model = model
        self.descale = scale is not None
        if self.descale:
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(1, -1))
            self.register_buffer("minimum", torch.as_tensor(minimum, dtype=torch.float32).reshape(1, -1))

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.model.head.output_names

    def forward(self, z: torch.Tensor, label_onehot: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        params = self.model.generative(z, label_onehot)
        outputs = self.model.head.export_outputs(params)
        if self.descale:
            outputs["x_mean"] = outputs["x_mean"] * self.scale + self.minimum
        return tuple(outputs[name] for name in self.output_names)


class OutputEncoder(nn.Module):
    """The deployable encoder: cells in the decoder's output space (and one-hot labels) -> (z_mean, z_logvar).

    The min-max scaling is folded in (clipped to the training range), mirroring OutputDecoder.
    """

    def __init__(self, model: VAE, scale: Any = None, minimum: Any = None) -> None:
        super().__init__()
        self.model = model
        self.rescale = scale is not None
        if self.rescale:
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(1, -1))
            self.register_buffer("minimum", torch.as_tensor(minimum, dtype=torch.float32).reshape(1, -1))

    def forward(self, x: torch.Tensor, label_onehot: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.rescale:
            x = torch.clamp((x - self.minimum) / self.scale, 0.0, 1.0)
        inf = self.model.inference(x, label_onehot, sample=False)
        return inf["z_mean"], inf["z_logvar"]
