"""The `vaexprs` command line (Typer). Heavy modules are imported inside the commands, so `--help` is instant.

    vaexprs simulate -o sim.h5ad
    vaexprs train sim.h5ad -o bundle/                      # a CVAE on obs['cell_type'] (model auto)
    vaexprs generate bundle/ -n 1000 --label group2 -o gen.h5ad
    vaexprs generate models:/vaexprs@champion -n 1000000 -o big.h5ad
    vaexprs evaluate sim.h5ad gen.h5ad -o metrics.json --plots plots/
    vaexprs promote vaexprs --version 3 --alias champion
    python -m vaexprs ...                                  # the same (and what torchrun and MLproject run)

The options of `train` (and `pipeline`) and `generate` are built from the config dataclasses (vaexprs.config,
vaexprs.jobs, vaexprs.generate.request): each option's name, type, default and help are written once there.
Exit codes: 0 success, 1 runtime failure, 2 bad input or usage, 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM); every failure prints one `error: ...` line.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Annotated, Any, get_args

import typer

from vaexprs import __version__
from vaexprs.config import FIT_CONFIGS, DataConfig, ModelConfig, TrainConfig, config_defaults, option_flag
from vaexprs.errors import (
    EXIT_FAILURE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    InputError,
    OptionError,
    Terminated,
    VaexprsError,
    check_interrupted,
    first_line,
    forget_signals,
    interrupt,
    note_signal,
    pending_signal,
)


def _plain_argument_help() -> None:
    """Typer 0.29 shows a required argument as `{MODEL}` in usage lines and as `MODEL <str>` in the help; every
    vaexprs argument names its metavar, so show it plainly (`MODEL`, `[DATA]`), as click and man pages do."""
    argument = getattr(getattr(typer, "core", None), "TyperArgument", None)
    if argument is None or not hasattr(argument, "_usage_display_name"):
        return
    typed = argument.display_type_rich

    def usage_name(self: Any) -> str:
        name = self.display_name_raw
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

    def type_in_help(self: Any, ctx: Any) -> str | None:
        return None if self.metavar is not None else typed(self, ctx)

    argument._usage_display_name = usage_name
    argument.display_type_rich = type_in_help


_plain_argument_help()

app = typer.Typer(
    name="vaexprs",
    help="Learn single-cell expression data with a (conditional) VAE and generate realistic cells.",
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
log = logging.getLogger("vaexprs")

Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Overwrite an existing output file, or replace a bundle folder (never the command's input, nor a "
        "folder holding other files).",
        envvar="VAEXPRS_FORCE",
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress bar or log lines; vaexprs' warnings about the data still show (once each)."
    ),
]
Track = Annotated[
    bool, typer.Option("--track", help="Log the output to MLflow (the run `mlflow run` opened, else a new run).")
]

# CLI flag of every option the commands build from configs (for error messages that name the flag)
_FLAGS: dict[str, str] = {}


def flag_of(name: str) -> str:
    return _FLAGS.get(name, option_flag(name))


def setup_logging(quiet: bool = False) -> None:
    """vaexprs' log lines on stderr, bare; -q keeps warnings and errors only and silences Python warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("vaexprs")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    logging.captureWarnings(True)  # library warnings become log lines, without source lines
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.handlers[:] = [handler]
    warnings_log.propagate = False
    if quiet:
        warnings.simplefilter("ignore")
        warnings_log.setLevel(logging.ERROR)


# ------------------------------------------------------------------------------------------ options from configs


def config_parameters(cls: type, exclude: Sequence[str] = ()) -> list[inspect.Parameter]:
    """Typer options for a config dataclass's fields (help, flags and bounds from their metadata)."""
    import typing

    hints = typing.get_type_hints(cls)
    defaults = config_defaults(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or f.name in exclude:
            continue
        hint = hints[f.name]
        default = defaults[f.name]
        if meta.get("parse") is not None:  # e.g. hidden sizes: read and shown as text "512,256"
            hint, default = str, meta["show"](default)
        elif type(None) in get_args(hint):  # X | None: the first real type (str for per_label)
            hint = next(a for a in get_args(hint) if a is not type(None)) | None
        flags = list(meta.get("flags") or (option_flag(f.name),))
        _FLAGS[f.name] = next((fl for fl in flags if fl.startswith("--")), flags[0])
        if hint is bool and default:  # a switch that is on: say how to turn it off
            flags = [f"{option_flag(f.name)}/--no-{f.name.replace('_', '-')}"]
        option = typer.Option(
            *flags,
            help=meta.get("help", ""),
            show_default=default is not None and hint is not bool,
            envvar=meta.get("envvar"),
            metavar=None if hint is bool else _metavar(f.name, hint),
        )
        out.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[hint, option]
            )
        )
    return out


