"""Training out of core: a backed .h5ad's X stays on disk, every statistic is streamed, memory stays bounded."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from tests.test_cli import assert_one_line_error, run_cli
from vaexprs.data import backed as backed_module
from vaexprs.data.backed import OnDiskCells, block_shuffled_order, sample_rows
from vaexprs.data.io import read_expression
from vaexprs.data.preprocess import (
    apply_normalization,
    check_counts,
    column_mean_var,
    column_min_max,
    library_size,
    nonzero_moments,
    plausible_maxima,
    value_summary,
)
from vaexprs.errors import OptionError


def counts_anndata(n: int = 240, genes: int = 60, seed: int = 0, dense: bool = False) -> ad.AnnData:
    """Gamma-Poisson counts with three labels of their own gene means (~70% zeros)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    means = rng.gamma(0.4, 2.0, size=(3, genes))
    x = rng.poisson(means[labels] * rng.lognormal(0, 0.3, size=(n, 1))).astype(np.float32)
    adata = ad.AnnData(x if dense else sp.csr_matrix(x))
    adata.obs["cell_type"] = [f"t{k}" for k in labels]
    adata.var_names = [f"g{j}" for j in range(genes)]
    return adata


@pytest.fixture(params=["csr", "dense"])
def on_disk(request, tmp_path):
    """(in-memory AnnData, the same file opened backed), for a CSR and a dense X."""
    adata = counts_anndata(dense=request.param == "dense")
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return adata, read_expression(path, backed=True)


@pytest.fixture
def small_chunks(monkeypatch):
    """Streaming passes of 7 cells (60 genes x 4 bytes x 7): every statistic is built from many chunks."""
    monkeypatch.setattr(backed_module, "CHUNK_BYTES", 60 * 4 * 7)


def dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def test_rows_come_back_in_the_order_asked_and_views_compose(on_disk):
    memory, disk = on_disk
    cells = OnDiskCells.of(disk.X)
    rows = np.array([17, 3, 4, 5, 200, 0, 239])
    np.testing.assert_array_equal(dense(cells[rows]), dense(memory.X[rows]))
    part = cells.take(np.array([10, 2, 50, 51]))  # sorted: 2, 10, 50, 51
    np.testing.assert_array_equal(dense(part[np.array([3, 0])]), dense(memory.X[[51, 2]]))
    doubled = part.map(lambda block: block * 2)
    np.testing.assert_array_equal(dense(doubled[np.arange(4)]), 2 * dense(memory.X[[2, 10, 50, 51]]))


