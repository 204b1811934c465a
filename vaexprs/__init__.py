"""vaexprs: learn single-cell expression data with a (conditional) VAE and generate realistic cells.

    import vaexprs
    adata = vaexprs.simulate()
    result = vaexprs.fit_vae(adata, "cell_type", epochs=30)
    gen = vaexprs.gen_exprs(result, num_samples=300)

Every public name is imported lazily (PEP 562), so `import vaexprs` stays light: torch, scikit-learn, MLflow
and matplotlib are only imported by the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "simulate": "vaexprs.data",
    "read_expression": "vaexprs.data",
    "fit_vae": "vaexprs.api",
    "gen_exprs": "vaexprs.api",
    "VAEResult": "vaexprs.api",
    "GeneratedCells": "vaexprs.api",
    "export_bundle": "vaexprs.export",
    "load_bundle": "vaexprs.bundle",
    "evaluate": "vaexprs.evaluate",
    "plot_vae": "vaexprs.plots",
    "plot_aug": "vaexprs.plots",
    "InputError": "vaexprs.errors",
    "VaexprsError": "vaexprs.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from vaexprs.api import GeneratedCells, VAEResult, fit_vae, gen_exprs
    from vaexprs.bundle import load_bundle
    from vaexprs.data import read_expression, simulate
    from vaexprs.errors import InputError, VaexprsError
    from vaexprs.evaluate import evaluate
    from vaexprs.export import export_bundle
    from vaexprs.plots import plot_aug, plot_vae


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vaexprs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
