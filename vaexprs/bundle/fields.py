"""Reading numeric fields of bundle.json (and checkpoints) with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vaexprs.errors import InputError


def numeric_fields(d: Any, where: str, keys: tuple[str, ...]) -> list[np.ndarray]:
    """The float64 arrays of `keys` in object `d` (found at `where`); InputError naming what is missing,
    not numeric or not finite."""
    if not isinstance(d, Mapping):
        raise InputError(f"bundle.json field {where!r} must be an object")
    out = []
    for key in keys:
        if key not in d:
            raise InputError(f"bundle.json is missing field '{where}.{key}'")
        try:
            value = np.asarray(d[key], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"bundle.json field '{where}.{key}' is not numeric: {str(e).splitlines()[0]}") from None
        if not np.isfinite(value).all():
            raise InputError(f"bundle.json field '{where}.{key}' holds NaN or infinite values")
        out.append(value)
    return out
