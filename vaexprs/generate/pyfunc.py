"""The registered model: an MLflow pyfunc that generates cells from the ONNX bundle with onnxruntime (no torch).

    mlflow models serve -m models:/vaexprs@champion --env-manager local -h 127.0.0.1 -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_split": {"columns": ["label", "n", "seed"], "data": [["group1", 50, 1]]}}'

Each input row asks for `n` cells (of `label`, or in the training proportions when the label is empty), drawn
with `seed` (default 1), `sampler` (gmm or prior; default gmm) and `temperature` (0 to 2, default 1: the scale
of the latent draws, below 1 more typical cells). The output has one row per cell: the model's
genes as columns, plus `cell_type` for a CVAE. The same seed gives the same cells as `vaexprs generate`.

That default answer (JSON records: every gene name repeated in every cell, ~30 bytes a value) costs far more than
the generation: 10,000 cells x 2,000 genes took 41.9 s served (MLflow's JSON of the DataFrame alone 27 s) against
0.6 s for `vaexprs generate -n 10000 -o x.npy`. The inference param `format` asks for a compact answer instead:
one base64 string holding a numpy .npz archive, made and read by numpy (and scipy) alone:

    format "npz": x (cells x genes, float32, dense), genes, and cell_type for a CVAE
    format "csr": x as a scipy.sparse CSR matrix (what sampled counts should be: mostly zeros; `save_npz`'s
                  layout, so `scipy.sparse.load_npz` reads it), plus the same genes and cell_type

    import base64, io, json, urllib.request
    import numpy as np, scipy.sparse
    body = {"dataframe_split": {"columns": ["n", "seed"], "data": [[10000, 1]]}, "params": {"format": "npz"}}
    req = urllib.request.Request("http://127.0.0.1:5001/invocations", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    answer = io.BytesIO(base64.b64decode(json.load(urllib.request.urlopen(req))["predictions"]))
    cells = np.load(answer)   # cells["x"], cells["genes"], cells["cell_type"] (CVAE); with "csr": x =
                              # scipy.sparse.load_npz(answer), and np.load(answer) for genes and cell_type

The cells are the same as the records' (float32, bit for bit). Any other format answers 400. Measured with
`OMP_NUM_THREADS=1 python benchmarks/serve.py --rounds 3` (and `--likelihood nb --formats npz,csr`), 10,000 cells
x 2,000 genes decoded by the client, against the CLI in the same run: npz 1.06 s, 0.59x the CLI's cells/s for a
bce head on an idle machine (107 MB of base64 through JSON; 0.36x at load ~2.5); for an nb head, npz 0.96x and
csr (28 MB) 0.98x, where sampling the counts dominates both. See the README's "Performance" section.

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
MAX_VALUES_ENV = "VAEXPRS_MAX_VALUES_PER_REQUEST"
# cells x genes of one answer: 10 million values are 40 MB as float32 and a few hundred MB as JSON records; the
# cell limit alone let a 20,000-gene model answer 100,000 cells (8 GB of values, tens of GB on the way)
DEFAULT_MAX_VALUES = 10_000_000
DEFAULT_SEED = 1
DEFAULT_SAMPLER = "gmm"
# The answer formats the inference param `format` selects: JSON records (the default) or a base64 .npz.
ANSWER_FORMATS = ("records", "npz", "csr")
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


def _positive_setting(env: str, key: str, default: int, model_config: dict[str, Any] | None) -> int:
    """$env, else the model config's `key`, else `default`; a positive integer or a load-time error."""
    value = os.environ.get(env) or (model_config or {}).get(key) or default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise MlflowException(f"{env} must be a positive integer; got {value!r}") from None
    if limit < 1:
        raise MlflowException(f"{env} must be a positive integer; got {value!r}")
    return limit


def max_cells_per_request(model_config: dict[str, Any] | None = None) -> int:
    """The most cells one request may ask for: $VAEXPRS_MAX_CELLS_PER_REQUEST, else the model's config, else
    100,000 (a few seconds of work; a larger answer would outlive the HTTP timeout and nobody would read it)."""
    return _positive_setting(MAX_CELLS_ENV, "max_cells_per_request", DEFAULT_MAX_CELLS, model_config)


def max_values_per_request(model_config: dict[str, Any] | None = None) -> int:
    """The most cells x genes one answer may hold: $VAEXPRS_MAX_VALUES_PER_REQUEST, else the model's config,
    else 10 million. With many genes it binds before the cell limit."""
    return _positive_setting(MAX_VALUES_ENV, "max_values_per_request", DEFAULT_MAX_VALUES, model_config)


