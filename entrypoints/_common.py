"""What every entry-point script shares: the project's code first on sys.path, CLI calls, artifact logging.

The scripts are thin: they turn MLproject parameters into `vaexprs` CLI arguments (so bad input gets the CLI's
one-line message and exit code 2), run the command inside the MLflow run that `mlflow run` opened, and log the
files the command wrote. A non-zero exit makes `mlflow run` mark the run FAILED.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
# The project's own code wins over an installed vaexprs: an env manager's cached environment may hold an
# older copy (conda.yaml installs the package non-editable, so that a deleted checkout cannot break it).
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))


def cli(argv: Sequence[Any]) -> int:
    """Run `vaexprs ARGV...`; the exit code (0 ok, 1 failure, 2 bad input), the message already printed."""
    from vaexprs.cli import main

    return main([str(a) for a in argv])


def optional(flag: str, value: Any) -> list[str]:
    """[flag, value] unless the value is empty (MLproject parameters cannot be absent, only empty)."""
    return [] if value in (None, "") else [flag, str(value)]


def output_path(value: str) -> Path:
    """An output file path; its folder is created (entry points write into outputs/ by default)."""
    path = Path(value).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def flat_metrics(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Finite numbers of a nested metrics dict as MLflow metric names (nested keys joined with '.')."""
    for key, value in values.items():
        name = "".join(c if c.isalnum() or c in "_-./ " else "_" for c in f"{prefix}{key}")
        if isinstance(value, Mapping):
            yield from flat_metrics(value, f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield name, float(value)


def finish(code: int) -> None:
    """Exit with the command's code (inside run_scope, a non-zero code ends the run FAILED)."""
    if code:
        sys.exit(code)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Library calls fail like the CLI: `error: <first line>` on stderr and exit 2 (bad input) or 1."""
    from vaexprs.errors import VaexprsError

    try:
        yield
    except VaexprsError as exc:
        text = str(exc).strip()
        print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        sys.exit(exc.exit_code)


def setup_logging() -> None:
    """vaexprs' progress lines (epochs, export, generation) on stderr, as the CLI prints them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("vaexprs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
