"""The registered model: an MLflow pyfunc that generates cells from the ONNX bundle with onnxruntime (no torch).

    mlflow models serve -m models:/vaexprs@champion --env-manager local -h 127.0.0.1 -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_split": {"columns": ["label", "n", "seed"], "data": [["group1", 50, 1]]}}'

Each input row asks for `n` cells (of `label`, or in the training proportions when the label is empty), drawn
with `seed` (default 1) and `sampler` (gmm or prior; default gmm). The output has one row per cell: the model's
genes as columns, plus `cell_type` for a CVAE. The same seed gives the same cells as `vaexprs generate`.

The model is logged as code, not as a pickle (a deployed generator never unpickles anything): a three-line
script that builds `VaexprsGenerator`, the vaexprs package copied in as code_paths (so a fresh environment built
from the light requirements, without torch, can load it), and the bundle folder as its artifact.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd  # at runtime: MLflow evaluates the type hints of predict
from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

from vaexprs.errors import VaexprsError

LABEL_COLUMN = "cell_type"
MAX_CELLS_ENV = "VAEXPRS_MAX_CELLS_PER_REQUEST"
DEFAULT_MAX_CELLS = 100_000
DEFAULT_SEED = 1
DEFAULT_SAMPLER = "gmm"
EXAMPLE_CELLS = 3
# The output schema only documents the columns (MLflow does not enforce it); beyond this many genes it would
# make the MLmodel file megabytes long, so it is left out.
MAX_SCHEMA_GENES = 5000
# The model-from-code script MLflow runs to build the model when it loads it.
MODEL_SCRIPT = """\
import mlflow.models

from vaexprs.generate.pyfunc import VaexprsGenerator

