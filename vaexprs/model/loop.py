"""The fit loop: Adam, mini-batches, validation, early stopping with restore-best-weights, per-epoch history.

    state = fit(model, train_batches, val_batches, TrainConfig(epochs=100, patience=10), callbacks=[...])

Callbacks (`Callback`) see every epoch's record and the end (or interruption) of training, which is where
MLflow logging plugs in without the loop knowing about MLflow. The seed fixes weight initialisation (set by
the caller before building the model), the shuffling order and the reparameterisation noise, so CPU training
is bit-reproducible on one kind of machine (another CPU may round differently).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vaexprs.config import TrainConfig
from vaexprs.data.backed import WINDOW_BATCHES, block_shuffled_order, is_on_disk
from vaexprs.data.preprocess import Preprocessor, is_sparse
from vaexprs.errors import OptionError, check_interrupted
from vaexprs.model import ddp
from vaexprs.model.network import VAE
from vaexprs.progress import progress_bar

log = logging.getLogger(__name__)


def choose_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "is cuda, but torch sees no CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class Batches:
    """Mini-batches of one data set in model space; a sparse matrix is densified one batch at a time.

    Cells on disk (OnDiskCells) are read a window of WINDOW_BATCHES batches at a time, in a block-shuffled
    order: memory holds one window, and a window is a few contiguous reads.
    """

    def __init__(self, matrix: Any, codes: np.ndarray | None, preprocessor: Preprocessor, n_labels: int = 0) -> None:
        self.matrix = matrix.tocsr() if is_sparse(matrix) else matrix
        self.codes = codes
        self.preprocessor = preprocessor
        self.n_labels = n_labels

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def _tensors(self, block: Any, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch (the block holds the cells of `rows`) as model-space tensors, with its one-hot labels."""
        block = block.toarray() if is_sparse(block) else np.asarray(block)
        x = torch.from_numpy(self.preprocessor.scale_batch(block)).to(device)
        c = None
        if self.n_labels:
            c = torch.from_numpy(np.eye(self.n_labels, dtype=np.float32)[self.codes[rows]]).to(device)
        return x, c

    def iterate(
        self,
        batch_size: int,
        device: torch.device,
        rng: np.random.Generator | None = None,
        shard: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches in a shuffled order (with `rng`), of this process's share of it (with `shard`, under torchrun).

        In memory: a permutation, one batch read at a time. On disk: a block-shuffled order, read a window
        (up to WINDOW_BATCHES batches, at most a streaming chunk) at a time.
        """
        on_disk = is_on_disk(self.matrix)
        window = batch_size
        if on_disk:
            window *= max(1, min(WINDOW_BATCHES, self.matrix.chunk_rows // batch_size))
        if rng is None:
            order = np.arange(len(self))
        else:
            order = block_shuffled_order(len(self), rng, window=window) if on_disk else rng.permutation(len(self))
        if shard is not None:
            order = shard(order)  # under torchrun: each rank reads only its own share of the epoch
        for first in range(0, len(order), window):
            rows = order[first : first + window]
            block = self.matrix[rows]
            for start in range(0, len(rows), batch_size):
                yield self._tensors(block[start : start + batch_size], rows[start : start + batch_size], device)


class Callback:
    """Hooks into the loop. Override what you need; every hook is optional."""

    def on_train_begin(self, model: VAE, config: TrainConfig) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, float], state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def on_train_error(self, error: BaseException, state: TrainState) -> None:
        """Training stopped by an exception or Ctrl-C; `state.best_state_dict` holds the best weights so far."""


@dataclass
class TrainState:
    model: VAE
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = math.inf
    best_state_dict: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False
    device: str = "cpu"
    # set by callers that can turn an unfinished state into a complete result (fit_vae does: VAEResult)
    partial_result: Callable[[], Any] | None = None


def _run_epoch(
    model: VAE,
    batches: Batches,
    config: TrainConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    rng: np.random.Generator | None,
) -> dict[str, float]:
    """One pass; trains when an optimizer is given, else evaluates (dropout off, still one z sample)."""
    totals = np.zeros(4)  # loss, recon, kl (summed over cells), cells
    model.train(optimizer is not None)
    distributed = optimizer is not None and ddp.world()[1] > 1  # training under torchrun: this rank's share
    with torch.set_grad_enabled(optimizer is not None):
        for x, c in batches.iterate(config.batch_size, device, rng, ddp.shard if distributed else None):
            check_interrupted()
            if optimizer is not None and x.shape[0] == 1 and model.config.batch_norm:
                continue  # batch-norm cannot train on a single cell (the same batch sizes on every rank)
            out = model.loss(x, c, config.beta, sample=True)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if distributed:
                    ddp.average_gradients(model)
                optimizer.step()
            totals += [out.loss.item() * x.shape[0], out.recon.sum().item(), out.kl.sum().item(), x.shape[0]]
    if distributed:
        totals = ddp.sum_across(totals)  # every rank records the same epoch
    n = max(totals[3], 1.0)
    return {"loss": float(totals[0] / n), "recon_loss": float(totals[1] / n), "kl_loss": float(totals[2] / n)}


def fit(
    model: VAE,
    train: Batches,
    val: Batches | None,
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    partial_result: Callable[[TrainState], Any] | None = None,
    progress: bool | None = None,
    what: str = "training",
) -> TrainState:
    """Train `model` in place and return its state (history, best epoch; best weights restored if asked).

    progress: a progress bar over epochs with an ETA (None = where someone watches: a terminal or notebook);
    with the bar on, the per-epoch lines go to the debug log instead.
    """
    if config.monitor == "val_loss" and val is None:
        raise OptionError("monitor", "val_loss needs validation cells ({val_split} > 0, or x_val)", ("val_split",))
    device = choose_device(config.device)
    model.to(device)
    ddp.join(device)  # under torchrun: one process group for every rank (a no-op otherwise)
    ddp.require_share(len(train))
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    # multi-tensor Adam: the same updates bit for bit, in a few calls instead of a few per parameter tensor
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    state = TrainState(model=model, device=str(device))
    if partial_result is not None:
        state.partial_result = lambda: partial_result(state)
    for cb in callbacks:
        cb.on_train_begin(model, config)
    with progress_bar(int(config.epochs), what, "epochs", enabled=progress) as bar:
        _fit_epochs(model, train, val, config, callbacks, state, device, optimizer, rng, bar)
    if config.patience and config.restore_best_weights and state.best_state_dict is not None:
        model.load_state_dict(state.best_state_dict)
    model.eval()
    for cb in callbacks:
        cb.on_train_end(state)
    return state


def _fit_epochs(
    model: VAE,
    train: Batches,
    val: Batches | None,
    config: TrainConfig,
    callbacks: Sequence[Callback],
    state: TrainState,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    bar: Any,
) -> None:
    """The epochs: train, validate, record, early stopping; callbacks hear of an interruption."""
    wait = 0
    quiet = bar.visible  # the bar shows the epochs; the lines go to the debug log
    warmup = config.warmup_epochs()
    try:
        for epoch in range(1, int(config.epochs) + 1):
            start = time.perf_counter()
            epoch_config = replace(config, beta=config.kl_weight(epoch)) if warmup else config
            logs = _run_epoch(model, train, epoch_config, device, optimizer, rng)
            if val is not None:
                val_logs = _run_epoch(model, val, epoch_config, device, None, None)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            logs["epoch_time"] = time.perf_counter() - start
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"loss became non-finite at epoch {epoch}: {logs}")
            state.history.append({"epoch": epoch, **logs})
            value = logs[config.monitor]
            if epoch < warmup:  # the loss rises with the KL weight: epochs of the warm-up are not comparable
                pass
            elif value < state.best_value:
                state.best_value, state.best_epoch, wait = value, epoch, 0
                state.best_state_dict = copy.deepcopy(model.state_dict())
            else:
                wait += 1
            line = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            log.log(logging.DEBUG if quiet else logging.INFO, "epoch %d/%d %s", epoch, config.epochs, line)
            bar.advance(1, **{config.monitor: value})
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs, state)
            if config.patience and wait >= config.patience:
                state.stopped_early = True
                log.info("early stopping at epoch %d; best %s at epoch %d", epoch, config.monitor, state.best_epoch)
                break
    except BaseException as error:
        for cb in callbacks:
            cb.on_train_error(error, state)
        raise


def encode_means(model: VAE, batches: Batches, batch_size: int = 512) -> np.ndarray:
    """Latent means (N, D) of every cell, 512 at a time (at most a streaming chunk from disk), so a sparse
    matrix is never densified whole."""
    if is_on_disk(batches.matrix):
        batch_size = max(1, min(batch_size, batches.matrix.chunk_rows))
    model.eval()
    device = next(model.parameters()).device
    # one array filled in place: thousands of small per-batch arrays kept alive between the batches' large
    # temporaries fragment the heap, and the process grew by ~1.4 MB a batch (3.2 GB peak for 1M cells)
    latent = np.empty((len(batches), model.config.latent_dim), dtype=np.float32)
    start = 0
    with torch.inference_mode():
        for x, c in batches.iterate(batch_size, device):
            latent[start : start + x.shape[0]] = model.inference(x, c, sample=False)["z_mean"].cpu().numpy()
            start += x.shape[0]
    return latent
