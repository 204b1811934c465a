"""What training produces and what generation returns in Python, and the weights-only checkpoint.

    result.save("model.pt"); result = VAEResult.load("model.pt")     # torch.load(weights_only=True) loadable
    result.spec                                                     # what the generation loop needs
    gen.to_anndata()                                                # real + generated cells in one AnnData

The checkpoint holds tensors and plain JSON-able values only (the configs, the preprocessing, the latent
sampler, the library-size model, the history), so loading never unpickles code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs.bundle.heads import HEADS, LibrarySize
from vaexprs.bundle.sampler import LatentSampler
from vaexprs.bundle.spec import GenerativeSpec
from vaexprs.config import DataConfig, ModelConfig, TrainConfig
from vaexprs.data.io import as_matrix
from vaexprs.data.preprocess import Preprocessor, is_sparse
from vaexprs.errors import InputError, OptionError, first_line
from vaexprs.files import atomic_output, to_plain

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

    from vaexprs.model.network import VAE

CHECKPOINT_FORMAT = "vaexprs-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(repr=False)
class VAEResult:
    """What fit_vae returns: the trained model and everything needed to generate from it or export it."""

    model: VAE
    model_config: ModelConfig
    train_config: TrainConfig
    preprocessor: Preprocessor
    sampler: LatentSampler
    history: list[dict[str, float]]
    best_epoch: int
    data_config: DataConfig = field(default_factory=DataConfig)
    normalize_note: str = ""
    x_train: Any = None  # normalised training cells (N, G), dense or sparse; None after load()
    y_train: np.ndarray | None = None
    latent: np.ndarray | None = None  # training cells' latent means (N, D)
    data_info: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    library_size: LibrarySize | None = None  # count heads: per-label log-normal library sizes
    value_cap: np.ndarray | None = None  # (G,) largest plausible generated value per gene, the head's own space
    x_val: Any = None  # held-out validation cells, normalised like x_train (None without validation data)
    y_val: np.ndarray | None = None
    selection: list[dict[str, Any]] = field(default_factory=list)  # likelihood="auto": every candidate's scores
    cell_names: np.ndarray | None = None  # x_train's cells' names (an AnnData's obs_names; None for a matrix)
    row_centred: bool = False  # every training cell's values average 0 (CLR): generated cells are centred too

    def __repr__(self) -> str:
        """A summary (the dataclass's repr printed every gene and array: 247 KB for yan)."""
        n_cells = self.data_info.get("n_cells", "?")
        return (
            f"VAEResult({self.model_type.upper()}, likelihood={self.model_config.likelihood}, "
            f"{len(self.genes)} genes, {len(self.labels)} labels, trained on {n_cells} cells for "
            f"{len(self.history)} epochs, latent_dim={self.model_config.latent_dim})"
        )

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
        return "counts" if HEADS[self.model_config.likelihood].count_input else self.preprocessor.normalize

    @property
    def spec(self) -> GenerativeSpec:
        """What the generation loop needs besides the decoder (the same object a bundle gives)."""
        return GenerativeSpec(
            genes=self.genes,
            labels=self.labels,
            label_proportions=self.preprocessor.label_proportions.tolist() if self.labels else [],
            likelihood=self.model_config.likelihood,
            output_space=self.output_space,
            sampler=self.sampler,
            library_size=self.library_size,
            value_cap=self.value_cap,
            row_centred=self.row_centred,
        )

    def output_decoder(self) -> Any:
        """The torch decoder with de-scaling folded in (what export turns into decoder.onnx)."""
        from vaexprs.model.network import OutputDecoder

        scaler = self.preprocessor.scaler
        decoder = OutputDecoder(self.model.cpu(), *((scaler.output_scale, scaler.minimum) if scaler else ()))
        return decoder.eval()

    def output_encoder(self) -> Any:
        """The torch encoder taking cells in `output_space`, scaling folded in (what becomes encoder.onnx)."""
        from vaexprs.model.network import OutputEncoder

        scaler = self.preprocessor.scaler
        return OutputEncoder(self.model.cpu(), *((scaler.scale, scaler.minimum) if scaler else ())).eval()

    def check_genes(self, n_genes: int) -> None:
        if n_genes != self.preprocessor.n_genes:
            raise InputError(f"the data has {n_genes} genes but the model was trained on {self.preprocessor.n_genes}")

    def encode(self, x: Any, labels: Sequence[Any] | str | None = None, layer: str | None = None) -> np.ndarray:
        """Latent means (N, D) of new cells in the training genes' order (normalised like the training data)."""
        from vaexprs.model.loop import Batches, encode_means

        matrix, genes, label_array = as_matrix(x, labels, layer)
        self.check_genes(matrix.shape[1])
        if hasattr(x, "var_names") and genes != self.genes:
            raise InputError("the data's genes are not the model's genes (same names in the same order needed)")
        codes = None
        if self.model_config.is_conditional:
            if label_array is None:
                raise OptionError("labels", "are needed: a CVAE encodes cells together with their labels")
            codes = self.preprocessor.labels.transform(label_array)
        batches = Batches(
            self.preprocessor.normalize_matrix(matrix), codes, self.preprocessor, self.model_config.n_labels
        )
        return encode_means(self.model.cpu(), batches)

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint payload: plain JSON-able metadata plus the state dict's tensors."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "data_config": self.data_config.to_dict(),
            "preprocessor": self.preprocessor.to_dict(),
            "sampler": self.sampler.to_dict(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "data_info": self.data_info,
            "library_size": self.library_size.to_dict() if self.library_size is not None else None,
            "value_cap": self.value_cap,
            "row_centred": self.row_centred,
            "selection": self.selection,
        }
        # a JSON round trip leaves only plain Python types, which weights_only loading accepts
        payload = json.loads(json.dumps(meta, default=to_plain))
        payload["state_dict"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return payload

    def save(self, path: str | Path, force: bool = True) -> Path:
        """A weights-only checkpoint, written atomically (loadable with torch.load(weights_only=True))."""
        import torch

        path = Path(path)
        with atomic_output(path, force=force, suffix=".pt") as tmp:
            torch.save(self.to_checkpoint(), tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VAEResult:
        import torch

        from vaexprs.model.network import VAE

        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path} is a folder; give the checkpoint file (e.g. model.pt)")
        if not path.is_file():
            raise InputError(f"checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for an empty, corrupt or foreign file
            # (torch's own first line suggests weights_only=False, which would run the file's code: not for us)
            raise InputError(
                f"{path} is not a vaexprs checkpoint ({type(exc).__name__} reading it as weights)"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not a vaexprs checkpoint")
        try:
            config = ModelConfig.from_dict(payload["model_config"])
            model = VAE(config)
            model.load_state_dict(payload["state_dict"])
            cap = payload.get("value_cap")
            result = cls(
                model=model.eval(),
                model_config=config,
                train_config=TrainConfig.from_dict(payload["train_config"]),
                data_config=DataConfig.from_dict(payload.get("data_config") or {}),
                preprocessor=Preprocessor.from_dict(payload["preprocessor"]),
                sampler=LatentSampler.from_dict(payload["sampler"]),
                history=list(payload["history"]),
                best_epoch=int(payload["best_epoch"]),
                data_info=dict(payload.get("data_info", {})),
                library_size=LibrarySize.from_dict(payload["library_size"]) if payload.get("library_size") else None,
                value_cap=None if cap is None else np.asarray(cap, dtype=np.float64),
                row_centred=bool(payload.get("row_centred", False)),
                selection=list(payload.get("selection") or []),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{path} is a damaged vaexprs checkpoint: {first_line(exc)}") from None
        return result


@dataclass(repr=False)
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
    temperature: float = 1.0  # the scale of the latent draws (1 = the fitted distribution)
    cell_names: np.ndarray | None = None  # x_train's cells' names, as the user gave them (None: real0, real1, ...)

    def __repr__(self) -> str:
        labels = "" if self.y_gen is None else f", {len(set(self.y_gen))} labels"
        real = "no real cells" if self.x_train is None else f"{self.x_train.shape[0]} real cells"
        return (
            f"GeneratedCells({self.x_gen.shape[0]} cells x {self.x_gen.shape[1]} genes{labels}, "
            f"output_space={self.output_space}, sampler={self.sampler}, seed={self.seed}; {real})"
        )

    def to_anndata(self, label_key: str = "cell_type") -> AnnData:
        """Real (if known) and generated cells in one AnnData; obs["origin"] in {"real", "generated"}. Real cells keep
        their names in the data fit_vae was given (obs_names, or a DataFrame's index; real0, real1, ... for a
        matrix); generated ones are gen0, gen1, ..."""
        if label_key == "origin":  # the labels would replace which cells are real
            raise OptionError("label_key", "'origin' is the column that tells real from generated cells; name another")
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
        real_names = self.cell_names if self.cell_names is not None and len(self.cell_names) == n_real else None
        names = pd.Index(
            [str(v) for v in real_names] if real_names is not None else [f"real{i}" for i in range(n_real)]
        ).append(pd.Index([f"gen{i}" for i in range(self.x_gen.shape[0])]))
        if not names.is_unique:  # a real cell named like a generated one: the later name gets a suffix
            names = ad.utils.make_index_unique(names)
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
            "temperature": self.temperature,
        }
        if (self.value_space or self.output_space) in ("lognorm", "log"):
            adata.uns["log1p"] = {"base": 2.0}  # log2(x + 1): scanpy must not log these values again
        return adata
