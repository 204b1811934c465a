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
