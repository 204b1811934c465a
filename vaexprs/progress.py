"""Progress bars (rich, which comes with typer) for long work: training epochs, model selection, generation.

    with progress_bar(total=100, what="training", unit="epochs", enabled=None) as bar:
        bar.advance(1, loss=0.52)

`enabled=None` shows the bar where someone watches (a terminal or a notebook) and stays quiet in CI logs and
pipes. The bar goes to stderr, so stdout stays clean for a command's result.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


def interactive() -> bool:
    """A terminal or a Jupyter kernel is watching (and this is not CI)."""
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class ProgressBar:
    """One rich progress bar with a count, an ETA and an optional status text."""

    visible = True

    def __init__(self, total: int, what: str, unit: str = "") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(what, total=total, status="")
        self._progress.start()

    def advance(self, k: int = 1, **status: Any) -> None:
        text = " ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in status.items()
        )
        self._progress.update(self._task, advance=k, status=text)

    def stop(self) -> None:
        self._progress.stop()


class _NoBar:
    visible = False

    def advance(self, k: int = 1, **status: Any) -> None:
        pass

    def stop(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int, what: str, unit: str = "", enabled: bool | None = None) -> Iterator[Any]:
    """A bar while the block runs (or a do-nothing one when not enabled / nobody watches)."""
    bar: Any = ProgressBar(total, what, unit) if (interactive() if enabled is None else enabled) else _NoBar()
    try:
        yield bar
    finally:
        bar.stop()