def _metavar(name: str, hint: Any) -> str:
    """What a value looks like in --help: the choices of a Literal, else a name (N for counts, X for numbers)."""
    if type(None) in get_args(hint):
        hint = next(a for a in get_args(hint) if a is not type(None))
    args = get_args(hint)
    if args and all(isinstance(a, str) for a in args):  # a Literal: its choices
        return "[" + "|".join(args) + "]"
    base = hint
    if base is int:
        return "N"
    if base is float:
        return "X"
    return name.upper()


def values_of(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The values of `cls`'s fields among a command's arguments, parsed (hidden: '512,256' -> (512, 256))."""
    out = {}
    for f in fields(cls):
        if f.name in kwargs:
            parse = f.metadata.get("parse")
            value = kwargs[f.name]
            try:
                out[f.name] = parse(value) if parse is not None and isinstance(value, str) else value
            except OptionError as exc:  # worded with the option's own name
                raise OptionError(f.name, exc.detail, exc.refs) from None
    return out


def with_options(*groups: list[inspect.Parameter]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command (written with **options) the options of config dataclasses after its own parameters."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = typing_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        params = own + [p for group in groups for p in group]
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params}
        return fn

    return decorate


def typing_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn, include_extras=True)


def fit_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The fit_vae keywords among a command's arguments."""
    out: dict[str, Any] = {}
    for cls in FIT_CONFIGS:
        out.update(values_of(cls, kwargs))
    for name in ("n_genes", "n_labels"):
        out.pop(name, None)
    if out.get("layer") == "":
        out["layer"] = None
    return out


def _fit_parameters() -> list[inspect.Parameter]:
    return [*config_parameters(ModelConfig), *config_parameters(TrainConfig), *config_parameters(DataConfig)]


def _job_parameters(name: str, exclude: Sequence[str] = ()) -> list[inspect.Parameter]:
    from vaexprs import jobs

    return config_parameters(getattr(jobs, name), exclude)


def _request_parameters() -> list[inspect.Parameter]:
    from vaexprs.generate.options import GenerationRequest

    return config_parameters(GenerationRequest)


# ------------------------------------------------------------------------------------------ commands


def _compression(name: str) -> str | None:
    if name not in ("none", "gzip", "lzf"):
        raise OptionError("compression", f"must be one of none, gzip, lzf; got {name!r}")
    return None if name == "none" else name


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vaexprs {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Learn single-cell expression data with a (conditional) VAE and generate realistic cells."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@app.command()
def simulate(
    output: Annotated[str, typer.Option("--output", "-o", help="Output .h5ad file.", metavar="FILE")],
    groups: Annotated[int, typer.Option(help="Number of cell groups.", metavar="N")] = 3,
    cells: Annotated[int, typer.Option(help="Cells per group.", metavar="N")] = 100,
    genes: Annotated[int, typer.Option(help="Number of genes.", metavar="N")] = 1000,
    deg: Annotated[int, typer.Option(help="Differentially expressed genes per group.", metavar="N")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.", metavar="N")] = 1,
    force: Force = False,
    track: Track = False,
) -> None:
    """Write the VAExprs vignette's simulated data (groups x cells, N(5, 5) plus planted group signals)."""
    from vaexprs.data.io import write_anndata
    from vaexprs.data.simulate import simulate as simulate_data
    from vaexprs.generate.writers import check_output

    path = check_output(output, force=force, suffixes=(".h5ad",))
    adata = simulate_data(groups=groups, cells=cells, genes=genes, deg=deg, seed=seed)
    write_anndata(adata, path, force=force)
    if track:
        _track({"data": path}, {"groups": groups, "cells": cells, "genes": genes, "deg": deg, "seed": seed}, "simulate")
    typer.echo(f"wrote {adata.n_obs} cells x {adata.n_vars} genes to {path}")


@app.command()
@with_options(_job_parameters("TrainJob"), _fit_parameters())
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Expression data: .h5ad, .csv/.tsv (cells as rows) or .npy [default: the vignette's simulated data].",
            metavar="DATA",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    **options: Any,
) -> None:
    """Train a VAE or CVAE; write the ONNX bundle (-o) and/or log and register it in MLflow."""
    from vaexprs.jobs import TrainJob, train_job
    from vaexprs.model.ddp import is_main_process

    quiet = quiet or not is_main_process()  # under torchrun, rank 0 speaks for all
    setup_logging(quiet)
    if not is_main_process():  # the other ranks' warnings are rank 0's; only their own errors are theirs
        logging.getLogger("vaexprs").setLevel(logging.ERROR)
    job = TrainJob(**values_of(TrainJob, options))
    outcome = train_job(data or None, job, fit_options(options), progress=False if quiet else None)
    if not (job.output or job.checkpoint or job.track or job.register):  # said after the data passed its checks
        logging.getLogger("vaexprs").warning(
            "nothing was kept: the model was trained and discarded; give -o FOLDER (the bundle), --checkpoint "
            "FILE or --track / --register NAME to keep it"
        )
    result = outcome.result
    monitor = result.train_config.monitor
    best = min(h[monitor] for h in result.history)
    lines = [
        f"trained a {result.model_type.upper()} ({result.model_config.likelihood}) for {len(result.history)} "
        f"epoch(s); best {monitor} {best:.4g} at epoch {result.best_epoch}"
    ]
    for what, value in (
        ("bundle", outcome.bundle_dir),
        ("checkpoint", outcome.checkpoint),
        ("MLflow run", outcome.run_id),
        ("registered model", outcome.model_uri),
    ):
        if value:
            lines.append(f"{what}: {value}")
    if not quiet:
        typer.echo("\n".join(lines))


@app.command()
def export(
    model: Annotated[
        str,
        typer.Argument(
            help="A checkpoint file (model.pt), or runs:/RUN_ID/... or models:/NAME@ALIAS of a tracked training.",
            metavar="MODEL",
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Bundle folder to write.", metavar="FOLDER")],
    force: Force = False,
    track: Track = False,
) -> None:
    """Export a trained model to an ONNX bundle (decoder.onnx, encoder.onnx, bundle.json)."""
    from vaexprs.bundle.schema import check_bundle_output
    from vaexprs.model.export import export_bundle
    from vaexprs.model.result import VAEResult

    setup_logging(False)
    check_bundle_output(output, force)
    provenance = None
    if model.startswith(("runs:/", "models:/")):
        from vaexprs.registry.models import downloaded_checkpoint

        with downloaded_checkpoint(model) as (path, run_id):
            result = VAEResult.load(path)
        provenance = {"mlflow_run_id": run_id}  # the training run, as its own bundle records it
    else:
        result = VAEResult.load(model)
    out = export_bundle(result, output, force=force, provenance=provenance)
    if track:
        _track({"bundle": out}, {"source_model": model}, "export")
    typer.echo(f"bundle: {out}")


@app.command()
@with_options(_request_parameters())
def generate(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(
            help=(
                "Bundle folder, models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID[/PATH] (a bare run means "
                "its bundle)."
            ),
            metavar="MODEL",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Output: a .h5ad, .csv or .npy file, or a .zarr store (AnnData's layout).",
            metavar="PATH",
        ),
    ],
    provider: Annotated[
        str, typer.Option(help="onnxruntime provider: auto, cpu or cuda.", metavar="[auto|cpu|cuda]")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="onnxruntime intra-op threads [default: onnxruntime's choice].", metavar="N")
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Make the blocks on a Dask cluster, written straight into the .zarr output: local (one worker "
            "per CPU), local:W (W workers) or tcp://HOST:PORT (a running scheduler). Needs vaexprs[dask]; "
            "the cells are the same as without it.",
            metavar="ADDRESS",
        ),
    ] = None,
    dense: Annotated[
        bool,
        typer.Option(
            "--dense",
            help="Write sampled cells to .h5ad or .zarr as a dense X (default: CSR where at least half the "
            "values are zeros; a --dask .zarr is always dense).",
        ),
    ] = False,
    compression: Annotated[
        str, typer.Option(help="Compress the .h5ad X: none, gzip or lzf.", metavar="[none|gzip|lzf]")
    ] = "none",
    force: Force = False,
    quiet: Quiet = False,
    track: Track = False,
    **options: Any,
) -> None:
    """Generate cells with onnxruntime from a bundle or a registered model, streamed to disk (or on Dask)."""
    from vaexprs.generate.options import GenerationRequest
    from vaexprs.generate.pipeline import generate_to_file

    setup_logging(quiet)
    values = values_of(GenerationRequest, options)
    for name in ("label", "per_label", "output_space"):
        if values.get(name) == "":  # MLproject parameters cannot be absent, only empty
            values[name] = None
    if values.get("per_label") is not None and not _typed_outside_mlflow(ctx, "n"):
        values["n"] = None  # the counts decide; a typed -n must agree with them (the plan checks)
    request = GenerationRequest(**values)
    from vaexprs.progress import interactive

    summary = generate_to_file(
        model, output, request, provider=provider, threads=threads, force=force,
        progress=not quiet and interactive(), dask=dask or None, dense=dense,
        compression=_compression(compression),
    )  # fmt: skip
    if track:
        _track({"generated": summary["out"]}, {"model_uri": summary["model_uri"], **request.to_dict()}, "generate")


def _typed_outside_mlflow(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed option `name` (not its default); `mlflow run` passes every parameter, and its
    entry point documents per_label as replacing n, so there nothing counts as typed."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE" and not os.environ.get("MLFLOW_RUN_ID")


@app.command()
def evaluate(
    real: Annotated[str, typer.Argument(help="Real cells (.h5ad/.csv/.npy).", metavar="REAL")],
    gen: Annotated[
        str,
        typer.Argument(help="Generated cells (.h5ad/.csv/.npy), e.g. what `vaexprs generate` wrote.", metavar="GEN"),
    ],
    label_key: Annotated[
        str, typer.Option(help="obs column with labels ('' = unlabelled).", metavar="COLUMN")
    ] = "cell_type",
    real_space: Annotated[
        str,
        typer.Option(
            help="Bring REAL into GEN's space: auto (from GEN's metadata), lognorm, log or none.",
            metavar="[auto|lognorm|log|none]",
        ),
    ] = "auto",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the metrics as JSON.", metavar="FILE")
    ] = None,
    plots: Annotated[
        str | None, typer.Option(help="Write comparison plots (PNG) to this folder.", metavar="FOLDER")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the subsampling and classifiers.", metavar="N")] = 0,
    force: Force = False,
    track: Track = False,
) -> None:
    """Compare generated cells with real ones: classifier AUC, MMD, gene statistics, TSTR, markers."""
    from vaexprs.analysis.report import evaluate_files

    setup_logging(False)
    text, metrics = evaluate_files(
        real, gen, label_key=label_key or None, real_space=real_space, output=output or None, plots=plots or None,
        seed=seed, force=force,
    )  # fmt: skip
    if track:
        files = {k: v for k, v in {"metrics": output, "plots": plots}.items() if v}
        _track(files, {"real": real, "gen": gen, "label_key": label_key, "seed": seed}, "evaluate", metrics)
    typer.echo(text)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.", metavar="NAME")],
    version: Annotated[int, typer.Option(help="Model version to promote.", metavar="N")],
    alias: Annotated[str, typer.Option(help="Alias to set (moved if it exists).", metavar="ALIAS")] = "champion",
) -> None:
    """Point an alias, champion by default, at a registered model version."""
    from vaexprs.registry.models import check_model_name
    from vaexprs.registry.models import promote as promote_version

    try:
        check_model_name(name, "name")
    except OptionError as exc:  # NAME is an argument here, not a --name option
        raise InputError(f"NAME {exc.detail}") from None
    previous = promote_version(name, version, alias)
    moved = f" (moved from version {previous})" if previous and str(previous) != str(version) else ""
    typer.echo(f"models:/{name}@{alias} -> version {version}{moved}")


@app.command()
@with_options(_job_parameters("PipelineJob"), _fit_parameters())
def pipeline(quiet: Quiet = False, **options: Any) -> None:
    """The MLflow project's main job: simulate -> train -> register -> promote -> generate, one run per step."""
    import time

    from vaexprs.jobs import PipelineJob
    from vaexprs.jobs import pipeline as run_pipeline
    from vaexprs.registry.store import ensure_tracking_uri

    setup_logging(quiet)
    started = time.perf_counter()
    job = PipelineJob(**values_of(PipelineJob, options))
    fit = fit_options(options)
    outcome = run_pipeline(job, fit, seed=fit.pop("seed", 1), progress=False if quiet else None)
    uri = ensure_tracking_uri()
    steps = ", ".join(f"{k} {v}" for k, v in outcome.steps.items())
    lines = [
        f"\n== vaexprs pipeline finished in {time.perf_counter() - started:.0f} s",
        f"MLflow run:       {outcome.run_id} (steps: {steps})",
        f"                  tracking store {uri}; browse it with: mlflow ui --backend-store-uri {uri}",
        f"registered model: {outcome.model_uri}" + (f" = {outcome.alias_uri}" if outcome.alias_uri else ""),
        f"generated cells:  {outcome.generated} ({outcome.n_cells} cells)",
    ]
    auc = outcome.metrics.get("eval_auc_real_vs_gen")
    if auc is not None:
        lines.append(
            f"quality:          a classifier tells generated from real cells with AUC {auc:.2f} "
            "(0.5 = indistinguishable, 1.0 = always told apart)"
        )
    typer.echo("\n".join(lines))


def _track(files: dict[str, Any], params: dict[str, Any], step: str, metrics: dict[str, Any] | None = None) -> None:
    """--track: log a command's outputs (and params, numeric metrics) to the active MLflow run or a new one."""
    import math
    from pathlib import Path

    from vaexprs.tracking.runs import log_outputs, run_scope

    with run_scope(run_name=step):
        log_outputs({k: Path(v) for k, v in files.items()}, params)
        if metrics:
            import mlflow

            numbers = {
                k: float(v) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            }  # fmt: skip
            mlflow.log_metrics(numbers)


# ------------------------------------------------------------------------------------------ running


def _on_signal(signum: int, frame: Any) -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into an exception, so `finally` blocks and MLflow runs clean up; also noted
    for the loops to check (vaexprs.errors.check_interrupted)."""
    note_signal(signum)
    raise interrupt(signum)


def _click_exception() -> type[Exception]:
    """Click's exception base as Typer raises it (Typer >= 0.16 vendors click as typer._click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


# modules of an extra that the light install (vaexprs[cpu]) leaves out, and the extra that brings each
EXTRA_OF_MODULE = {
    "torch": "train", "sklearn": "train", "matplotlib": "train", "onnx": "train", "onnxscript": "train",
    "dask": "dask", "distributed": "dask", "zarr": "dask",
}  # fmt: skip


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line for a command that needs a module this install lacks (train in the light install), or None
    where the missing module is not one an extra brings (a broken install: reported as it is)."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f'this command needs {module}, which is not installed: pip install "vaexprs[{extra}]"'


def _quiet_unraisable(unraisable: Any) -> None:
    """A signal's exception raised where Python can only print it (a weakref callback or a __del__ running when the
    signal came) printed a traceback and the command went on to exit 0; the handler noted the signal, and main
    reports it in one line instead."""
    if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        sys.__unraisablehook__(unraisable)


def _signal_exit(signum: int) -> int:
    """The one line and the exit code of a command a signal stopped: 130 for Ctrl-C, 143 for SIGTERM."""
    typer.echo("error: interrupted" if signum == signal.SIGINT else "error: terminated", err=True)
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM if signum == signal.SIGTERM else 128 + signum


def main(argv: list[str] | None = None) -> int:
    """Run the app; every failure becomes one `error: ...` line and an exit code (see the module docstring)."""
    handlers = {}
    forget_signals()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave the signals alone
            handlers[sig] = signal.signal(sig, _on_signal)
    unraisable_hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable
    try:
        code = app(args=argv, standalone_mode=False, prog_name="vaexprs")
        check_interrupted()  # a signal whose exception was swallowed: the command stopped being wanted
    except OptionError as exc:
        typer.echo(f"error: {exc.message(flag_of).splitlines()[0]}", err=True)
        return exc.exit_code
    except VaexprsError as exc:
        if (signum := pending_signal()) is not None:  # the error the signal became (a write it cut short)
            return _signal_exit(signum)
        typer.echo(f"error: {first_line(exc)}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _signal_exit(signal.SIGINT)
    except Terminated as exc:
        return _signal_exit(exc.signum)
    except ModuleNotFoundError as exc:
        if (line := missing_extra(exc)) is None:
            typer.echo(f"error: {type(exc).__name__}: {first_line(exc)}", err=True)
            return EXIT_FAILURE
        typer.echo(f"error: {line}", err=True)
        return EXIT_USAGE
    except Exception as exc:
        if (signum := pending_signal()) is not None:  # e.g. h5py's error for a write the signal interrupted
            return _signal_exit(signum)
        if isinstance(exc, _click_exception()):  # usage: unknown option, bad value, missing argument
            text = exc.format_message().splitlines()[0].replace("Value error, ", "")  # type: ignore[attr-defined]
            typer.echo(f"error: {text}", err=True)
            return EXIT_USAGE
        typer.echo(f"error: {type(exc).__name__}: {first_line(exc)}", err=True)  # unexpected: one line anyway
        return EXIT_FAILURE
    finally:
        forget_signals()  # the command's signals end with it (library code in the same process checks them)
        sys.unraisablehook = unraisable_hook
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if code == EXIT_SIGINT:  # Typer turns Ctrl-C into a return value of 130
        typer.echo("error: interrupted", err=True)
    return code if isinstance(code, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
