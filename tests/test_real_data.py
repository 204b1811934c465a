"""The core path on real scRNA-seq data from ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import numpy as np
import pytest

import vaexprs
from tests.conftest import shared_file


@pytest.mark.parametrize("name", ["yan.h5ad", "treutlein.h5ad"])
def test_cvae_on_rpkm_fpkm_data(name):
    adata = vaexprs.read_expression(shared_file(name), label_key="cell_type")
    result = vaexprs.fit_vae(adata, "cell_type", hidden=(64,), epochs=5, seed=1)
    # RPKM/FPKM are not counts: auto must log-transform them (log2(x + 1)), not size-factor them as counts
    assert result.preprocessor.normalize == "log", result.normalize_note
    assert all(np.isfinite(h["loss"]) for h in result.history)
    counts = {label: 20 for label in result.labels}
    gen = vaexprs.gen_exprs(result, labels=counts, seed=1)
    assert set(gen.y_gen) == set(adata.obs["cell_type"].astype(str))
    assert gen.x_gen.shape == (20 * len(counts), adata.n_vars)
    assert np.isfinite(gen.x_gen).all()
    logged = np.log2(np.asarray(adata.X, dtype=np.float64) + 1)
    assert gen.x_gen.min() >= logged.min() - 1e-4
    # plausible: no gene beyond its real maximum plus its own spread (log scale), the value cap of issue 10
    assert (gen.x_gen.max(0) <= logged.max(0) + logged.std(0) + 1e-3).all()
    assert result.data_info["sha256"] and result.data_info["n_cells"] == adata.n_obs