class VaexprsGenerator(mlflow.pyfunc.PythonModel):
    """Generates cells with onnxruntime from the bundle in the model's artifacts; one warm session per process."""

    def load_context(self, context: Any) -> None:
        from vaexprs.bundle.schema import load_bundle
        from vaexprs.generate.engine import OnnxDecoder

        bundle = load_bundle(context.artifacts["bundle"])
        self.decoder = OnnxDecoder(bundle, provider=os.environ.get("VAEXPRS_PROVIDER", "auto"))
        config = getattr(context, "model_config", None)
        self.max_cells = max_cells_per_request(config)
        self.max_values = max_values_per_request(config)

    @property
    def bundle(self) -> Any:
        return self.decoder.bundle

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame | str:
        """One block of cells per input row (label, n, seed, sampler, temperature), concatenated in row order.

        The whole input is checked (every row's request, the total against the per-request limit, and
        params["format"]) before any cell is made: a bad or oversized request answers 400 at once. Returns the
        records DataFrame, or for format "npz"/"csr" the base64 .npz string (see the module docstring).
        """
        from vaexprs.generate.pipeline import generate_array
        from vaexprs.generate.request import GenerationRequest

        answer = answer_format(params)
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
                        temperature=1.0
                        if _missing(row.get("temperature"))
                        else _number(row["temperature"], "temperature"),
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
        n_genes = len(self.bundle.genes)
        if total * n_genes > self.max_values:
            raise MlflowException(
                f"the request asks for {total} cells x {n_genes} genes = {total * n_genes:,} values; this model "
                f"serves at most {self.max_values:,} per request, {self.max_values // n_genes} cells (split it, or "
                f"set {MAX_VALUES_ENV} where the model is served)",
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
        y = (np.concatenate(labels) if labels else np.empty(0, dtype=object)) if self.bundle.is_conditional else None
        if answer != "records":
            return npz_answer(x, y, genes, csr=answer == "csr")
        out = pd.DataFrame(x, columns=genes)
        if y is not None:
            out[LABEL_COLUMN] = y
        return out


def answer_format(params: dict[str, Any] | None) -> str:
    """params["format"] (default "records"), or a 400 naming the formats there are."""
    value = (params or {}).get("format") or "records"
    if value not in ANSWER_FORMATS:
        raise MlflowException(
            f"format must be one of {', '.join(ANSWER_FORMATS)}; got {value!r}", INVALID_PARAMETER_VALUE
        )
    return str(value)


def npz_answer(x: np.ndarray, labels: np.ndarray | None, genes: Any, csr: bool = False) -> str:
    """The cells as one base64 string of an uncompressed .npz: what JSON can carry at ~1.33 bytes a byte,
    against ~15 bytes a value for records. x dense (`x`), or CSR in scipy's `save_npz` layout; then `genes`
    and (CVAE) `cell_type` as fixed-width unicode arrays, so np.load needs no pickle."""
    import base64
    import io
    import zipfile

    buf = io.BytesIO()
    if csr:
        import scipy.sparse

        scipy.sparse.save_npz(buf, scipy.sparse.csr_matrix(x), compressed=False)
    else:
        np.savez(buf, x=x)
    extra = {"genes": np.asarray(genes, dtype=str)}
    if labels is not None:
        extra[LABEL_COLUMN] = np.asarray(labels, dtype=str)
    with zipfile.ZipFile(buf, "a") as archive:
        for name, array in extra.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return base64.b64encode(buf.getbuffer()).decode("ascii")


def _finite(value: Any) -> float:
    """A JSON cell as a float, NaN when it is not a finite number (strings, None, infinities, booleans: a JSON
    true is not the number 1 to a caller who meant a flag)."""
    if isinstance(value, (bool, np.bool_)):
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


def _integer(value: Any, name: str) -> int:
    """A whole number from a JSON cell (ints may arrive as floats); anything else is a 400."""
    number = _finite(value)
    if not number.is_integer():  # NaN is not
        raise MlflowException(f"{name} must be an integer; got {value!r}", INVALID_PARAMETER_VALUE)
    return int(number)


def _number(value: Any, name: str) -> float:
    """A finite number from a JSON cell; anything else is a 400 (the request checks its range)."""
    number = _finite(value)
    if np.isnan(number):
        raise MlflowException(f"{name} must be a number; got {value!r}", INVALID_PARAMETER_VALUE)
    return number


def signature_for(bundle: Any) -> Any:
    """Input: label (optional), n, seed (optional), sampler (optional), temperature (optional); output: genes
    (+ cell_type); the inference param `format` (records, npz or csr; declared so that the scoring server passes
    it on)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "label", required=False),
            ColSpec("long", "n"),
            ColSpec("long", "seed", required=False),
            ColSpec("string", "sampler", required=False),
            ColSpec("double", "temperature", required=False),
        ]
    )
    params = ParamSchema([ParamSpec("format", "string", ANSWER_FORMATS[0])])
    if bundle.n_genes > MAX_SCHEMA_GENES:
        return ModelSignature(inputs=inputs, params=params)
    columns = [ColSpec("float", gene) for gene in bundle.genes]
    if bundle.is_conditional:
        columns.append(ColSpec("string", LABEL_COLUMN))
    return ModelSignature(inputs=inputs, outputs=Schema(columns), params=params)


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
            model_config={"max_cells_per_request": DEFAULT_MAX_CELLS, "max_values_per_request": DEFAULT_MAX_VALUES},
        )
