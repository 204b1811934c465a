"""Up to `cap` cells of a large file, read without loading the file.

    adata = read_sample(path, cap=200_000, label_key="cell_type", seed=0)   # an .h5ad file or a .zarr store
    small = sample_table(path, cap, seed, folder)                           # a .csv/.tsv/.txt or .npy file

evaluate scores millions of generated cells through a seeded sample of them. anndata's backed mode still reads
all of obs when it opens a file (about 110 bytes a cell: 3 million cells took 619 MB before a row was read), and
anndata reads a .zarr store whole. Here X is streamed in blocks of rows, keeping only the sampled ones, and of
obs only the label column is read (a categorical's codes: a byte or two a cell). var and uns are read whole
(genes, and the writer's metadata such as the generated cells' value space).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs.errors import InputError, first_line

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger("vaexprs")

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".npy")
BLOCK_ROWS = 16_384  # rows of X read at a time (a block of a 20,000-gene dense X: 1.3 GB as float32)
ZARR_HINT = 'pip install "vaexprs[dask]"'


def read_sample(path: Path, cap: int, label_key: str | None, seed: int = 0) -> AnnData:
    """A seeded sample of at most `cap` cells of the store at `path` (all of them where it has fewer), with var,
    uns and obs[`label_key`] where the store has that column. Cells are named by their row: cell0, cell1, ..."""
    import anndata as ad
    import pandas as pd
    from anndata.io import read_elem

    store = _open(path)
    try:
        if "X" not in store or "var" not in store:
            raise InputError(f"{path.name} is not an AnnData store (it has no X or no var)")
        x = _rows_source(store["X"])
        n = int(x.shape[0])
        rows = np.arange(n) if n <= cap else _sample_rows(n, cap, seed, path)
        matrix = _take_rows(x, rows)
        obs = pd.DataFrame(index=[f"cell{i}" for i in rows])
        if label_key and "obs" in store and label_key in store["obs"]:
            obs[label_key] = np.asarray(read_elem(store["obs"][label_key]))[rows]
        uns = read_elem(store["uns"]) if "uns" in store else {}
        return ad.AnnData(matrix, obs=obs, var=read_elem(store["var"]), uns=uns)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # a damaged or foreign store (h5py)
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    finally:
        _close(store)


def count_cells(path: Path) -> int:
    """The cells of the store at `path`, read from X's shape alone."""
    store = _open(path)
    try:
        return int(_rows_source(store["X"]).shape[0]) if "X" in store else 0
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    finally:
        _close(store)


def _open(path: Path) -> Any:
    if path.suffix.lower() == ".zarr":
        try:
            import zarr
        except ImportError:
            raise InputError(f"reading a .zarr store needs zarr, which is not installed: {ZARR_HINT}") from None
        if not path.is_dir():
            raise InputError(f"{path} is not a .zarr store (a folder)")
        try:
            return zarr.open_group(str(path), mode="r")
        except Exception as exc:  # zarr's own errors for a folder that holds no store
            raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    import h5py

    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


def _rows_source(x: Any) -> Any:
    """X as something that slices by rows: anndata's sparse dataset for a CSR/CSC group, else the array."""
    if hasattr(x, "keys") and "indptr" in x:
        from anndata.io import sparse_dataset

        return sparse_dataset(x)
    return x


def _take_rows(x: Any, rows: np.ndarray) -> Any:
    """The sorted `rows` of x, read a block of contiguous rows at a time (memory: one block and the sample)."""
    parts = []
    for start in range(0, int(x.shape[0]), BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, int(x.shape[0]))
        chosen = rows[(rows >= start) & (rows < stop)] - start
        if chosen.size:
            parts.append(x[start:stop][chosen])
    if not parts:
        return np.empty((0, int(x.shape[1])), dtype=np.float32)
    if hasattr(parts[0], "tocsr"):
        import scipy.sparse as sp

        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)


def sample_table(path: Path, cap: int, seed: int, folder: Path) -> Path | None:
    """A table of more than `cap` cells (a .csv/.tsv/.txt with a header line and a cell per line, or a .npy
    with its NAME.obs.csv beside it) as a file of the same name in `folder` holding a seeded sample of `cap` of
    its cells, copied line by line or block by block (memory: the sample); None where it has at most `cap` cells
    or is no such file (the reader then reads it whole, and says what is wrong with it)."""
    if path.suffix.lower() == ".npy":
        try:
            cells = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if cells.ndim != 2 or cells.shape[0] <= cap:
            return None
        rows = _sample_rows(int(cells.shape[0]), cap, seed, path)
        np.save(folder / path.name, _take_rows(cells, rows))
        beside = path.with_name(path.stem + ".obs.csv")
        if beside.is_file():
            _copy_lines(beside, folder / beside.name, rows)
        return folder / path.name
    try:
        with open(path, "rb") as lines:
            n = sum(1 for _ in lines) - 1  # the header line
    except OSError:
        return None
    if n <= cap:
        return None
    _copy_lines(path, folder / path.name, _sample_rows(n, cap, seed, path))
    return folder / path.name


def _sample_rows(n: int, cap: int, seed: int, path: Path) -> np.ndarray:
    log.warning("%s has %d cells; evaluate scores a random %d of them", path.name, n, cap)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _copy_lines(source: Path, target: Path, rows: np.ndarray) -> None:
    """The header line and the lines of `rows` (0 = the first line below the header)."""
    wanted = iter(rows.tolist())
    following = next(wanted, None)
    with open(source, "rb") as lines, open(target, "wb") as out:
        out.write(next(lines, b""))
        for row, line in enumerate(lines):
            if row == following:
                out.write(line)
                following = next(wanted, None)
                if following is None:
                    break
