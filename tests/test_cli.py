"""The `vaexprs` command line: every command, exit codes 0/1/2, one-line errors, no half-written outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from tests.conftest import light_python
from vaexprs.cli import main
from vaexprs.errors import InputError

COMMANDS = ["simulate", "train", "export", "generate", "evaluate", "promote"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_for_every_command(capsys, command):
    code, out, _ = run_cli(capsys, *([command] if command else []), "--help")
    assert code == 0 and "Usage" in out
    assert not [t for t in ("<str>", "<int>", "<bool>", "<float>") if t in out], out  # what each takes, by name
    assert "{" not in out.splitlines()[0], out  # the usage line names arguments plainly: MODEL, [DATA]


def test_simulate_writes_the_vignette_data_and_refuses_to_overwrite(capsys, tmp_path):
    out = tmp_path / "sim.h5ad"
    code, stdout, _ = run_cli(capsys, "simulate", "-o", out, "--cells", "20", "--genes", "200", "--deg", "20")
    assert code == 0 and "60 cells x 200 genes" in stdout
    adata = ad.read_h5ad(out)
    assert adata.shape == (60, 200) and set(adata.obs["cell_type"]) == {"group1", "group2", "group3"}
    before = out.read_bytes()
    code, _, err = run_cli(capsys, "simulate", "-o", out)
    assert code == 2 and out.read_bytes() == before
    assert_one_line_error(err, "exists", "--force")


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_simulate_refuses_a_seed_out_of_range_with_one_line(capsys, tmp_path, seed):
    """numpy refused -1 with a bare ValueError (exit 1); 2**64 got as far as the writer (an HDF5 TypeError)."""
    out = tmp_path / "sim.h5ad"
    code, _, err = run_cli(capsys, "simulate", "-o", out, "--cells", "5", "--genes", "50", "--deg", "5", "--seed", seed)
    assert code == 2
    assert_one_line_error(err, f"--seed must be between 0 and {2**63 - 1}; got {seed}")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory, small_sim):
    path = tmp_path_factory.mktemp("data") / "sim.h5ad"
    small_sim.write_h5ad(path)
    return path


def test_train_then_generate_then_export_from_checkpoint(capsys, tmp_path, sim_file):
    bundle, ckpt = tmp_path / "bundle", tmp_path / "model.pt"
    code, _, err = run_cli(
        capsys, "train", sim_file, "--model", "cvae", "--hidden", "32", "--epochs", "3", "-o", bundle,
        "--checkpoint", ckpt, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert (bundle / "decoder.onnx").exists() and (bundle / "bundle.json").exists() and ckpt.exists()
    gen = tmp_path / "gen.h5ad"
    code, _out, err = run_cli(capsys, "generate", bundle, "-n", "1000", "--label", "group2", "-o", gen)
    assert code == 0, err
    adata = ad.read_h5ad(gen)
    assert adata.shape == (1000, 120)
    assert list(adata.var_names[:3]) == ["gene1", "gene2", "gene3"]
    assert set(adata.obs["cell_type"]) == {"group2"} and set(adata.obs["origin"]) == {"generated"}
    meta = adata.uns["vaexprs"]
    assert meta["seed"] == 1 and meta["provider"] == "CPUExecutionProvider" and str(bundle) in meta["model_uri"]
    again = tmp_path / "again"
    code, _, err = run_cli(capsys, "export", ckpt, "-o", again)
    assert code == 0, err
    assert (
        json.loads((again / "bundle.json").read_text())["genes"]
        == json.loads((bundle / "bundle.json").read_text())["genes"]
    )


def test_temperature_is_recorded_and_one_is_the_default(capsys, tmp_path, cvae_bundle):
    """--temperature reaches the sampler (other cells from the same seed) and the file's uns; 1 is the default."""
    files = {}
    for name, extra in (("plain", []), ("one", ["--temperature", "1"]), ("cold", ["--temperature", "0.5"])):
        files[name] = tmp_path / f"{name}.h5ad"
        code, _, err = run_cli(
            capsys, "generate", cvae_bundle, "-n", "200", "--seed", "3", *extra, "-o", files[name], "-q"
        )
        assert code == 0, err
    plain, one, cold = (ad.read_h5ad(files[k]) for k in ("plain", "one", "cold"))
    assert np.array_equal(plain.X, one.X) and not np.array_equal(plain.X, cold.X)
    assert plain.uns["vaexprs"]["temperature"] == 1.0 and cold.uns["vaexprs"]["temperature"] == 0.5


