"""`vaexprs evaluate REAL GEN`: metrics of a trained model's cells on the simulated data, plots, bad input."""

from __future__ import annotations

import json
import math
import tempfile

import anndata as ad
import numpy as np
import pytest

from tests.test_cli import assert_one_line_error, run_cli

SCALARS = [
    "auc_real_vs_gen", "mmd_rbf", "mean_corr", "var_corr", "mean_absdiff", "var_ratio", "zero_frac_real",
    "zero_frac_gen", "tstr_accuracy", "trtr_accuracy", "label_centroid_corr_mean", "marker_overlap_mean",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory, sim, cvae_result):
    """The vignette data and 300 cells generated (by onnxruntime) from the CVAE trained on it."""
    import vaexprs
    from vaexprs.cli import main

    folder = tmp_path_factory.mktemp("evaluate")
    real = folder / "real.h5ad"
    sim.write_h5ad(real)
    bundle = vaexprs.export_bundle(cvae_result, folder / "bundle")
    gen = folder / "gen.h5ad"
    assert main(["generate", str(bundle), "-n", "300", "-o", str(gen), "-q"]) == 0
    return real, gen


def test_evaluate_writes_every_metric_and_plots(capsys, tmp_path, files):
    real, gen = files
    metrics_path, plots = tmp_path / "metrics.json", tmp_path / "plots"
    code, out, err = run_cli(capsys, "evaluate", real, gen, "-o", metrics_path, "--plots", plots)
    assert code == 0, err
    metrics = json.loads(metrics_path.read_text())
    for key in SCALARS:
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    for key in ("label_centroid_corr", "marker_overlap"):
        assert set(metrics[key]) == {"group1", "group2", "group3"}
        assert all(math.isfinite(v) for v in metrics[key].values())
    assert metrics["n_real"] == 300 and metrics["n_gen"] == 300 and metrics["n_genes"] == 1000
    # the planted signal survives in each label's mean profile and its marker genes; the bce decoder mean
    # has almost no variance (VAExprs' behaviour), which the two-sample AUC and var_ratio expose
    assert metrics["label_centroid_corr_mean"] > 0.9 and metrics["marker_overlap_mean"] > 0.5
    assert metrics["auc_real_vs_gen"] > 0.9 and metrics["var_ratio"] < 0.2
    assert "auc_real_vs_gen" in out
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) >= 2
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png


def _write(path, x, labels=None, genes=None):
    adata = ad.AnnData(np.asarray(x, dtype=np.float32))
    adata.var_names = genes if genes is not None else [f"gene{i + 1}" for i in range(adata.n_vars)]
    if labels is not None:
        adata.obs["cell_type"] = labels
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ("genes", ["gene"]),
        ("labels", ["no cell label is shared"]),
        ("few", ["at least 10"]),
        ("nan", ["NaN"]),
        ("seed", ["--seed must be between 0 and 4294967295; got -1"]),  # was scikit-learn's traceback-like line
        ("unlabelled", ["3 real cell(s) have no label"]),  # was a label "nan" on one side, skipped with a note
    ],
)
def test_evaluate_bad_input(capsys, tmp_path, change, fragments):
    rng = np.random.default_rng(0)
    x = rng.random((40, 30))
    labels = np.repeat(["a", "b"], 20)
    real_labels = np.where(np.arange(40) < 3, None, labels) if change == "unlabelled" else labels
    real = _write(tmp_path / "real.h5ad", x, real_labels)
    gen_x, gen_labels, genes = rng.random((40, 30)), labels, None
    if change == "genes":
        genes = [f"other{i}" for i in range(30)]
    elif change == "labels":
        gen_labels = np.repeat(["c", "d"], 20)
    elif change == "few":
        gen_x, gen_labels = gen_x[:5], labels[:5]
    elif change == "nan":
        gen_x[2, 3] = np.nan
    gen = _write(tmp_path / "gen.h5ad", gen_x, gen_labels, genes)
    out = tmp_path / "metrics.json"
    seed = ["--seed", "-1"] if change == "seed" else []
    code, _, err = run_cli(capsys, "evaluate", real, gen, "-o", out, *seed)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not out.exists()