mlflow.models.set_model(VaexprsGenerator())
"""
# What loading and predicting need (the light install): used when vaexprs' own metadata is not available.
FALLBACK_REQUIREMENTS = (
    "numpy>=1.24",
    "scipy>=1.10",
    "pandas>=2.0",
    "anndata>=0.10",
    "h5py>=3.8",
    "typer>=0.12",
    "onnxruntime>=1.17",
)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value)


def max_cells_per_request(model_config: dict[str, Any] | None = None) -> int:
    """The most cells one request may ask for: $VAEXPRS_MAX_CELLS_PER_REQUEST, else the model's config, else
    100,000 (a few seconds of work; a larger answer would outlive the HTTP timeout and nobody would read it)."""
    value = os.environ.get(MAX_CELLS_ENV) or (model_config or {}).get("max_cells_per_request") or DEFAULT_MAX_CELLS
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise MlflowException(f"{MAX_CELLS_ENV} must be a positive integer; got {value!r}") from None
    if limit < 1:
        raise MlflowException(f"{MAX_CELLS_ENV} must be a positive integer; got {value!r}")
    return limit


class VaexprsGenerator(mlflow.pyfunc.PythonModel):
    """Generates cells with onnxruntime from the bundle in the model's artifacts; one warm session per process."""

    def load_context(self, context: Any) -> None:
        from vaexprs.bundle.schema import load_bundle
        from vaexprs.generate.engine import OnnxDecoder

        bundle = load_bundle(context.artifacts["bundle"])
        self.decoder = OnnxDecoder(bundle, provider=os.environ.get("VAEXPRS_PROVIDER", "auto"))
        self.max_cells = max_cells_per_request(getattr(context, "model_config", None))

    @property
    def bundle(self) -> Any:
        return self.decoder.bundle

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One block of cells per input row (label, n, seed, sampler), concatenated in row order.

        The whole input is checked (every row's request, and the total against the per-request limit) before
        any cell is made: a bad or oversized request answers 400 at once.
        """
        from vaexprs.generate.pipeline import generate_array
        from vaexprs.generate.request import GenerationRequest

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "n" not in frame.columns:
            raise MlflowException("the input needs a column n (cells to generate)", INVALID_PARAMETER_VALUE)
        requests = []
        for row in frame.to_dict("records"):
            try:
                requests.append(
                    GenerationRequest(
                        n=_integer(row["n"], "n"),
                        label=None if _missing(row.get("label")) else str(row["label"]),
                        seed=DEFAULT_SEED if _missing(row.get("seed")) else _integer(row["seed"], "seed"),
                        sampler=DEFAULT_SAMPLER if _missing(row.get("sampler")) else str(row["sampler"]),
                    )
                )
            except VaexprsError as exc:
                raise MlflowException(str(exc).splitlines()[0], INVALID_PARAMETER_VALUE) from None
        total = sum(int(r.n or 0) for r in requests)
        if total > self.max_cells:
            raise MlflowException(
                f"the request asks for {total} cells; this model serves at most {self.max_cells} per request "
                f"(split it, or set {MAX_CELLS_ENV} where the model is served)",
                INVALID_PARAMETER_VALUE,
            )
        blocks, labels = [], []
        for request in requests:
            try:
                x, y = generate_array(self.decoder, request)
            except VaexprsError as exc:
                raise MlflowException(str(exc).splitlines()[0], INVALID_PARAMETER_VALUE) from None
            blocks.append(x)
            if y is not None:
                labels.append(y)
        genes = self.bundle.genes
        x = np.concatenate(blocks) if blocks else np.empty((0, len(genes)), dtype=np.float32)
        out = pd.DataFrame(x, columns=genes)
        if self.bundle.is_conditional:
            out[LABEL_COLUMN] = np.concatenate(labels) if labels else np.empty(0, dtype=object)
        return out


def _integer(value: Any, name: str) -> int:
    """A whole number from a JSON cell (ints may arrive as floats); anything else is a 400."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or not number.is_integer():
        raise MlflowException(f"{name} must be an integer; got {value!r}", INVALID_PARAMETER_VALUE)
    return int(number)


def signature_for(bundle: Any) -> Any:
    """Input: label (optional), n, seed (optional), sampler (optional); output: genes (+ cell_type)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "label", required=False),
            ColSpec("long", "n"),
            ColSpec("long", "seed", required=False),
            ColSpec("string", "sampler", required=False),
        ]
    )
    if bundle.n_genes > MAX_SCHEMA_GENES:
        return ModelSignature(inputs=inputs)
    columns = [ColSpec("float", gene) for gene in bundle.genes]
    if bundle.is_conditional:
        columns.append(ColSpec("string", LABEL_COLUMN))
    return ModelSignature(inputs=inputs, outputs=Schema(columns))


def input_example(bundle: Any) -> pd.DataFrame:
    example: dict[str, list[Any]] = {"n": [EXAMPLE_CELLS], "seed": [DEFAULT_SEED]}
    if bundle.is_conditional:
        example = {"label": [bundle.labels[0]], **example}
    return pd.DataFrame(example)


def light_requirements() -> list[str]:
    """The generation side's pip requirements, pinned to the versions installed here (MLflow adds mlflow).

    Read from vaexprs' own metadata: the base dependencies plus the `cpu` extra, without torch and without
    mlflow-skinny (serving installs the full mlflow).
    """
    try:
        declared = importlib.metadata.requires("vaexprs") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    names = []
    for line in declared:
        spec, _, marker = line.partition(";")
        if marker and 'extra == "cpu"' not in marker.replace("'", '"'):
            continue
        name = re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0]
        if name and name.lower() not in ("mlflow-skinny", "mlflow"):
            names.append(name)
    if not names:
        return list(FALLBACK_REQUIREMENTS)
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def _package_copy(folder: Path) -> Path:
    """The vaexprs package without caches, to ship as the model's code."""
    import vaexprs

    source = Path(vaexprs.__file__).resolve().parent
    target = folder / "vaexprs"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def log_generator_model(
    bundle_dir: str | Path, registered_model_name: str | None = None, name: str = "generator"
) -> Any:
    """Log the bundle as a pyfunc model in the active run (and register it); returns MLflow's ModelInfo."""
    from vaexprs.bundle.schema import load_bundle

    bundle = load_bundle(bundle_dir)
    with tempfile.TemporaryDirectory(prefix="vaexprs-code-") as tmp:
        code = _package_copy(Path(tmp))
        script = Path(tmp) / "generator.py"
        script.write_text(MODEL_SCRIPT)
        # MLflow keeps an artifact folder under its own name: staged as `bundle`, it always lands in
        # artifacts/bundle/, where vaexprs.registry.models looks for it
        staged = shutil.copytree(bundle_dir, Path(tmp) / "bundle")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(script),
            artifacts={"bundle": str(staged)},
            code_paths=[str(code)],
            signature=signature_for(bundle),
            input_example=input_example(bundle),
            registered_model_name=registered_model_name,
            pip_requirements=light_requirements(),
            model_config={"max_cells_per_request": DEFAULT_MAX_CELLS},
        )