def test_same_seed_same_bytes(capsys, tmp_path, cvae_bundle):
    outputs = []
    for name in ("a.npy", "b.npy"):
        code, _, err = run_cli(capsys, "generate", cvae_bundle, "-n", "500", "--seed", "3", "-o", tmp_path / name, "-q")
        assert code == 0, err
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    run_cli(capsys, "generate", cvae_bundle, "-n", "500", "--seed", "4", "-o", tmp_path / "c.npy", "-q")
    assert (tmp_path / "c.npy").read_bytes() != outputs[0]
    per_label = tmp_path / "per.csv"
    code, _, err = run_cli(
        capsys, "generate", cvae_bundle, "--per-label", "group1=3,group3=5", "-n", "8", "-o", per_label, "-q"
    )  # an -n that agrees with the counts is welcome
    assert code == 0, err
    rows = per_label.read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("cell,cell_type,gene1")


def _tampered(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tampered"
    shutil.copytree(bundle, copy)
    with open(copy / "decoder.onnx", "ab") as handle:
        handle.write(b"\0")
    return copy


def _missing_field(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "missing-field"
    shutil.copytree(bundle, copy)
    spec = json.loads((copy / "bundle.json").read_text())
    del spec["genes"]
    (copy / "bundle.json").write_text(json.dumps(spec))
    return copy


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--label", "group9", "-n", "10"], ["--label 'group9' is unknown"]),
        (["-n", "0"], ["--n-cells must be between 1 and"]),
        (["-n", "-5"], ["--n-cells must be between 1 and"]),
        (["-n", "ten"], ["Invalid value for '-n' / '--n-cells'"]),
        (["-n", "10", "--bogus"], ["No such option: --bogus"]),
        (["--per-label", "group1:3"], ["--per-label", "group1:3"]),
        (["--per-label", "group1=x"], ["not an integer"]),
        (["--per-label", "a{b}"], ["--per-label", "cannot parse 'a{b}'"]),  # user text keeps its braces
        (["--per-label", "group1=3", "-n", "5"], ["--n-cells is 5 but --per-label asks for 3 cells"]),  # was dropped
        (["--per-label", "group1=3,nope=2"], ["--per-label label 'nope' is unknown"]),  # it said --label
        (["-n", "10", "--compression", "gzip", "@braces-csv"], ["(without --dask)", "out_{date}.csv"]),
        (["-n", "10", "--provider", "cuda"], ["cuda"]),
        (["-n", "10", "--provider", "tpu"], ["provider"]),
        (["-n", "10", "--sampler", "flow"], ["sampler"]),
        (["-n", "10", "--temperature", "3"], ["--temperature must be between 0 and 2; got 3"]),
        (["-n", "10", "--temperature", "2.0000001"], ["--temperature must be between 0 and 2; got 2.0000001"]),
        (["-n", "10", "@missing-folder"], ["does not exist"]),
        (["-n", "10", "@bad-suffix"], ["unsupported output"]),
        (["-n", "10", "@tampered"], ["sha256"]),
        (["-n", "10", "@missing-field"], ["missing field 'genes'"]),
        (["-n", "10", "@no-bundle"], ["not"]),
    ],
)
def test_generate_bad_input_exits_2_with_one_line_and_no_file(capsys, tmp_path, cvae_bundle, args, fragments):
    model, out = cvae_bundle, tmp_path / "out.h5ad"
    if "@missing-folder" in args:
        out = tmp_path / "nowhere" / "out.h5ad"
    if "@bad-suffix" in args:
        out = tmp_path / "out.xlsx"
    if "@braces-csv" in args:
        out = tmp_path / "out_{date}.csv"
    if "@tampered" in args:
        model = _tampered(cvae_bundle, tmp_path)
    if "@missing-field" in args:
        model = _missing_field(cvae_bundle, tmp_path)
    if "@no-bundle" in args:
        model = tmp_path / "no-such-bundle"
    args = [a for a in args if not a.startswith("@")]
    code, _, err = run_cli(capsys, "generate", model, *args, "-o", out)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not out.exists()
    assert not [p for p in out.parent.glob("*") if p.name.startswith(".out")] if out.parent.exists() else True


