"""The training job end to end, shared by `vaexprs train` and the MLflow entry points.

    outcome = train_pipeline(TrainOptions(data="cells.h5ad", model="cvae", epochs=30, bundle_dir="bundle"))

read -> fit_vae -> checkpoint -> ONNX bundle (-> MLflow run, registry when asked). Every input is validated
before any training starts, so bad options fail fast with an InputError.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaexprs.errors import InputError

log = logging.getLogger("vaexprs")

MODEL_CHOICES = ("vae", "cvae")


def parse_hidden(spec: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """'512' or '512,256' (or a list) -> (512, 256)."""
    if isinstance(spec, int):
        return (spec,)
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
    else:
        parts = [p for p in str(spec).replace(" ", "").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"hidden must be layer sizes like 512 or 512,256; got {spec!r}") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"hidden must be positive layer sizes like 512 or 512,256; got {spec!r}")
    return sizes


@dataclass
class TrainOptions:
    """The train command's options (CLI flags, MLproject parameters): defaults are the vignette's."""

    data: str | None = None  # None = the simulated vignette data
    label_key: str = "cell_type"
    model: str = "vae"
    layer: str | None = None
    latent_dim: int = 2
    hidden: str = "512"
    epochs: int = 100
    batch_size: int = 32
    beta: float = 1.0
    likelihood: str = "bce"  # bce | mse (VAExprs) | nb | zinb (raw counts) | hurdle (normalised log values)
    normalize: str = "auto"
    round_counts: bool = False  # nb/zinb: round non-integer values instead of refusing them
    val_split: float = 0.0
    patience: int | None = 10
    monitor: str = "loss"
    lr: float = 1e-3
    seed: int = 1
    device: str = "auto"
    bundle_dir: str | None = None
    checkpoint: str | None = None
    force: bool = False
    track: bool = False
    experiment: str = "vaexprs"
    register: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.model not in MODEL_CHOICES:
            raise InputError(f"model must be vae or cvae; got {self.model!r}")
        parse_hidden(self.hidden)
        if self.patience is not None and self.patience <= 0:
            self.patience = None  # 0 = no early stopping (MLproject parameters cannot be empty ints)
        for name in (self.bundle_dir, self.checkpoint):
            if name and not Path(name).resolve().parent.exists():
                raise InputError(f"output folder {Path(name).resolve().parent} does not exist")
        bundle = Path(self.bundle_dir) if self.bundle_dir else None
        if bundle and bundle.exists() and not self.force and (not bundle.is_dir() or any(bundle.iterdir())):
            raise InputError(f"{self.bundle_dir} exists and is not empty; pass --force to replace it")
        if self.checkpoint and Path(self.checkpoint).exists() and not self.force:
            raise InputError(f"{self.checkpoint} exists; pass --force to overwrite it")

    def to_params(self) -> dict[str, Any]:
        params = asdict(self)
        params.pop("extra")
        return params


@dataclass
class TrainOutcome:
    result: Any  # VAEResult
    bundle_dir: Path | None = None
    checkpoint: Path | None = None
    run_id: str | None = None
    model_uri: str | None = None
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def load_training_data(options: TrainOptions) -> Any:
    """AnnData from the data file (or the simulated vignette data), labels checked for a CVAE."""
    from vaexprs.data import read_expression, simulate

    if not options.data:
        adata = simulate()
    else:
        adata = read_expression(options.data, layer=options.layer)
    if options.model == "cvae" and options.label_key not in adata.obs:
        known = ", ".join(map(str, adata.obs.columns)) or "none"
        raise InputError(f"label column {options.label_key!r} not found in the data (obs columns: {known})")
    return adata


def fit_from_options(adata: Any, options: TrainOptions, callbacks: tuple[Any, ...] = ()) -> Any:
    from vaexprs.api import fit_vae

    return fit_vae(
        adata,
        options.label_key if options.model == "cvae" else None,
        latent_dim=options.latent_dim,
        hidden=parse_hidden(options.hidden),
        epochs=options.epochs,
        batch_size=options.batch_size,
        beta=options.beta,
        likelihood=options.likelihood,
        normalize=options.normalize,
        round_counts=options.round_counts,
        val_split=options.val_split,
        monitor=options.monitor,
        patience=options.patience,
        lr=options.lr,
        seed=options.seed,
        device=options.device,
        callbacks=callbacks,
    )


def train_pipeline(options: TrainOptions) -> TrainOutcome:
    """Validate, read, train, write the checkpoint and the bundle (and track in MLflow when asked)."""
    options.validate()
    adata = load_training_data(options)
    if options.track or options.register:
        from vaexprs.tracking import tracked_training

        return tracked_training(adata, options)
    result = fit_from_options(adata, options)
    outcome = TrainOutcome(result=result)
    if options.checkpoint:
        outcome.checkpoint = result.save(options.checkpoint)
    if options.bundle_dir:
        from vaexprs.export import export_bundle

        outcome.bundle_dir = export_bundle(result, options.bundle_dir, force=options.force)
    return outcome
