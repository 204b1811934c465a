"""Cells that stay on disk: a backed AnnData's X, read a block of rows at a time (training out of core).

    cells = OnDiskCells.of(adata.X)          # adata = anndata.read_h5ad(path, backed="r")
    block = cells[rows]                      # those rows in memory (CSR or dense), in the order asked
    for block in cells.chunks(): ...         # a streaming pass over every row, CHUNK_BYTES at a time
    train = cells.take(rows)                 # a subset (the training/validation split), still on disk
    logged = cells.map(fn)                   # fn applied to every block read (normalisation, rounding)

anndata's backed mode does the reading (a CSR or dense X of an .h5ad opened with backed="r"); this module adds
what training needs on top: views (row subsets, transforms), streaming passes whose memory does not grow with
the number of cells, and a block-shuffled epoch order (as scDataset does), so a minibatch costs a few
contiguous reads instead of one read per cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vaexprs.errors import InputError, first_line

CHUNK_BYTES = 64 << 20  # dense float32 bytes per block of a streaming pass (sparse blocks hold far less)
BLOCK_CELLS = 16  # contiguous cells that stay together in an epoch's order
WINDOW_BATCHES = 16  # minibatches read from disk at once and shuffled among themselves

Transform = Callable[[Any], Any]


class OnDiskCells:
    """A cells x genes matrix on disk (rows = cells), or a view of it: some rows, with a transform applied."""

    def __init__(self, source: Any, rows: np.ndarray | None = None, transform: Transform | None = None) -> None:
        self.source = source
        self.read = _slice_reader(source)
        self.rows = rows  # sorted positions in `source`; None = all of them
        self.transform = transform
        n = source.shape[0] if rows is None else rows.shape[0]
        self.shape = (int(n), int(source.shape[1]))
        self.ndim = 2
        self.cache: dict[str, Any] = {}  # streaming results worth keeping (value summary, library sizes)

    @classmethod
    def of(cls, x: Any) -> OnDiskCells:
        """Wrap a backed AnnData's X (anndata's CSR dataset or an h5py dataset); refuse CSC, slow by rows."""
        fmt = getattr(x, "format", None)
        if fmt == "csc":
            raise InputError(
                "X is stored by genes (CSC); training from disk reads cells, so store X by cells (CSR): "
                "adata.X = adata.X.tocsr() before writing the .h5ad"
            )
        if getattr(x, "ndim", 2) != 2:
            raise InputError(f"expected a 2-D cells x genes matrix; got {x.ndim}-D")
        return cls(x)

    @property
    def chunk_rows(self) -> int:
        return max(1, CHUNK_BYTES // max(4 * self.shape[1], 1))

    def take(self, rows: np.ndarray) -> OnDiskCells:
        """The cells at these positions of this view (sorted), still on disk, with the same transform."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        return OnDiskCells(self.source, rows if self.rows is None else self.rows[rows], self.transform)

    def map(self, fn: Transform) -> OnDiskCells:
        """This view with `fn` applied to every block after the current transform."""
        inner = self.transform
        return OnDiskCells(self.source, self.rows, fn if inner is None else (lambda block: fn(inner(block))))

    def __getitem__(self, rows: Any) -> Any:
        """Rows of this view in memory, in the order asked: contiguous runs are read as one slice each."""
        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        positions = rows if self.rows is None else self.rows[rows]
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        runs = np.split(ordered, np.flatnonzero(np.diff(ordered) != 1) + 1) if ordered.size else []
        block = _stack([self.read(int(run[0]), int(run[-1]) + 1) for run in runs], self.shape[1])
        if ordered.size and np.any(order != np.arange(order.size)):
            inverse = np.empty_like(order)
            inverse[order] = np.arange(order.size)
            block = block[inverse]
        return self.transform(block) if self.transform is not None else block

    def chunks(self) -> Iterator[Any]:
        """Every row of the view once, in order, chunk_rows at a time (memory: one chunk)."""
        step = self.chunk_rows
        for start in range(0, self.shape[0], step):
            yield self[slice(start, min(start + step, self.shape[0]))]

    def __repr__(self) -> str:
        return f"OnDiskCells({self.shape[0]} cells x {self.shape[1]} genes on disk)"


