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
    with pytest.raises(InputError, match="seed must be between 0 and 4294967295"):
        plots.plot_aug(gen, seed=2**40)
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


# ------------------------------------------------------------------------- what a reader relies on (issue 15)


def panel(fig, title_start):
    return next(ax for ax in fig.axes if ax.get_title().startswith(title_start))


def overlay_axes(fig):
    return panel(fig, "overlay")


def side_collections(ax, side):
    return [c for c in ax.collections if str(c.get_label()).startswith(side + " ")]


def many_generated(gen, n=900):
    """Real cells as they are, and n generated cells (the fixture's, repeated): 10x more generated than real."""
    rows = np.arange(n) % gen.x_gen.shape[0]
    return plots.Cells(gen.x_train, gen.y_train, gen.x_gen[rows], np.asarray(gen.y_gen)[rows], gen.genes)


def test_aug_colours_by_cell_type_and_draws_real_cells_on_top(cvae):
    _, gen = cvae
    fig = plots.plot_aug(gen, "PCA")
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 3  # real | generated | overlay
    assert panels[0].get_shared_x_axes().joined(panels[0], panels[2])  # one embedding, one scale
    overlay = overlay_axes(fig)
    real, generated = side_collections(overlay, "real"), side_collections(overlay, "generated")
    assert real and generated
    assert min(c.get_zorder() for c in real) > max(c.get_zorder() for c in generated)
    # colour = cell type, from the colour-blind-safe set: a label's real (face) and generated (edge) colours agree
    names = list(dict.fromkeys(np.asarray(gen.y_train).astype(str).tolist()))
    real_by = {str(c.get_label()).split(" ", 1)[1]: c for c in real}
    gen_by = {str(c.get_label()).split(" ", 1)[1]: c for c in generated}
    assert set(real_by) == set(names)
    for name, collection in real_by.items():
        expected = _rgb(plots.OKABE_ITO[names.index(name)])
        assert np.allclose(collection.get_facecolors()[0][:3], expected)
        if name in gen_by:
            assert np.allclose(gen_by[name].get_edgecolors()[0][:3], expected)
    # generated cells are hollow: no face colour
    for collection in generated:
        faces = collection.get_facecolors()
        assert len(faces) == 0 or np.allclose(faces[:, 3], 0)


def _rgb(color):
    from matplotlib.colors import to_rgb

    return np.array(to_rgb(color))


def test_label_palette_is_colour_blind_safe_then_tab20():
    eight = plots._label_colors([f"t{i}" for i in range(8)])
    assert [eight[f"t{i}"] for i in range(8)] == list(plots.OKABE_ITO)
    twelve = plots._label_colors([f"t{i}" for i in range(12)])
    assert len({tuple(np.round(c, 3)) for c in twelve.values()}) == 12


def test_counts_agree_between_pca_and_heatmap_and_say_what_is_shown(cvae):
    _, gen = cvae
    cells = many_generated(gen, 900)
    n_real = gen.x_train.shape[0]
    aug = plots.plot_aug(cells, "PCA")
    heat = plots.plot_heatmap(cells)
    aug_text = " ".join(
        [ax.get_title() for ax in aug.axes] + [t.get_text() for leg in aug.legends for t in leg.get_texts()]
    )
    heat_text = " ".join(t.get_text() for ax in heat.axes for t in ax.texts)
    for words in (f"real ({n_real} cells)", "generated (300 of 900 shown)"):
        assert words in aug_text, aug_text
        assert words in heat_text, heat_text
    # the generated panel draws only the cells it says it shows
    generated_panel = next(ax for ax in aug.axes if ax.get_title().startswith("generated"))
    assert sum(len(c.get_offsets()) for c in generated_panel.collections) == 300
    # the legend gives per-type totals of both sides
    legend_text = " ".join(t.get_text() for t in aug.legends[0].get_texts())
    y_gen = np.asarray(cells.y_gen).astype(str)
    for name in np.unique(y_gen):
        assert (
            f"{name}: {int((np.asarray(gen.y_train).astype(str) == name).sum())} real, {int((y_gen == name).sum())} generated"
            in legend_text
        )


def test_vae_aug_legend_counts_by_origin(vae):
    _, gen = vae
    fig = plots.plot_aug(gen, "PCA")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [f"real ({gen.x_train.shape[0]} cells)", f"generated ({gen.x_gen.shape[0]} cells)"]
    overlay = overlay_axes(fig)
    assert side_collections(overlay, "real")[0].get_zorder() > side_collections(overlay, "generated")[0].get_zorder()


def test_subsample_is_exact_and_keeps_every_label():
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 600 + ["b"] * 299 + ["c"])
    rows = plots._subsample(len(labels), 300, labels, rng)
    assert len(rows) == 300 and len(set(rows.tolist())) == 300
    assert set(labels[rows]) == {"a", "b", "c"}
    assert np.array_equal(plots._subsample(5, 300, None, rng), np.arange(5))


def test_heatmap_colormap_is_colour_blind_safe(cvae):
    _, gen = cvae
    fig = plots.plot_heatmap(gen)
    image = next(ax for ax in fig.axes if ax.get_ylabel().startswith("genes")).images[0]
    cmap = image.get_cmap()
    assert cmap.name == plots.HEATMAP_CMAP == "RdBu_r"
    rgb = cmap(np.linspace(0, 1, 64))[:, :3]
    assert not np.any((rgb[:, 1] > rgb[:, 0] + 0.15) & (rgb[:, 1] > rgb[:, 2] + 0.15)), "a green in the map"


def synthetic_history():
    rows = []
    for epoch in range(1, 7):
        kl = 0.01 * 10 ** (epoch / 2)  # 0.03 .. 10: three orders of magnitude
        recon = 100.0 - 5 * epoch
        rows.append({"epoch": epoch, "loss": recon + kl, "recon_loss": recon, "kl_loss": kl,
                     "val_loss": recon + kl + (epoch - 3) ** 2, "val_recon_loss": recon + 1, "val_kl_loss": kl})  # fmt: skip
    return rows


def test_history_has_separate_axes_log_kl_and_the_best_epoch():
    fig = plots.plot_history(synthetic_history(), best_epoch=3)
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) >= 2
    where = {line.get_label(): ax for ax in axes for line in ax.lines}
    assert {"training", "validation"} <= set(where)
    loss_ax, recon_ax, kl_ax = (panel(fig, title) for title in ("loss", "reconstruction", "KL"))
    assert loss_ax is not recon_ax  # the total no longer hides the reconstruction
    assert kl_ax.get_yscale() == "log"
    assert recon_ax.get_yscale() == "linear"
    for ax in axes:  # best epoch marked in every panel
        assert any(line.get_label() == "best epoch (3)" for line in ax.lines)
    assert "best epoch 3: val_loss" in loss_ax.get_title()  # validation present: val_loss monitored
    star = [line for line in loss_ax.lines if line.get_marker() == "*"]
    assert star and star[0].get_xdata()[0] == 3


def test_history_from_result_uses_its_monitor(vae, tmp_path):
    result, _ = vae
    fig = plots.plot_history(result, tmp_path / "h.png")
    check_figure(tmp_path / "h.png")
    assert len([ax for ax in fig.axes if ax.lines]) == 3
    assert f"{result.train_config.monitor} = " in fig.axes[0].get_title()
