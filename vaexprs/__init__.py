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
    "simulate": "vaexprs.data.simulate",
    "read_expression": "vaexprs.data.io",
    "fit_vae": "vaexprs.model.fit",
    "gen_exprs": "vaexprs.model.fit",
    "VAEResult": "vaexprs.model.result",
    "GeneratedCells": "vaexprs.model.result",
    "export_bundle": "vaexprs.model.export",
    "load_bundle": "vaexprs.bundle.schema",
    "generate_to_file": "vaexprs.generate.pipeline",
    "generate_array": "vaexprs.generate.pipeline",
    "GenerationRequest": "vaexprs.generate.request",
    "evaluate": "vaexprs.analysis.metrics",
    "plot_vae": "vaexprs.analysis.plots",
    "plot_aug": "vaexprs.analysis.plots",
    "ModelConfig": "vaexprs.config",
    "TrainConfig": "vaexprs.config",
    "DataConfig": "vaexprs.config",
    "InputError": "vaexprs.errors",
    "VaexprsError": "vaexprs.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from vaexprs.analysis.metrics import evaluate
    from vaexprs.analysis.plots import plot_aug, plot_vae
    from vaexprs.bundle.schema import load_bundle
    from vaexprs.config import DataConfig, ModelConfig, TrainConfig
    from vaexprs.data.io import read_expression
    from vaexprs.data.simulate import simulate
    from vaexprs.errors import InputError, VaexprsError
    from vaexprs.generate.pipeline import generate_array, generate_to_file
    from vaexprs.generate.request import GenerationRequest
    from vaexprs.model.export import export_bundle
    from vaexprs.model.fit import fit_vae, gen_exprs
    from vaexprs.model.result import GeneratedCells, VAEResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vaexprs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
