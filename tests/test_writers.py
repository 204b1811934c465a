"""Streaming writers and generate_to_file: formats, metadata, determinism, and atomic failure behaviour."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_fixtures import LABELS, N_GENES, make_bundle
from vaexprs.errors import InputError
from vaexprs.generate.pipeline import generate_array, generate_to_file
from vaexprs.generate.writers import SUPPORTED_SUFFIXES, open_writer


@pytest.fixture(scope="module")
def cvae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("writers") / "cvae", conditional=True)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("writers") / "vae", conditional=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_h5ad_round_trip(cvae_dir, tmp_path):
    import anndata as ad

    out = tmp_path / "gen.h5ad"
    summary = generate_to_file(cvae_dir, out, n=40, seed=2, provider="cpu", batch_size=7)
    assert summary["n_cells"] == 40 and summary["out"] == str(out)
    assert summary["provider"] == "CPUExecutionProvider" and summary["model_version"] is None
    a = ad.read_h5ad(out)
    assert a.shape == (40, N_GENES) and a.X.dtype == np.float32
    assert list(a.var_names) == [f"gene{i + 1}" for i in range(N_GENES)]
    assert list(a.obs_names[:3]) == ["gen0", "gen1", "gen2"]
    assert a.obs["cell_type"].dtype == "category" and set(a.obs["cell_type"]) <= set(LABELS)
    assert a.obs["origin"].dtype == "category" and (a.obs["origin"] == "generated").all()
    meta = a.uns["vaexprs"]
    assert meta["provider"] == "CPUExecutionProvider" and meta["seed"] == 2 and meta["sampler"] == "gmm"
    assert meta["model_uri"] == str(cvae_dir.resolve()) and meta["n_cells"] == 40
    assert meta["output_space"] == "lognorm" and meta["likelihood"] == "bce" and meta["vaexprs_version"]
    x, labels = generate_array(cvae_dir, n=40, seed=2, provider="cpu", batch_size=7)
    assert np.array_equal(a.X, x) and list(a.obs["cell_type"]) == list(labels)
    assert _files(tmp_path) == ["gen.h5ad"]  # no temp file left behind


def test_h5ad_backed_read_and_label_request(cvae_dir, tmp_path):
    import anndata as ad

    out = tmp_path / "g2.h5ad"
    generate_to_file(cvae_dir, out, label="group3", n=9, provider="cpu")
    a = ad.read_h5ad(out, backed="r")
    assert a.shape == (9, N_GENES) and a.X[2:4].shape == (2, N_GENES)
    assert list(a.obs["cell_type"].cat.categories) == ["group3"]  # only the labels that occur
    a.file.close()


def test_per_label_counts(cvae_dir, tmp_path):
    import anndata as ad

    out = tmp_path / "p.h5ad"
    generate_to_file(cvae_dir, out, per_label="group1=3,group3=5", provider="cpu")
    counts = ad.read_h5ad(out).obs["cell_type"].value_counts().to_dict()
    assert counts == {"group3": 5, "group1": 3}
    generate_to_file(cvae_dir, tmp_path / "d.h5ad", per_label={"group2": 4}, provider="cpu")
    assert ad.read_h5ad(tmp_path / "d.h5ad").obs["cell_type"].tolist() == ["group2"] * 4


def test_vae_h5ad_has_no_cell_type(vae_dir, tmp_path):
    import anndata as ad

    generate_to_file(vae_dir, tmp_path / "v.h5ad", n=6, provider="cpu")
    a = ad.read_h5ad(tmp_path / "v.h5ad")
    assert a.shape == (6, N_GENES) and list(a.obs.columns) == ["origin"]


def test_csv_output(cvae_dir, tmp_path):
    out = tmp_path / "gen.csv"
    generate_to_file(cvae_dir, out, n=11, seed=4, provider="cpu", batch_size=4)
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["cell", "cell_type", "gene1"] and len(rows[0]) == N_GENES + 2
    assert len(rows) == 12 and rows[1][0] == "gen0" and rows[11][0] == "gen10"
    x, labels = generate_array(cvae_dir, n=11, seed=4, provider="cpu", batch_size=4)
    assert [r[1] for r in rows[1:]] == list(labels)
    values = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.allclose(values, x, rtol=1e-5)


def test_csv_without_labels(vae_dir, tmp_path):
    out = tmp_path / "v.csv"
    generate_to_file(vae_dir, out, n=3, provider="cpu")
    header = out.read_text().splitlines()[0].split(",")
    assert header[:2] == ["cell", "gene1"] and len(header) == N_GENES + 1


def test_npy_output_and_obs_csv(cvae_dir, tmp_path):
    out = tmp_path / "gen.npy"
    generate_to_file(cvae_dir, out, n=13, seed=3, provider="cpu", batch_size=5)
    x, labels = generate_array(cvae_dir, n=13, seed=3, provider="cpu", batch_size=5)
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (13, N_GENES) and np.array_equal(arr, x)
    obs = (tmp_path / "gen.obs.csv").read_text().splitlines()
    assert obs[0] == "cell,cell_type" and obs[1] == f"gen0,{labels[0]}" and len(obs) == 14
    assert _files(tmp_path) == ["gen.npy", "gen.obs.csv"]


def test_npy_vae_has_no_obs_csv_and_force_removes_a_stale_one(cvae_dir, vae_dir, tmp_path):
    out = tmp_path / "x.npy"
    generate_to_file(cvae_dir, out, n=4, provider="cpu")
    assert (tmp_path / "x.obs.csv").exists()
    generate_to_file(vae_dir, out, n=4, provider="cpu", force=True)
    assert np.load(out).shape == (4, N_GENES) and _files(tmp_path) == ["x.npy"]


def test_npy_vae_refuses_a_stale_obs_csv_without_force(cvae_dir, vae_dir, tmp_path):
    """An earlier labelled run's x.obs.csv beside a new unlabelled x.npy was left as is: evaluate and train then
    read another model's labels for these cells."""
    out = tmp_path / "x.npy"
    generate_to_file(cvae_dir, out, n=4, provider="cpu")
    out.unlink()
    before = (tmp_path / "x.obs.csv").read_bytes()
    with pytest.raises(InputError, match=r"x\.obs\.csv exists and would be read as these cells' labels"):
        generate_to_file(vae_dir, out, n=4, provider="cpu")
    assert _files(tmp_path) == ["x.obs.csv"] and (tmp_path / "x.obs.csv").read_bytes() == before


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_same_seed_identical_bytes_different_seed_differs(cvae_dir, tmp_path, suffix):
    a, b, c = (tmp_path / f"{name}{suffix}" for name in "abc")
    generate_to_file(cvae_dir, a, n=25, seed=9, provider="cpu", batch_size=8)
    generate_to_file(cvae_dir, b, n=25, seed=9, provider="cpu", batch_size=8)
    generate_to_file(cvae_dir, c, n=25, seed=10, provider="cpu", batch_size=8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)


