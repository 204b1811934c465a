"""Prototype heads for the diagnosis of nb on full-length read counts, swapped in through the public
`vaexprs.model.register_head` under the package's own head name (so gen_exprs and the numpy sampling treat them as
nb / zinb), only while a model is built.

    with patched("nb_lnenc"):
        result = vaexprs.fit_vae(adata, "cell_type", likelihood="nb", ...)

- nb_lnenc / zinb_lnenc: the encoder sees log1p(1e4 * counts / library) (library-normalised) instead of
  log1p(raw counts), so the latent cannot encode the library size (27-fold on read counts).
- nb_gc / zinb_gc: as *_lnenc, plus a gene-and-cell inverse dispersion from the decoder (scVI's 'gene-cell'),
  so a label's programme can be less noisy than the gene's pooled dispersion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from vaexprs import model as vm

SCALE = 1e4


class NBLogNormEncoder(vm.NegativeBinomialHead):
    name = "nb"

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(SCALE * x / x.sum(-1, keepdim=True).clamp(min=1.0))


class ZINBLogNormEncoder(vm.ZeroInflatedNegativeBinomialHead):
    name = "zinb"

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(SCALE * x / x.sum(-1, keepdim=True).clamp(min=1.0))


class NBGeneCell(NBLogNormEncoder):
    def __init__(self, n_hidden: int, config: vm.ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.theta_layer = nn.Linear(n_hidden, config.n_genes)

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        params = super().forward(h, library)
        params["theta"] = torch.exp(self.theta_layer(h).clamp(-10, 10))  # (B, G)
        return params

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"rho": params["rho"], "theta": params["theta"]}


class ZINBGeneCell(ZINBLogNormEncoder):
    def __init__(self, n_hidden: int, config: vm.ModelConfig) -> None:
        super().__init__(n_hidden, config)
        self.theta_layer = nn.Linear(n_hidden, config.n_genes)

    def forward(self, h: torch.Tensor, library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        params = super().forward(h, library)
        params["theta"] = torch.exp(self.theta_layer(h).clamp(-10, 10))
        return params

    def export_outputs(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"rho": params["rho"], "theta": params["theta"], "pi_logit": params["pi_logit"]}


PROTOTYPES: dict[str, type[vm.LikelihoodHead]] = {
    "nb_lnenc": NBLogNormEncoder,
    "zinb_lnenc": ZINBLogNormEncoder,
    "nb_gc": NBGeneCell,
    "zinb_gc": ZINBGeneCell,
}


@contextlib.contextmanager
def patched(proto: str | None) -> Iterator[str | None]:
    """Register the prototype under its package head name for the duration; restore the original after."""
    if not proto:
        yield None
        return
    head = PROTOTYPES[proto]
    original = vm.HEADS[head.name]
    vm.register_head(head)
    try:
        yield head.name
    finally:
        vm.HEADS[head.name] = original


class InitFromData:
    """A fit_vae callback (public `callbacks=` hook) that starts the head's per-gene parameters at the data's own
    values instead of 0 (sigma = theta = 1): hurdle log_sigma = log sd of the non-zero values, loc bias = their
    mean, dropout bias = logit(zero fraction); nb/zinb scale bias = log mean proportion, log_theta = a moment
    estimate; bce/mse bias = logit(mean scaled value). With few optimisation steps (small data) the defaults
    cannot travel far enough (e.g. sigma 1 -> 5 on the vignette data)."""

    def __init__(self, adata: object, likelihood: str) -> None:
        import numpy as np

        from vaexprs.data.preprocess import apply_normalization, choose_normalization

        x = adata.X  # type: ignore[attr-defined]
        x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
        self.values: dict[str, np.ndarray] = {}
        eps = 1e-6
        if likelihood in ("nb", "zinb"):
            lib = x.sum(1, keepdims=True)
            prop = (x / np.maximum(lib, 1.0)).mean(0)
            self.values["scale_bias"] = np.log(prop + 1e-9)
            m, v = x.mean(0), x.var(0)
            theta = np.where(v > m, m**2 / np.maximum(v - m, eps), 100.0)
            self.values["log_theta"] = np.log(np.clip(theta, 0.01, 100.0))
            if likelihood == "zinb":
                self.values["dropout_bias"] = np.full(x.shape[1], -3.0)
            return
        method, _ = choose_normalization(x, "auto")
        y = np.asarray(apply_normalization(x, method), dtype=np.float64)
        if likelihood == "hurdle":
            nz = np.where(y > 0, y, np.nan)
            count = np.sum(y > 0, 0)
            mean = np.where(count > 0, np.nanmean(np.where(count > 0, nz, 0.0), 0), 0.0)
            sd = np.where(count > 1, np.nanstd(np.where(count > 1, nz, 0.0), 0), 1.0)
            zero = np.clip((y == 0).mean(0), 0.01, 0.99)
            self.values["loc_bias"] = np.nan_to_num(mean)
            self.values["log_sigma"] = np.log(np.clip(np.nan_to_num(sd, nan=1.0), 0.05, None))
            self.values["dropout_bias"] = np.log(zero / (1 - zero))
        else:  # bce / mse: sigmoid of the bias = mean of the min-max scaled values
            lo, hi = y.min(0), y.max(0)
            s = np.clip(((y - lo) / np.where(hi > lo, hi - lo, 1.0)).mean(0), 0.01, 0.99)
            self.values["linear_bias"] = np.log(s / (1 - s))

    def on_train_begin(self, model: object, config: object) -> None:
        head = model.head  # type: ignore[attr-defined]
        with torch.no_grad():
            for name, value in self.values.items():
                t = torch.as_tensor(value, dtype=torch.float32)
                if name == "scale_bias":
                    head.scale.bias.copy_(t)
                elif name == "log_theta":
                    head.log_theta.copy_(t)
                elif name == "dropout_bias":
                    head.dropout.bias.copy_(t)
                elif name == "loc_bias":
                    head.loc.bias.copy_(t)
                elif name == "log_sigma":
                    head.log_sigma.copy_(t)
                elif name == "linear_bias":
                    head.linear.bias.copy_(t)

    def on_epoch_end(self, epoch: int, logs: dict, state: object) -> None: ...

    def on_train_end(self, state: object) -> None: ...

    def on_train_error(self, error: BaseException, state: object) -> None: ...
