"""The simulated data of the VAExprs vignette: groups of cells with planted differentially expressed genes.

adata = simulate(groups=3, cells=100, genes=1000, deg=100, seed=1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vaexprs.config import check_seed
from vaexprs.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

MAX_SIMULATED_VALUES = 200_000_000  # cells x genes: 800 MB of float32


def simulate(groups: int = 3, cells: int = 100, genes: int = 1000, deg: int = 100, seed: int = 1) -> AnnData:
    """The VAExprs vignette's data: `groups` x `cells` cells, `genes` genes, N(5, 5) noise.

    In group i, genes deg*(i-1)+1 .. deg*i are set to genes 1..deg of the same cells plus a per-gene
    N(6, 10) shift (the vignette's own recipe), then negatives are clipped to 0. numpy's generator replaces
    R's, so the recipe is the same but the numbers are not R's.
    """
    import anndata as ad
    import pandas as pd

    seed = check_seed(seed)
    if min(groups, cells, genes, deg) < 1:
        raise InputError("simulate: groups, cells, genes and deg must all be positive integers")
    if groups * cells * genes > MAX_SIMULATED_VALUES:
        raise InputError(
            f"simulate: {groups} x {cells} cells x {genes} genes is {groups * cells * genes:,} values; "
            f"the limit is {MAX_SIMULATED_VALUES:,}"
        )
    if groups * deg > genes:
        raise InputError(f"simulate: groups x deg = {groups * deg} differentially expressed genes > genes = {genes}")
    rng = np.random.default_rng(seed)
    n = groups * cells
    x = rng.normal(5.0, 5.0, size=(n, genes))  # cells x genes: the same fill order as R's column-major mat
    for i in range(groups):
        rows = slice(i * cells, (i + 1) * cells)
        shift = rng.normal(6.0, 10.0, size=deg)  # one shift per gene, recycled over the group's cells
        x[rows, i * deg : (i + 1) * deg] = x[rows, :deg] + shift
    np.clip(x, 0.0, None, out=x)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.repeat([f"group{i + 1}" for i in range(groups)], cells))},
        index=[f"cell{i + 1}" for i in range(n)],
    )
    var = pd.DataFrame(index=[f"gene{j + 1}" for j in range(genes)])
    adata = ad.AnnData(x.astype(np.float32), obs=obs, var=var)
    adata.uns["simulation"] = {"groups": groups, "cells": cells, "genes": genes, "deg": deg, "seed": seed}
    return adata
