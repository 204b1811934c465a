"""Streaming, atomic writers for generated cells: .h5ad, .csv, .npy and .zarr, filled chunk by chunk.

    check_output(out, force)                          # the checks, without touching the disk (call it early)
    with open_writer(out, genes, n_total, labels=classes, uns=meta) as w:
        for x, codes in chunks:                       # x: (b, G) float32; codes: (b,) ints into `labels`, or None
            w.write_chunk(x, codes)

Memory stays flat in the number of cells: nothing holds more than one chunk. Every writer fills a temp file
(`.NAME.tmp-XXXX`) in the output folder and publishes it only after the last chunk (exclusively, unless
`force`), so a failure, Ctrl-C or SIGTERM removes the temp file and leaves any earlier output untouched.

Disk space: before anything is written, the output's size is estimated (cells x genes x 4 bytes for the binary
formats) and refused when the folder has less free space. The .h5ad writer also claims its disk blocks before
HDF5 writes into them (`SpaceReserve`): a disk that fills up anyway is met by a plain Python write error, never
inside HDF5, whose failed writes leave files it cannot close (and crash the interpreter at exit).

Formats:
- `.h5ad`: AnnData's on-disk layout written with h5py: X is a dense float32 dataset (chunked rows, no
  compression by default); obs_names "gen0", "gen1", ...; obs['cell_type'] (with labels) and obs['origin'] =
  "generated" are categoricals; var_names are the genes; `uns` (e.g. uns['vaexprs']) via anndata's write_elem.
- `.csv`: header `cell,cell_type,<genes...>` (no cell_type column without labels); values as `%.6g`.
- `.npy`: a float32 (n, G) array. With labels, `<stem>.obs.csv` beside it (`cell,cell_type`), written
  atomically too; an unlabelled .npy refuses to sit beside an earlier run's .obs.csv (readers would take it as
  its labels) unless forced, which removes it. (The .npy is streamed through a plain file, not a memmap: a
  memmap's dirty pages count as the process's resident memory, which would grow with n.)
- `.zarr`: AnnData's zarr layout (the same elements as the .h5ad; `anndata.read_zarr` reads it), a folder
  filled in a temp folder `.NAME.tmp-XXXX` beside the target and renamed at the end. X is float32, one zarr
  chunk per generation block (`chunk_rows` cells x all genes), uncompressed like the .h5ad; obs_names and the
  label codes are chunked alike, so block k touches chunk k of each array and nothing else: blocks can be
  written by any process, in any order (`create_store` / `StoreBlocks` / `finish_store`, which the Dask path
  uses). With `sparse` (the single-process writer only) X is AnnData's csr_matrix group instead, as in the
  .h5ad: `data` and `indices` grow block by block, in row order (a block's offset is the values of all blocks
  before it, so the Dask path, whose blocks finish in any order, keeps X dense); they are compressed with
  zarr's default codec, as anndata's write_zarr does. `--force` replaces only a
  store vaexprs wrote. zarr (>= 3.1) is imported only here, when needed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.data.io import _write_elem
from vaexprs.errors import InputError, OptionError, VaexprsRuntimeError
from vaexprs.files import (
    DISK_ERRNOS,
    SpaceReserve,
    atomic_folder,
    check_free_space,
    check_output_name,
    disk_error,
    exists_error,
    force_switch,
    hdf5_end_of_allocation,
    publish,
    require_output_folder,
    temp_path,
)

SUPPORTED_SUFFIXES = (".h5ad", ".csv", ".npy")  # single files
STORE_SUFFIXES = (".zarr",)  # folders
OUTPUT_SUFFIXES = SUPPORTED_SUFFIXES + STORE_SUFFIXES
ZARR_EXTRA = 'pip install "vaexprs[dask]"'
MIN_ZARR = (3, 1)
CELL_PREFIX = "gen"
ORIGIN = "generated"
X_CHUNK_BYTES = 1 << 20  # h5ad X chunk: ~1 MiB of whole rows, so row slices read and write whole chunks
CSR_CHUNK = 1 << 16  # values per HDF5 chunk of a sparse X's data and indices (256 KiB of float32)
ZARR_CSR_CHUNK = 1 << 20  # values per zarr chunk of a sparse X's data and indices: one file each, 4 MiB of float32
H5_METADATA_BYTES = 1 << 20  # HDF5's own structures (chunk index, heaps) beyond the data, plus 1% of the data
CSV_BYTES_PER_VALUE = 8  # a typical `%.6g,` field; the real size depends on the values


def obs_csv_path(path: Path) -> Path:
    """The labels file written beside a .npy output: `<stem>.obs.csv`."""
    return path.with_name(path.stem + ".obs.csv")


def check_output(
    path: str | os.PathLike[str],
    force: bool = False,
    with_labels: bool = False,
    suffixes: tuple[str, ...] = OUTPUT_SUFFIXES,
) -> Path:
    """Refuse an output we cannot or must not write (before any work is done); return it as a Path."""
    out = Path(path)
    check_output_name(out)  # before any stat of it: a name over 255 bytes raises OSError there
    suffix = out.suffix.lower()
    if suffix not in STORE_SUFFIXES and out.is_dir():  # `-o .` read as a file named '' of no type
        raise InputError(f"output {path} is a folder; give a file in it, e.g. {out / 'generated.h5ad'}")
    if suffix not in suffixes:
        raise InputError(
            f"cannot write {out.name!r}: unsupported output type {suffix or '(none)'!r}; use one of {', '.join(suffixes)}"
        )
    folder = out.parent
    require_output_folder(folder)
    if suffix not in STORE_SUFFIXES and str(path).endswith(("/", os.sep)):  # Path() drops the slash
        raise InputError(f"output {path} ends with a slash, as a folder does; give a file name such as {out.name}")
    if suffix in STORE_SUFFIXES:
        check_store_target(out, force)
        return out
    if out.exists() and not force:
        raise exists_error(out)
    labels_beside = obs_csv_path(out)
    if suffix == ".npy" and labels_beside.exists() and not force:
        if with_labels:
            raise exists_error(labels_beside)
        # unlabelled cells beside an earlier run's labels: readers would take those labels as this file's
        raise InputError(
            f"{labels_beside} exists and would be read as these cells' labels; remove it, or pass {force_switch()} "
            "to remove it"
        )
    return out


def cell_names(start: int, stop: int) -> list[str]:
    """obs_names of cells start..stop: "gen0", "gen1", ..."""
    return [f"{CELL_PREFIX}{i}" for i in range(start, stop)]


def _csv_field(s: str) -> str:
    """A CSV field, quoted when it holds a comma, quote or newline."""
    if any(c in s for c in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


class Writer:
    """Base of the format writers: temp files, row bookkeeping, label codes, commit/abort."""

    def __init__(
        self,
        path: Path,
        genes: Sequence[str],
        n_total: int,
        labels: Sequence[str] | None,
        uns: Mapping[str, Any] | None,
        force: bool = False,
    ) -> None:
        self.path = path
        self.force = force
        self.genes = [str(g) for g in genes]
        self.n_total = int(n_total)
        self.labels = None if labels is None else [str(c) for c in labels]
        self.uns = dict(uns or {})
        self.n_written = 0
        self._temps: dict[Path, Path] = {}  # final path -> temp path

    def _temp(self, target: Path) -> Path:
        tmp = temp_path(target)
        self._temps[target] = tmp
        return tmp

    def estimated_bytes(self) -> int:
        """About how large the output will be (the free-space check compares it with the folder's free space)."""
        return self.n_total * len(self.genes) * 4 + self.n_total * 16 + sum(len(g) + 8 for g in self.genes)

    def _codes(self, labels: Any, b: int) -> np.ndarray | None:
        """Label codes (b,) into self.labels, from codes or from label names."""
        if self.labels is None:
            if labels is not None:
                raise VaexprsRuntimeError("labels given to a writer opened without labels")
            return None
        if labels is None:
            raise VaexprsRuntimeError("a writer opened with labels needs the labels of every chunk")
        arr = np.asarray(labels)
        if arr.shape != (b,):
            raise VaexprsRuntimeError(f"got {arr.shape[0] if arr.ndim else 0} labels for a chunk of {b} cells")
        if arr.dtype.kind in "iu":
            if b and (arr.min() < 0 or arr.max() >= len(self.labels)):
                raise VaexprsRuntimeError("label code out of range")
            return arr
        index = {c: i for i, c in enumerate(self.labels)}
        try:
            return np.fromiter((index[str(v)] for v in arr), dtype=np.int64, count=b)
        except KeyError as e:
            raise VaexprsRuntimeError(f"label {e.args[0]!r} is not one of the writer's labels") from None

    def write_chunk(self, x: np.ndarray, labels: Any = None) -> None:
        """Append rows x (b, G); labels: (b,) codes into the writer's labels or label names; None without."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.genes):
            raise VaexprsRuntimeError(f"chunk has shape {x.shape}; expected (rows, {len(self.genes)})")
        b = x.shape[0]
        if self.n_written + b > self.n_total:
            raise VaexprsRuntimeError(f"more rows than the {self.n_total} announced")
        codes = self._codes(labels, b)
        self._write(x, codes, self.n_written)
        self.n_written += b

    def _write(self, x: np.ndarray, codes: np.ndarray | None, start: int) -> None:
        raise NotImplementedError

    def _cell_names(self, start: int, stop: int) -> list[str]:
        return cell_names(start, stop)

    def _open(self) -> None:
        """Create the temp files (registered with `_temp`, so `abort` can remove them)."""
        raise NotImplementedError

    def _close(self) -> None:
        """Finish and close the temp files (called on success and on failure)."""

    def commit(self) -> None:
        if self.n_written != self.n_total:
            raise VaexprsRuntimeError(f"wrote {self.n_written} of the {self.n_total} announced cells")
        self._close()
        if not self.force:  # refuse before publishing anything, so a labelled .npy is never half published
            for target in self._temps:
                if target.exists():
                    raise exists_error(target)
        for target, tmp in self._temps.items():
            publish(tmp, target, self.force)
        self._temps.clear()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        for tmp in self._temps.values():
            tmp.unlink(missing_ok=True)
        self._temps.clear()


class H5adWriter(Writer):
    """AnnData on-disk layout, X filled row chunk by row chunk; obs columns likewise."""

    def __init__(
        self, *args: Any, compression: str | None = None, sparse: bool = False, **kwargs: Any
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self._compression = compression
        self._sparse = sparse
        self._file: Any = None
        self._nnz = 0

    def estimated_bytes(self) -> int:
        """Dense: the whole X. Sparse (CSR): the row pointers and names; the values are claimed chunk by chunk
        (their density is not known before they are made); the free-space check then sees only this much."""
        if self._sparse:
            return self.n_total * 24 + H5_METADATA_BYTES + sum(len(g) + 8 for g in self.genes)
        data = super().estimated_bytes()
        return data + H5_METADATA_BYTES + data // 100

    def _open(self) -> None:
        import h5py

        tmp = self._temp(self.path)
        h5py.File(tmp, "w").close()  # an empty HDF5 file (a few KB), so its blocks can be claimed before HDF5 writes
        self._reserve = SpaceReserve(tmp)
        self._reserve.ensure(self.estimated_bytes())
        f = h5py.File(tmp, "r+", rdcc_nbytes=8 * X_CHUNK_BYTES)
        self._file = f
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        n, g = self.n_total, len(self.genes)
        if self._sparse:
            self._open_csr(f, n, g)
        else:
            rows = max(1, min(n, X_CHUNK_BYTES // (4 * g)))
            self._x = f.create_dataset(
                "X", shape=(n, g), dtype=np.float32, chunks=(rows, g) if n else None, compression=self._compression
            )
            _array_attrs(self._x)

        obs = f.create_group("obs")
        columns = (["cell_type"] if self.labels is not None else []) + ["origin"]
        obs.attrs["_index"] = "_index"
        obs.attrs.create("column-order", np.array(columns, dtype=object), dtype=h5py.string_dtype())
        obs.attrs["encoding-type"] = "dataframe"
        obs.attrs["encoding-version"] = "0.2.0"
        self._names = obs.create_dataset("_index", shape=(n,), dtype=h5py.string_dtype())
        self._names.attrs["encoding-type"] = "string-array"
        self._names.attrs["encoding-version"] = "0.2.0"
        self._label_codes = None
        if self.labels is not None:
            self._label_codes = self._categorical(obs, "cell_type", self.labels)
        self._categorical(obs, "origin", [ORIGIN])  # every code is 0: the dataset's fill value, never written

        var = f.create_group("var")
        var.attrs.update({"_index": "_index", "encoding-type": "dataframe", "encoding-version": "0.2.0"})
        var.attrs.create("column-order", np.array([], dtype=object), dtype=h5py.string_dtype())
        _string_array(var, "_index", self.genes)
        write_plain(f, "uns", _h5_safe(self.uns))
        for key in ("obsm", "obsp", "varm", "varp", "layers"):
            write_plain(f, key, {})

    def _open_csr(self, f: Any, n: int, g: int) -> None:
        """X as AnnData's csr_matrix: data and indices grow chunk by chunk, indptr is laid out up front."""
        group = f.create_group("X")
        group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n, g)})
        grow = {"shape": (0,), "maxshape": (None,), "chunks": (CSR_CHUNK,), "compression": self._compression}
        self._data = group.create_dataset("data", dtype=np.float32, **grow)
        self._indices = group.create_dataset("indices", dtype=_index_dtype(g), **grow)
        self._indptr = group.create_dataset("indptr", shape=(n + 1,), dtype=np.int64, fillvalue=0)

    def _write_csr(self, x: np.ndarray, start: int) -> None:
        values, cols, row_nnz = csr_parts(x)
        stop, nnz = start + x.shape[0], self._nnz + values.size
        # claim the values' blocks before HDF5 writes them (what a full disk must not interrupt): 8 bytes a value,
        # plus a partly filled chunk of data and of indices
        self._reserve.ensure(self.estimated_bytes() + nnz * 8 + 2 * CSR_CHUNK * 8)
        if values.size:
            self._data.resize((nnz,))
            self._indices.resize((nnz,))
            self._data[self._nnz : nnz] = values
            self._indices[self._nnz : nnz] = cols
        self._indptr[start + 1 : stop + 1] = self._nnz + np.cumsum(row_nnz)
        self._nnz = nnz

    def _categorical(self, obs: Any, name: str, categories: Sequence[str]) -> Any:
        group = obs.create_group(name)
        group.attrs["encoding-type"] = "categorical"
        group.attrs["encoding-version"] = "0.2.0"
        group.attrs["ordered"] = False
        _string_array(group, "categories", categories)
        codes = group.create_dataset("codes", shape=(self.n_total,), dtype=_code_dtype(categories), fillvalue=0)
        _array_attrs(codes)
        return codes

    def _write(self, x: np.ndarray, codes: np.ndarray | None, start: int) -> None:
        stop = start + x.shape[0]
        if self._sparse:
            self._write_csr(x, start)
        else:
            self._x[start:stop] = x if x.dtype == np.float32 else x.astype(np.float32)
        self._names[start:stop] = np.array(self._cell_names(start, stop), dtype=object)
        if codes is not None and self._label_codes is not None:
            self._label_codes[start:stop] = codes.astype(self._label_codes.dtype, copy=False)

    def _close(self) -> None:
        if self._file is not None and self._file.id.valid:
            self._file.close()
        reserve = getattr(self, "_reserve", None)
        if reserve is not None:
            reserve.close()
            if reserve.reserved and self._temps:  # cut the claimed but unused tail off
                tmp = self._temps[self.path]
                os.truncate(tmp, hdf5_end_of_allocation(tmp))
            self._reserve = None


