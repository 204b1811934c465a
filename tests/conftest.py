"""Shared fixtures: the vignette's simulated data and small trained models (trained once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("VAEXPRS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def sim():
    import vaexprs

    return vaexprs.simulate(groups=3, cells=100, genes=1000, deg=100, seed=1)


@pytest.fixture(scope="session")
def small_sim():
    import vaexprs

    return vaexprs.simulate(groups=3, cells=30, genes=120, deg=20, seed=2)


@pytest.fixture(scope="session")
def cvae_result(sim):
    """The issue's reference CVAE: hidden 512, latent 2, batch 32, 30 epochs on the vignette data."""
    import vaexprs

    return vaexprs.fit_vae(
        sim, "cell_type", hidden=(512,), latent_dim=2, batch_size=32, epochs=30, seed=1, likelihood="bce"
    )


@pytest.fixture(scope="session")
def small_cvae(small_sim):
    import vaexprs

    return vaexprs.fit_vae(small_sim, "cell_type", hidden=(32,), latent_dim=2, epochs=3, seed=3, likelihood="bce")


@pytest.fixture(scope="session")
def small_vae(small_sim):
    import vaexprs

    return vaexprs.fit_vae(small_sim, hidden=(32,), latent_dim=2, epochs=3, seed=3, likelihood="bce")


@pytest.fixture(scope="session")
def cvae_bundle(small_cvae, tmp_path_factory):
    """The small CVAE exported to an ONNX bundle folder."""
    import vaexprs

    return vaexprs.export_bundle(small_cvae, tmp_path_factory.mktemp("bundles") / "cvae")


@pytest.fixture(scope="session")
def vae_bundle(small_vae, tmp_path_factory):
    import vaexprs

    return vaexprs.export_bundle(small_vae, tmp_path_factory.mktemp("bundles") / "vae")


def light_python() -> str:
    """The interpreter of the light install (vaexprs[cpu], no torch), or skip when it was not set up."""
    path = Path(os.environ.get("VAEXPRS_LIGHT_PYTHON", Path(__file__).resolve().parents[1] / ".venv-light/bin/python"))
    if not path.exists():
        pytest.skip(f"light virtualenv not found at {path} (make setup-light)")
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_mlflow_environment():
    """MLFLOW_* variables set by one test (vaexprs sets MLFLOW_TRACKING_URI for its subprocesses) never reach
    the next one."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)


def export_and_compare(result, folder: Path, outputs: list[str], n: int = 80, seed: int = 4, atol: float = 1e-4):
    """Export `result`'s bundle (export_bundle raises unless its ONNX graphs match torch), check its decoder's
    outputs, and check that the light path (onnxruntime) makes the API's cells; returns (bundle, its cells)."""
    import json

    import numpy as np

    import vaexprs
    from vaexprs.generate.pipeline import generate_array

    bundle = vaexprs.export_bundle(result, folder)
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["likelihood"] == result.model_config.likelihood
    assert spec["onnx"]["encoder"]["parity_max_abs_diff"] < 1e-4
    assert [o["name"] for o in spec["onnx"]["decoder"]["outputs"]] == outputs
    x, labels = generate_array(bundle, n=n, seed=seed)
    api = vaexprs.gen_exprs(result, num_samples=n, seed=seed)
    np.testing.assert_allclose(x, api.x_gen, rtol=1e-4, atol=atol)  # one loop, one sampler: ORT vs torch floats
    assert list(labels) == list(api.y_gen)
    return bundle, x