def test_streamed_statistics_equal_the_in_memory_ones(on_disk, small_chunks):
    memory, disk = on_disk
    x, cells = memory.X, OnDiskCells.of(disk.X)
    assert cells.chunk_rows == 7
    assert value_summary(cells) == value_summary(x)
    np.testing.assert_allclose(library_size(cells), library_size(x))
    for got, want in zip(column_min_max(cells), column_min_max(x)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(column_mean_var(cells), column_mean_var(x)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    logged = apply_normalization(cells, "lognorm")  # the view's own mean library, as in memory
    np.testing.assert_allclose(dense(logged[np.arange(240)]), dense(apply_normalization(x, "lognorm")), rtol=1e-6)
    np.testing.assert_array_equal(plausible_maxima(cells, counts=True), plausible_maxima(x, counts=True))
    codes = memory.obs["cell_type"].cat.codes.to_numpy()
    streamed, whole = nonzero_moments(cells, codes, 3), nonzero_moments(dense(x), codes, 3)
    for name in ("count", "total", "squares"):
        np.testing.assert_allclose(getattr(streamed, name), getattr(whole, name), rtol=1e-12)


def test_nonzero_moments_are_the_per_label_statistics_of_the_detected_values():
    x = np.array([[0, 2, 1], [4, 0, 1], [0, 6, 0], [3, 0, 5]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    moments = nonzero_moments(sp.csr_matrix(x), labels, 2)
    np.testing.assert_array_equal(moments.count, [[1, 1, 2], [1, 1, 1]])
    np.testing.assert_allclose(moments.zero_fraction(), [0.5, 0.5, 0.25])
    np.testing.assert_allclose(moments.mean(), [3.5, 4.0, 7 / 3])
    # only gene 2 of label 0 has two detections (1, 1: spread 0); genes 0 and 1 have no label with two
    np.testing.assert_allclose(moments.pooled_sd(), [np.nan, np.nan, 0.0])
    x[0, 2] = 3  # label 0, gene 2: values 3 and 1, sd sqrt(2)
    np.testing.assert_allclose(nonzero_moments(x, labels, 2).pooled_sd()[2], np.sqrt(2))


def test_non_integer_values_on_disk_are_refused_or_rounded_as_in_memory(tmp_path, small_chunks):
    adata = counts_anndata()
    adata.X = adata.X.multiply(1.5).tocsr()
    adata.write_h5ad(tmp_path / "frac.h5ad")
    cells = OnDiskCells.of(read_expression(tmp_path / "frac.h5ad", backed=True).X)
    with pytest.raises(OptionError, match="non-integer value"):
        check_counts(cells, "nb")
    rounded = check_counts(cells, "nb", round_counts=True)
    np.testing.assert_array_equal(dense(rounded[np.arange(240)]), np.round(dense(adata.X)))


def test_block_shuffled_order_is_a_seeded_permutation_of_neighbour_blocks():
    order = block_shuffled_order(1000, np.random.default_rng(4), block=16, window=128)
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    np.testing.assert_array_equal(order, block_shuffled_order(1000, np.random.default_rng(4), block=16, window=128))
    window = order[:128]  # one window holds whole blocks of 16 neighbours, so it is a few contiguous reads
    assert len(np.unique(window // 16)) <= 8 + 1
    assert not np.array_equal(order, np.arange(1000))
    sample = sample_rows(1000, 64, seed=2, block=16)
    assert len(sample) == 64 and len(np.unique(sample // 16)) == 4


def test_fit_vae_on_a_backed_file_reads_bounded_blocks_and_matches_in_memory_preprocessing(
    tmp_path, monkeypatch, small_chunks
):
    import vaexprs
    from vaexprs.model import fit as fit_module

    memory = counts_anndata(n=400)
    memory.write_h5ad(tmp_path / "cells.h5ad")
    disk = read_expression(tmp_path / "cells.h5ad", backed=True)
    monkeypatch.setattr(fit_module, "REFERENCE_CELLS", 64)
    largest = []
    original = OnDiskCells.__getitem__

    def counted(self, rows):
        block = original(self, rows)
        largest.append(block.shape[0])
        return block

    monkeypatch.setattr(OnDiskCells, "__getitem__", counted)
    options = dict(likelihood="nb", epochs=2, hidden=(16,), batch_size=8, val_split=0.2, seed=5, progress=False)
    on_disk = vaexprs.fit_vae(disk, "cell_type", **options)
    in_memory = vaexprs.fit_vae(memory, "cell_type", **options)

    # memory: never more than a streaming chunk (7 cells), a batch (8) or the kept reference (64) at once
    assert max(largest) <= 64 and len(largest) > 100
    assert on_disk.preprocessor.to_dict() == in_memory.preprocessor.to_dict()
    np.testing.assert_array_equal(on_disk.value_cap, in_memory.value_cap)
    np.testing.assert_allclose(on_disk.library_size.mu, in_memory.library_size.mu)
    assert on_disk.data_info["n_cells"] == in_memory.data_info["n_cells"] == 320
    assert on_disk.data_info["on_disk"] is True
    assert on_disk.x_train.shape == (64, 60) and len(on_disk.y_train) == 64  # a sample, in memory
    kept = memory[on_disk.cell_names]  # the sample keeps its cells' names, each with its own cell and label
    assert kept.n_obs == 64 and np.array_equal(on_disk.y_train, kept.obs["cell_type"].astype(str))
    np.testing.assert_array_equal(np.asarray(on_disk.x_train.todense()), np.asarray(kept.X.todense()))
    assert on_disk.latent.shape == (320, on_disk.model_config.latent_dim)
    assert np.isfinite(on_disk.history[-1]["val_loss"])
    gen = vaexprs.gen_exprs(on_disk, num_samples=30, labels={"t0": 30})
    assert gen.x_gen.shape == (30, 60) and np.all(gen.x_gen == np.round(gen.x_gen))


def test_likelihood_auto_selects_on_a_backed_file(tmp_path):
    import vaexprs

    counts_anndata(n=300).write_h5ad(tmp_path / "cells.h5ad")
    disk = read_expression(tmp_path / "cells.h5ad", backed=True)
    result = vaexprs.fit_vae(disk, "cell_type", epochs=2, hidden=(16,), seed=1, progress=False)
    heads = {row["likelihood"] for row in result.selection if "score" in row}
    assert heads == {"hurdle", "nb", "zinb", "bce"}  # integer counts on disk: the count heads compete
    assert result.model_config.likelihood in heads


def test_train_backed_from_the_command_line(capsys, tmp_path):
    counts_anndata(n=200).write_h5ad(tmp_path / "cells.h5ad")
    code, _, err = run_cli(
        capsys, "train", tmp_path / "cells.h5ad", "--backed", "-o", tmp_path / "bundle", "--epochs", "2",
        "--hidden", "16", "--likelihood", "hurdle", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "bundle" / "decoder.onnx").exists()

    np.savetxt(tmp_path / "cells.csv", np.ones((3, 2)), delimiter=",")
    code, _, err = run_cli(capsys, "train", tmp_path / "cells.csv", "--backed", "-o", tmp_path / "b2")
    assert code == 2
    assert_one_line_error(err, "--backed", "cells.csv")
    code, _, err = run_cli(capsys, "train", "--backed", "-o", tmp_path / "b3")
    assert code == 2
    assert_one_line_error(err, "backed", "DATA")
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()


def test_a_file_stored_by_genes_is_refused_with_the_fix(capsys, tmp_path):
    adata = counts_anndata(n=50)
    adata.X = sp.csc_matrix(adata.X)
    adata.write_h5ad(tmp_path / "csc.h5ad")
    code, _, err = run_cli(capsys, "train", tmp_path / "csc.h5ad", "--backed", "-o", tmp_path / "bundle")
    assert code == 2
    assert_one_line_error(err, "CSR")
    assert not (tmp_path / "bundle").exists()


def test_under_torchrun_each_rank_reads_only_its_own_share_of_an_epoch(monkeypatch, tmp_path):
    import torch

    from vaexprs.data.preprocess import Preprocessor
    from vaexprs.model import ddp
    from vaexprs.model.loop import Batches

    counts_anndata(n=240).write_h5ad(tmp_path / "cells.h5ad")
    cells = OnDiskCells.of(read_expression(tmp_path / "cells.h5ad", backed=True).X)
    preprocessor, normalized, _ = Preprocessor.fit(cells, [f"g{j}" for j in range(60)], scale=False)
    read = {}
    original = OnDiskCells.__getitem__
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        seen = read.setdefault(rank, [])

        def recording(self, rows, seen=seen):
            seen.extend(np.asarray(rows).tolist())
            return original(self, rows)

        monkeypatch.setattr(OnDiskCells, "__getitem__", recording)
        batches = Batches(normalized, None, preprocessor)
        n = sum(x.shape[0] for x, _ in batches.iterate(16, torch.device("cpu"), np.random.default_rng(7), ddp.shard))
        assert n == 120
    assert len(read[0]) == len(read[1]) == 120
    assert not set(read[0]) & set(read[1])  # disjoint shares of the same epoch order, both read from disk