def test_small_batches_give_the_right_shapes(cvae_dir, tmp_path):
    import anndata as ad

    generate_to_file(cvae_dir, tmp_path / "s.h5ad", n=30, batch_size=7, provider="cpu")
    generate_to_file(cvae_dir, tmp_path / "l.h5ad", n=30, batch_size=8192, provider="cpu")
    assert ad.read_h5ad(tmp_path / "s.h5ad").shape == ad.read_h5ad(tmp_path / "l.h5ad").shape == (30, N_GENES)


def test_existing_output_without_force_is_refused_and_untouched(cvae_dir, tmp_path):
    out = tmp_path / "gen.h5ad"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match=r"gen.h5ad exists; pass --force to overwrite"):
        generate_to_file(cvae_dir, out, n=5, provider="cpu")
    assert out.read_bytes() == b"precious" and _files(tmp_path) == ["gen.h5ad"]
    generate_to_file(cvae_dir, out, n=5, provider="cpu", force=True)
    assert out.read_bytes() != b"precious"


def test_missing_output_folder(cvae_dir, tmp_path):
    with pytest.raises(InputError, match=r"output folder .*nope does not exist"):
        generate_to_file(cvae_dir, tmp_path / "nope" / "gen.h5ad", n=5)
    assert _files(tmp_path) == []


def test_unsupported_suffix(cvae_dir, tmp_path):
    with pytest.raises(InputError, match=r"unsupported output type '\.parquet'; use one of \.h5ad, \.csv, \.npy"):
        generate_to_file(cvae_dir, tmp_path / "gen.parquet", n=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be between 1 and"),
        ({"n": 5, "label": "nope"}, "label 'nope' is unknown"),
        ({"per_label": "group1:3"}, "cannot parse"),
        ({"per_label": "ghost=3"}, "label 'ghost' is unknown"),
        ({"n": 5, "sampler": "vamp"}, "sampler must be one of"),
        ({"n": 5, "provider": "tpu"}, "provider must be one of"),
    ],
)
@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_bad_requests_create_no_file(cvae_dir, tmp_path, kwargs, message, suffix):
    with pytest.raises(InputError, match=message):
        generate_to_file(cvae_dir, tmp_path / f"gen{suffix}", **kwargs)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("suffix", [s for s in SUPPORTED_SUFFIXES if s != ".h5ad"])