def test_generate_unknown_registry_model_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    for uri in ("models:/no-such-model@champion", "models:/no-such-model/3"):
        code, _, err = run_cli(capsys, "generate", uri, "-n", "10", "-o", tmp_path / "out.h5ad")
        assert code == 2, err
        assert_one_line_error(err, f"model {uri!r} not found: there is no tracking store at")
        assert not (tmp_path / "out.h5ad").exists()
        assert not (tmp_path / "mlflow.db").exists()  # a failed lookup leaves no empty store behind


def test_generate_output_paths_that_are_not_files_in_folders(capsys, tmp_path, cvae_bundle):
    """`-o .` said "cannot write '': unsupported output type '(none)'"; a file used as the folder said the folder
    does not exist."""
    data = tmp_path / "sim.h5ad"
    data.write_text("precious")
    for out, says in [
        (tmp_path, f"output {tmp_path} is a folder; give a file in it, e.g. {tmp_path / 'generated.h5ad'}"),
        (data / "x.h5ad", f"output folder {data} is a file, not a folder"),
    ]:
        code, _, err = run_cli(capsys, "generate", cvae_bundle, "-n", "5", "-o", out)
        assert code == 2
        assert_one_line_error(err, says)
    assert data.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5ad"]


def test_existing_output_needs_force(capsys, tmp_path, cvae_bundle):
    out = tmp_path / "out.h5ad"
    out.write_text("precious")
    code, _, err = run_cli(capsys, "generate", cvae_bundle, "-n", "10", "-o", out)
    assert code == 2 and out.read_text() == "precious"
    assert_one_line_error(err, "--force")
    code, _, err = run_cli(capsys, "generate", cvae_bundle, "-n", "10", "-o", out, "--force", "-q")
    assert code == 0 and ad.read_h5ad(out).n_obs == 10
    code, _, err = run_cli(capsys, "generate", cvae_bundle, "-n", "10", "-o", f"{tmp_path / 'new.h5ad'}/")
    assert code == 2 and not (tmp_path / "new.h5ad").exists()  # was written as the file new.h5ad
    assert_one_line_error(err, "ends with a slash")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["@missing.h5ad"], ["not found"]),
        (["@data", "--model", "gan"], ["Invalid value for '--model'"]),
        (["@data", "--model", "cvae", "--label-key", "celltype"], ["--label-key 'celltype' is not a column"]),
        (["@data", "--label-key", "celltype"], ["--label-key 'celltype' is not a column"]),  # a typo is no VAE
        (["@data", "--model", "vae", "--label-key", "celltype"], ["--label-key 'celltype' is not a column"]),
        (["@data", "--beta", "-1"], ["--beta must be between 0 and 1000; got -1"]),
        (["@data", "--kl-warmup", "1.5"], ["--kl-warmup must be between 0 and 1; got 1.5"]),
        # scikit-learn (the sampler's mixtures) takes seeds below 2**32: refused before training, not after it
        (["@data", "--seed", "5000000000"], ["--seed must be between 0 and 4294967295; got 5000000000"]),
        (["@data", "--epochs", "0"], ["--epochs must be between 1 and"]),
        (["@data", "--hidden", "big"], ["--hidden must be layer sizes"]),
        (["@data", "--hidden", "128,"], ["--hidden must be layer sizes", "an empty size"]),  # not one layer of 128
        (["@data", "--normalize", "zscore"], ["--normalize"]),
        (["@data", "--monitor", "val_loss"], ["--monitor val_loss needs validation cells (--val-split > 0"]),
        (["@data", "--register", "a/b"], ["--register 'a/b' is not a usable model name"]),
        (["@data", "-o", "@nowhere/bundle"], ["does not exist"]),
    ],
)
def test_train_bad_input_exits_2(capsys, tmp_path, sim_file, args, fragments):
    resolved = []
    for a in args:
        if a == "@data":
            resolved.append(sim_file)
        elif a.startswith("@"):
            resolved.append(tmp_path / a[1:])
        else:
            resolved.append(a)
    code, _, err = run_cli(capsys, "train", *resolved, "--epochs" if "--epochs" not in args else "--seed", "1", "-q")
    assert code == 2, err
    assert_one_line_error(err, *fragments)


