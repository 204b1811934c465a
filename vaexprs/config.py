"""Every user-facing option, declared once: its name, type, default, bounds and help text.

    ModelConfig(latent_dim=10, hidden=(128,), likelihood="auto")
    TrainConfig(epochs=300, patience=20)
    DataConfig(normalize="auto")

`fit_vae`'s keywords, the `vaexprs train` flags, the MLflow params, the checkpoint and bundle.json's
`model_config` all come from these dataclasses; MLproject's parameters are checked against them by a test.
Field metadata carries the help text, the CLI spelling and the bounds, so a value is checked in one place
(`check_fields`) and an error names the option the way the user wrote it: `latent_dim` in Python,
`--latent-dim` on the command line (see `vaexprs.errors.OptionError`).

Light on purpose (no torch, numpy only for number types): the CLI reads it to build `--help`.
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin

from vaexprs.errors import OptionError

# ------------------------------------------------------------------------------------------ choices

Likelihood = Literal[
    "auto", "bce", "mse", "hurdle", "log_hurdle", "log_mixture", "nb", "zinb", "floor_hurdle", "mixture"
]
Normalize = Literal["auto", "lognorm", "log", "none"]
Monitor = Literal["loss", "val_loss"]
Device = Literal["auto", "cpu", "cuda"]
Activation = Literal["relu", "elu", "gelu", "tanh", "leaky_relu"]
EncoderInput = Literal["auto", "head", "standardized"]
ModelType = Literal["auto", "vae", "cvae"]
Sampler = Literal["gmm", "prior"]
Provider = Literal["auto", "cpu", "cuda"]
# what generated values mean: sampled counts, log-normalised counts, the head's log space or raw values, the
# expected value without sampling noise (VAExprs' behaviour)
OutputSpace = Literal["counts", "lognorm", "log", "none", "mean"]

MAX_SEED = 2**63 - 1  # an int64: stored in .h5ad uns and MLflow params as a number
MAX_CLASSIFIER_SEED = 2**32 - 1  # scikit-learn's random_state range (the evaluation's PCA and classifiers)


def choices(alias: Any) -> tuple[str, ...]:
    """The values of a Literal alias, e.g. choices(Sampler) == ("gmm", "prior")."""
    return tuple(get_args(alias))


def opt(
    default: Any = MISSING,
    help: str = "",
    *,
    flags: tuple[str, ...] = (),
    bounds: tuple[float | None, float | None] | None = None,
    cli: bool = True,
    parse: Callable[[str], Any] | None = None,
    show: Callable[[Any], str] | None = None,
    factory: Callable[[], Any] | None = None,
    envvar: str | None = None,
) -> Any:
    """A dataclass field with what every surface needs to know about the option.

    flags: CLI spellings (default `--name-with-dashes`); bounds: inclusive (low, high) for numbers (None = open);
    cli: False for values the data decides (n_genes); parse/show: how the CLI reads and prints a value that is
    not a plain scalar (hidden sizes "512,256"); envvar: an environment variable the CLI reads as the default
    (how MLproject passes a flag such as --force).
    """
    meta = {"help": help, "flags": flags, "bounds": bounds, "cli": cli, "parse": parse, "show": show, "envvar": envvar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def option_flag(name: str) -> str:
    """The CLI spelling of a Python option name: latent_dim -> --latent-dim."""
    return "--" + name.replace("_", "-")


def parse_hidden(spec: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """'512' or '512,256' (or a list) -> (512, 256)."""
    if isinstance(spec, bool):
        raise OptionError("hidden", f"must be layer sizes like 512 or 512,256; got {spec!r}")
    if isinstance(spec, int):
        return (spec,)
    parts = list(spec) if isinstance(spec, (list, tuple)) else str(spec).replace(" ", "").split(",")
    if "" in parts and parts != [""]:  # "512," or "512,,256": a size left out, not a smaller network
        raise OptionError("hidden", f"must be layer sizes like 512 or 512,256; got {spec!r} (an empty size)")
    parts = [p for p in parts if p != ""]
    try:
        sizes = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise OptionError("hidden", f"must be layer sizes like 512 or 512,256; got {spec!r}") from None
    return sizes


def show_hidden(sizes: Any) -> str:
    return ",".join(str(int(s)) for s in sizes)


def _parse_auto(spec: Any, kind: type, what: str) -> Any:
    """'auto' (or None) -> None, decided from the data later; else `kind(spec)`."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return None
    if isinstance(spec, bool):
        raise OptionError("value", f"must be {what} or auto; got {spec!r}")
    try:
        return kind(spec)
    except (TypeError, ValueError):
        raise OptionError("value", f"must be {what} or auto; got {spec!r}") from None


