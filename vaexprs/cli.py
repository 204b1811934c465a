"""The `vaexprs` command line (Typer). Heavy modules are imported inside the commands, so `--help` is instant.

    vaexprs simulate -o sim.h5ad
    vaexprs train sim.h5ad --model cvae --epochs 30 -o bundle/
    vaexprs generate bundle/ -n 1000 --label group2 -o gen.h5ad
    vaexprs generate models:/vaexprs@champion -n 1000000 -o big.h5ad
    vaexprs evaluate sim.h5ad gen.h5ad -o metrics.json --plots plots/
    vaexprs promote vaexprs --version 3 --alias champion

Exit codes: 0 success, 1 runtime failure, 2 bad input or usage (a one-line message on stderr).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from vaexprs.errors import InputError, VaexprsError

app = typer.Typer(
    name="vaexprs",
    help="Learn single-cell expression data with a (conditional) VAE and generate realistic cells.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("vaexprs")

Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or log lines.")]


def _setup_logging(quiet: bool = False) -> None:
    level = logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("vaexprs")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _echo(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message)


@app.command()
def simulate(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .h5ad file.")],
    groups: Annotated[int, typer.Option(help="Number of cell groups.")] = 3,
    cells: Annotated[int, typer.Option(help="Cells per group.")] = 100,
    genes: Annotated[int, typer.Option(help="Number of genes.")] = 1000,
    deg: Annotated[int, typer.Option(help="Differentially expressed genes per group.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    force: Force = False,
) -> None:
    """Write the VAExprs vignette's simulated data (groups x cells, N(5, 5) plus planted group signals)."""
    from vaexprs.data import simulate as simulate_data
    from vaexprs.data import write_anndata
    from vaexprs.writers import check_output

    path = check_output(output, force=force)
    adata = simulate_data(groups=groups, cells=cells, genes=genes, deg=deg, seed=seed)
    write_anndata(adata, path)
    typer.echo(f"wrote {adata.n_obs} cells x {adata.n_vars} genes to {path}")


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="Expression data: .h5ad, .csv/.tsv (cells as rows) or .npy.")],
    label_key: Annotated[str, typer.Option(help="obs column with the cell labels (CVAE).")] = "cell_type",
    model: Annotated[str, typer.Option(help="vae, or cvae (conditional on --label-key).")] = "vae",
    layer: Annotated[str | None, typer.Option(help="AnnData layer to use instead of X.")] = None,
    latent_dim: Annotated[int, typer.Option(help="Latent dimensions.")] = 2,
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, e.g. 512 or 512,256.")] = "512",
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 32,
    beta: Annotated[float, typer.Option(help="Weight of the KL term (>= 0).")] = 1.0,
    likelihood: Annotated[
        str, typer.Option(help="bce or mse (VAExprs, scaled values), nb or zinb (raw counts), hurdle (log values).")
    ] = "bce",
    round_counts: Annotated[
        bool, typer.Option(help="nb/zinb: round non-integer values instead of refusing them.")
    ] = False,
    normalize: Annotated[str, typer.Option(help="auto, lognorm, log or none.")] = "auto",
    val_split: Annotated[float, typer.Option(help="Fraction of cells held out for validation.")] = 0.0,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs (0 = off).")] = 10,
    monitor: Annotated[str, typer.Option(help="loss or val_loss.")] = "loss",
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed (CPU training is bit-reproducible).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the ONNX bundle here.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Write the torch checkpoint (weights only) here.")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow.")] = False,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "vaexprs",
    register: Annotated[str | None, typer.Option(help="Register the model under this name (implies --track).")] = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Train a VAE or CVAE; write the ONNX bundle (-o) and/or log and register it in MLflow."""
    from vaexprs.workflow import TrainOptions, train_pipeline

    _setup_logging(quiet)
    options = TrainOptions(
        data=data, label_key=label_key, model=model, layer=layer, latent_dim=latent_dim, hidden=hidden,
        epochs=epochs, batch_size=batch_size, beta=beta, likelihood=likelihood, round_counts=round_counts,
        normalize=normalize,
        val_split=val_split, patience=patience, monitor=monitor, lr=lr, seed=seed, device=device,
        bundle_dir=str(output) if output else None, checkpoint=str(checkpoint) if checkpoint else None,
        force=force, track=track, experiment=experiment, register=register,
    )  # fmt: skip
    outcome = train_pipeline(options)
    history = outcome.result.history
    _echo(
        f"trained a {outcome.result.model_type.upper()} for {len(history)} epoch(s); "
        f"best {options.monitor} {min(h[options.monitor] for h in history):.4g} at epoch {outcome.result.best_epoch}",
        quiet,
    )
    for what, value in (
        ("bundle", outcome.bundle_dir),
        ("checkpoint", outcome.checkpoint),
        ("MLflow run", outcome.run_id),
        ("registered model", outcome.model_uri),
    ):
        if value:
            _echo(f"{what}: {value}", quiet)


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="A checkpoint file (model.pt) or an MLflow runs:/ URI of one.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle folder to write.")],
    force: Force = False,
) -> None:
    """Export a trained model to an ONNX bundle (decoder.onnx, encoder.onnx, bundle.json)."""
    from vaexprs.api import VAEResult
    from vaexprs.export import export_bundle

    _setup_logging(False)
    path = Path(model)
    if model.startswith(("runs:/", "models:/")):
        from vaexprs.tracking import download_checkpoint

        path = download_checkpoint(model)
    out = export_bundle(VAEResult.load(path), output, force=force)
    typer.echo(f"bundle: {out}")


@app.command()
def generate(
    model: Annotated[str, typer.Argument(help="Bundle folder, models:/NAME@ALIAS, models:/NAME/VERSION or runs:/...")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .h5ad, .csv or .npy.")],
    n: Annotated[int | None, typer.Option("-n", "--n", help="Number of cells (training label proportions).")] = None,
    label: Annotated[str | None, typer.Option(help="Generate only cells of this label.")] = None,
    per_label: Annotated[str | None, typer.Option(help="Cells per label, e.g. L1=300,L2=50.")] = None,
    sampler: Annotated[str, typer.Option(help="gmm (mixture of training latents) or prior (N(0, I)).")] = "gmm",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cells).")] = 1,
    provider: Annotated[str, typer.Option(help="onnxruntime provider: auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[
        int | None,
        typer.Option(help="Cells per decoding chunk [default: 8192, fewer for wide models: ~64 MB a chunk]."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads.")] = None,
    output_space: Annotated[
        str | None,
        typer.Option(
            help="counts, lognorm or mean [default: sampled noise: counts for nb/zinb, log values for hurdle; "
            "the decoder mean for bce/mse]."
        ),
    ] = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Generate cells with onnxruntime from a bundle or a registered model, streamed to disk."""
    from vaexprs.generate import generate_to_file

    _setup_logging(quiet)
    if n is None and per_label is None:  # the rest (n <= 0, --label with --per-label, ...) the engine checks
        raise InputError("say how many cells: -n N (or --per-label L1=300,L2=50)")
    # generate_to_file logs the summary line (cells, file, seconds, the provider that really ran)
    generate_to_file(
        model, output, n=n, label=label, per_label=per_label, sampler=sampler, seed=seed, provider=provider,
        batch_size=batch_size, threads=threads, force=force, progress=not quiet and sys.stderr.isatty(),
        output_space=output_space,
    )  # fmt: skip