def test_generated_counts_are_scored_after_the_same_lognorm(capsys, tmp_path, small_sim):
    """nb cells (counts) and raw real counts are both log-normalised before scoring."""
    import vaexprs

    counts = small_sim.copy()
    counts.X = np.round(counts.X)
    real = tmp_path / "counts.h5ad"
    counts.write_h5ad(real)
    result = vaexprs.fit_vae(counts, "cell_type", likelihood="nb", hidden=(32,), epochs=3)
    bundle = vaexprs.export_bundle(result, tmp_path / "bundle")
    gen = tmp_path / "gen.h5ad"
    code, _, err = run_cli(capsys, "generate", bundle, "-n", "90", "-o", gen, "-q")
    assert code == 0, err
    generated = ad.read_h5ad(gen)
    x = generated.X  # CSR where at least half the counts are zeros
    values = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    assert np.array_equal(values, np.round(values)) and generated.uns["vaexprs"]["value_space"] == "counts"
    out = tmp_path / "metrics.json"
    code, _, err = run_cli(capsys, "evaluate", real, gen, "-o", out)
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert metrics["space_note"] == "real cells compared in lognorm space"
    assert 0 < metrics["zero_frac_gen"] < 1 and math.isfinite(metrics["mean_corr"])


def test_default_chunk_size_follows_the_gene_count():
    from vaexprs.generate.request import default_batch_size

    assert default_batch_size(2000) == 8192
    assert 700 < default_batch_size(20_000) < 1024
    assert default_batch_size(10**7) == 256


def test_evaluate_model_uses_held_out_cells_when_there_are_some(small_sim):
    import vaexprs
    from vaexprs.model.scoring import evaluate_model

    result = vaexprs.fit_vae(small_sim, "cell_type", hidden=(32,), epochs=3, val_split=0.2)
    metrics, gen = evaluate_model(result)
    assert metrics["reference"] == "validation cells" and metrics["n_real"] == 18 and metrics["n_gen"] == 18
    assert sorted(gen.y_gen.tolist()) == sorted(result.y_val.tolist())
    no_val = vaexprs.fit_vae(small_sim, "cell_type", hidden=(32,), epochs=2)
    assert evaluate_model(no_val)[0]["reference"].startswith("training cells")


def test_generated_csv_and_npy_are_scored_in_the_space_of_their_h5ad(capsys, tmp_path, small_sim):
    """A .csv or .npy carries no value space: raw RPKM-like real cells were compared with log values (AUC 1.0)
    where the same cells as .h5ad were compared in log space."""
    import vaexprs

    rpkm = small_sim.copy()
    rpkm.X = (np.exp2(np.asarray(rpkm.X)) - 1) * 40.5  # non-integer and far above log scale: normalize=auto logs
    real = tmp_path / "rpkm.h5ad"
    rpkm.write_h5ad(real)
    result = vaexprs.fit_vae(rpkm, "cell_type", likelihood="hurdle", hidden=(16,), epochs=3)
    bundle = vaexprs.export_bundle(result, tmp_path / "bundle")
    scores = {}
    for suffix in (".h5ad", ".csv"):
        gen, out = tmp_path / f"gen{suffix}", tmp_path / f"metrics{suffix}.json"
        assert run_cli(capsys, "generate", bundle, "-n", "90", "--seed", "4", "-o", gen, "-q")[0] == 0
        code, _, err = run_cli(capsys, "evaluate", real, gen, "-o", out)
        assert code == 0, err
        scores[suffix] = json.loads(out.read_text())
    assert scores[".h5ad"]["space_note"] == scores[".csv"]["space_note"] == "real cells compared in log space"
    assert "carry no value space" in err
    for key in ("auc_real_vs_gen", "mean_absdiff", "mean_corr"):
        assert scores[".csv"][key] == pytest.approx(scores[".h5ad"][key], abs=0.02), key


def test_generated_labels_are_read_from_cell_type_under_any_label_key(capsys, tmp_path, small_sim):
    """generate writes its labels as cell_type; a model trained with --label-key stage could not be evaluated
    (`label column 'stage' not found in GEN`, and a .csv GEN failed as non-numeric)."""
    import vaexprs

    staged = small_sim.copy()
    staged.obs["stage"] = staged.obs.pop("cell_type")
    real = tmp_path / "staged.h5ad"
    staged.write_h5ad(real)
    result = vaexprs.fit_vae(staged, "stage", likelihood="mse", hidden=(16,), epochs=2)
    bundle = vaexprs.export_bundle(result, tmp_path / "bundle")
    for suffix in (".h5ad", ".csv"):
        gen, out = tmp_path / f"gen{suffix}", tmp_path / f"m{suffix}.json"
        assert run_cli(capsys, "generate", bundle, "-n", "60", "-o", gen, "-q")[0] == 0
        code, _, err = run_cli(capsys, "evaluate", real, gen, "--label-key", "stage", "-o", out)
        assert code == 0, err
        assert json.loads(out.read_text())["tstr_accuracy"] is not None
    npy = tmp_path / "gen.npy"  # its labels sit in gen.obs.csv; its genes are gene1.., as small_sim's are
    assert run_cli(capsys, "generate", bundle, "-n", "60", "-o", npy, "-q")[0] == 0
    code, _, err = run_cli(capsys, "evaluate", real, npy, "--label-key", "stage", "-o", tmp_path / "m.npy.json")
    assert code == 0, err
    named = staged.copy()
    named.var_names = [f"ENSG{i:05d}" for i in range(named.n_vars)]
    named.write_h5ad(tmp_path / "named.h5ad")
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "named.h5ad", npy, "--label-key", "stage")
    assert code == 2  # it said "gene sets differ: ... gene1, gene2"
    assert_one_line_error(err, "gen.npy is a .npy, which holds no gene names; write the cells as .h5ad or .csv")


