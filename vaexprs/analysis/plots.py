"""Figures: training history, the VAE/CVAE architecture, real-vs-generated heatmap and joint embedding.

    plot_vae(result, "architecture.png")          # boxes and arrows, like VAExprs' model_architecture.png
    plot_aug(gen, "PCA", "augmentation_pca.png")  # real | generated | overlay panels, colour = cell type
    plot_heatmap(gen, "heatmap.png")              # genes x cells, real | generated, blue - white - red
    plot_history(result, "history.png")           # total, reconstruction and KL loss on their own axes
    save_all(result, gen, "figures")              # the four above with stable names

Every function returns a matplotlib Figure and, given `path`, saves it (.png at 150 dpi, .svg or .pdf),
atomically. Logging figures to MLflow is the tracking side's job (vaexprs.tracking.runs). Figures are built as
`matplotlib.figure.Figure` on an Agg canvas, never through pyplot: no global backend switch, no figure
registry to leak or close. matplotlib, scikit-learn and scipy are imported inside the functions, so
importing this module stays light (the generation-only install has no matplotlib).

plot_aug / plot_heatmap accept anything with GeneratedCells' attributes (x_gen, y_gen, x_train, y_train,
genes) or an AnnData from `GeneratedCells.to_anndata()` (obs['origin'] in {real, generated}).

Readability rules they share: colour always means the cell type (Okabe-Ito, colour-blind safe, up to 8 types;
tab20 beyond), the same colour in every figure; real cells are filled markers drawn on top of hollow generated
ones; when generated cells outnumber the real ones by a lot only a subsample is drawn, and every count is
written "generated (300 of 900 shown)", identically in the PCA and the heatmap; the heatmap's diverging map is
RdBu_r (blue - white - red), never red/green.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaexprs.config import MAX_CLASSIFIER_SEED, check_seed
from vaexprs.data.preprocess import is_sparse
from vaexprs.errors import InputError
from vaexprs.files import atomic_output

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 150
FORMATS = ("png", "svg", "pdf")
METHODS = ("PCA", "UMAP", "TSNE")
# what save_all draws from real and generated cells (`evaluate --plots`), as <stem>.<format>
COMPARISON_PLOTS = ("heatmap", "augmentation_pca")
# Okabe & Ito's colour-blind-safe qualitative palette (yellow and black last: weakest on white, and darkest).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
# Colour by origin when there are no labels (a VAE): Okabe-Ito blue and orange.
ORIGIN_COLORS = {"real": "#0072B2", "generated": "#E69F00"}
# The heatmap's origin strip: neutral greys (colour is the cell type's), with the words written on them.
ORIGIN_GREYS = {"real": "#4D4D4D", "generated": "#D0D0D0"}
# Colour-blind-safe diverging map for z-scores (blue low, white 0, red high); replaces the vignette's green/red.
HEATMAP_CMAP = "RdBu_r"
# Generated cells drawn: at most as many as the real cells drawn, but GEN_SHOWN_MIN when there are fewer real
# ones, so 900 generated cells do not bury 90 real ones; the rest are left out of the drawing, and every title
# says so ("generated (300 of 900 shown)"). With the heatmap's default 300 cells per side, the PCA and the
# heatmap then draw the very same cells whenever there are at most 300 real ones.
GEN_SHOWN_MIN = 300
# Part colours of the architecture diagram (keras plot_model-like pastel boxes, one hue per part).
PART_COLORS = {
    "data": "#E0E0E0",
    "encoder": "#AEC7E8",
    "latent": "#FFD27F",
    "decoder": "#98DF8A",
    "label": "#D5B8E8",
}


# ----------------------------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas, outside pyplot (nothing global is touched; garbage collection frees it)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the train extra
        raise InputError("plots need matplotlib: pip install 'vaexprs[train]' (or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path | None) -> Figure:
    """Write fig atomically (a temp file in the same folder, then published over any earlier figure)."""
    if path is None:
        return fig
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"cannot save a figure as {path.name!r}: use a .png, .svg or .pdf file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        if fmt == "png":
            _write_png(fig, tmp)
        else:
            fig.savefig(tmp, format=fmt, dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.1)
    return fig


def _write_png(fig: Figure, target: Path) -> None:
    """PNG with a 256-colour palette: plots have few colours, and a palette image is 2-3x smaller (commit-sized)."""
    import io

    from PIL import Image  # a matplotlib dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.1)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
        palette.save(target, format="png", optimize=True, dpi=(DPI, DPI))


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if is_sparse(x) else x, dtype=np.float64)


def _label_array(labels: Any, n: int, side: str) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels).astype(str)
    if arr.shape != (n,):
        raise InputError(f"{side} labels have shape {arr.shape}; expected one per cell ({n})")
    return arr


@dataclass
class Cells:
    """Real and generated cells side by side, in one space (what plot_aug and plot_heatmap draw)."""

    x_train: Any
    y_train: Any
    x_gen: Any
    y_gen: Any
    genes: Sequence[str] | None = None


def _unpack(gen: Any, label_key: str, what: str) -> tuple[Any, np.ndarray | None, Any, np.ndarray | None]:
    """(real, real labels, generated, generated labels); labels only when both sides have them."""
    if hasattr(gen, "obs") and hasattr(gen, "X"):  # AnnData from GeneratedCells.to_anndata()
        if "origin" not in gen.obs.columns:
            raise InputError(f"{what}: the AnnData needs obs['origin'] in {{'real', 'generated'}}")
        origin = gen.obs["origin"].astype(str).to_numpy()
        labels = gen.obs[label_key].astype(str).to_numpy() if label_key in gen.obs.columns else None
        real_rows, gen_rows = origin == "real", origin == "generated"
        real = gen.X[np.flatnonzero(real_rows)] if real_rows.any() else None
        gen = Cells(
            real,
            labels[real_rows] if labels is not None else None,
            gen.X[np.flatnonzero(gen_rows)],
            labels[gen_rows] if labels is not None else None,
        )
    for name in ("x_gen", "x_train"):
        if not hasattr(gen, name):
            raise InputError(
                f"{what} needs an object with x_gen and x_train (GeneratedCells); got {type(gen).__name__}"
            )
    if gen.x_train is None:
        raise InputError(
            f"{what} needs the real cells, but x_train is None (a model loaded from disk keeps no training cells): "
            "pass real and generated data to vaexprs.analysis.plots.save_comparison_plots(real_x, real_labels, gen_x, gen_labels, ...)"
        )
    real, generated = gen.x_train, gen.x_gen
    if real.shape[1] != generated.shape[1]:
        raise InputError(f"{what}: real cells have {real.shape[1]} genes, generated cells {generated.shape[1]}")
    if real.shape[0] == 0 or generated.shape[0] == 0:
        raise InputError(f"{what}: needs at least one real and one generated cell")
    y_real = _label_array(getattr(gen, "y_train", None), real.shape[0], "real")
    y_gen = _label_array(getattr(gen, "y_gen", None), generated.shape[0], "generated")
    if y_real is None or y_gen is None:  # a VAE: colour by origin only
        y_real = y_gen = None
    return real, y_real, generated, y_gen


def _subsample(n: int, limit: int, labels: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """`limit` sorted row indices (all rows when n <= limit), proportional per label (largest remainder), and at
    least one per label so small groups stay visible (which may exceed `limit` only when it is below the
    number of labels)."""
    if n <= limit:
        return np.arange(n)
    if labels is None:
        return np.sort(rng.choice(n, limit, replace=False))
    values, counts = np.unique(labels, return_counts=True)
    quota = limit * counts / n
    k = np.minimum(np.maximum(np.floor(quota).astype(int), 1), counts)
    remainder = quota - np.floor(quota)
    for i in np.argsort(-remainder, kind="stable"):  # hand out what flooring left, largest remainder first
        if k.sum() >= limit:
            break
        if k[i] < counts[i]:
            k[i] += 1
    keep = [rng.choice(np.flatnonzero(labels == v), k_v, replace=False) for v, k_v in zip(values, k)]
    return np.sort(np.concatenate(keep))


def _label_order(*arrays: np.ndarray | None) -> list[str]:
    """Label names in first-seen order of the real cells, then any only generated ones."""
    seen: dict[str, None] = {}
    for arr in arrays:
        if arr is not None:
            seen.update(dict.fromkeys(arr.tolist()))
    return list(seen)


def _label_colors(names: Sequence[str]) -> dict[str, Any]:
    """Okabe-Ito for up to 8 labels (colour-blind safe), tab20 beyond (cycled past 20)."""
    if len(names) <= len(OKABE_ITO):
        return {name: OKABE_ITO[i] for i, name in enumerate(names)}
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


@dataclass
class Shown:
    """Which real and generated rows a figure draws, and how to say so (the same words in every figure)."""

    rows_r: np.ndarray
    rows_g: np.ndarray
    n_real: int
    n_gen: int

    def count(self, side: str) -> str:
        """'real (90 cells)' or 'generated (300 of 900 shown)'."""
        shown, total = (len(self.rows_r), self.n_real) if side == "real" else (len(self.rows_g), self.n_gen)
        return f"{side} ({total} cells)" if shown == total else f"{side} ({shown} of {total} shown)"


def _shown(
    n_real: int, y_real: np.ndarray | None, n_gen: int, y_gen: np.ndarray | None, max_cells: int, seed: int
) -> Shown:
    """At most max_cells per side, and at most max(GEN_SHOWN_MIN, real cells shown) generated ones.

    One rule (and one seed) for plot_aug and plot_heatmap, so their counts agree; proportional per label.
    """
    if max_cells < 1:
        raise InputError(f"max_cells must be at least 1; got {max_cells}")
    rng = np.random.default_rng(check_seed(seed, MAX_CLASSIFIER_SEED))  # the embeddings take it too
    rows_r = _subsample(n_real, max_cells, y_real, rng)
    limit_g = min(max_cells, max(GEN_SHOWN_MIN, len(rows_r)))
    rows_g = _subsample(n_gen, limit_g, y_gen, rng)
    return Shown(rows_r, rows_g, n_real, n_gen)


# ----------------------------------------------------------------------------------------- architecture


def plot_vae(result: Any, path: str | Path | None = None) -> Figure:
    """The VAE/CVAE architecture as a box-and-arrow diagram (VAExprs' plot_vae, without graphviz).

    `result`: a VAEResult (or anything with `model_config`), or a ModelConfig. Box heights grow with the
    log of the layer size, so the diagram shows the hourglass from genes down to the latent space.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    config = getattr(result, "model_config", result)
    for name in ("n_genes", "n_labels", "latent_dim", "hidden", "likelihood"):
        if not hasattr(config, name):
            raise InputError(f"plot_vae needs a VAEResult or ModelConfig; got {type(result).__name__}")
    g, c, d = int(config.n_genes), int(config.n_labels), int(config.latent_dim)
    hidden = [int(h) for h in config.hidden]
    act = str(getattr(config, "activation", "relu"))
    conditional = c > 0
    from vaexprs.bundle.heads import HEADS

    facts = HEADS.get(str(config.likelihood))
    head = facts.title if facts is not None else str(config.likelihood)

    step, width = 2.3, 1.8
    n_cols = 2 * len(hidden) + 4
    top = np.log1p(max(g, *hidden))

    def height(size: int) -> float:
        return 0.9 + 2.4 * np.log1p(size) / top

    fig = _new_figure(max(8.0, 1.22 * n_cols + 1.0), 5.6 if conditional else 4.6)
    ax = fig.add_subplot()
    ax.set_axis_off()

    def box(col: float, y: float, h: float, title: str, body: str, part: str) -> tuple[float, float, float]:
        x = col * step
        ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y - h / 2), width, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=PART_COLORS[part], edgecolor="#444444", linewidth=1.0,
            )
        )  # fmt: skip
        ax.text(x, y + 0.17, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
        ax.text(x, y - 0.2, body, ha="center", va="center", fontsize=8.5, linespacing=1.1)
        return x, y, h

    def arrow(a: tuple[float, float, float], b: tuple[float, float, float], text: str = "") -> None:
        (xa, ya, ha), (xb, yb, hb) = a, b
        if abs(xa - xb) < 1e-9:  # vertical: from the top of a (below) into the bottom of b
            start, end = (xa, ya + ha / 2), (xb, yb - hb / 2)
        else:
            start, end = (xa + width / 2, ya), (xb - width / 2, yb)
        ax.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, color="#333333", linewidth=1.1,
                            shrinkA=2, shrinkB=2)
        )  # fmt: skip
        if text:
            ax.text(end[0] - 0.05, end[1] - 0.35, text, ha="right", va="top", fontsize=8, style="italic")

    def layers(prev: Any, col: int, sizes: Sequence[int], part: str) -> tuple[Any, Any, int]:
        """Dense layers left to right from `prev`: (first box, last box, last column)."""
        first = None
        for i, size in enumerate(sizes, start=1):
            col += 1
            cur = box(col, 0, height(size), f"{part} {i}", f"dense {size}\n{act}", part)
            arrow(prev, cur)
            first, prev = first or cur, cur
        return first, prev, col

    prev = box(0, 0, height(g), "input x", f"{g} genes", "data")
    first_encoder, prev, col = layers(prev, 0, hidden, "encoder")
    col += 1
    hz = height(d)
    mean = box(col, 0.55 + hz / 2, hz, "z_mean", f"{d}", "latent")
    logvar = box(col, -0.55 - hz / 2, hz, "z_logvar", f"{d}", "latent")
    arrow(prev, mean)
    arrow(prev, logvar)
    col += 1
    z = box(col, 0, height(d) + 0.35, "z (sample)", f"μ + σ·ε\n{d}", "latent")
    arrow(mean, z)
    arrow(logvar, z)
    first_decoder, prev, col = layers(z, col, list(reversed(hidden)), "decoder")
    col += 1
    out = box(col, 0, height(g), "output x̂", f"{g} genes\n{head}", "data")
    arrow(prev, out)

    y_low = -0.55 - hz - 0.4
    if conditional:
        y_label = min(-height(g) / 2, y_low) - 0.9
        for target in (first_encoder, first_decoder):
            source = box(target[0] / step, y_label, 0.95, "label c", f"one-hot, {c}", "label")
            arrow(source, target)
            mid = (y_label + 0.475 + target[1] - target[2] / 2) / 2
            ax.text(target[0] + 0.1, mid, "concat", fontsize=8, color="#7B4FA0", style="italic", va="center")
        y_low = y_label - 0.6

    parts = ["data", "encoder", "latent", "decoder", *(["label"] if conditional else [])]
    ax.legend(
        handles=[Patch(facecolor=PART_COLORS[p], edgecolor="#444444", label=p) for p in parts],
        loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(parts), frameon=False, fontsize=9,
    )  # fmt: skip
    y_high = max(height(g) / 2, 0.55 + hz) + 0.3
    ax.set_xlim(-width / 2 - 0.3, col * step + width / 2 + 0.3)
    ax.set_ylim(y_low, y_high)
    ax.set_aspect("equal")
    kind = "CVAE" if conditional else "VAE"
    hidden_txt = ", ".join(str(h) for h in hidden)
    ax.set_title(
        f"{kind}\nlatent {d}, hidden ({hidden_txt}), {act}, {head}" + (f", {c} labels" if conditional else ""),
        fontsize=11,
    )
    return _save(fig, path)