@app.command()
def evaluate(
    real: Annotated[Path, typer.Argument(help="Real cells (.h5ad/.csv/.npy).")],
    gen: Annotated[Path, typer.Argument(help="Generated cells (.h5ad/.csv/.npy).")],
    label_key: Annotated[str, typer.Option(help="obs column with labels ('' = unlabelled).")] = "cell_type",
    real_space: Annotated[
        str, typer.Option(help="Bring REAL into GEN's space: auto (from GEN's metadata), lognorm, log or none.")
    ] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the metrics as JSON.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write comparison plots (PNG) to this folder.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the subsampling and classifiers.")] = 0,
    force: Force = False,
) -> None:
    """Compare generated cells with real ones: classifier AUC, MMD, gene statistics, TSTR, markers."""
    from vaexprs.evaluation_io import evaluate_files

    _setup_logging(False)
    metrics_text = evaluate_files(
        real, gen, label_key=label_key or None, real_space=real_space, output=output, plots=plots, seed=seed,
        force=force,
    )  # fmt: skip
    typer.echo(metrics_text)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Option(help="Model version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to set (moved if it exists).")] = "champion",
) -> None:
    """Point an alias (e.g. champion) at a registered model version."""
    from vaexprs.tracking import promote as promote_version

    previous = promote_version(name, version, alias)
    moved = f" (moved from version {previous})" if previous and str(previous) != str(version) else ""
    typer.echo(f"models:/{name}@{alias} -> version {version}{moved}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; map vaexprs errors to a one-line message and exit code 1 or 2."""
    try:
        app(args=argv, standalone_mode=False)
    except VaexprsError as exc:
        typer.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        typer.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", err=True)
        return 1
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
