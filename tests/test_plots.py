"""Figures: every plot function writes valid PNG/SVG, errors are InputErrors, and the vignette runs end to end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import vaexprs
from vaexprs.analysis import plots
from vaexprs.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VAEXPRS_SHARED_DATA", REPO.parent / "shared" / "data"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_sim():
    return vaexprs.simulate(groups=3, cells=30, genes=120, deg=20, seed=2)


@pytest.fixture(scope="module")
def cvae(tiny_sim):
    result = vaexprs.fit_vae(tiny_sim, "cell_type", hidden=(32,), epochs=3)
    return result, vaexprs.gen_exprs(result, num_samples=60, seed=1)


@pytest.fixture(scope="module")
def vae(tiny_sim):
    result = vaexprs.fit_vae(
        tiny_sim, x_val=tiny_sim, hidden=(32, 16), epochs=3, monitor="val_loss", patience=2, seed=3
    )
    return result, vaexprs.gen_exprs(result, num_samples=60, seed=1)


def check_figure(path: Path) -> None:
    assert path.is_file(), path
    if path.suffix == ".png":
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    else:
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "temp file left behind"


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize("which", ["cvae", "vae"])
def test_every_plot(which, suffix, request, tmp_path):
    result, gen = request.getfixturevalue(which)
    figs = {
        "architecture": lambda p: plots.plot_vae(result, p),
        "history": lambda p: plots.plot_history(result.history, p, best_epoch=result.best_epoch),
        "heatmap": lambda p: plots.plot_heatmap(gen, p),
        "augmentation_pca": lambda p: plots.plot_aug(gen, "PCA", p),
    }
    for name, draw in figs.items():
        path = tmp_path / f"{name}{suffix}"
        fig = draw(path)
        assert fig.axes, name
        check_figure(path)


def test_plot_returns_figure_without_path(cvae):
    result, _ = cvae
    assert plots.plot_vae(result).axes
    assert plots.plot_history(result).axes  # a VAEResult works too; best epoch from it
    assert plots.plot_vae(result.model_config).axes  # and a bare ModelConfig


def test_tsne_and_case_insensitive_method(cvae, tmp_path):
    _, gen = cvae
    plots.plot_aug(gen, "TSNE", tmp_path / "tsne.png")
    plots.plot_aug(gen, "pca", tmp_path / "pca.svg")
    check_figure(tmp_path / "tsne.png")
    check_figure(tmp_path / "pca.svg")


def test_anndata_and_sparse_input(cvae, tmp_path):
    from scipy import sparse

    _, gen = cvae
    plots.plot_aug(gen.to_anndata(), "PCA", tmp_path / "ad.png")
    check_figure(tmp_path / "ad.png")
    cells = plots.Cells(sparse.csr_matrix(gen.x_train), gen.y_train, gen.x_gen, gen.y_gen, gen.genes)
    plots.plot_heatmap(cells, tmp_path / "sparse.png", max_cells=20, max_genes=30)
    check_figure(tmp_path / "sparse.png")


def test_save_all_and_comparison(cvae, tmp_path):
    result, gen = cvae
    paths = plots.save_all(result, gen, tmp_path / "all", formats=("png", "svg"))
    names = sorted(p.name for p in paths)
    stems = ("architecture", "augmentation_pca", "heatmap", "history")
    assert names == sorted(f"{s}.{f}" for s in stems for f in ("png", "svg"))
    for path in paths:
        check_figure(path)
    written = plots.save_comparison_plots(gen.x_train, gen.y_train, gen.x_gen, gen.y_gen, gen.genes, tmp_path / "cmp")
    assert sorted(p.name for p in written) == ["augmentation_pca.png", "heatmap.png"]
    unlabelled = plots.save_comparison_plots(gen.x_train, None, gen.x_gen, None, None, tmp_path / "cmp2")
    assert len(unlabelled) == 2


def test_errors(cvae, tmp_path):
    result, gen = cvae
    with pytest.raises(InputError, match="method"):
        plots.plot_aug(gen, "MDS")
    loaded = vaexprs.GeneratedCells(
        gen.x_gen, gen.y_gen, None, None, gen.latent, gen.genes, gen.output_space, gen.seed, gen.sampler
    )
    with pytest.raises(InputError, match="real cells"):
        plots.plot_aug(loaded)
    with pytest.raises(InputError, match="real cells"):
        plots.plot_heatmap(loaded)
    assert [p.name for p in plots.save_all(result, loaded, tmp_path / "x")] == ["history.png", "architecture.png"]
    with pytest.raises(InputError, match=r"\.png"):
        plots.plot_vae(result, tmp_path / "arch.jpg")
    with pytest.raises(InputError, match="format"):
        plots.save_all(result, gen, tmp_path / "y", formats=("gif",))
    with pytest.raises(InputError, match="empty"):
        plots.plot_history([])
    with pytest.raises(InputError):
        plots.plot_vae(object())


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn is installed")
def test_umap_missing_is_input_error(cvae):
    _, gen = cvae
    with pytest.raises(InputError, match="pip install umap-learn"):
        plots.plot_aug(gen, "UMAP")


def test_heatmap_limits(cvae):
    _, gen = cvae
    fig = plots.plot_heatmap(gen, max_cells=10, max_genes=15)
    image = next(ax for ax in fig.axes if ax.images and ax.get_ylabel().startswith("genes")).images[0]
    genes, cells = image.get_array().shape
    assert genes == 15
    assert cells <= 2 * 10 + 3  # proportional per label, at least one per label
    assert np.isfinite(np.asarray(image.get_array())).all()


@pytest.mark.slow
def test_vignette_quick(tmp_path):
    out = tmp_path / "figures"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "vignette.py"),
            "--quick",
            "--out",
            str(out),
            "--data",
            str(SHARED_DATA),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    parts = ["sim_vae"] + (["yan_cvae"] if (SHARED_DATA / "yan.h5ad").is_file() else [])
    for part in parts:
        for name in ("architecture", "history", "heatmap", "augmentation_pca"):
            check_figure(out / f"{part}_{name}.png")
    assert "auc_real_vs_gen" in proc.stdout
    if "yan_cvae" not in parts:
        assert "skipped" in proc.stdout