# ----------------------------------------------------------------------------------------- augmentation


def _embed(pool: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, tuple[str, str]]:
    """2-D coordinates of the pooled cells; PCA first (to 50 components) for the non-linear methods."""
    from sklearn.decomposition import PCA

    n, g = pool.shape
    if method == "PCA":
        pca = PCA(n_components=min(2, n, g), random_state=seed)
        z = pca.fit_transform(pool)
        if z.shape[1] < 2:
            z = np.column_stack([z, np.zeros(n)])
        ev = [*pca.explained_variance_ratio_, 0.0]
        return z, (f"PC1 ({100 * ev[0]:.1f}%)", f"PC2 ({100 * ev[1]:.1f}%)")
    reduced = PCA(n_components=min(50, n - 1, g), random_state=seed).fit_transform(pool) if n > 2 else pool
    if method == "TSNE":
        from sklearn.manifold import TSNE

        if n < 5:
            raise InputError(f"t-SNE needs at least 5 cells; got {n}")
        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3.0), init="pca", random_state=seed)
        return tsne.fit_transform(reduced), ("t-SNE 1", "t-SNE 2")
    try:
        import umap
    except ImportError:
        raise InputError("plot_aug(method='UMAP') needs the umap package: pip install umap-learn") from None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
    return np.asarray(reducer.fit_transform(reduced)), ("UMAP 1", "UMAP 2")