def csr_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's CSR pieces: its non-zero values (float32) and their columns in row order, and each row's count."""
    rows, cols = np.nonzero(x)
    values = x[rows, cols].astype(np.float32, copy=False)
    return values, cols, np.bincount(rows, minlength=x.shape[0])


def _index_dtype(n_genes: int) -> type:
    """A sparse X's column indices: int32 as anndata writes them, int64 only beyond 2**31 genes."""
    return np.int32 if n_genes < 2**31 else np.int64


def _code_dtype(categories: Sequence[str]) -> type:
    """The smallest signed integer type of a categorical's codes (as anndata writes them)."""
    n = len(categories)
    return np.int8 if n < 2**7 else np.int16 if n < 2**15 else np.int32


def _array_attrs(ds: Any) -> None:
    ds.attrs["encoding-type"] = "array"
    ds.attrs["encoding-version"] = "0.2.0"


def _string_array(group: Any, name: str, values: Sequence[str]) -> Any:
    import h5py

    ds = group.create_dataset(name, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype())
    ds.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
    return ds


def write_plain(group: Any, key: str, value: Any) -> None:
    """Write plain values (dicts, strings, numbers, lists of either) in AnnData's HDF5 encoding with h5py alone,
    so that writing a generated file needs neither anndata nor pandas (about a second of imports); anything
    else goes to anndata's write_elem."""
    import h5py

    if isinstance(value, Mapping):
        sub = group.create_group(key)
        sub.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        for k, v in value.items():
            write_plain(sub, str(k), v)
    elif isinstance(value, str):
        ds = group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        ds.attrs.update({"encoding-type": "string", "encoding-version": "0.2.0"})
    elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        ds = group.create_dataset(key, data=value)
        ds.attrs.update({"encoding-type": "numeric-scalar", "encoding-version": "0.2.0"})
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        _string_array(group, key, value)
    elif isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        _array_attrs(group.create_dataset(key, data=np.asarray(value) if value else np.array([], dtype=np.float64)))
    else:
        _write_elem()(group, key, value)