def _write_table(frame, path, kind):
    if kind == "no-name-column":
        frame.to_csv(path, index=False)
    elif kind == "no-header":
        frame.to_csv(path, header=False)
    elif kind == "repeated-gene":
        frame.set_axis([*frame.columns[:-1], frame.columns[0]], axis=1).to_csv(path)
    elif kind == "trailing-tab":
        frame.assign(**{"": ""}).to_csv(path, sep="\t")
    elif kind == "semicolons":
        frame.to_csv(path, sep=";", decimal=",")
    elif kind == "na-name":
        frame.set_axis(["NA", *frame.index[1:]], axis=0).to_csv(path)


@pytest.mark.parametrize(
    ("kind", "suffix", "message"),
    [  # each used to lose a gene or a cell silently, rename a gene, or fail in pandas' words
        ("no-name-column", ".csv", "is read as names but holds fractional numbers: put the cell (or gene) names"),
        ("no-header", ".csv", "not names: the table needs a header line of gene names"),
        ("repeated-gene", ".csv", "gene names in the header of t.csv are not unique: gene1; make them unique"),
        ("trailing-tab", ".tsv", "has an empty column without a name (Unnamed: 121): a separator at the end"),
        ("semicolons", ".csv", "t.csv is separated by semicolons; a .csv file's values must be separated by commas"),
        ("na-name", ".csv", "first column of t.csv has 1 missing name(s) (first on line 2): an empty field, NA"),
    ],
)
def test_train_refuses_tables_whose_names_are_not_in_place(capsys, tmp_path, small_sim, kind, suffix, message):
    import pandas as pd

    values = np.asarray(small_sim.X) + np.random.default_rng(0).uniform(0.01, 0.99, small_sim.shape)  # no repeats
    frame = pd.DataFrame(values, index=small_sim.obs_names, columns=small_sim.var_names)
    _write_table(frame, tmp_path / f"t{suffix}", kind)
    code, _, err = run_cli(capsys, "train", tmp_path / f"t{suffix}", "--epochs", "1", "-o", tmp_path / "b")
    assert code == 2
    assert_one_line_error(err, message)
    assert not (tmp_path / "b").exists()


def test_whole_number_labels_of_a_genes_by_cells_table_stay_whole(capsys, tmp_path, small_sim):
    """A label row of integer codes among the numbers came back as 0.0, 1.0, ... (then --label 1 was unknown)."""
    import pandas as pd

    table = pd.DataFrame(np.asarray(small_sim.X).T, index=small_sim.var_names, columns=small_sim.obs_names)
    table.loc["cell_type"] = small_sim.obs["cell_type"].cat.codes.to_numpy()
    table.to_csv(tmp_path / "by_gene.csv")
    args = ["--genes-as-rows", "--likelihood", "mse", "--epochs", "1", "--hidden", "8", "-q"]
    code, _, err = run_cli(capsys, "train", tmp_path / "by_gene.csv", *args, "-o", tmp_path / "b")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["labels"] == ["0", "1", "2"]


def test_train_refuses_one_cell_and_repeated_gene_names_in_one_line(capsys, tmp_path, small_sim):
    """One cell trained a VAE without a word; repeated gene names were refused after anndata's two-line warning."""
    np.save(tmp_path / "one.npy", np.asarray(small_sim.X[:1]))
    code, _, err = run_cli(capsys, "train", tmp_path / "one.npy", "--model", "vae", "--epochs", "1")
    assert code == 2
    assert_one_line_error(err, "one cell cannot be learnt: a model of a distribution needs at least 2 cells")
    repeated = small_sim.copy()
    repeated.var_names = ["g0", *repeated.var_names[1:-1], "g0"]
    repeated.write_h5ad(tmp_path / "repeated.h5ad")
    code, _, err = run_cli(capsys, "train", tmp_path / "repeated.h5ad", "--epochs", "1")
    assert code == 2 and "Warning" not in err
    assert_one_line_error(err, "gene names are not unique")