def parse_auto_int(spec: str | int | None) -> int | None:
    """'auto' (or None) -> None, decided from the data later; '100' -> 100."""
    return _parse_auto(spec, int, "a whole number")


def parse_auto_float(spec: str | float | None) -> float | None:
    """'auto' (or None) -> None, decided by model selection; '0.2' -> 0.2."""
    return _parse_auto(spec, float, "a number")


def show_auto(value: Any) -> str:
    return "auto" if value is None else str(value)


AUTO_EPOCHS_MAX = 300
AUTO_EPOCHS_MIN = 60
AUTO_CELL_EPOCHS = 300_000
AUTO_LARGE_BATCH_CELLS = 1000


def auto_epochs(n_cells: int) -> int:
    """300 epochs up to 1,000 cells; beyond, 300,000 cell-epochs (at least 60)."""
    return int(min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, round(AUTO_CELL_EPOCHS / max(n_cells, 1)))))


def auto_batch_size(n_cells: int) -> int:
    """32 below 1,000 cells (a few steps per epoch on tiny studies), else 128 (four times fewer steps)."""
    return 32 if n_cells < AUTO_LARGE_BATCH_CELLS else 128


# ------------------------------------------------------------------------------------------ checking


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_seed(seed: Any, high: int = MAX_SEED) -> int:
    """A seed for the functions outside the option dataclasses (simulate, evaluate): an integer in [0, high],
    refused with the usual one-line message rather than numpy's or scikit-learn's traceback."""
    return _check_number("seed", seed, int, (0, high))


def _check_number(name: str, value: Any, kind: type, bounds: tuple[float | None, float | None] | None) -> Any:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)  # int, float and numpy's numbers (not numpy's bool_: no Real)
        or (kind is int and not float(value).is_integer())
    ):
        want = "an integer" if kind is int else "a number"
        raise OptionError(name, f"must be {want}; got {value!r}")
    value = int(value) if kind is int else float(value)
    if kind is float and not math.isfinite(value):
        raise OptionError(name, f"must be a finite number; got {value!r}")
    low, high = bounds or (None, None)
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise OptionError(name, f"must be between {_fmt(low)} and {_fmt(high)}; got {_fmt(value)}")
        if low is not None:
            raise OptionError(name, f"must be >= {_fmt(low)}; got {_fmt(value)}")
        raise OptionError(name, f"must be <= {_fmt(high)}; got {_fmt(value)}")
    return value


def _fmt(x: float) -> str:
    """Short, but never rounded onto a bound: 2.0000001 was shown as 'got 2' beside 'between 0 and 2'."""
    return (f"{x:g}" if float(f"{x:g}") == x else repr(x)) if isinstance(x, float) else str(x)


