"""The VAExprs-compatible Python API: fit_vae and gen_exprs.

    result = fit_vae(adata, "cell_type", hidden=(512,), epochs=100, patience=10)   # a CVAE (labels given)
    gen = gen_exprs(result, num_samples=300, labels={"group2": 300}, seed=1)
    gen.x_gen, gen.y_gen, gen.x_train, gen.y_train, gen.latent; gen.to_anndata()

As in VAExprs, fit_vae learns the data and gen_exprs encodes the training cells, draws latents from a
BIC-selected Gaussian mixture over their latent means (per label for a CVAE), decodes and de-scales.
Generated values live in the training input's space after normalisation (`result.output_space`); heads with
sampling noise (nb, zinb: counts; hurdle: log values) draw it in numpy with the same function the onnxruntime
engine uses (`vaexprs.likelihoods.outputs_to_cells`), and `output_space="mean"` gives VAExprs' noise-free mean.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs.data import as_matrix
from vaexprs.errors import InputError
from vaexprs.jsonio import to_plain
from vaexprs.likelihoods import COUNT_LIKELIHOODS, LibrarySize, outputs_to_cells, resolve_output_space
from vaexprs.preprocess import Preprocessor, apply_normalization, check_counts, is_sparse, library_size
from vaexprs.sampler import LatentSampler, fit_latent_sampler, plan_labels

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

    from vaexprs.model import VAE, ModelConfig
    from vaexprs.train import Callback, TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vaexprs-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class VAEResult:
    """What fit_vae returns: the trained model and everything needed to generate from it or export it."""

    model: VAE
    model_config: ModelConfig
    train_config: TrainConfig
    preprocessor: Preprocessor
    sampler: LatentSampler
    history: list[dict[str, float]]
    best_epoch: int
    normalize_note: str = ""
    x_train: Any = None  # normalised training cells (N, G), dense or sparse; None after load()
    y_train: np.ndarray | None = None
    latent: np.ndarray | None = None  # training cells' latent means (N, D)
    data_info: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    library_size: LibrarySize | None = None  # count heads: per-label log-normal library sizes
    x_val: Any = None  # held-out validation cells, normalised like x_train (None without validation data)
    y_val: np.ndarray | None = None

    @property
    def genes(self) -> list[str]:
        return self.preprocessor.genes

    @property
    def labels(self) -> list[str]:
        return self.preprocessor.labels.classes if self.preprocessor.labels is not None else []

    @property
    def model_type(self) -> str:
        return "cvae" if self.model_config.is_conditional else "vae"

    @property
    def output_space(self) -> str:
        """The decoder's own space: counts for nb/zinb, else the normalisation (none = the input's own values)."""
        return "counts" if self.model_config.likelihood in COUNT_LIKELIHOODS else self.preprocessor.normalize

    def output_decoder(self) -> Any:
        """The torch decoder with de-scaling folded in (what export turns into decoder.onnx)."""
        from vaexprs.model import OutputDecoder

        scaler = self.preprocessor.scaler
        decoder = OutputDecoder(self.model.cpu(), *((scaler.output_scale, scaler.minimum) if scaler else ()))
        return decoder.eval()

    def output_encoder(self) -> Any:
        """The torch encoder taking cells in `output_space`, scaling folded in (what becomes encoder.onnx)."""
        from vaexprs.model import OutputEncoder

        scaler = self.preprocessor.scaler
        return OutputEncoder(self.model.cpu(), *((scaler.scale, scaler.minimum) if scaler else ())).eval()

    def check_genes(self, n_genes: int) -> None:
        if n_genes != self.preprocessor.n_genes:
            raise InputError(f"the data has {n_genes} genes but the model was trained on {self.preprocessor.n_genes}")

    def encode(self, x: Any, labels: Sequence[Any] | str | None = None, layer: str | None = None) -> np.ndarray:
        """Latent means (N, D) of new cells in the training genes' order (normalised like the training data)."""
        import torch

        from vaexprs.train import Batches

        matrix, genes, label_array = as_matrix(x, labels, layer)
        self.check_genes(matrix.shape[1])
        if hasattr(x, "var_names") and genes != self.genes:
            raise InputError("the data's genes are not the model's genes (same names in the same order needed)")
        codes = None
        if self.model_config.is_conditional:
            if label_array is None:
                raise InputError("a CVAE needs labels to encode cells")
            codes = self.preprocessor.labels.transform(label_array)
        batches = Batches(
            self.preprocessor.normalize_matrix(matrix), codes, self.preprocessor, self.model_config.n_labels
        )
        return _encode_batches(self.model.cpu(), batches, torch.device("cpu"))

    def save(self, path: str | Path) -> Path:
        """A weights-only checkpoint: tensors plus plain JSON-able config (loadable with weights_only=True)."""
        import torch

        path = Path(path)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "preprocessor": self.preprocessor.to_dict(),
            "sampler": self.sampler.to_dict(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "data_info": self.data_info,
            "library_size": self.library_size.to_dict() if self.library_size is not None else None,
        }
        # a JSON round trip leaves only plain Python types, which weights_only loading accepts
        payload = json.loads(json.dumps(meta, default=to_plain))
        payload["state_dict"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(payload, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VAEResult:
        import torch

        from vaexprs.model import VAE, ModelConfig
        from vaexprs.train import TrainConfig

        path = Path(path)
        if not path.is_file():
            raise InputError(f"checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a corrupt or foreign file
            raise InputError(f"{path} is not a vaexprs checkpoint: {str(exc).splitlines()[0]}") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not a vaexprs checkpoint")
        config = ModelConfig(**payload["model_config"])
        model = VAE(config)
        model.load_state_dict(payload["state_dict"])
        model.eval()
        return cls(
            model=model,
            model_config=config,
            train_config=TrainConfig(**payload["train_config"]),
            preprocessor=Preprocessor.from_dict(payload["preprocessor"]),
            sampler=LatentSampler.from_dict(payload["sampler"]),
            history=list(payload["history"]),
            best_epoch=int(payload["best_epoch"]),
            data_info=dict(payload.get("data_info", {})),
            library_size=LibrarySize.from_dict(payload["library_size"]) if payload.get("library_size") else None,
        )


@dataclass
class GeneratedCells:
    """gen_exprs' result, named as in VAExprs."""

    x_gen: np.ndarray  # (n, G) generated cells, float32, in `output_space` (counts are whole numbers)
    y_gen: np.ndarray | None  # (n,) label names, None for a VAE
    x_train: Any  # (N, G) the training cells in the same space (None when the model was loaded from disk)
    y_train: np.ndarray | None
    latent: np.ndarray  # (n, D) the latents that were decoded
    genes: list[str]
    output_space: str  # counts | lognorm | mean | the head's own space (lognorm, log, none)
    seed: int
    sampler: str
    value_space: str = ""  # the space the numbers are in (`mean` of a count head: expected counts)
    sampled: bool = False  # True when the cells carry the likelihood's sampling noise

    def to_anndata(self, label_key: str = "cell_type") -> AnnData:
        """Real (if known) and generated cells in one AnnData; obs['origin'] in {'real', 'generated'}."""
        import anndata as ad
        import pandas as pd

        blocks, origin, labels = [], [], []
        if self.x_train is not None:
            real = self.x_train.toarray() if is_sparse(self.x_train) else np.asarray(self.x_train)
            blocks.append(real.astype(np.float32))
            origin += ["real"] * real.shape[0]
            labels += list(self.y_train) if self.y_train is not None else []
        blocks.append(self.x_gen)
        origin += ["generated"] * self.x_gen.shape[0]
        labels += list(self.y_gen) if self.y_gen is not None else []
        n_real = len(origin) - self.x_gen.shape[0]
        names = [f"real{i}" for i in range(n_real)] + [f"gen{i}" for i in range(self.x_gen.shape[0])]
        obs = pd.DataFrame({"origin": pd.Categorical(origin, categories=["real", "generated"])}, index=names)
        if len(labels) == len(names):
            obs[label_key] = pd.Categorical(labels)
        adata = ad.AnnData(np.vstack(blocks), obs=obs, var=pd.DataFrame(index=self.genes))
        adata.uns["vaexprs"] = {
            "output_space": self.output_space,
            "value_space": self.value_space or self.output_space,
            "sampled": self.sampled,
            "seed": self.seed,
            "sampler": self.sampler,
        }
        return adata


def _encode_batches(model: VAE, batches: Any, device: Any, batch_size: int = 512) -> np.ndarray:
    """Latent means (N, D), 512 cells at a time, so a sparse matrix is never densified whole."""
    import torch

    model.eval()
    parts = []
    with torch.inference_mode():
        for x, c in batches.iterate(batch_size, device):
            parts.append(model.inference(x, c, sample=False)["z_mean"].cpu().numpy())
    return np.concatenate(parts).astype(np.float32)


def _split_validation(n: int, val_split: float, labels: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (per-label stratified) train/validation rows."""
    if not 0.0 <= val_split < 1.0:
        raise InputError(f"val_split must be in [0, 1); got {val_split}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == v) for v in np.unique(labels)]
    val = []
    for rows in groups:
        k = round(len(rows) * val_split)
        val.append(rng.permutation(rows)[: min(k, len(rows) - 1)])
    val_rows = np.sort(np.concatenate(val)) if val else np.array([], dtype=int)
    train_rows = np.setdiff1d(np.arange(n), val_rows)
    return train_rows, val_rows


def fit_vae(
    x_train: Any,
    y_train: Sequence[Any] | str | None = None,
    x_val: Any = None,
    y_val: Sequence[Any] | str | None = None,
    *,
    latent_dim: int = 2,
    hidden: Sequence[int] = (512,),
    epochs: int = 100,
    batch_size: int = 32,
    beta: float = 1.0,
    likelihood: str = "bce",
    normalize: str = "auto",
    val_split: float = 0.0,
    monitor: str = "loss",
    patience: int | None = None,
    lr: float = 1e-3,
    seed: int = 1,
    device: str = "auto",
    callbacks: Sequence[Callback] = (),
    layer: str | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    round_counts: bool = False,
) -> VAEResult:
    """Train a VAE (no labels) or a CVAE (labels given) on cells x genes data.

    x_train: AnnData (X, or `layer`), numpy or scipy.sparse. y_train: labels, or an obs column name.
    x_val/y_val: explicit validation cells (scaled with the training scaler), else `val_split` of x_train.
    likelihood: bce (VAExprs) | mse on min-max scaled values; nb | zinb on raw counts (no normalisation; the
    data must be non-negative integers, rounded first only with `round_counts`); hurdle on the normalised
    log-scale values (unscaled; for RPKM/FPKM-like data that are not counts).
    normalize: auto | lognorm | log | none (auto: counts -> lognorm, unlogged RPKM/FPKM -> log, else none).
    patience: early stopping on `monitor` (loss | val_loss) with restore-best-weights; None = off.
    """
    import torch

    from vaexprs.model import HEADS, VAE, ModelConfig
    from vaexprs.train import Batches, TrainConfig, TrainState, fit

    train_config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, monitor=monitor, patience=patience,
        seed=seed, device=device,
    )  # fmt: skip
    matrix, genes, labels = as_matrix(x_train, y_train, layer)
    if labels is not None:
        values, counts = np.unique(labels, return_counts=True)
        lonely = [str(v) for v, c in zip(values, counts) if c < 2]
        if lonely:
            raise InputError(f"label(s) with a single cell cannot be learnt: {', '.join(lonely)}")
    if likelihood not in HEADS:
        raise InputError(f"likelihood must be one of {', '.join(HEADS)}; got {likelihood!r}")
    head = HEADS[likelihood]
    if head.count_input:
        matrix = check_counts(matrix, likelihood, round_counts)
    val_matrix = val_labels = None
    if x_val is not None:
        val_matrix, _, val_labels = as_matrix(x_val, y_val, layer)
        if head.count_input:
            val_matrix = check_counts(val_matrix, likelihood, round_counts)
        if val_matrix.shape[1] != matrix.shape[1]:
            raise InputError(f"x_val has {val_matrix.shape[1]} genes but x_train has {matrix.shape[1]}")
        if labels is not None and val_labels is None:
            raise InputError("x_val needs y_val when training a CVAE")
    elif val_split > 0:
        train_rows, val_rows = _split_validation(matrix.shape[0], val_split, labels, seed)
        val_matrix, val_labels = matrix[val_rows], (labels[val_rows] if labels is not None else None)
        matrix, labels = matrix[train_rows], (labels[train_rows] if labels is not None else None)
    else:
        _split_validation(matrix.shape[0], val_split, None, seed)  # validates the value

    preprocessor, normalized, note = Preprocessor.fit(
        matrix, genes, labels, normalize="none" if head.count_input else normalize, scale=head.scaled_input
    )
    if head.count_input:
        note = f"likelihood {likelihood} models raw counts: no normalisation, no scaling"
    elif not head.scaled_input:
        low = float(normalized.min()) if normalized.size else 0.0
        if low < 0:
            raise InputError(
                f"likelihood {likelihood!r} needs non-negative normalised values (0 = not detected); after "
                f"normalize={preprocessor.normalize} the minimum is {low:.4g}"
            )
    log.info(note)
    n_labels = preprocessor.labels.n_classes if preprocessor.labels is not None else 0
    codes = preprocessor.labels.transform(labels) if labels is not None else None
    train_batches = Batches(normalized, codes, preprocessor, n_labels)
    val_batches = val_normalized = None
    if val_matrix is not None:
        val_codes = preprocessor.labels.transform(val_labels) if labels is not None else None
        val_normalized = preprocessor.normalize_matrix(val_matrix)
        val_batches = Batches(val_normalized, val_codes, preprocessor, n_labels)

    model_config = ModelConfig(
        n_genes=len(genes), n_labels=n_labels, latent_dim=latent_dim, hidden=tuple(hidden),
        activation=activation, dropout=dropout, batch_norm=batch_norm, likelihood=likelihood,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = VAE(model_config)
    source = getattr(x_train, "uns", {}).get("vaexprs_source", {}) if hasattr(x_train, "uns") else {}
    data_info = {
        "n_cells": int(matrix.shape[0]),
        "n_genes": len(genes),
        "n_val_cells": int(val_matrix.shape[0]) if val_matrix is not None else 0,
        "label_counts": preprocessor.label_counts,
        "normalize": preprocessor.normalize,
        **({"path": source.get("path"), "sha256": source.get("sha256")} if source else {}),
    }

    def assemble(state: TrainState) -> VAEResult:
        """The result from the model's current weights: encode the training cells, fit the latent sampler."""
        model.cpu()
        latent = _encode_batches(model, train_batches, torch.device("cpu"))
        sampler = fit_latent_sampler(latent, codes, preprocessor.labels.classes if n_labels else (), seed=seed)
        library = LibrarySize.fit(library_size(matrix), codes, n_labels) if head.count_input else None
        return VAEResult(
            model=model,
            model_config=model_config,
            train_config=train_config,
            preprocessor=preprocessor,
            sampler=sampler,
            history=state.history,
            best_epoch=state.best_epoch,
            normalize_note=note,
            x_train=normalized,
            x_val=val_normalized,
            y_val=val_labels,
            y_train=labels,
            latent=latent,
            data_info=data_info,
            device=state.device,
            library_size=library,
        )

    def partial(state: TrainState) -> VAEResult:
        """For an interrupted run: the best weights so far, as a complete (loadable, exportable) result."""
        if state.best_state_dict is not None:
            model.load_state_dict(state.best_state_dict)
        model.eval()
        return assemble(state)

    return assemble(fit(model, train_batches, val_batches, train_config, callbacks, partial_result=partial))


def gen_exprs(
    result: VAEResult,
    num_samples: int = 300,
    labels: str | Mapping[str, int] | None = None,
    sampler: str = "gmm",
    seed: int = 1,
    batch_size: int = 8192,
    output_space: str | None = None,
) -> GeneratedCells:
    """Generate cells: labels None = training proportions; a label name; or {label: count, ...}.

    sampler: gmm (the mixture over training latents, VAExprs' way) or prior (N(0, I)).
    output_space: None = the head's default: sampled counts for nb/zinb, sampled log values for hurdle, the
    decoder mean for bce/mse; `lognorm` (nb/zinb: sampled counts, log-normalised with the training mean
    library size); `mean` (the expected value, no sampling noise: VAExprs' behaviour).
    Draws in the same order as the onnxruntime engine (labels, then per chunk: latents, then noise), so with
    the same seed and batch size both give the same cells up to float rounding.
    """
    import torch

    likelihood = result.model_config.likelihood
    space = resolve_output_space(likelihood, result.output_space, output_space)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    rng = np.random.default_rng(seed)
    classes = result.labels
    proportions = result.preprocessor.label_proportions if classes else None
    codes = plan_labels(num_samples, labels, classes, proportions, rng)
    n = len(codes) if codes is not None else int(num_samples)
    decoder = result.output_decoder()
    cells, latents = [], []
    bs = min(int(batch_size), n)
    with torch.inference_mode():
        for start in range(0, n, bs):
            chunk = None if codes is None else codes[start : start + bs]
            b = min(bs, n - start)
            z = result.sampler.sample(chunk, b, rng, kind=sampler)
            onehot = None
            if chunk is not None:
                onehot = torch.from_numpy(np.eye(len(classes), dtype=np.float32)[chunk])
            outputs = {k: v.numpy() for k, v in zip(decoder.output_names, decoder(torch.from_numpy(z), onehot))}
            cells.append(outputs_to_cells(likelihood, outputs, rng, space.name, chunk, result.library_size))
            latents.append(z)
    x_gen = np.concatenate(cells).astype(np.float32)
    y_gen = result.preprocessor.labels.inverse_transform(codes) if codes is not None else None
    x_train = result.x_train
    if x_train is not None and likelihood in COUNT_LIKELIHOODS and space.value_space == "lognorm":
        x_train = apply_normalization(x_train, "lognorm")  # the real cells in the generated cells' space
    return GeneratedCells(
        x_gen=x_gen,
        y_gen=y_gen,
        x_train=x_train,
        y_train=result.y_train,
        latent=np.concatenate(latents).astype(np.float32),
        genes=result.genes,
        output_space=space.name,
        seed=seed,
        sampler=sampler,
        value_space=space.value_space,
        sampled=space.sampled,
    )