def test_train_learns_the_layer_it_is_given(capsys, tmp_path, small_sim):
    """--layer was read into X and then looked up again by fit_vae: 'layer counts not found (layers: none)'."""
    adata = small_sim.copy()
    adata.layers["counts"] = np.rint(np.asarray(adata.X) * 10).astype(np.float32)  # whole numbers: nb takes them
    adata.X = np.log1p(adata.layers["counts"]) + 0.5  # X is not counts, so nb would refuse it
    adata.write_h5ad(tmp_path / "layered.h5ad")
    args = ["--layer", "counts", "--likelihood", "nb", "--epochs", "1", "--hidden", "8", "-q"]
    code, _, err = run_cli(capsys, "train", tmp_path / "layered.h5ad", *args, "-o", tmp_path / "bundle")
    assert code == 0, err
    assert json.loads((tmp_path / "bundle" / "bundle.json").read_text())["likelihood"] == "nb"


def test_train_without_an_output_warns_that_nothing_is_kept(capsys, tmp_path, sim_file):
    args = ["--likelihood", "mse", "--epochs", "1", "--hidden", "8"]
    code, _, err = run_cli(capsys, "train", sim_file, *args)
    assert code == 0 and "nothing was kept: the model was trained and discarded" in err
    code, _, err = run_cli(capsys, "train", sim_file, *args, "--checkpoint", tmp_path / "m.pt")
    assert code == 0 and "nothing was kept" not in err and (tmp_path / "m.pt").is_file()


def test_train_rejects_nan_data(capsys, tmp_path, small_sim):
    bad = small_sim.copy()
    bad.X[3, 4] = np.nan
    path = tmp_path / "nan.h5ad"
    bad.write_h5ad(path)
    code, _, err = run_cli(capsys, "train", path, "--epochs", "1", "-q")
    assert code == 2
    assert_one_line_error(err, "NaN")


def test_train_reads_the_label_column_of_a_csv_and_refuses_a_table_without_names(capsys, tmp_path, small_sim):
    """The CSV layout `generate` writes (cell,cell_type,genes...) trains a CVAE; it used to be refused as
    'non-numeric'. A table without a name column would lose its first gene to the cell names."""
    import pandas as pd

    frame = pd.DataFrame(np.asarray(small_sim.X), index=small_sim.obs_names, columns=small_sim.var_names)
    frame.insert(0, "cell_type", small_sim.obs["cell_type"].to_numpy())
    frame.to_csv(tmp_path / "cells.csv", index_label="cell")
    args = ["--likelihood", "hurdle", "--epochs", "1", "-q"]
    code, _, err = run_cli(capsys, "train", tmp_path / "cells.csv", *args, "-o", tmp_path / "bundle")
    assert code == 0, err
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert bundle["labels"] == ["group1", "group2", "group3"] and bundle["genes"] == list(small_sim.var_names)
    frame.drop(columns="cell_type").to_csv(tmp_path / "nonames.csv", index=False)
    code, _, err = run_cli(capsys, "train", tmp_path / "nonames.csv", *args)
    assert code == 2
    assert_one_line_error(err, "first column of nonames.csv (gene1) is read as names but holds repeated numbers")
    frame.iloc[:3, 0] = None  # empty label fields: missing, as in an .h5ad, not a label called "nan"
    frame.to_csv(tmp_path / "unlabelled.csv", index_label="cell")
    code, _, err = run_cli(capsys, "train", tmp_path / "unlabelled.csv", *args)
    assert code == 2
    assert_one_line_error(err, "3 cell(s) have no label")
    frame.to_csv(tmp_path / "semicolons.csv", sep=";")  # used to read as "empty (90 cells x 0 genes)"
    code, _, err = run_cli(capsys, "train", tmp_path / "semicolons.csv", *args)
    assert code == 2
    assert_one_line_error(
        err, "semicolons.csv is separated by semicolons; a .csv file's values must be separated by commas"
    )
    (tmp_path / "notes.txt").write_text("my notes on this experiment\n")  # used to read as "empty (0 cells x 0 genes)"
    code, _, err = run_cli(capsys, "train", tmp_path / "notes.txt", *args)
    assert code == 2
    assert_one_line_error(err, "notes.txt has no rows of values below its first line")