def _h5_safe(value: Any) -> Any:
    """uns values anndata can store: None dropped, paths as strings, tuples as lists, dicts recursively."""
    if isinstance(value, Mapping):
        return {str(k): _h5_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return [_h5_safe(v) for v in value]
    return value


class CsvWriter(Writer):
    """`cell[,cell_type],<genes>` rows, `%.6g` values (printf-style formatting is ~4x faster than pandas)."""

    _f: Any = None

    def estimated_bytes(self) -> int:
        return self.n_total * (len(self.genes) * CSV_BYTES_PER_VALUE + 16)

    def _open(self) -> None:
        self._f = open(self._temp(self.path), "w", encoding="utf-8", newline="")  # noqa: SIM115
        head = ["cell"] + (["cell_type"] if self.labels is not None else []) + self.genes
        self._f.write(",".join(_csv_field(h) for h in head) + "\n")
        self._row_fmt = ",".join(["%.6g"] * len(self.genes))
        self._quoted = [_csv_field(c) for c in self.labels] if self.labels is not None else None

    def _write(self, x: np.ndarray, codes: np.ndarray | None, start: int) -> None:
        fmt, rows = self._row_fmt, x.tolist()
        if codes is None or self._quoted is None:
            lines = [f"{CELL_PREFIX}{start + i}," + fmt % tuple(r) for i, r in enumerate(rows)]
        else:
            q = self._quoted
            lines = [
                f"{CELL_PREFIX}{start + i},{q[c]}," + fmt % tuple(r)
                for i, (c, r) in enumerate(zip(codes.tolist(), rows))
            ]
        if lines:
            self._f.write("\n".join(lines) + "\n")

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()


class NpyWriter(Writer):
    """A float32 (n, G) .npy streamed through a file; labels (if any) in `<stem>.obs.csv` beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._f: Any = None
        self._obs: Any = None

    def _open(self) -> None:
        self._f = open(self._temp(self.path), "wb")  # noqa: SIM115
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False}
        header["shape"] = (self.n_total, len(self.genes))
        np.lib.format.write_array_header_1_0(self._f, header)
        if self.labels is not None:
            self._obs = open(self._temp(obs_csv_path(self.path)), "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._obs.write("cell,cell_type\n")
            self._quoted = [_csv_field(c) for c in self.labels]

    def _write(self, x: np.ndarray, codes: np.ndarray | None, start: int) -> None:
        self._f.write(np.ascontiguousarray(x, dtype="<f4").data)
        if self._obs is not None and codes is not None:
            q = self._quoted
            self._obs.write("".join(f"{CELL_PREFIX}{start + i},{q[c]}\n" for i, c in enumerate(codes.tolist())))

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._obs is not None:
            self._obs.close()

    def commit(self) -> None:
        super().commit()
        stale = obs_csv_path(self.path)
        if self.labels is None and self.force and stale.exists():
            stale.unlink()  # an earlier labelled run's labels no longer describe this .npy


# ------------------------------------------------------------------------------------------ .zarr stores

_ANNDATA_ELEMENTS = ("X", "obs", "var", "uns", "obsm", "obsp", "varm", "varp", "layers", "raw")
_ZARR_METADATA = (".zgroup", ".zattrs", ".zmetadata", "zarr.json")


def import_zarr() -> Any:
    """zarr (>= 3.1), or a one-line InputError naming the extra that installs it."""
    try:
        import zarr
    except ImportError:
        raise InputError(f"writing a .zarr store needs zarr, which is not installed: {ZARR_EXTRA}") from None
    try:
        version = tuple(int(p) for p in zarr.__version__.split(".")[:2])
    except ValueError:  # pragma: no cover - a development build
        version = MIN_ZARR
    if version < MIN_ZARR:
        raise InputError(
            f"writing a .zarr store needs zarr >= {'.'.join(map(str, MIN_ZARR))} (found {zarr.__version__}): "
            f"{ZARR_EXTRA} (zarr 3 needs Python >= 3.11)"
        )
    return zarr


def zarr_format() -> int:
    """The zarr format anndata writes by default (2 in anndata 0.12): what scverse tools expect to read."""
    try:
        import anndata

        return int(anndata.settings.zarr_write_format)
    except (ImportError, AttributeError):  # pragma: no cover - older anndata
        return 2


def is_vaexprs_store(path: Path) -> bool:
    """A folder that looks like a .zarr store vaexprs wrote: AnnData's elements only, with uns/vaexprs."""
    if path.is_symlink() or not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if not names & {".zgroup", "zarr.json"} or not names <= set(_ANNDATA_ELEMENTS + _ZARR_METADATA):
        return False
    return (path / "uns" / "vaexprs").is_dir()


def check_store_target(out: Path, force: bool) -> None:
    """Refuse an existing .zarr target without `force`, and anything but a vaexprs store even with it."""
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise exists_error(out)
    if not is_vaexprs_store(out):
        raise InputError(
            f"{out} is not a .zarr store vaexprs wrote; --force replaces only those: move it or give another name"
        )


def default_chunk_rows(n_genes: int) -> int:
    """Cells per zarr chunk when the caller gives none: about 64 MB of float32 per chunk."""
    return max(1, (64 << 20) // (4 * max(n_genes, 1)))


MAX_STORE_CHUNKS = 100_000  # a .zarr holds about 3 files a chunk: 300,000 files, far below a disk's inodes


def check_store_chunks(n_cells: int, batch_size: int) -> None:
    """A .zarr store writes a few files per block: --batch-size 1 over millions of cells would make millions of
    files (and can run out of inodes while the byte count fits). Refused before any work."""
    n_blocks = -(-n_cells // batch_size)
    if n_blocks > MAX_STORE_CHUNKS:
        smallest = -(-n_cells // MAX_STORE_CHUNKS)
        raise OptionError(
            "batch_size",
            f"of {batch_size} cells makes {n_blocks:,} chunks in the .zarr store (a few files each); the limit is "
            f"{MAX_STORE_CHUNKS:,}: give a --batch-size of at least {smallest}",
        )


def store_bytes(n_total: int, n_genes: int, sparse: bool = False) -> int:
    """About how large an uncompressed store is: X, plus the cell names and codes (~16 bytes a cell). A sparse
    X counts only its row pointers: the values' density is not known before they are made."""
    x = n_total * 8 if sparse else n_total * n_genes * 4
    return x + n_total * 16 + n_genes * 16 + (1 << 20)


def create_store(
    folder: Path,
    genes: Sequence[str],
    n_total: int,
    chunk_rows: int,
    labels: Sequence[str] | None,
    sparse: bool = False,
) -> None:
    """AnnData's zarr layout in `folder` with X, obs_names and label codes allocated but not yet written.

    Every per-cell array is chunked by `chunk_rows` cells, so writing rows k*chunk_rows.. (a generation block)
    touches one chunk of each. obs['origin'] is all "generated": its codes are the fill value, never written.
    sparse: X as AnnData's csr_matrix group, with empty `data` and `indices` that grow as blocks are written (in
    row order) and `indptr` laid out up front (its first value, 0, is the fill value).
    """
    import pandas as pd

    zarr = import_zarr()
    write_elem = _write_elem()
    n, g = int(n_total), len(genes)
    rows = max(1, min(int(chunk_rows), n)) if n else 1
    root = zarr.open_group(str(folder), mode="w", zarr_format=zarr_format())
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    array = {"encoding-type": "array", "encoding-version": "0.2.0"}
    strings = {"encoding-type": "string-array", "encoding-version": "0.2.0"}
    if sparse:
        csr = {"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [n, g]}
        x = root.create_group("X", attributes=csr)
        # compressed with zarr's default codec, as anndata's write_zarr does (Blosc lz4 with byte shuffle: counts
        # and column indices shrink several-fold at GB/s; it also squeezes the last chunk's padding)
        for name, dtype in (("data", np.float32), ("indices", _index_dtype(g))):
            x.create_array(name, shape=(0,), chunks=(ZARR_CSR_CHUNK,), dtype=dtype, fill_value=0)
        x.create_array("indptr", shape=(n + 1,), chunks=(rows,), dtype=np.int64, fill_value=0)
    else:
        root.create_array("X", shape=(n, g), chunks=(rows, g), dtype="float32", fill_value=0.0, compressors=None,
                          attributes=array)  # fmt: skip
    columns = (["cell_type"] if labels is not None else []) + ["origin"]
    frame = {"_index": "_index", "column-order": columns, "encoding-type": "dataframe", "encoding-version": "0.2.0"}
    obs = root.create_group("obs", attributes=frame)
    obs.create_array("_index", shape=(n,), chunks=(rows,), dtype=str, compressors=None, attributes=strings)
    for name, categories in (("cell_type", labels), ("origin", [ORIGIN])):
        if categories is None:
            continue
        group = obs.create_group(
            name, attributes={"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False}
        )
        cats = group.create_array("categories", shape=(len(categories),), dtype=str, attributes=strings)
        cats[:] = np.array([str(c) for c in categories], dtype=object)
        group.create_array("codes", shape=(n,), chunks=(rows,), dtype=_code_dtype(categories), fill_value=0,
                           compressors=None, attributes=array)  # fmt: skip
    with _quiet_zarr_advice():
        write_elem(root, "var", pd.DataFrame(index=pd.Index([str(x) for x in genes])))
        for key in ("obsm", "obsp", "varm", "varp", "layers"):
            write_elem(root, key, {})


@contextlib.contextmanager
def _quiet_zarr_advice() -> Iterator[None]:
    """anndata and zarr warn about their future defaults (zarr v3 sharding, consolidated metadata in v3) on
    every write; they are advice to the library, not to the person generating cells."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(autosharding|[Cc]onsolidated metadata|zarr v2 data).*")
        yield


def _store_root(folder: Path) -> Path | None:
    """The root metadata file of a store, or None when the store is gone (removed after a failure)."""
    for name in (".zgroup", "zarr.json"):
        if (folder / name).is_file():
            return folder / name
    return None


class StoreBlocks:
    """Writes blocks of cells into a store made by `create_store`: X rows, obs_names, label codes.

    A dense X takes blocks in any order; a sparse (CSR) X only in row order, each block appended to the values.
    """

    def __init__(self, folder: Path) -> None:
        zarr = import_zarr()
        self.folder = folder
        root = zarr.open_group(str(folder), mode="r+")
        x = root["X"]
        self._x = x if isinstance(x, zarr.Array) else None
        self._csr = None if self._x is not None else (x["data"], x["indices"], x["indptr"])
        self._nnz = 0  # values written so far (sparse X)
        self._rows = 0  # rows written so far (sparse X)
        self._names = root["obs/_index"]
        self._codes = root["obs/cell_type/codes"] if "cell_type" in root["obs"] else None

    @property
    def chunk_rows(self) -> int:
        return int(self._names.chunks[0])

    def write(self, start: int, x: np.ndarray, codes: np.ndarray | None) -> None:
        """Rows start..start + len(x); codes index the store's categories (None for unlabelled cells)."""
        if _store_root(self.folder) is None:  # removed after a failure: write nothing, recreate nothing
            raise VaexprsRuntimeError(f"the output store {self.folder} is gone (the run was stopped)")
        stop = start + x.shape[0]
        if self._x is not None:
            self._x[start:stop] = x if x.dtype == np.float32 else x.astype(np.float32)
        else:
            self._append_csr(start, x)
        self._names[start:stop] = np.array(cell_names(start, stop), dtype=object)
        if self._codes is not None and codes is not None:
            self._codes[start:stop] = codes.astype(self._codes.dtype, copy=False)

    def _append_csr(self, start: int, x: np.ndarray) -> None:
        """Append a block's values and columns, and fill its rows' pointers (rows start+1..stop of indptr)."""
        assert self._csr is not None
        if start != self._rows:
            raise VaexprsRuntimeError(f"a sparse X is written in row order: got rows from {start}, not {self._rows}")
        data, indices, indptr = self._csr
        values, cols, row_nnz = csr_parts(x)
        if values.size:
            data.append(values)
            indices.append(cols.astype(indices.dtype, copy=False))
        indptr[start + 1 : start + x.shape[0] + 1] = self._nnz + np.cumsum(row_nnz)
        self._nnz += values.size
        self._rows += x.shape[0]


def finish_store(folder: Path, uns: Mapping[str, Any]) -> None:
    """Write uns (e.g. uns['vaexprs']) and consolidate the metadata, as anndata's write_zarr does."""
    zarr = import_zarr()
    root = zarr.open_group(str(folder), mode="r+")
    with _quiet_zarr_advice():
        _write_elem()(root, "uns", _h5_safe(dict(uns)))
        zarr.consolidate_metadata(str(folder))


class ZarrWriter(Writer):
    """AnnData's zarr layout, filled block by block in a temp folder that becomes the target at the end; X dense,
    or CSR with `sparse` (appended block by block, as in the .h5ad)."""

    def __init__(self, *args: Any, chunk_rows: int | None = None, sparse: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunk_rows = int(chunk_rows or default_chunk_rows(len(self.genes)))
        self._sparse = sparse
        self._stack: contextlib.ExitStack | None = None
        self._blocks: StoreBlocks | None = None

    def estimated_bytes(self) -> int:
        return store_bytes(self.n_total, len(self.genes), self._sparse)

    def _open(self) -> None:
        import_zarr()
        self._stack = contextlib.ExitStack()
        folder = self._stack.enter_context(atomic_folder(self.path, self.force))
        create_store(folder, self.genes, self.n_total, self.chunk_rows, self.labels, sparse=self._sparse)
        self._blocks = StoreBlocks(folder)

    def _write(self, x: np.ndarray, codes: np.ndarray | None, start: int) -> None:
        assert self._blocks is not None
        self._blocks.write(start, x, codes)

    def commit(self) -> None:
        if self.n_written != self.n_total:
            raise VaexprsRuntimeError(f"wrote {self.n_written} of the {self.n_total} announced cells")
        assert self._stack is not None and self._blocks is not None
        finish_store(self._blocks.folder, self.uns)
        check_store_target(self.path, self.force)  # a target that appeared meanwhile: refused, or ours to replace
        stack, self._stack = self._stack, None
        stack.close()  # renames the temp folder to the target (atomic_folder)

    def abort(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:  # atomic_folder removes the temp folder when it sees an exception
            with contextlib.suppress(BaseException):
                stack.__exit__(VaexprsRuntimeError, VaexprsRuntimeError("aborted"), None)


_WRITERS: dict[str, type[Writer]] = {".h5ad": H5adWriter, ".csv": CsvWriter, ".npy": NpyWriter, ".zarr": ZarrWriter}


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike[str],
    genes: Sequence[str],
    n_total: int,
    labels: Sequence[str] | None = None,
    force: bool = False,
    uns: Mapping[str, Any] | None = None,
    compression: str | None = None,
    chunk_rows: int | None = None,
    sparse: bool = False,
) -> Iterator[Writer]:
    """A writer for `path` (type from its suffix); commits on a clean exit, removes its temp files otherwise.

    labels: the label categories (codes given to write_chunk index into them); None for unlabelled cells.
    uns: stored in .h5ad and .zarr only. compression: h5py filter for the .h5ad X (e.g. "gzip"); None by default.
    chunk_rows: cells per .zarr chunk; give the generation block size, so each block fills exactly one chunk.
    sparse: .h5ad and .zarr X as CSR (what count data should be: mostly zeros); .csv and .npy stay dense.
    """
    out = check_output(path, force, with_labels=labels is not None)
    if n_total < 0:
        raise InputError(f"n_total must be non-negative; got {n_total}")
    cls = _WRITERS[out.suffix.lower()]
    kwargs: dict[str, Any] = {}
    if cls is H5adWriter:
        kwargs.update(compression=compression, sparse=sparse)
    elif cls is ZarrWriter:
        kwargs.update(chunk_rows=chunk_rows, sparse=sparse)
    writer = cls(out, genes, n_total, labels, uns, force, **kwargs)
    check_free_space(out, writer.estimated_bytes())
    try:
        writer._open()
        yield writer
        writer.commit()
    except OSError as exc:
        writer.abort()
        if exc.errno in DISK_ERRNOS:
            raise disk_error(out, exc) from None
        raise
    except BaseException:
        writer.abort()
        raise
