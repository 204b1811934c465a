"""The VAExprs vignette, ported to vaexprs: a VAE on simulated data, then a CVAE on the yan embryo data.

    python examples/vignette.py                      # the vignette's settings (about a minute on a laptop CPU)
    python examples/vignette.py --quick --out /tmp/f # 3 epochs, for CI
    python examples/vignette.py --data ../shared/data

Part (a) follows the vignette's simulation: 3 groups x 100 cells, 1000 genes, 100 planted genes per group;
a VAE (hidden 512, batch 32, up to 100 epochs, early stopping on val_loss with patience 10, the training
cells reused as validation cells as the vignette does), 100 generated cells, heatmap and PCA.
Part (b) trains a CVAE on yan.h5ad (hidden 256, batch 32, up to 100 epochs, early stopping on the training
loss with patience 20) after dropping genes expressed in no cell, and draws the same figures.
Each part prints the metrics table of vaexprs.evaluate (real vs generated cells in the same space).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

import vaexprs
from vaexprs.analysis import plots
from vaexprs.analysis.metrics import evaluate, format_table

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """$VAEXPRS_SHARED_DATA, else ../shared/data beside the repository (where the project keeps it)."""
    env = os.environ.get("VAEXPRS_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def figures(result: vaexprs.VAEResult, gen: vaexprs.GeneratedCells, out: Path, prefix: str) -> list[Path]:
    """The vignette's figures (architecture, heatmap, PCA) plus the training curves the R version printed."""
    paths = [out / f"{prefix}_{name}.png" for name in ("architecture", "history", "heatmap", "augmentation_pca")]
    plots.plot_vae(result, paths[0])
    plots.plot_history(result, paths[1])  # the monitored curve and its best epoch marked
    plots.plot_heatmap(gen, paths[2])
    plots.plot_aug(gen, "PCA", paths[3])
    for path in paths:
        print(f"  figure: {path}")
    return paths


def summary(result: vaexprs.VAEResult, seconds: float) -> None:
    last = result.history[-1]
    print(f"  {result.normalize_note}")
    print(
        f"  trained {len(result.history)} epochs in {seconds:.1f} s; best epoch {result.best_epoch} "
        f"({result.train_config.monitor}); last loss {last['loss']:.2f} (recon {last['recon_loss']:.2f}, "
        f"kl {last['kl_loss']:.2f})"
    )


def simulated_vae(out: Path, epochs: int) -> None:
    print("(a) VAE on the vignette's simulated data")
    adata = vaexprs.simulate(groups=3, cells=100, genes=1000, deg=100, seed=1)
    start = time.perf_counter()
    # No labels: a plain VAE. The vignette validates on the training cells themselves (x_val = x_train).
    # VAExprs' model: bce (the decoder mean), latent 2; vaexprs' own default would be likelihood="auto".
    result = vaexprs.fit_vae(
        adata, x_val=adata, likelihood="bce", latent_dim=2, hidden=(512,), epochs=epochs, batch_size=32,
        monitor="val_loss", patience=10, seed=1,
    )  # fmt: skip
    summary(result, time.perf_counter() - start)
    gen = vaexprs.gen_exprs(result, num_samples=100, seed=1)
    figures(result, gen, out, "sim_vae")
    print(format_table(evaluate(gen.x_train, gen.x_gen)))


def yan_cvae(out: Path, data: Path, epochs: int) -> None:
    path = data / "yan.h5ad"
    if not path.is_file():
        print(f"(b) skipped: {path} not found (pass --data DIR or set VAEXPRS_SHARED_DATA)")
        return
    print(f"(b) CVAE on the yan data ({path})")
    adata = vaexprs.read_expression(path, label_key="cell_type")
    expressed = np.asarray(adata.X.mean(axis=0)).ravel() > 0  # the vignette's rowMeans(x) > 0
    adata = adata[:, expressed].copy()
    print(f"  {adata.n_obs} cells, {adata.n_vars} expressed genes (of {expressed.size})")
    start = time.perf_counter()
    result = vaexprs.fit_vae(
        adata, "cell_type", likelihood="bce", latent_dim=2, hidden=(256,), epochs=epochs, batch_size=32,
        monitor="loss", patience=20, seed=1,
    )  # fmt: skip
    summary(result, time.perf_counter() - start)
    gen = vaexprs.gen_exprs(result, num_samples=100, seed=1)
    figures(result, gen, out, "yan_cvae")
    print(format_table(evaluate(gen.x_train, gen.x_gen, gen.y_train, gen.y_gen)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs instead of 100 (a smoke run for CI)")
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "figures", help="folder for the figures")
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="folder holding yan.h5ad")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    epochs = 3 if args.quick else 100
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    simulated_vae(args.out, epochs)
    print()
    yan_cvae(args.out, args.data, epochs)
    print(f"\ndone in {time.perf_counter() - start:.1f} s; figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
