"""Score a trained model: generate as many cells as the reference has, label for label, and compare.

    metrics, gen = evaluate_model(result)      # held-out validation cells if any, else the training cells

The metrics are vaexprs.analysis.metrics.evaluate's; this module only brings a model's cells to them, which is
why it lives on the torch side (it generates through gen_exprs) and the analysis package does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaexprs.analysis.metrics import MIN_CELLS, evaluate
from vaexprs.data.preprocess import apply_normalization
from vaexprs.errors import InputError
from vaexprs.model.fit import gen_exprs


def generate_like(result: Any, n: int, labels: Any, seed: int) -> Any:
    """As many cells as a reference has, label for label (`labels`: the reference's; None for a VAE)."""
    if labels is None:
        return gen_exprs(result, num_samples=n, seed=seed)
    names, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return gen_exprs(result, labels={str(k): int(v) for k, v in zip(names, counts, strict=True)}, seed=seed)


def evaluate_model(result: Any, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """Score a freshly trained model: generate as many cells as there are reference cells, label for label.

    The reference is the held-out validation cells when there are any, else the training cells (the metrics
    then say so in `reference`). Counts (nb/zinb) are compared after lognorm with the training mean library
    size. Returns (metrics, the GeneratedCells used), so callers can also plot them.
    """
    held_out = result.x_val is not None and result.x_val.shape[0] >= MIN_CELLS
    real_x = result.x_val if held_out else result.x_train
    real_y = result.y_val if held_out else result.y_train
    if real_x is None:
        raise InputError("no reference cells to evaluate against (a model loaded from disk keeps none)")
    gen = generate_like(result, int(real_x.shape[0]), real_y if result.labels else None, seed + 1)
    gen_x = gen.x_gen
    if gen.value_space == "counts":
        mean_library = result.library_size.train_mean if result.library_size is not None else None
        real_x = apply_normalization(real_x, "lognorm")
        gen_x = apply_normalization(gen_x, "lognorm", mean_library=mean_library)
    labelled = result.labels and real_y is not None
    metrics = evaluate(real_x, gen_x, real_y if labelled else None, gen.y_gen if labelled else None, seed=seed)
    metrics["reference"] = "validation cells" if held_out else "training cells (no held-out validation cells)"
    return metrics, gen
