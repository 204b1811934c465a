"""The onnxruntime engine: provider choice, chunked generation, determinism, and the light import path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_fixtures import LABELS, N_GENES, make_bundle
from vaexprs.bundle import load_bundle
from vaexprs.engine import (
    CPU,
    Generator,
    create_session,
    decoder_outputs_to_cells,
    detect_runtime_conflict,
    installed_runtimes,
)
from vaexprs.errors import InputError, VaexprsRuntimeError


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("engine") / "cvae", conditional=True))


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("engine") / "vae", conditional=False))


@pytest.fixture(scope="module")
def cvae_gen(cvae):
    return Generator(cvae, provider="cpu")


def _collect(chunks):
    """Concatenate chunks, copying each as it comes (reused buffers are overwritten by the next chunk)."""
    xs, codes = zip(*((x.copy(), c) for x, c in chunks))
    return np.concatenate(xs), (None if codes[0] is None else np.concatenate(codes))


def test_create_session_cpu(cvae):
    session, active = create_session(cvae.decoder_path, "cpu", threads=1)
    assert active == CPU and session.get_providers()[0] == CPU
    assert [i.name for i in session.get_inputs()] == ["z", "label_onehot"]


def test_auto_provider_logs_choice(cvae, caplog):
    with caplog.at_level("INFO", logger="vaexprs"):
        _, active = create_session(cvae.decoder_path, "auto")
    assert active in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert "provider auto" in caplog.text


def test_cuda_provider_without_cuda_is_refused(cvae):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match=r"--provider cuda requested but CUDAExecutionProvider is not active"):
        create_session(cvae.decoder_path, "cuda")


@pytest.mark.parametrize("bad", ["gpu", "CPU", ""])
def test_bad_provider_string(cvae, bad):
    with pytest.raises(InputError, match=r"provider must be one of auto, cpu, cuda"):
        create_session(cvae.decoder_path, bad)


def test_runtime_conflict_detection(monkeypatch):
    import vaexprs.engine as engine

    assert "onnxruntime" in installed_runtimes()  # this venv has the CPU wheel
    monkeypatch.setattr(engine, "installed_runtimes", lambda: ["onnxruntime"])
    assert detect_runtime_conflict() is None
    monkeypatch.setattr(engine, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"])
    msg = detect_runtime_conflict()
    assert "onnxruntime and onnxruntime-gpu are installed" in msg
    assert "pip uninstall onnxruntime onnxruntime-gpu" in msg and "vaexprs[cpu]" in msg


def test_missing_onnxruntime_says_what_to_install(monkeypatch, cvae):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(InputError, match=r"install vaexprs\[cpu\] or vaexprs\[gpu\]"):
        create_session(cvae.decoder_path, "cpu")


def test_generate_chunks_shapes_and_labels(cvae_gen):
    chunks = list(cvae_gen.generate_chunks(n=20, batch_size=7, seed=3))
    assert [x.shape for x, _ in chunks] == [(7, N_GENES), (7, N_GENES), (6, N_GENES)]
    assert cvae_gen.n_total == 20 and cvae_gen.active_provider == CPU
    x, codes = _collect(chunks)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert codes.shape == (20,) and set(codes) <= {0, 1, 2}


def test_same_seed_same_bytes_different_seed_differs(cvae_gen):
    a, ca = _collect(cvae_gen.generate_chunks(n=50, seed=5, batch_size=16))
    b, cb = _collect(cvae_gen.generate_chunks(n=50, seed=5, batch_size=16, reuse_buffers=True))
    c, _ = _collect(cvae_gen.generate_chunks(n=50, seed=6, batch_size=16))
    assert a.tobytes() == b.tobytes() and np.array_equal(ca, cb)
    assert not np.array_equal(a, c)


def test_reused_buffers_are_overwritten_fresh_ones_are_not(cvae_gen):
    fresh = [x for x, _ in cvae_gen.generate_chunks(n=16, seed=1, batch_size=8)]
    assert not np.shares_memory(fresh[0], fresh[1])
    reused = [x for x, _ in cvae_gen.generate_chunks(n=16, seed=1, batch_size=8, reuse_buffers=True)]
    assert np.shares_memory(reused[0], reused[1])


def test_label_and_per_label_requests(cvae_gen):
    _, codes = _collect(cvae_gen.generate_chunks(n=10, label="group2"))
    assert (codes == LABELS.index("group2")).all()
    _, codes = _collect(cvae_gen.generate_chunks(per_label="group1=3,group3=5"))
    assert np.bincount(codes, minlength=3).tolist() == [3, 0, 5]
    _, codes = _collect(cvae_gen.generate_chunks(per_label={"group2": 4}))
    assert codes.tolist() == [1] * 4


def test_labels_steer_the_decoder(cvae_gen):
    """Cells of different labels differ on average: the one-hot really reaches the graph."""
    x1, _ = _collect(cvae_gen.generate_chunks(n=200, label="group1", seed=1))
    x3, _ = _collect(cvae_gen.generate_chunks(n=200, label="group3", seed=1))
    assert np.abs(x1.mean(0) - x3.mean(0)).max() > 0.1


def test_vae_generation_and_prior_sampler(vae):
    gen = Generator(vae, provider="cpu")
    x, codes = _collect(gen.generate_chunks(n=12, sampler="prior", batch_size=5))
    assert x.shape == (12, N_GENES) and codes is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "positive integer"),
        ({"n": -3}, "positive integer"),
        ({"n": None}, "positive integer"),
        ({"n": 5, "label": "nope"}, "unknown label 'nope'; this model knows: group1, group2, group3"),
        ({"per_label": "group1"}, "cannot parse"),
        ({"per_label": "group1=x"}, "not an integer"),
        ({"per_label": "group1=0"}, "positive integer"),
        ({"n": 5, "label": "group1", "per_label": "group2=3"}, "either --label or --per-label"),
        ({"n": 5, "sampler": "vamp"}, "sampler must be one of gmm, prior"),
        ({"n": 5, "batch_size": 0}, "batch size must be a positive integer"),
        ({"n": 5, "output_space": "counts"}, "output_space 'counts' is not available"),
    ],
)
def test_bad_requests_fail_before_iteration(cvae_gen, kwargs, message):
    with pytest.raises(InputError, match=message):
        cvae_gen.generate_chunks(**kwargs)  # raised on the call itself, not on the first next()


def test_vae_refuses_labels(vae):
    with pytest.raises(InputError, match="no labels"):
        Generator(vae, provider="cpu").generate_chunks(n=5, label="group1")


def test_unknown_likelihood_is_a_runtime_error(cvae):
    import dataclasses

    odd = dataclasses.replace(cvae, likelihood="poisson-lognormal")
    with pytest.raises(VaexprsRuntimeError, match="likelihood 'poisson-lognormal' is not supported"):
        decoder_outputs_to_cells({"x_mean": np.zeros((1, N_GENES))}, odd, np.random.default_rng(0), "lognorm")
    with pytest.raises(VaexprsRuntimeError):
        Generator(odd, provider="cpu")


def test_light_import_path(tmp_path: Path):
    """Generation imports neither torch, scikit-learn, matplotlib nor MLflow."""
    bundle = make_bundle(tmp_path / "b", conditional=True)
    code = textwrap.dedent(
        f"""
        import sys
        import vaexprs.generate, vaexprs.engine, vaexprs.bundle, vaexprs.writers
        heavy = [m for m in ("onnxruntime", "anndata", "h5py", "pandas") if m in sys.modules]
        assert not heavy, f"imported at module level: {{heavy}}"
        vaexprs.generate.generate_to_file({str(bundle)!r}, {str(tmp_path / "out.h5ad")!r}, n=30)
        vaexprs.generate.generate_to_file({str(bundle)!r}, {str(tmp_path / "out.csv")!r}, n=30)
        bad = [m for m in ("torch", "sklearn", "matplotlib", "mlflow") if m in sys.modules]
        assert not bad, f"heavy modules imported: {{bad}}"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.h5ad").exists()


def test_generate_array_accepts_a_warm_generator(cvae_gen):
    """The pyfunc holds one Generator; reusing it gives the same cells as loading the bundle afresh."""
    from vaexprs.generate import generate_array

    x1, l1 = generate_array(cvae_gen, n=10, seed=1)
    x2, l2 = generate_array(cvae_gen.bundle, n=10, seed=1, provider="cpu")
    assert x1.shape == (10, N_GENES) and np.array_equal(x1, x2) and list(l1) == list(l2)