def _slice_reader(source: Any) -> Callable[[int, int], Any]:
    """source[start:stop] as a matrix in memory; a chunk h5py cannot read (a damaged file) is an InputError
    naming the file, as when the whole file is read (it was "error: OSError: ... filter returned failure",
    exit 1)."""
    read = _plain_reader(source)
    file = getattr(getattr(source, "group", source), "file", None)
    name = getattr(file, "filename", "the backed file")

    def guarded(start: int, stop: int) -> Any:
        try:
            return read(start, stop)
        except (OSError, RuntimeError) as exc:  # h5py's read errors
            raise InputError(f"cannot read {name}: {first_line(exc)}") from None

    return guarded


def _plain_reader(source: Any) -> Callable[[int, int], Any]:
    """source[start:stop] as a matrix in memory. For anndata's CSR dataset, the group's three arrays are read
    directly: anndata's own __getitem__ checks its package metadata on every call (~5 ms, more than the read)."""
    group = getattr(source, "group", None)
    if getattr(source, "format", None) != "csr" or group is None:
        return lambda start, stop: source[start:stop]
    import scipy.sparse as sp

    data, indices, indptr = group["data"], group["indices"], group["indptr"]
    n_genes = int(source.shape[1])

    def read(start: int, stop: int) -> Any:
        ptr = indptr[start : stop + 1].astype(np.int64)
        first, last = int(ptr[0]), int(ptr[-1])
        return sp.csr_matrix((data[first:last], indices[first:last], ptr - first), shape=(stop - start, n_genes))

    return read


def _stack(parts: list[Any], n_genes: int) -> Any:
    if not parts:
        return np.empty((0, n_genes), dtype=np.float32)
    if hasattr(parts[0], "tocsr"):
        import scipy.sparse as sp

        return parts[0].tocsr() if len(parts) == 1 else sp.vstack(parts, format="csr")
    return np.asarray(parts[0]) if len(parts) == 1 else np.concatenate(parts)


def is_on_disk(x: Any) -> bool:
    return isinstance(x, OnDiskCells)


def subset_rows(x: Any, rows: np.ndarray) -> Any:
    """The rows of x: in memory for a matrix, a view (still on disk) for OnDiskCells."""
    return x.take(rows) if is_on_disk(x) else x[rows]


def blocks_of(x: Any) -> Iterator[Any]:
    """x itself (a matrix in memory), or its chunks (on disk): what a streaming statistic iterates over."""
    if is_on_disk(x):
        yield from x.chunks()
    else:
        yield x


def block_shuffled_order(n: int, rng: np.random.Generator, block: int = BLOCK_CELLS, window: int = 2048) -> np.ndarray:
    """An epoch's order of n cells: blocks of `block` neighbours in a random order, then shuffled within
    windows of `window` cells, so a window of minibatches is a few contiguous reads and still well mixed."""
    starts = rng.permutation(-(-n // block)) * block
    order = (starts[:, None] + np.arange(block)).ravel()
    order = order[order < n]
    for start in range(0, n, window):
        rng.shuffle(order[start : start + window])
    return order


def sample_rows(n: int, cap: int, seed: int, block: int = BLOCK_CELLS) -> np.ndarray:
    """Up to `cap` of n positions, sorted, seeded: whole blocks of `block` neighbours, so that reading the
    sample from disk costs cap / block reads, not cap (a bounded in-memory reference of an on-disk data set)."""
    if n <= cap:
        return np.arange(n)
    n_blocks = -(-n // block)
    starts = np.random.default_rng(seed).choice(n_blocks, max(1, cap // block), replace=False) * block
    rows = (starts[:, None] + np.arange(block)).ravel()
    return np.sort(rows[rows < n])