def test_compression_outside_h5ad_is_refused_not_ignored(cvae_dir, tmp_path, suffix):
    """--compression only reaches the .h5ad writer: elsewhere it would be dropped, and the file bigger than asked."""
    with pytest.raises(InputError, match=r"compression applies to \.h5ad output only"):
        generate_to_file(cvae_dir, tmp_path / f"gen{suffix}", n=5, compression="gzip")
    assert _files(tmp_path) == []


def test_missing_model_path(tmp_path):
    with pytest.raises(InputError, match=r"model .* does not exist"):
        generate_to_file(tmp_path / "no-model", tmp_path / "gen.h5ad", n=5)
    assert _files(tmp_path) == []


def fail_on_third_block(monkeypatch) -> dict[str, int]:
    """Generation raises RuntimeError("boom") at its third block, after two have been written; the returned
    counter, set back to 0, arms it again."""
    import vaexprs.generate.loop as loop

    real = loop.outputs_to_cells
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "outputs_to_cells", flaky)
    return calls


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_failure_mid_write_leaves_nothing(cvae_dir, tmp_path, monkeypatch, suffix):
    """A crash after some chunks: no temp file, no output, and an existing output stays as it was."""
    calls = fail_on_third_block(monkeypatch)
    out = tmp_path / f"gen{suffix}"
    with pytest.raises(RuntimeError, match="boom"):
        generate_to_file(cvae_dir, out, n=50, batch_size=10, provider="cpu")
    assert _files(tmp_path) == []
    out.write_bytes(b"old")
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="boom"):
        generate_to_file(cvae_dir, out, n=50, batch_size=10, provider="cpu", force=True)
    assert _files(tmp_path) == [out.name] and out.read_bytes() == b"old"


def test_writer_refuses_short_or_long_writes(tmp_path):
    with pytest.raises(Exception, match="wrote 2 of the 3"), open_writer(tmp_path / "a.npy", ["g1", "g2"], 3) as w:
        w.write_chunk(np.zeros((2, 2), np.float32))
    with pytest.raises(Exception, match="more rows"), open_writer(tmp_path / "b.csv", ["g1", "g2"], 1) as w:
        w.write_chunk(np.zeros((2, 2), np.float32))
    assert _files(tmp_path) == []


def test_writer_accepts_label_names_and_quotes_csv(tmp_path):
    out = tmp_path / "q.csv"
    with open_writer(out, ["g,1", "g2"], 2, labels=["a,b", "c"]) as w:
        w.write_chunk(np.ones((2, 2), np.float32), np.array(["c", "a,b"], dtype=object))
    rows = list(csv.reader(out.open(newline="")))
    assert rows == [["cell", "cell_type", "g,1", "g2"], ["gen0", "c", "1", "1"], ["gen1", "a,b", "1", "1"]]


def resolve_model(model):
    """(folder, uri, version) of a MODEL, as generate resolves it."""
    from vaexprs.registry.models import resolved_bundle

    with resolved_bundle(model) as resolved:
        return resolved.folder, resolved.uri, resolved.version


def test_resolve_model_local_paths(cvae_dir, tmp_path):
    folder, uri, version = resolve_model(cvae_dir)
    assert folder == cvae_dir.resolve() and uri == str(cvae_dir.resolve()) and version is None
    assert resolve_model(cvae_dir / "bundle.json")[0] == cvae_dir.resolve()
    with pytest.raises(InputError, match=r"has no bundle.json \(give the bundle folder itself\)"):
        resolve_model(cvae_dir.parent)  # never a search through subfolders
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"has no bundle.json"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(InputError, match=r"does not exist"):
        resolve_model(tmp_path / "missing")