def test_a_large_generated_h5ad_is_scored_on_a_sample(capsys, tmp_path, files, monkeypatch):
    """evaluate read the whole generated file (2 million cells: 5.2 GB) for gene statistics that a random
    sample gives as well: beyond MAX_EVALUATE_CELLS it reads that many rows from disk."""
    from vaexprs.analysis import report

    real, gen = files
    monkeypatch.setattr(report, "MAX_EVALUATE_CELLS", 120)
    out = tmp_path / "m.json"
    code, _, err = run_cli(capsys, "evaluate", real, gen, "-o", out)
    assert code == 0, err
    assert "gen.h5ad has 300 cells; evaluate scores a random 120 of them" in err
    metrics = json.loads(out.read_text())
    assert metrics["n_gen"] == 120 and metrics["n_real"] == 120 and 0.0 <= metrics["auc_real_vs_gen"] <= 1.0


def test_a_generated_zarr_store_is_scored_as_its_h5ad_is(capsys, tmp_path, files, monkeypatch):
    """evaluate refused a .zarr, the output `generate --dask` writes; it now reads the store (streamed, only the
    label column of obs): the same cells score the same as the .h5ad of them, whole and sampled."""
    from vaexprs.analysis import report
    from vaexprs.cli import main

    real, gen = files
    store = tmp_path / "gen.zarr"
    assert main(["generate", str(gen.parent / "bundle"), "-n", "300", "-o", str(store), "-q"]) == 0
    scores = {}
    for cap in (10**6, 120):  # read whole, then a sample of 120 (the same seeded rows from either file)
        monkeypatch.setattr(report, "MAX_EVALUATE_CELLS", cap)
        for name in (gen, store):
            code, _, err = run_cli(capsys, "evaluate", real, name, "-o", tmp_path / f"{name.suffix}{cap}.json")
            assert code == 0, err
            scores[name.suffix, cap] = json.loads((tmp_path / f"{name.suffix}{cap}.json").read_text())
        assert "gen.zarr has 300 cells; evaluate scores a random 120 of them" in err or cap > 300
    for cap in (10**6, 120):
        h5ad, zarr = scores[".h5ad", cap], scores[".zarr", cap]
        assert zarr["n_gen"] == h5ad["n_gen"] == min(cap, 300)
        for key in ("auc_real_vs_gen", "mean_corr", "label_keep_rate", "zero_frac_gen"):
            assert zarr[key] == pytest.approx(h5ad[key]), key


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_a_large_table_is_scored_on_a_sample_of_the_same_cells(capsys, tmp_path, files, monkeypatch, suffix):
    """A .csv or .npy was read whole (3 million cells of 16 genes as CSV: 1.7 GB). Beyond MAX_EVALUATE_CELLS
    it is copied, a line or a block at a time, as a sample: the same rows the .h5ad of those cells gives."""
    from vaexprs.analysis import report
    from vaexprs.cli import main

    real, gen = files
    table = tmp_path / f"gen{suffix}"
    assert main(["generate", str(gen.parent / "bundle"), "-n", "300", "-o", str(table), "-q"]) == 0
    monkeypatch.setattr(report, "MAX_EVALUATE_CELLS", 120)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the sample is copied, and removed
    scores = {}
    for name in (gen, table):
        out = tmp_path / f"{name.suffix}.json"
        code, _, err = run_cli(capsys, "evaluate", real, name, "-o", out)
        assert code == 0, err
        assert f"{name.name} has 300 cells; evaluate scores a random 120 of them" in err
        scores[name.suffix] = json.loads(out.read_text())
    assert scores[suffix]["n_gen"] == scores[".h5ad"]["n_gen"] == 120
    assert scores[suffix]["label_keep_rate"] == scores[".h5ad"]["label_keep_rate"]  # labels came with the rows
    assert scores[suffix]["mean_corr"] == pytest.approx(scores[".h5ad"]["mean_corr"], abs=1e-4)
    assert list(scratch.iterdir()) == []


def test_a_folder_that_is_no_store_is_one_line(capsys, tmp_path, files):
    real, _ = files
    (tmp_path / "empty.zarr").mkdir()
    code, _, err = run_cli(capsys, "evaluate", real, tmp_path / "empty.zarr")
    assert code == 2
    assert_one_line_error(err, "empty.zarr")