def plot_aug(
    gen: Any,
    method: str = "PCA",
    path: str | Path | None = None,
    *,
    label_key: str = "cell_type",
    max_cells: int = 5000,
    seed: int = 0,
) -> Figure:
    """Real and generated cells embedded together (VAExprs' plot_aug), in three panels sharing axes.

    real | generated | overlay. Colour = cell type (colour-blind-safe palette; by origin for a VAE, which has
    no labels); real cells are filled, generated cells hollow, and in the overlay the real cells are drawn on
    top so the generated cloud never hides them. The embedding (PCA | UMAP | TSNE, case-insensitive) is fitted
    once on the pooled drawn cells, so neither side defines the axes. At most `max_cells` per side are drawn,
    and at most max(300, the real cells drawn) generated ones (proportional per label): titles and legend
    say "generated (300 of 900 shown)", in the same words and numbers as plot_heatmap. Labels are drawn only
    when both sides have them (a CVAE); `label_key` names the obs column for AnnData input.
    """
    key = str(method).upper().replace("-", "")
    if key not in METHODS:
        raise InputError(f"plot_aug: method must be one of PCA, UMAP, TSNE; got {method!r}")
    real, y_real, generated, y_gen = _unpack(gen, label_key, "plot_aug")
    shown = _shown(real.shape[0], y_real, generated.shape[0], y_gen, max_cells, seed)
    rows_r, rows_g = shown.rows_r, shown.rows_g
    pool = np.vstack([_dense(real[rows_r]), _dense(generated[rows_g])])
    if not np.all(np.isfinite(pool)):
        raise InputError("plot_aug: the cells contain NaN or infinite values")
    z, (xlabel, ylabel) = _embed(pool, key, seed)
    n_r = len(rows_r)
    z_side = {"real": z[:n_r], "generated": z[n_r:]}
    labelled = y_real is not None and y_gen is not None
    lab_side = {"real": y_real[rows_r], "generated": y_gen[rows_g]} if labelled else None
    names: list[Any] = _label_order(y_real, y_gen) if labelled else [None]
    colors = _label_colors(names) if labelled else {}

    from matplotlib.lines import Line2D

    fig = _new_figure(13.0, 5.3 if labelled else 4.9)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    size = {side: float(np.clip(4000 / max(len(z_side[side]), 1), 10, 36)) for side in z_side}

    def draw(ax: Any, side: str, zorder: float) -> None:
        order = names  # largest group first, so a small group is drawn over a large one it shares a place with
        if lab_side is not None:
            order = sorted(names, key=lambda n: -int((lab_side[side] == n).sum()))
        for name in order:
            pts = z_side[side] if name is None else z_side[side][lab_side[side] == name]
            if not len(pts):
                continue
            color = ORIGIN_COLORS[side] if name is None else colors[name]
            style = (
                {"facecolors": color, "edgecolors": "#1A1A1A", "linewidths": 0.5, "alpha": 0.95}
                if side == "real"
                else {"facecolors": "none", "edgecolors": color, "linewidths": 0.9, "alpha": 0.8}
            )
            ax.scatter(pts[:, 0], pts[:, 1], s=size[side], marker="o", zorder=zorder, label=f"{side} {name}", **style)

    draw(axes[0], "real", 3)
    draw(axes[1], "generated", 2)
    draw(axes[2], "generated", 2)
    draw(axes[2], "real", 3)  # the real cells on top: the generated cloud never hides them
    axes[0].set_title(shown.count("real"), fontsize=10.5)
    axes[1].set_title(shown.count("generated"), fontsize=10.5)
    axes[2].set_title("overlay: real (filled) drawn over generated (hollow)", fontsize=10.5)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.25, linewidth=0.6)
    axes[0].set_ylabel(ylabel)
    pretty = {"PCA": "PCA", "TSNE": "t-SNE", "UMAP": "UMAP"}[key]
    fig.suptitle(f"{pretty} of real and generated cells (one embedding fitted on both)", fontsize=12)

    def handle(label: str, color: Any, filled: bool) -> Line2D:
        return Line2D(
            [], [], linestyle="", marker="o", markersize=7, label=label, markeredgewidth=1.2,
            markerfacecolor=color if filled else "none", markeredgecolor="#1A1A1A" if filled else color,
        )  # fmt: skip

    if labelled:
        from matplotlib.legend_handler import HandlerTuple

        n_r_of = {n: int((y_real == n).sum()) for n in names}
        n_g_of = {n: int((y_gen == n).sum()) for n in names}
        entries = [
            (
                (handle("", colors[n], True), handle("", colors[n], False)),
                f"{n}: {n_r_of[n]} real, {n_g_of[n]} generated",
            )
            for n in names[:30]
        ]
        fig.legend(
            handles=[h for h, _ in entries], labels=[t for _, t in entries],
            handler_map={tuple: HandlerTuple(ndivide=None, pad=0.4)}, handlelength=2.4,
            title=f"{label_key} (all cells; filled = real, hollow = generated)", loc="outside lower center",
            ncol=min(len(entries), 4), fontsize=9, frameon=False, handletextpad=0.4, columnspacing=1.8,
        )  # fmt: skip
    else:
        handles = [
            handle(shown.count("real"), ORIGIN_COLORS["real"], True),
            handle(shown.count("generated"), ORIGIN_COLORS["generated"], False),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- heatmap


def _cluster_order(x: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage correlation clustering (R heatmap's default dendrogram ordering)."""
    if x.shape[0] < 3:
        return np.arange(x.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage

    centred = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    if np.any(norm == 0):
        return np.arange(x.shape[0])  # constant rows: correlation is undefined, keep the given order
    return leaves_list(linkage(centred / norm, method="average", metric="euclidean"))


def _gene_order(real: np.ndarray, y_real: np.ndarray | None, names: list[str]) -> np.ndarray:
    """Genes grouped by the label whose real cells express them most (block diagonal), else clustered."""
    if y_real is None:
        return _cluster_order(real.T)
    means = np.stack([real[y_real == n].mean(axis=0) for n in names])  # labels x genes
    best = means.argmax(axis=0)
    top = means.max(axis=0)
    rest = (means.sum(axis=0) - top) / max(len(names) - 1, 1)
    specificity = top - rest if len(names) > 1 else top
    return np.lexsort((-specificity, best))


def _cell_order(x: np.ndarray, labels: np.ndarray | None, names: list[str]) -> np.ndarray:
    """Cells grouped by label (in `names` order), clustered within each group."""
    if labels is None:
        return _cluster_order(x)
    parts = []
    for name in names:
        rows = np.flatnonzero(labels == name)
        parts.append(rows[_cluster_order(x[rows])])
    return np.concatenate(parts) if parts else np.arange(0)


def plot_heatmap(
    gen: Any,
    path: str | Path | None = None,
    *,
    max_cells: int = 300,
    max_genes: int = 400,
    label_key: str = "cell_type",
    seed: int = 0,
) -> Figure:
    """Real cells beside generated cells, genes x cells, blue - white - red (the vignette's heatmap).

    Values are z-scored per gene with the real cells' mean and sd (R heatmap's scale="row", one transform
    for both blocks so they stay comparable) and clipped at +-3. The `max_genes` most variable genes of the
    real cells are shown, ordered by the label that expresses them most; cells are grouped by label and
    clustered within a group. At most `max_cells` cells per side, and at most max(300, the real cells shown)
    generated ones (proportional per label); the origin strip says "generated (300 of 900 shown)", as in
    plot_aug. The colour map is RdBu_r (colour-blind safe; the vignette's green/red is not).
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    real, y_real, generated, y_gen = _unpack(gen, label_key, "plot_heatmap")
    shown = _shown(real.shape[0], y_real, generated.shape[0], y_gen, max_cells, seed)
    rows_r, rows_g = shown.rows_r, shown.rows_g
    xr, xg = _dense(real[rows_r]), _dense(generated[rows_g])
    yr = y_real[rows_r] if y_real is not None else None
    yg = y_gen[rows_g] if y_gen is not None else None
    names = _label_order(yr, yg) if yr is not None else []

    sd = xr.std(axis=0)
    genes_all = np.flatnonzero(sd > 0)
    if genes_all.size == 0:
        raise InputError("plot_heatmap: every gene is constant in the real cells")
    top = genes_all[np.argsort(-sd[genes_all], kind="stable")[:max_genes]]
    top = np.sort(top)
    mu = xr[:, top].mean(axis=0)
    zr = np.clip((xr[:, top] - mu) / sd[top], -3, 3)
    zg = np.clip((xg[:, top] - mu) / sd[top], -3, 3)
    gene_idx = _gene_order(zr, yr, names)
    zr, zg, top = zr[:, gene_idx], zg[:, gene_idx], top[gene_idx]
    order_r, order_g = _cell_order(zr, yr, names), _cell_order(zg, yg, names)
    zr, yr = zr[order_r], None if yr is None else yr[order_r]
    zg, yg = zg[order_g], None if yg is None else yg[order_g]
    matrix = np.vstack([zr, zg]).T  # genes x cells
    n_r, n_g = zr.shape[0], zg.shape[0]

    fig = _new_figure(10.0, 6.2)
    strips = 2 if names else 1
    grid = fig.add_gridspec(strips + 1, 2, height_ratios=[0.28] * strips + [8], width_ratios=[50, 1])
    ax = fig.add_subplot(grid[strips, 0])
    # 12 bins of 0.5 z: a colour reads as a z range (and survives the PNG's 256-colour palette without banding)
    cmap = colormaps[HEATMAP_CMAP].resampled(12)
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-3, vmax=3)
    ax.axvline(n_r - 0.5, color="white", linewidth=3)
    ax.axvline(n_r - 0.5, color="black", linewidth=1)
    ax.set_xticks([])  # the counts are written on the origin strip above
    ax.set_xlabel(f"cells, grouped by {label_key} and clustered within each group" if names else "cells, clustered")
    genes = list(getattr(gen, "genes", None) or []) if not hasattr(gen, "var_names") else list(gen.var_names)
    if genes and len(top) <= 60:
        ax.set_yticks(np.arange(len(top)), [str(genes[i]) for i in top], fontsize=6)
    else:
        ax.set_yticks([])
    how = "most variable " if len(top) < real.shape[1] else ""
    ax.set_ylabel(f"genes ({len(top)} {how}of {real.shape[1]})")

    origin_ax = fig.add_subplot(grid[0, 0], sharex=ax)
    origin_ax.imshow(
        np.r_[np.zeros(n_r), np.ones(n_g)][None, :], aspect="auto", interpolation="nearest",
        cmap=ListedColormap([ORIGIN_GREYS["real"], ORIGIN_GREYS["generated"]]), vmin=0, vmax=1,
    )  # fmt: skip
    for side, centre, ink in (("real", (n_r - 1) / 2, "white"), ("generated", n_r + (n_g - 1) / 2, "black")):
        origin_ax.text(centre, 0, shown.count(side), ha="center", va="center", fontsize=8, color=ink)
    origin_ax.set_yticks([0], ["origin"], fontsize=8)
    origin_ax.tick_params(labelbottom=False, bottom=False)
    origin_ax.set_title("real vs generated expression (z-score per gene, real cells' mean and sd)", fontsize=11)
    if names:
        colors = _label_colors(names)
        codes = np.array([names.index(v) for v in np.concatenate([yr, yg])])
        label_ax = fig.add_subplot(grid[1, 0], sharex=ax)
        label_ax.imshow(
            codes[None, :], aspect="auto", interpolation="nearest",
            cmap=ListedColormap([colors[n] for n in names]), vmin=-0.5, vmax=len(names) - 0.5,
        )  # fmt: skip
        label_ax.set_yticks([0], [label_key], fontsize=8)
        label_ax.tick_params(labelbottom=False, bottom=False)
        from matplotlib.patches import Patch

        fig.legend(
            handles=[Patch(color=colors[n], label=str(n)) for n in names[:30]],
            title=label_key, loc="outside lower center", ncol=min(len(names), 10), fontsize=8, frameon=False,
            handlelength=1.0, columnspacing=1.2,
        )  # fmt: skip
    cax = fig.add_subplot(grid[strips, 1])
    fig.colorbar(image, cax=cax, label="z-score")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- history


def _log_scale_helps(values: Sequence[np.ndarray]) -> bool:
    """True when every value is positive and they span more than a factor of 20 (then a log axis reads better)."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    return bool(finite.size) and bool(finite.min() > 0) and bool(finite.max() / finite.min() > 20)


HISTORY_PANELS = (
    ("loss", "total loss", "loss = reconstruction + β·KL"),
    ("recon_loss", "reconstruction loss", "reconstruction (negative log-likelihood)"),
    ("kl_loss", "KL divergence", "KL to N(0, I)"),
)


def plot_history(
    history: Sequence[Mapping[str, float]] | Any,
    path: str | Path | None = None,
    best_epoch: int | None = None,
    monitor: str | None = None,
) -> Figure:
    """Training curves on separate axes: total loss, reconstruction, KL; validation dashed; best epoch marked.

    `history`: the per-epoch dicts of VAEResult.history, or a VAEResult (its best_epoch and monitored curve,
    loss or val_loss, are then used). Each term has its own panel and y-axis (the total and the reconstruction
    differ by β·KL only, so on one axis the one line hides the other; KL is orders of magnitude smaller); an
    axis switches to a log scale when its values span more than a factor of 20. The best epoch is a dotted
    line in every panel, with the monitored value marked and written in the panel's title.
    """
    from matplotlib.ticker import MaxNLocator

    if hasattr(history, "history"):
        best_epoch = history.best_epoch if best_epoch is None else best_epoch
        if monitor is None:
            monitor = getattr(getattr(history, "train_config", None), "monitor", None)
        history = history.history
    rows = list(history)
    if not rows:
        raise InputError("plot_history: the history is empty")
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(rows)], dtype=float)

    def series(key: str) -> np.ndarray | None:
        if not any(key in r for r in rows):
            return None
        return np.array([r.get(key, np.nan) for r in rows], dtype=float)

    panels = [
        (k, ylabel, title)
        for k, ylabel, title in HISTORY_PANELS
        if series(k) is not None or series("val_" + k) is not None
    ]
    if not panels:
        raise InputError(f"plot_history: no loss, recon_loss or kl_loss in the history (keys: {sorted(rows[0])})")
    monitor = monitor if monitor and series(monitor) is not None else None
    if monitor is None:
        monitor = "val_loss" if series("val_loss") is not None else "loss"
    best = int(best_epoch) if best_epoch else None
    best_row = np.flatnonzero(epochs == best) if best is not None else np.zeros(0, dtype=int)

    fig = _new_figure(4.3 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = {"": "#0072B2", "val_": "#D55E00"}  # Okabe-Ito blue (train) and vermillion (validation)
    markers = len(rows) < 40
    for ax, (key, ylabel, title) in zip(axes, panels):
        drawn = []
        for prefix, style, name in (("", "-", "training"), ("val_", "--", "validation")):
            values = series(prefix + key)
            if values is None:
                continue
            drawn.append(values)
            ax.plot(
                epochs, values, style, color=colors[prefix], label=name, linewidth=1.6,
                marker="o" if markers else None, markersize=3,
            )  # fmt: skip
            if best_row.size and prefix + key == monitor and np.isfinite(values[best_row[0]]):
                ax.plot(
                    [best], [values[best_row[0]]], marker="*", markersize=14, color=colors[prefix],
                    markeredgecolor="black", linestyle="", zorder=5, label=f"best ({monitor})",
                )  # fmt: skip
        if best is not None:
            ax.axvline(best, color="#555555", linestyle=":", linewidth=1.2, label=f"best epoch ({best})")
        if _log_scale_helps(drawn):
            ax.set_yscale("log")
            ylabel += " (log scale)"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if best_row.size and any(prefix + key == monitor for prefix in ("", "val_")):
            value = float(series(monitor)[best_row[0]])
            title += f"\nbest epoch {best}: {monitor} = " + (f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="major")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- save_all


def _names(stem: str, formats: Iterable[str]) -> list[str]:
    out = []
    for fmt in formats:
        fmt = str(fmt).lower().lstrip(".")
        if fmt not in FORMATS:
            raise InputError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
        out.append(f"{stem}.{fmt}")
    return out


def _write(figure: Figure, out_dir: Path, stem: str, formats: Iterable[str]) -> list[Path]:
    paths = []
    for name in _names(stem, formats):
        _save(figure, out_dir / name)
        paths.append(out_dir / name)
    return paths


def save_all(result: Any, gen: Any, out_dir: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """history, architecture, heatmap and augmentation_pca figures in out_dir; returns the written paths.

    Either side may be None: without `result` only the real-vs-generated figures are written, without real
    cells (gen.x_train None, a loaded model) only the model figures.
    """
    out = Path(out_dir)
    _names("check", formats)  # fail on a bad format before any work
    written: list[Path] = []
    if result is not None:
        written += _write(plot_history(result), out, "history", formats)  # its best epoch and monitored curve
        written += _write(plot_vae(result), out, "architecture", formats)
    if gen is not None:
        if getattr(gen, "x_train", None) is None and not hasattr(gen, "obs"):
            log.info("save_all: no real cells in gen (model loaded from disk); heatmap and PCA skipped")
        else:
            heatmap, pca = COMPARISON_PLOTS
            written += _write(plot_heatmap(gen), out, heatmap, formats)
            written += _write(plot_aug(gen, "PCA"), out, pca, formats)
    return written


def save_comparison_plots(
    real_x: Any,
    real_labels: Sequence[Any] | None,
    gen_x: Any,
    gen_labels: Sequence[Any] | None,
    genes: Sequence[str] | None,
    out_dir: str | Path,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Heatmap and PCA of two matrices (cells x genes, same genes and space), e.g. two AnnData's X for the CLI.

    Labels are drawn when both are given; the genes must already be aligned (evaluate_anndata does that).
    """
    cells = Cells(x_train=real_x, y_train=real_labels, x_gen=gen_x, y_gen=gen_labels, genes=genes)
    return save_all(None, cells, out_dir, formats)