def check_value(name: str, hint: Any, value: Any, bounds: Any = None) -> Any:
    """Check one value against its type hint (Literal, int, float, bool, str, tuple[int, ...], X | None)."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is typing.Union or (origin is not None and type(None) in args and origin.__name__ == "UnionType"):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return check_value(name, rest[0], value, bounds) if len(rest) == 1 else value
    if type(None) in args and value is None:
        return None
    if origin is Literal:
        if value not in args:
            raise OptionError(name, f"must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise OptionError(name, f"must be True or False; got {value!r}")
        return value
    if hint in (int, float):
        return _check_number(name, value, hint, bounds)
    if hint is str:
        if not isinstance(value, str):
            raise OptionError(name, f"must be a string; got {value!r}")
        return value
    if origin is tuple and args and args[0] is int:
        sizes = parse_hidden(value) if name == "hidden" else tuple(value)
        if not sizes:
            raise OptionError(name, "must hold at least one size")
        return tuple(_check_number(name, s, int, bounds) for s in sizes)
    return value


def check_fields(obj: Any) -> None:
    """Validate (and normalise, e.g. 3.0 -> 3) every field of a config dataclass in place."""
    hints = _resolved_hints(type(obj))
    for f in fields(obj):
        value = check_value(f.name, hints[f.name], getattr(obj, f.name), f.metadata.get("bounds"))
        object.__setattr__(obj, f.name, value)


def config_defaults(cls: type) -> dict[str, Any]:
    """name -> default for every field of a config dataclass."""
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
    return out


def split_options(options: Mapping[str, Any], *classes: type, where: str = "") -> list[dict[str, Any]]:
    """Split keyword options among config classes; an unknown name is an OptionError listing the known ones."""
    names = [{f.name for f in fields(cls)} for cls in classes]
    known = set().union(*names)
    unknown = sorted(set(options) - known)
    if unknown:  # listed: what a caller may set (not what the data decides, n_genes and n_labels)
        settable = sorted({f.name for cls in classes for f in fields(cls) if f.metadata.get("cli", True)})
        raise OptionError(unknown[0], f"is not an option{where}; known: {', '.join(settable)}")
    return [{k: v for k, v in options.items() if k in group} for group in names]


class Config:
    """Mixin: validation after init, plain-dict round trip (for checkpoints, bundle.json and MLflow params)."""

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> Any:
        """Build from a dict, ignoring keys this version does not know (older/newer checkpoints)."""
        if not isinstance(d, Mapping):
            raise OptionError(where or cls.__name__, "must be an object")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------------------------------ the configs


@dataclass
class ModelConfig(Config):
    """The network: saved with the weights, in bundle.json and in the MLflow params (one source of truth)."""

    latent_dim: int = opt(10, "Latent dimensions (VAExprs' vignette: 2).", bounds=(1, 256))
    hidden: tuple[int, ...] = opt(
        (128,), "Encoder layer sizes, e.g. 512 or 512,256; the decoder mirrors them.", bounds=(1, 16384),
        parse=parse_hidden, show=show_hidden,
    )  # fmt: skip
    likelihood: Likelihood = opt(
        "auto",
        "Decoder likelihood: bce or mse (VAExprs; min-max scaled values, the decoder mean), hurdle (log-scale "
        "values with exact zeros), log_hurdle (small linear-scale values, e.g. fractions of a cell's total: the "
        "hurdle on log2(x / s + 1), cells in the input's values), log_mixture (the same values: two Gaussians "
        "per gene on log2(x / s + 1), where a value's spread varies, e.g. methylation ratios), nb or zinb (raw "
        "integer counts), floor_hurdle (signed values, e.g. z-scores: a hurdle at each gene's minimum), mixture "
        "(signed values without a point mass, e.g. after regress_out: two Gaussians per gene), auto (train the "
        "heads that apply and keep the one whose cells are hardest to tell from held-out cells).",
    )
    activation: Activation = opt("relu", "Hidden-layer activation.")
    dropout: float | None = opt(
        None, "Dropout after each hidden layer; auto = chosen with likelihood=auto (0 or 0.2 for a sampled head, by "
        "the held-out cells), else 0.",
        bounds=(0.0, 0.95), parse=parse_auto_float, show=show_auto,
    )  # fmt: skip
    encoder_input: EncoderInput = opt(
        "auto", "What the encoder sees: head (the head's own input: log1p of log-scale values and counts, [0, 1] "
        "values for bce/mse), standardized (that, centred and scaled per gene over the training cells: dense "
        "log-scale data far from 0 such as array intensities), auto = chosen with likelihood=auto by the "
        "held-out cells, else head.",
    )  # fmt: skip
    batch_norm: bool = opt(False, "Batch normalisation after each hidden layer.")
    n_genes: int = opt(1, "Genes (from the data).", bounds=(1, None), cli=False)
    n_labels: int = opt(0, "Labels (from the data): 0 = VAE, > 0 = CVAE.", bounds=(0, None), cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.dropout, str) and self.dropout.strip().lower() == "auto":
            self.dropout = None
        super().__post_init__()
        if self.likelihood != "auto":  # likelihood=auto: model selection decides these
            if self.dropout is None:
                self.dropout = 0.0
            if self.encoder_input == "auto":
                self.encoder_input = "head"
        if len(self.hidden) > 8:
            raise OptionError("hidden", f"allows at most 8 layers; got {len(self.hidden)}")

    @property
    def is_conditional(self) -> bool:
        return self.n_labels > 0


@dataclass
class TrainConfig(Config):
    """Optimisation: Adam on J = reconstruction + beta * KL, mini-batches, validation, early stopping."""

    epochs: int | None = opt(
        None, "Maximum epochs; auto = 300 up to 1,000 cells, then fewer (300,000 cell-epochs, at least 60).",
        bounds=(1, 100_000), parse=parse_auto_int, show=show_auto,
    )  # fmt: skip
    batch_size: int | None = opt(
        None, "Mini-batch size; auto = 32 below 1,000 cells, else 128.", bounds=(1, 65_536),
        parse=parse_auto_int, show=show_auto,
    )  # fmt: skip
    lr: float = opt(1e-3, "Adam learning rate.", bounds=(1e-8, 10.0))
    beta: float | None = opt(
        None, "Weight of the KL term (VAExprs' lambda; 0 = plain autoencoder); auto = chosen with likelihood=auto "
        "(1, or 4 where the held-out cells say the heavier KL term makes the winner's cells more real), else 1.",
        bounds=(0.0, 1000.0), parse=parse_auto_float, show=show_auto,
    )  # fmt: skip
    kl_warmup: float = opt(
        0.0, "Share of the epochs over which the KL weight rises linearly from 0 to beta (0 = beta from the first "
        "epoch, as VAExprs; scVI warms up by default). Early stopping and the best epoch wait until it is done.",
        bounds=(0.0, 1.0),
    )  # fmt: skip
    val_split: float = opt(0.0, "Fraction of cells held out for validation (per label for a CVAE).", bounds=(0.0, 0.9))
    monitor: Monitor = opt("loss", "What early stopping and the best epoch watch: loss or val_loss.")
    patience: int = opt(0, "Early-stopping patience in epochs (0 = off: train all epochs).", bounds=(0, 100_000))
    restore_best_weights: bool = opt(True, "Keep the weights of the best epoch, not the last.")
    seed: int = opt(
        1,
        "Random seed (CPU training is bit-reproducible on one kind of machine).",
        bounds=(0, MAX_CLASSIFIER_SEED),  # the sampler's mixtures and the selection's judges are scikit-learn's
    )
    device: Device = opt("auto", "Training device: auto, cpu or cuda.")

    def __post_init__(self) -> None:
        if self.patience is None:  # VAExprs' spelling of "no early stopping"
            self.patience = 0
        for name in ("epochs", "batch_size", "beta"):
            if getattr(self, name) == "auto":
                setattr(self, name, None)
        super().__post_init__()

    def resolved(self, n_cells: int) -> TrainConfig:
        """A copy with the automatic sizes decided for `n_cells` training cells (what the result records).

        Why these numbers: the quality study trained 300 epochs on 45 to 1,000 cells (benchmarks/research);
        beyond that a fixed budget of cell-epochs keeps the number of gradient steps in the same range while
        the training time stays bounded (pbmc3k, 2,638 cells: 114 epochs of batches of 128).
        """
        epochs = self.epochs if self.epochs is not None else auto_epochs(n_cells)
        batch = self.batch_size if self.batch_size is not None else auto_batch_size(n_cells)
        return replace(self, epochs=epochs, batch_size=batch)

    def warmup_epochs(self) -> int:
        """Epochs of the KL warm-up (kl_warmup of the resolved epochs; 0 without one)."""
        return math.ceil(self.kl_warmup * int(self.epochs or 0)) if self.kl_warmup else 0

    def kl_weight(self, epoch: int) -> float:
        """The KL term's weight at `epoch` (1-based): beta, scaled by epoch / warmup_epochs during the warm-up."""
        beta = 1.0 if self.beta is None else self.beta
        warmup = self.warmup_epochs()
        return beta * min(1.0, epoch / warmup) if warmup else beta

    def with_beta_for(self, likelihood: str) -> TrainConfig:
        """beta = auto for a head the user named is VAExprs' 1; with likelihood=auto it stays open for the
        model selection (vaexprs.model.selection) to decide."""
        if self.beta is not None or likelihood == "auto":
            return self
        return replace(self, beta=1.0)


@dataclass
class DataConfig(Config):
    """How the input values become what the network sees."""

    normalize: Normalize = opt(
        "auto",
        "lognorm (scater: log2(x / size factor + 1)), log (log2(x + 1)), none, or auto (counts -> lognorm, "
        "RPKM/FPKM-like values -> log, else none).",
    )
    layer: str | None = opt(None, "AnnData layer to use instead of X.")
    round_counts: bool = opt(False, "nb/zinb: round non-integer values instead of refusing them.")


FIT_CONFIGS = (ModelConfig, TrainConfig, DataConfig)