def test_resolve_model_from_mlflow(cvae_dir, tmp_path, monkeypatch):
    """runs:/ and models:/ URIs (alias and version) resolve to the bundle; unknown ones are InputErrors."""
    mlflow = pytest.importorskip("mlflow")
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", db)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None, raising=False)  # restored after the test
    monkeypatch.setattr(registry_utils, "_registry_uri", None, raising=False)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("gen", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(cvae_dir), artifact_path="model/artifacts/bundle")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("toy")
    mv = client.create_model_version("toy", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("toy", "champion", mv.version)

    with __import__("vaexprs.registry.models").registry.models.resolved_bundle(f"runs:/{run.info.run_id}/model") as r:
        assert (r.folder / "bundle.json").is_file() and r.version is None
        downloaded = r.folder
    assert not downloaded.exists()  # the download is removed afterwards
    assert resolve_model("models:/toy@champion")[1:] == ("models:/toy@champion", "1")
    assert resolve_model("models:/toy/1")[2] == "1"
    summary = generate_to_file("models:/toy@champion", tmp_path / "m.h5ad", n=5, provider="cpu")
    assert summary["model_uri"] == "models:/toy@champion" and summary["model_version"] == "1"
    with pytest.raises(InputError, match=r"model 'models:/toy@nope' not found at sqlite"):
        resolve_model("models:/toy@nope")
    with pytest.raises(InputError, match=r"model 'models:/ghost/3' not found"):
        resolve_model("models:/ghost/3")
    with pytest.raises(InputError, match=r"model 'runs:/0123abc/model' not found"):
        resolve_model("runs:/0123abc/model")


def test_progress_bar_goes_to_stderr(cvae_dir, tmp_path, capsys):
    generate_to_file(cvae_dir, tmp_path / "p.npy", n=20, batch_size=5, provider="cpu", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "20/20" in captured.err


@pytest.fixture(scope="module")
def nb_bundle(tmp_path_factory) -> Path:
    import vaexprs

    data = vaexprs.simulate(groups=3, cells=30, genes=120, deg=20, seed=2)
    data.X = np.random.default_rng(0).poisson(data.X / 20).astype(np.float32)  # UMI-like: mostly zeros
    result = vaexprs.fit_vae(data, "cell_type", likelihood="nb", hidden=(16,), epochs=3, seed=1)
    return vaexprs.export_bundle(result, tmp_path_factory.mktemp("writers") / "nb")


def test_sampled_counts_are_written_as_csr(nb_bundle, tmp_path):
    """Count cells are mostly zeros: X is CSR (same values as --dense), the file is smaller, AnnData reads it."""
    import anndata as ad
    import scipy.sparse as sp

    generate_to_file(nb_bundle, tmp_path / "sparse.h5ad", n=20000, seed=4, batch_size=7000)
    generate_to_file(nb_bundle, tmp_path / "dense.h5ad", n=20000, seed=4, batch_size=7000, dense=True)
    generate_to_file(nb_bundle, tmp_path / "gzip.h5ad", n=20000, seed=4, batch_size=7000, compression="gzip")
    sparse, dense = ad.read_h5ad(tmp_path / "sparse.h5ad"), ad.read_h5ad(tmp_path / "dense.h5ad")
    assert sp.issparse(sparse.X) and sparse.X.format == "csr" and not sp.issparse(dense.X)
    np.testing.assert_array_equal(sparse.X.toarray(), dense.X)
    assert sparse.X.nnz < 0.6 * dense.X.size  # mostly zeros, none of them stored
    assert (tmp_path / "sparse.h5ad").stat().st_size < (tmp_path / "dense.h5ad").stat().st_size
    assert (tmp_path / "gzip.h5ad").stat().st_size < (tmp_path / "sparse.h5ad").stat().st_size
    ad.AnnData(sparse.X, obs=sparse.obs, var=sparse.var).write_h5ad(tmp_path / "anndata.h5ad")  # AnnData's own CSR
    assert (tmp_path / "sparse.h5ad").stat().st_size <= 1.5 * (tmp_path / "anndata.h5ad").stat().st_size
    assert list(sparse.obs["cell_type"]) == list(dense.obs["cell_type"])
    x, _ = generate_array(nb_bundle, n=20000, seed=4, batch_size=7000)
    np.testing.assert_array_equal(sparse.X.toarray(), x)  # the same cells as in memory
    mean_only = tmp_path / "mean.h5ad"
    generate_to_file(nb_bundle, mean_only, n=50, seed=4, output_space="mean")
    assert not sp.issparse(ad.read_h5ad(mean_only).X)  # expected values have no zeros: dense


def test_sampled_cells_of_dense_data_stay_dense(tmp_path):
    """A hurdle trained on values without zeros (array intensities, methylation ratios) draws few: its cells go to
    a dense X by default, where a CSR file would be about twice as large, the same values as in memory."""
    import anndata as ad
    import scipy.sparse as sp

    import vaexprs
    from vaexprs.generate.pipeline import SPARSE_ENOUGH

    data = vaexprs.simulate(groups=2, cells=20, genes=60, deg=10, seed=3)
    data.X = np.log2(np.asarray(data.X) + 2.0).astype(np.float32)  # dense log values, no zeros
    result = vaexprs.fit_vae(data, "cell_type", likelihood="hurdle", hidden=(16,), epochs=3, seed=1)
    bundle = vaexprs.export_bundle(result, tmp_path / "hurdle")
    out = tmp_path / "cells.h5ad"
    generate_to_file(bundle, out, n=3000, seed=4, batch_size=1000)
    cells = ad.read_h5ad(out)
    assert not sp.issparse(cells.X)
    assert np.mean(cells.X == 0) < SPARSE_ENOUGH
    x, labels = generate_array(bundle, n=3000, seed=4, batch_size=1000)
    np.testing.assert_array_equal(cells.X, x)
    assert list(cells.obs["cell_type"]) == list(labels)
    as_csr = tmp_path / "csr.h5ad"
    ad.AnnData(sp.csr_matrix(cells.X), obs=cells.obs, var=cells.var).write_h5ad(as_csr)
    assert out.stat().st_size < 0.75 * as_csr.stat().st_size  # CSR holds 8 bytes a non-zero, dense 4 a value


def test_sampled_counts_are_written_to_zarr_as_csr(nb_bundle, tmp_path):
    """A .zarr store holds count cells as AnnData's csr_matrix too: the same values as --dense (the CLI flag) and as
    in memory, about the size of AnnData's own CSR store."""
    pytest.importorskip("zarr")
    import anndata as ad
    import scipy.sparse as sp
    import zarr

    from vaexprs.cli import main

    generate_to_file(nb_bundle, tmp_path / "sparse.zarr", n=20000, seed=4, batch_size=7000)
    dense_cmd = ["generate", str(nb_bundle), "-n", "20000", "--seed", "4", "--batch-size", "7000", "-q", "--dense"]
    assert main([*dense_cmd, "-o", str(tmp_path / "dense.zarr")]) == 0
    sparse, dense = ad.read_zarr(tmp_path / "sparse.zarr"), ad.read_zarr(tmp_path / "dense.zarr")
    assert sp.issparse(sparse.X) and sparse.X.format == "csr" and sparse.X.dtype == np.float32
    assert not sp.issparse(dense.X)
    np.testing.assert_array_equal(sparse.X.toarray(), dense.X)
    assert sparse.X.nnz < 0.6 * dense.X.size  # mostly zeros, none of them stored
    x, _ = generate_array(nb_bundle, n=20000, seed=4, batch_size=7000)
    np.testing.assert_array_equal(sparse.X.toarray(), x)
    assert list(sparse.obs["cell_type"]) == list(dense.obs["cell_type"]) and sparse.uns["vaexprs"]["seed"] == 4
    group = zarr.open_group(str(tmp_path / "sparse.zarr"), mode="r")["X"]
    assert dict(group.attrs) == {"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [20000, 120]}
    assert group["indptr"][-1] == sparse.X.nnz

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    ad.AnnData(sparse.X, obs=sparse.obs, var=sparse.var).write_zarr(tmp_path / "anndata.zarr")  # AnnData's CSR
    assert size(tmp_path / "sparse.zarr") <= 1.5 * size(tmp_path / "anndata.zarr")
    assert size(tmp_path / "sparse.zarr") < size(tmp_path / "dense.zarr")
    assert _files(tmp_path) == ["anndata.zarr", "dense.zarr", "sparse.zarr"]  # no temp folders left


def test_failure_mid_write_leaves_no_sparse_store(nb_bundle, tmp_path, monkeypatch):
    """A crash after some CSR blocks: no temp folder, no store, and an existing store stays as it was."""
    pytest.importorskip("zarr")
    import anndata as ad

    out = tmp_path / "gen.zarr"
    generate_to_file(nb_bundle, out, n=30, seed=1, batch_size=10)
    before = ad.read_zarr(out).X.toarray()
    calls = fail_on_third_block(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        generate_to_file(nb_bundle, tmp_path / "new.zarr", n=50, seed=2, batch_size=10)
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="boom"):
        generate_to_file(nb_bundle, out, n=50, seed=2, batch_size=10, force=True)
    assert _files(tmp_path) == ["gen.zarr"]
    np.testing.assert_array_equal(ad.read_zarr(out).X.toarray(), before)