def test_a_numeric_genes_by_cells_table_read_as_it_is_is_warned_about(caplog, tmp_path, small_sim):
    """Without a label row nothing is refused (all numeric either way): columns named like cells are what says so."""
    import pandas as pd

    import vaexprs

    frame = pd.DataFrame(np.asarray(small_sim.X), index=small_sim.obs_names, columns=small_sim.var_names)
    frame.T.to_csv(tmp_path / "genes_by_cells.csv", index_label="gene")  # columns cell1, cell2, ...
    frame.to_csv(tmp_path / "cells_by_genes.csv", index_label="cell")
    with caplog.at_level("WARNING", logger="vaexprs"):
        as_is = vaexprs.read_expression(tmp_path / "genes_by_cells.csv")
        flipped = vaexprs.read_expression(tmp_path / "genes_by_cells.csv", genes_as_rows=True)
        vaexprs.read_expression(tmp_path / "cells_by_genes.csv")
    assert as_is.shape == small_sim.shape[::-1] and flipped.shape == small_sim.shape
    warned = [r.getMessage() for r in caplog.records if "named like cells" in r.getMessage()]
    assert len(warned) == 1 and "genes_by_cells.csv" in warned[0] and "--genes-as-rows" in warned[0]


def test_train_reads_a_genes_by_cells_table_with_genes_as_rows(capsys, tmp_path, small_sim):
    """R writes a SingleCellExperiment's counts genes x cells (write.csv(counts(sce))), with the labels as a row:
    --genes-as-rows trains on cells, not on genes. Without it such a table is refused, since the label row makes
    every column non-numeric; an .h5ad is cells x genes already, so the flag is refused there."""
    import pandas as pd

    frame = pd.DataFrame(np.asarray(small_sim.X), index=small_sim.obs_names, columns=small_sim.var_names)
    frame.insert(0, "cell_type", small_sim.obs["cell_type"].to_numpy())
    frame.T.to_csv(tmp_path / "genes_by_cells.csv", index_label="gene")
    args = ["--likelihood", "hurdle", "--epochs", "1", "-q"]
    code, _, err = run_cli(
        capsys, "train", tmp_path / "genes_by_cells.csv", "--genes-as-rows", *args, "-o", tmp_path / "bundle"
    )
    assert code == 0, err
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert bundle["genes"] == list(small_sim.var_names) and bundle["labels"] == ["group1", "group2", "group3"]
    code, _, err = run_cli(capsys, "train", tmp_path / "genes_by_cells.csv", *args)
    assert code == 2
    assert_one_line_error(err, "genes_by_cells.csv has non-numeric values", "--genes-as-rows")
    small_sim.write_h5ad(tmp_path / "cells.h5ad")
    code, _, err = run_cli(capsys, "train", tmp_path / "cells.h5ad", "--genes-as-rows", *args)
    assert code == 2
    assert_one_line_error(err, "--genes-as-rows applies to .csv/.tsv/.txt/.npy files; cells.h5ad is an .h5ad")
    code, _, err = run_cli(capsys, "train", "--genes-as-rows", *args)  # the simulated default has no layout to flip
    assert code == 2
    assert_one_line_error(err, "--genes-as-rows needs a DATA file")
    # an all-numeric genes x cells table with its labels in a file: the count mismatch says which flag is missing
    import vaexprs

    frame.drop(columns="cell_type").T.to_csv(tmp_path / "numeric_genes_by_cells.csv", index_label="gene")
    (tmp_path / "labels.txt").write_text("\n".join(small_sim.obs["cell_type"].astype(str)) + "\n")
    with pytest.raises(InputError, match=f"has {small_sim.n_obs} labels for {small_sim.n_vars} cells: it has one "
                       "per column; .* pass --genes-as-rows"):  # fmt: skip
        vaexprs.read_expression(tmp_path / "numeric_genes_by_cells.csv", labels_path=tmp_path / "labels.txt")
    flipped = vaexprs.read_expression(
        tmp_path / "numeric_genes_by_cells.csv", labels_path=tmp_path / "labels.txt", genes_as_rows=True
    )
    assert flipped.shape == small_sim.shape
    assert list(flipped.obs["cell_type"]) == list(small_sim.obs["cell_type"].astype(str))


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_generated_cells_train_again_with_their_labels(capsys, tmp_path, cvae_bundle, suffix):
    """What generate writes is training data as it stands: the CSV's cell_type column, the .npy's .obs.csv."""
    cells = tmp_path / f"gen{suffix}"
    assert run_cli(capsys, "generate", cvae_bundle, "--per-label", "group1=12,group3=8", "-o", cells, "-q")[0] == 0
    args = ["--likelihood", "hurdle", "--epochs", "1", "-q", "-o", tmp_path / "again"]
    code, _, err = run_cli(capsys, "train", cells, *args)
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "bundle.json").read_text())["labels"] == ["group1", "group3"]
    if suffix == ".npy":  # labels for other cells than the matrix's are refused, not dropped
        (tmp_path / "gen.obs.csv").write_text("cell,cell_type\nc1,group1\n")
        code, _, err = run_cli(capsys, "train", cells, *args, "--force")
        assert code == 2
        assert_one_line_error(err, "gen.obs.csv has 1 rows for the 20 cells of gen.npy")


