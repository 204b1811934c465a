"""The onnxruntime engine and the one generation loop: providers, blocks, determinism, the light import path."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.onnx_fixtures import LABELS, N_GENES, make_bundle
from vaexprs.bundle.schema import load_bundle
from vaexprs.errors import InputError, OptionError
from vaexprs.generate.engine import CPU, OnnxDecoder, create_session, detect_runtime_conflict, installed_runtimes
from vaexprs.generate.loop import iter_blocks, make_block
from vaexprs.generate.request import GenerationRequest, plan_generation


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("engine") / "cvae", conditional=True))


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("engine") / "vae", conditional=False))


@pytest.fixture(scope="module")
def cvae_dec(cvae):
    return OnnxDecoder(cvae, provider="cpu")


def _run(decoder, **request):
    """Every block of a request, concatenated: (x, codes or None, block sizes)."""
    spec = decoder.bundle.spec
    blocks = list(iter_blocks(spec, plan_generation(spec, GenerationRequest(**request)), decoder))
    codes = None if blocks[0].codes is None else np.concatenate([b.codes for b in blocks])
    return np.concatenate([b.x for b in blocks]), codes, [b.x.shape[0] for b in blocks]


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
    import vaexprs.generate.engine as engine

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


def test_blocks_shapes_and_labels(cvae_dec):
    x, codes, sizes = _run(cvae_dec, n=20, batch_size=7, seed=3)
    assert sizes == [7, 7, 6] and cvae_dec.active_provider == CPU
    assert x.shape == (20, N_GENES) and x.dtype == np.float32 and np.isfinite(x).all()
    assert codes.shape == (20,) and set(codes) <= {0, 1, 2}


def test_same_seed_same_bytes_different_seed_differs(cvae_dec):
    a, ca, _ = _run(cvae_dec, n=50, seed=5, batch_size=16)
    b, cb, _ = _run(cvae_dec, n=50, seed=5, batch_size=16)
    c, _, _ = _run(cvae_dec, n=50, seed=6, batch_size=16)
    assert a.tobytes() == b.tobytes() and np.array_equal(ca, cb)
    assert not np.array_equal(a, c)


def test_a_block_depends_only_on_seed_and_block_size(cvae_dec):
    """Blocks made alone, in any order (as Dask workers do), are the blocks of the whole run."""
    spec = cvae_dec.bundle.spec
    plan = plan_generation(spec, GenerationRequest(n=40, seed=9, batch_size=16))
    whole = [b.x for b in iter_blocks(spec, plan, cvae_dec)]
    for k in (2, 0, 1):
        block = make_block(spec, plan, k, cvae_dec)
        assert block.start == 16 * k and np.array_equal(block.x, whole[k])
    longer = plan_generation(spec, GenerationRequest(n=400, seed=9, batch_size=16))
    assert np.array_equal(make_block(spec, longer, 1, cvae_dec).x, whole[1])  # more cells: the same first blocks


def test_label_and_per_label_requests(cvae_dec):
    _, codes, _ = _run(cvae_dec, n=10, label="group2")
    assert (codes == LABELS.index("group2")).all()
    _, codes, _ = _run(cvae_dec, per_label="group1=3,group3=5", batch_size=3)
    assert codes.tolist() == [0, 0, 0, 2, 2, 2, 2, 2]
    _, codes, _ = _run(cvae_dec, per_label={"group2": 4})
    assert codes.tolist() == [1] * 4
    assert _run(cvae_dec, n=4, per_label={"group2": 4})[0].shape[0] == 4  # n may say the counts' total


def test_a_cell_count_beside_per_label_counts_must_agree(cvae_dec):
    """Every surface (generate_array, generate_to_file, gen_exprs, the CLI) plans here: n was dropped silently."""
    with pytest.raises(OptionError, match=r"^n is 500 but per_label asks for 8 cells; give one of them") as info:
        plan_generation(cvae_dec.bundle.spec, GenerationRequest(n=500, per_label="group1=3,group3=5"))
    assert info.value.message(lambda o: f"--{o.replace('_', '-')}").startswith("--n is 500 but --per-label asks")


def test_labels_steer_the_decoder(cvae_dec):
    """Cells of different labels differ on average: the one-hot really reaches the graph."""
    x1, _, _ = _run(cvae_dec, n=200, label="group1", seed=1)
    x3, _, _ = _run(cvae_dec, n=200, label="group3", seed=1)
    assert np.abs(x1.mean(0) - x3.mean(0)).max() > 0.1


def test_vae_generation_and_prior_sampler(vae):
    x, codes, _ = _run(OnnxDecoder(vae, provider="cpu"), n=12, sampler="prior", batch_size=5)
    assert x.shape == (12, N_GENES) and codes is None


def _latents(decoder, **request):
    spec = decoder.bundle.spec
    blocks = list(iter_blocks(spec, plan_generation(spec, GenerationRequest(**request)), decoder))
    return np.concatenate([b.latent for b in blocks]), np.concatenate([b.x for b in blocks])


def test_temperature_scales_the_latent_draws_around_their_components(cvae_dec, vae):
    """The same random stream at every temperature: t = 1 is the default's cells bit for bit, and a draw's
    distance from its mixture component's mean (the prior's from 0) shrinks by exactly t; t = 0 draws the means."""
    spec = cvae_dec.bundle.spec
    request = {"n": 60, "label": "group2", "seed": 4, "batch_size": 25}
    z1, x1 = _latents(cvae_dec, **request)
    z_default, x_default = _latents(cvae_dec, **request, temperature=1.0)
    assert z1.tobytes() == z_default.tobytes() and x1.tobytes() == x_default.tobytes()
    means = spec.sampler.mixtures[LABELS.index("group2")].means  # (K, D): the label's components
    z_half, x_half = _latents(cvae_dec, **request, temperature=0.5)
    assert not np.array_equal(x_half, x1)
    # z_t = m + t (z_1 - m) for the component m each draw came from, so (z_t - t z_1) / (1 - t) is that mean
    implied = (z_half.astype(np.float64) - 0.5 * z1) / 0.5
    nearest = np.abs(implied[:, None, :] - means[None]).max(-1).min(1)
    assert nearest.max() < 1e-5 and means.shape[0] > 1
    z0, _ = _latents(cvae_dec, **request, temperature=0.0)  # t = 0: the component means themselves
    assert np.abs(z0[:, None, :] - means[None]).max(-1).min(1).max() < 1e-5
    prior_decoder = OnnxDecoder(vae, provider="cpu")
    p1, _ = _latents(prior_decoder, n=12, sampler="prior", seed=2)
    p_cold, _ = _latents(prior_decoder, n=12, sampler="prior", seed=2, temperature=0.25)
    np.testing.assert_allclose(p_cold, 0.25 * p1, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be between 1 and"),
        ({"n": 5, "temperature": 2.5}, "temperature must be between 0 and 2; got 2.5"),
        ({"n": 5, "temperature": -0.1}, "temperature must be between 0 and 2"),
        ({"n": 5, "temperature": float("nan")}, "temperature must be a finite number"),
        ({"n": -3}, "n must be between 1 and"),
        ({"n": None}, "n is needed"),
        ({"n": 5, "label": "nope"}, "label 'nope' is unknown; this model knows: group1, group2, group3"),
        ({"per_label": "group1"}, "cannot parse"),
        ({"per_label": "group1=x"}, "not an integer"),
        ({"per_label": "group1=0"}, "positive integer"),
        ({"per_label": "group1=3,group1=4"}, "names label 'group1' twice"),
        ({"n": 5, "label": "group1", "per_label": "group2=3"}, "either a label or a count per label"),
        ({"n": 5, "sampler": "vamp"}, "sampler must be one of gmm, prior"),
        ({"n": 5, "batch_size": 0}, "batch_size must be between 1 and"),
        ({"n": 5, "output_space": "counts"}, "output_space 'counts' is not available"),
    ],
)
def test_bad_requests_fail_before_any_work(cvae, kwargs, message):
    with pytest.raises(InputError, match=message):
        plan_generation(cvae.spec, GenerationRequest(**kwargs))


def test_bad_requests_name_the_cli_flag(cvae):
    with pytest.raises(OptionError) as info:
        GenerationRequest(n=0)
    assert info.value.message(lambda name: "--n-cells").startswith("--n-cells must be between 1")


def test_vae_refuses_labels(vae):
    with pytest.raises(InputError, match="no labels"):
        plan_generation(vae.spec, GenerationRequest(n=5, label="group1"))


def test_generate_array_accepts_a_warm_decoder(cvae_dec):
    """The pyfunc holds one decoder; reusing it gives the same cells as loading the bundle afresh."""
    from vaexprs.generate.pipeline import generate_array

    x1, l1 = generate_array(cvae_dec, n=10, seed=1)
    x2, l2 = generate_array(cvae_dec.bundle, n=10, seed=1, provider="cpu")
    assert x1.shape == (10, N_GENES) and np.array_equal(x1, x2) and list(l1) == list(l2)