def test_console_script_exit_code(tmp_path, cvae_bundle):
    exe = Path(sys.executable).with_name("vaexprs")
    if not exe.exists():
        pytest.skip("console script not installed")
    done = subprocess.run(
        [str(exe), "generate", str(cvae_bundle), "-n", "0", "-o", str(tmp_path / "x.h5ad")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().startswith("error:")


def test_training_in_the_light_install_names_the_extra_it_needs(tmp_path, small_sim):
    """`train` and `evaluate` in vaexprs[cpu] used to end in `error: ModuleNotFoundError: No module named ...`."""
    python = light_python()
    data = tmp_path / "sim.h5ad"
    small_sim.write_h5ad(data)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["train", str(data), "-o", str(tmp_path / "bundle")], ["evaluate", str(data), str(data)]):
        done = subprocess.run([python, "-m", "vaexprs", *args], capture_output=True, text=True, env=env, timeout=120)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        assert errors[0].endswith('which is not installed: pip install "vaexprs[train]"'), errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5ad"]


def test_generate_in_the_light_install_without_torch(tmp_path, cvae_bundle):
    """`pip install vaexprs[cpu]` alone (no torch, scikit-learn, matplotlib) generates from a bundle."""
    python = light_python()
    out = tmp_path / "light.h5ad"
    code = (
        "import sys, importlib.util as u\n"
        "absent = [m for m in ('torch', 'sklearn', 'matplotlib') if u.find_spec(m) is None]\n"
        "from vaexprs.cli import main\n"
        f"rc = main(['generate', {str(cvae_bundle)!r}, '-n', '1000', '--label', 'group2', '-o', {str(out)!r}, '-q'])\n"
        "loaded = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "print(rc, absent, loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 ['torch', 'sklearn', 'matplotlib'] []"
    adata = ad.read_h5ad(out)
    assert adata.shape == (1000, 120) and set(adata.obs["cell_type"]) == {"group2"}


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write in: mode 555, and for root (whom modes do not stop) the immutable flag."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable or os.access(folder, os.W_OK):
            folder.chmod(0o755)
            pytest.skip("cannot make a folder read-only here (root on a file system without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_outputs_in_a_read_only_folder_are_refused_before_training(capsys, tmp_path, sim_file, read_only_folder):
    """Found only when publishing, they cost the whole training, exit 1 (a PermissionError) and, tracked, a FAILED
    run without weights; generate refused them up front already."""
    checkpoint = tmp_path / "m.pt"
    for args, message in (
        (["-o", read_only_folder / "b"], f"output folder {read_only_folder} is not writable"),
        (["--checkpoint", read_only_folder / "m.pt"], f"--checkpoint folder {read_only_folder} is not writable"),
    ):
        code, out, err = run_cli(capsys, "train", sim_file, "--epochs", "2", "--hidden", "8", *args)
        assert code == 2 and "epoch" not in err + out, err  # before any training
        assert_one_line_error(err, message)
    code, _, err = run_cli(
        capsys, "train", sim_file, "--epochs", "2", "--hidden", "8", "--checkpoint", checkpoint, "-q"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "export", checkpoint, "-o", read_only_folder / "b")
    assert code == 2 and list(read_only_folder.iterdir()) == []
    assert_one_line_error(err, f"output folder {read_only_folder} is not writable")


def test_a_checkpoint_inside_the_bundle_folder_is_refused_before_training(capsys, tmp_path, sim_file):
    """It trained, then refused the bundle (a folder holding model.pt is no bundle), leaving the new checkpoint
    beside the old bundle; or, with -o and --checkpoint the same path, left the checkpoint where the bundle was."""
    bundle = tmp_path / "bun"
    code, _, err = run_cli(capsys, "train", sim_file, "--epochs", "2", "--hidden", "8", "-o", bundle, "-q")
    assert code == 0, err
    before = sorted(p.name for p in bundle.iterdir())
    for checkpoint, extra in ((bundle / "model.pt", ["--force"]), (tmp_path / "same", [])):
        out = bundle if extra else checkpoint
        code, _, err = run_cli(
            capsys, "train", sim_file, "--epochs", "2", "--hidden", "8", "-o", out, "--checkpoint", checkpoint,
            *extra,
        )  # fmt: skip
        assert code == 2 and "epoch" not in err, err
        assert_one_line_error(err, f"--checkpoint {checkpoint} is in the bundle folder --output {out}")
    assert sorted(p.name for p in bundle.iterdir()) == before and not (tmp_path / "same").exists()


def test_a_damaged_h5ad_is_an_input_error_naming_the_file(capsys, tmp_path, sim_file):
    """h5py reports a corrupted node as a RuntimeError: it was 'error: RuntimeError: ...', exit 1, no file named."""
    data = bytearray(sim_file.read_bytes())
    for offset in (len(data) // 3, len(data) // 2, len(data) - 5000):
        data[offset : offset + 2000] = b"\xff" * 2000
    damaged = tmp_path / "damaged.h5ad"
    damaged.write_bytes(bytes(data))
    for args in (["train", damaged, "--epochs", "2", "-o", tmp_path / "b"], ["evaluate", sim_file, damaged]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, err
        assert_one_line_error(err, f"cannot read {damaged}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.h5ad"]


def test_a_damaged_chunk_read_from_disk_is_an_input_error_naming_the_file(capsys, tmp_path, small_sim):
    """--backed reads X chunk by chunk while training: a chunk h5py could not decompress was 'error: OSError: Can't
    synchronously read data (filter returned failure during read)', exit 1, where the in-memory read says
    'cannot read FILE', exit 2."""
    import h5py

    damaged = tmp_path / "damaged.h5ad"
    small_sim.write_h5ad(damaged, compression="gzip")
    with h5py.File(damaged, "r") as f:
        chunk = f["X"].id.get_chunk_info(0)
    with open(damaged, "r+b") as f:
        f.seek(chunk.byte_offset + 8)
        f.write(b"\xff" * min(64, chunk.size - 8))
    code, _, err = run_cli(capsys, "train", damaged, "--backed", "--epochs", "2", "-o", tmp_path / "b")
    assert code == 2, err
    assert_one_line_error(err, f"cannot read {damaged}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.h5ad"]


def test_a_signal_whose_exception_python_swallowed_still_ends_the_command(capsys, monkeypatch):
    """A SIGTERM that lands in a weakref callback or a __del__ raised there, was printed as a traceback, and the
    command went on to exit 0. The handler notes it: main reports it in one line with the signal's code."""
    import signal

    from vaexprs import cli

    def swallowed(**_: object) -> int:
        with pytest.raises(cli.Terminated):  # raised in a callback, it would go nowhere
            cli._on_signal(signal.SIGTERM, None)
        sys.unraisablehook(types.SimpleNamespace(exc_value=cli.Terminated(15), exc_type=None, exc_traceback=None,
                                                 err_msg=None, object=None))  # fmt: skip
        return 0

    monkeypatch.setattr(cli, "app", swallowed)
    assert main(["simulate"]) == 143
    err = capsys.readouterr().err
    assert err.strip() == "error: terminated"  # one line, no traceback
    monkeypatch.setattr(cli, "app", lambda **_: 0)
    assert main(["simulate"]) == 0  # the next command starts with no pending signal


def test_an_error_a_signal_caused_is_reported_as_the_signal(capsys, monkeypatch):
    """Ctrl-C inside a library's C code (h5py writing a block) can surface as that library's error: it was
    reported as `error: OSError: ...`, exit 1. The handler noted the signal, which is what ended the command."""
    import signal

    from vaexprs import cli
    from vaexprs.errors import VaexprsRuntimeError, note_signal

    for error, sig, code, word in (
        (OSError("Can't write data"), signal.SIGINT, 130, "interrupted"),
        (VaexprsRuntimeError("could not write out.h5ad"), signal.SIGTERM, 143, "terminated"),
    ):

        def cut_short(error=error, sig=sig, **_: object) -> int:
            note_signal(sig)
            raise error

        monkeypatch.setattr(cli, "app", cut_short)
        assert main(["generate"]) == code
        assert capsys.readouterr().err.strip() == f"error: {word}"
