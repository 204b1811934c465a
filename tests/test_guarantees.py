"""The guarantees a hostile user tests: nothing lost (--force, races), nothing runaway (bounds), clean failures
(disk full, signals), and bundles that are what they claim (integrity), with fuzzed bundle.json files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.onnx_fixtures import copy_bundle, edit_bundle_json, make_bundle
from vaexprs.bundle.schema import load_bundle
from vaexprs.errors import InputError

PYTHON = sys.executable


def cli(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    """`python -m vaexprs ARGS` in a fresh interpreter: (exit code, stdout, stderr)."""
    done = subprocess.run(
        [PYTHON, "-m", "vaexprs", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout, done.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def cvae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("guarantees") / "cvae", conditional=True)


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory, small_sim) -> Path:
    from vaexprs.data.io import write_anndata

    return write_anndata(small_sim, tmp_path_factory.mktemp("data") / "sim.h5ad")


# ------------------------------------------------------------------------------------------ nothing lost


def test_force_never_deletes_the_input_or_the_working_folder(tmp_path: Path, sim_file: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sim_file, data / "sim.h5ad")
    (data / "notes.txt").write_text("mine")
    code, _, err = cli("train", data / "sim.h5ad", "-o", data, "--force", "--epochs", "1", cwd=tmp_path)
    assert code == 2 and "holds the input" in one_error_line(err)
    code, _, err = cli("train", data / "sim.h5ad", "-o", ".", "--force", "--epochs", "1", cwd=data)
    assert code == 2 and "working folder" in one_error_line(err)
    code, _, err = cli("train", data / "sim.h5ad", "--checkpoint", data / "sim.h5ad", "--force", cwd=tmp_path)
    assert code == 2 and "is the input data" in one_error_line(err)
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt", "sim.h5ad"]
    assert (data / "notes.txt").read_text() == "mine"


def test_evaluate_never_writes_over_its_inputs_and_asks_before_replacing_plots(tmp_path: Path, cvae_dir: Path):
    """evaluate -o GEN --force used to replace the generated cells with the metrics JSON; its plots replaced
    earlier ones without --force."""
    from vaexprs.files import file_sha256

    real, gen = tmp_path / "real.h5ad", tmp_path / "gen.h5ad"
    assert cli("generate", cvae_dir, "-n", "60", "--seed", "7", "-o", real)[0] == 0
    assert cli("generate", cvae_dir, "-n", "60", "-o", gen)[0] == 0
    os.link(gen, tmp_path / "gen_link.h5ad")  # the same file by another name
    before = {p: file_sha256(p) for p in (real, gen)}
    for target in (real, gen, tmp_path / "gen_link.h5ad"):
        code, _, err = cli("evaluate", real, gen, "-o", target, "--force")
        assert code == 2 and "is the input" in one_error_line(err), target
    assert {p: file_sha256(p) for p in (real, gen)} == before
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "heatmap.png").write_text("mine")
    code, _, err = cli("evaluate", real, gen, "--plots", plots)
    assert code == 2 and "heatmap.png exists; pass --force" in one_error_line(err)
    assert (plots / "heatmap.png").read_text() == "mine" and sorted(p.name for p in plots.iterdir()) == ["heatmap.png"]
    code, _, err = cli("evaluate", real, gen, "--plots", plots, "--force")
    assert code == 0, err
    assert sorted(p.name for p in plots.iterdir()) == ["augmentation_pca.png", "heatmap.png"]
    assert (plots / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = cli("evaluate", real, gen, "--plots", plots)  # both exist: the message names both
    assert code == 2 and "heatmap.png and " in one_error_line(err) and "augmentation_pca.png exist; pass --force" in err


def test_an_existing_output_names_the_switch_of_the_way_it_was_run(tmp_path: Path, cvae_dir: Path):
    """Under `mlflow run` the switch is the entry point's force parameter, not --force."""
    out = tmp_path / "out.h5ad"
    out.write_text("precious")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    code, _, err = cli("generate", cvae_dir, "-n", "5", "-o", out, env=env)
    assert code == 2 and one_error_line(err).endswith("out.h5ad exists; pass --force to overwrite it")
    code, _, err = cli("generate", cvae_dir, "-n", "5", "-o", out, env={**env, "MLFLOW_RUN_ID": "0" * 32})
    assert code == 2 and one_error_line(err).endswith("out.h5ad exists; pass -P force=true to overwrite it")
    assert out.read_text() == "precious"


def test_force_replaces_a_bundle_but_not_a_folder_with_other_files(tmp_path: Path, small_cvae):
    from vaexprs.model.export import export_bundle

    out = export_bundle(small_cvae, tmp_path / "bundle")
    first = (out / "bundle.json").read_text()
    with pytest.raises(InputError, match="exists and is not empty; pass --force"):
        export_bundle(small_cvae, out)
    export_bundle(small_cvae, out, force=True, seed=3)
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "decoder.onnx", "encoder.onnx"]
    assert (out / "bundle.json").read_text() != first  # replaced (a new export time)
    (out / "README.txt").write_text("my notes")
    with pytest.raises(InputError, match=r"is not a vaexprs bundle folder \(README.txt\)"):
        export_bundle(small_cvae, out, force=True)
    assert (out / "README.txt").read_text() == "my notes" and (out / "decoder.onnx").exists()


def test_a_file_that_appears_meanwhile_is_not_overwritten(tmp_path: Path, cvae_dir: Path, monkeypatch):
    import vaexprs.generate.loop as loop
    from vaexprs.generate.pipeline import generate_to_file

    out = tmp_path / "gen.h5ad"
    real = loop.outputs_to_cells

    def appear(*args, **kwargs):
        if not out.exists():
            out.write_text("someone else's")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "outputs_to_cells", appear)
    with pytest.raises(InputError, match="exists; pass --force"):
        generate_to_file(cvae_dir, out, n=50, provider="cpu")
    assert out.read_text() == "someone else's" and temp_files(tmp_path) == []


def test_two_concurrent_runs_without_force_never_both_win(tmp_path: Path, cvae_dir: Path):
    out = tmp_path / "gen.npy"
    cmd = [PYTHON, "-m", "vaexprs", "generate", str(cvae_dir), "-n", "200000", "-o", str(out), "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    errors = [p.stderr.read() for p in procs]
    assert codes == [0, 2], errors
    assert any("exists; pass --force" in e for e in errors)
    assert np.load(out).shape == (200000, 50) and temp_files(tmp_path) == []


def test_outputs_follow_the_umask(tmp_path: Path, cvae_dir: Path, small_cvae):
    from vaexprs.generate.pipeline import generate_to_file
    from vaexprs.model.export import export_bundle

    old = os.umask(0o027)
    try:
        generate_to_file(cvae_dir, tmp_path / "g.h5ad", n=10, provider="cpu")
        bundle = export_bundle(small_cvae, tmp_path / "b")
    finally:
        os.umask(old)
    assert (tmp_path / "g.h5ad").stat().st_mode & 0o777 == 0o640
    assert bundle.stat().st_mode & 0o777 == 0o750
    assert (bundle / "bundle.json").stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------------ disk full


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_output_that_cannot_fit_is_refused_before_any_work(tiny_disk: Path, cvae_dir: Path):
    code, _, err = cli("generate", cvae_dir, "-n", "100000", "-o", tiny_disk / "g.h5ad")
    line = one_error_line(err)
    assert code == 2 and re.search(r"g.h5ad needs about \d+\.\d MB but .* has \d+\.\d MB free", line), line
    assert list(tiny_disk.iterdir()) == []


@pytest.mark.parametrize("suffix", [".h5ad", ".csv", ".npy"])
def test_disk_full_mid_write_is_one_clean_line_and_keeps_the_old_output(tiny_disk: Path, cvae_dir: Path, suffix):
    """The free-space check is fooled (another process filling the disk meanwhile): the writer still fails
    cleanly: exit 1, one line, no crash (HDF5 never meets the full disk), no temp file, the old output intact."""
    out = tiny_disk / f"g{suffix}"
    out.write_bytes(b"old")
    code = (
        "import sys, vaexprs.files as f, vaexprs.generate.writers as w\n"
        "f.check_free_space = w.check_free_space = lambda path, needed: None\n"
        "from vaexprs.cli import main\n"
        f"sys.exit(main(['generate', {str(cvae_dir)!r}, '-n', '60000', '-o', {str(out)!r}, '--force', '-q']))\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]  # not 139 (segfault)
    assert one_error_line(done.stderr).startswith(f"error: could not write {out}: No space left on device")
    assert sorted(p.name for p in tiny_disk.iterdir()) == [out.name] and out.read_bytes() == b"old"


@pytest.fixture(scope="module")
def counts_bundle(tmp_path_factory, small_sim) -> Path:
    """A bundle whose cells are sampled counts: written as a growing CSR matrix."""
    import numpy as np

    import vaexprs

    data = small_sim.copy()
    data.X = np.random.default_rng(0).poisson(data.X / 20).astype(np.float32)
    result = vaexprs.fit_vae(data, "cell_type", likelihood="nb", hidden=(16,), epochs=2, seed=1)
    return vaexprs.export_bundle(result, tmp_path_factory.mktemp("guarantees") / "nb")


def generate_with_the_space_check_fooled(bundle: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`vaexprs generate -n 200000` in a child whose free-space checks always pass (another process filling the
    disk meanwhile), so the writer meets the full disk itself."""
    args = ["generate", str(bundle), "-n", "200000", "-o", str(out), *extra, "-q"]
    code = (
        "import sys, vaexprs.files as f, vaexprs.generate.writers as w\n"
        "f.check_free_space = w.check_free_space = lambda path, needed: None\n"
        f"from vaexprs.cli import main\nsys.exit(main({args!r}))\n"
    )
    return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)


def test_disk_full_while_a_sparse_x_grows_is_one_clean_line(tiny_disk: Path, counts_bundle: Path):
    """Sparse .h5ad output claims its disk blocks chunk by chunk: a disk that fills meanwhile is still one
    clean line, exit 1, no temp file, the old output intact."""
    out = tiny_disk / "g.h5ad"
    out.write_bytes(b"old")
    done = generate_with_the_space_check_fooled(counts_bundle, out, "--force")
    assert done.returncode == 1, done.stderr[-2000:]
    assert one_error_line(done.stderr).startswith(f"error: could not write {out}: No space left on device")
    assert sorted(p.name for p in tiny_disk.iterdir()) == [out.name] and out.read_bytes() == b"old"


def test_disk_full_while_a_sparse_zarr_store_grows_is_one_clean_line(tiny_disk: Path, counts_bundle: Path):
    """Sparse .zarr output appends its values chunk by chunk: a disk that fills meanwhile is one clean line,
    exit 1, and no store (not even its temp folder) is left."""
    done = generate_with_the_space_check_fooled(counts_bundle, tiny_disk / "g.zarr")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "No space left on device" in one_error_line(done.stderr)
    assert list(tiny_disk.iterdir()) == []


def test_simulate_on_a_full_disk_fails_cleanly(tiny_disk: Path):
    code = (
        "import sys, vaexprs.data.io as io\n"
        "io.check_free_space = lambda path, needed: None\n"
        "from vaexprs.cli import main\n"
        f"sys.exit(main(['simulate', '-o', {str(tiny_disk / 's.h5ad')!r}, '--cells', '300']))\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "No space left on device" in one_error_line(done.stderr) and list(tiny_disk.iterdir()) == []


# ------------------------------------------------------------------------------------------ bounds


def test_requests_are_bounded_before_any_work(tmp_path: Path, cvae_dir: Path):
    code, _, err = cli("generate", cvae_dir, "-n", 10**12, "-o", tmp_path / "x.h5ad")
    assert code == 2 and "--n-cells must be between 1 and 10000000000" in one_error_line(err)
    code, _, err = cli("generate", cvae_dir, "-n", 10**10, "-o", tmp_path / "x.h5ad")
    assert code == 2 and "needs about" in one_error_line(err)
    code, _, err = cli("generate", cvae_dir, "-n", 10, "--threads", 100000, "-o", tmp_path / "x.h5ad")
    assert code == 2 and "--threads must be between 0" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_labels_are_drawn_per_block_so_memory_is_flat_in_n(cvae_dir: Path):
    """A ten-billion-cell CVAE plan holds no per-cell array; any block's labels come from (seed, block) alone."""
    import tracemalloc

    from vaexprs.generate.request import GenerationRequest, plan_generation

    spec = load_bundle(cvae_dir).spec
    tracemalloc.start()
    plan = plan_generation(spec, GenerationRequest(n=10**10, seed=4))
    far = plan.block_codes(plan.n_blocks - 1, plan.block_rng(plan.n_blocks - 1))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000 and far.shape == (plan.n_total - (plan.n_blocks - 1) * plan.batch_size,)
    counts = plan_generation(spec, GenerationRequest(per_label={"group1": 10**9, "group3": 10**9}, batch_size=1000))
    middle = counts.block_codes(10**6 - 1, counts.block_rng(0))  # the block that straddles the two labels
    assert middle.tolist() == [0] * 1000 and counts.block_codes(10**6, counts.block_rng(0)).tolist() == [2] * 1000


def _served_context(bundle: Path, model_config: dict) -> Any:
    """What MLflow hands the served model's load_context: the bundle artifact and the model config."""
    return types.SimpleNamespace(artifacts={"bundle": str(bundle)}, model_config=model_config)


def _served_model(bundle: Path, model_config: dict) -> Any:
    from vaexprs.generate.pyfunc import VaexprsGenerator

    model = VaexprsGenerator()
    model.load_context(_served_context(bundle, model_config))
    return model


def test_served_model_refuses_oversized_requests(cvae_dir: Path, monkeypatch):
    pd = pytest.importorskip("pandas")
    from mlflow.exceptions import MlflowException

    model = _served_model(cvae_dir, {"max_cells_per_request": 1000})
    assert model.predict(None, pd.DataFrame({"n": [600, 400]})).shape == (1000, 51)
    with pytest.raises(MlflowException, match="asks for 1001 cells; this model serves at most 1000") as info:
        model.predict(None, pd.DataFrame({"n": [600, 401]}))
    assert info.value.get_http_status_code() == 400
    monkeypatch.setenv("VAEXPRS_MAX_CELLS_PER_REQUEST", "5000")
    model.load_context(_served_context(cvae_dir, {"max_cells_per_request": 1000}))
    assert model.predict(None, pd.DataFrame({"n": [3000]})).shape == (3000, 51)


def test_served_model_bounds_the_values_of_an_answer_not_only_its_cells(cvae_dir: Path, monkeypatch):
    """The cell limit alone let a 20,000-gene model answer 100,000 cells: 8 GB of values, a server killed."""
    pd = pytest.importorskip("pandas")
    from mlflow.exceptions import MlflowException

    model = _served_model(cvae_dir, {"max_values_per_request": 50 * 300})  # 50 genes (and the label column)
    assert model.predict(None, pd.DataFrame({"n": [200, 100]})).shape == (300, 51)
    with pytest.raises(MlflowException, match=r"301 cells x 50 genes = 15,050 values; .* 15,000 .* 300 cells") as info:
        model.predict(None, pd.DataFrame({"n": [200, 101]}))
    assert info.value.get_http_status_code() == 400
    monkeypatch.setenv("VAEXPRS_MAX_VALUES_PER_REQUEST", "0")
    with pytest.raises(MlflowException, match="VAEXPRS_MAX_VALUES_PER_REQUEST must be a positive integer; got '0'"):
        model.load_context(_served_context(cvae_dir, {}))


def test_served_model_takes_a_temperature_column(cvae_dir: Path):
    """A row's temperature reaches the sampler (1 or missing: the default's cells); out of range is a 400."""
    pd = pytest.importorskip("pandas")
    from mlflow.exceptions import MlflowException

    model = _served_model(cvae_dir, {})
    plain = model.predict(None, pd.DataFrame({"n": [40], "seed": [2]}))
    rows = model.predict(None, pd.DataFrame({"n": [40, 40], "seed": [2, 2], "temperature": [1.0, 0.3]}))
    assert rows.iloc[:40].equals(plain) and not rows.iloc[40:].reset_index(drop=True).equals(plain)
    for bad, message in ((2.5, "temperature must be between 0 and 2"), ("hot", "temperature must be a number")):
        with pytest.raises(MlflowException, match=message) as info:
            model.predict(None, pd.DataFrame({"n": [5], "temperature": [bad]}))
        assert info.value.get_http_status_code() == 400


def test_served_model_refuses_booleans_for_numbers(cvae_dir: Path):
    """A JSON true is a flag, not the number 1: n, seed and temperature refuse it with a 400 naming the column."""
    pd = pytest.importorskip("pandas")
    from mlflow.exceptions import MlflowException

    model = _served_model(cvae_dir, {})
    for frame, message in (
        ({"n": [True]}, "n must be an integer; got True"),
        ({"n": [5], "seed": [False]}, "seed must be an integer; got False"),
        ({"n": [5], "temperature": [True]}, "temperature must be a number; got True"),
    ):
        with pytest.raises(MlflowException, match=message) as info:
            model.predict(None, pd.DataFrame(frame))
        assert info.value.get_http_status_code() == 400


# ------------------------------------------------------------------------------------------ signals


@pytest.mark.parametrize(
    ("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_signals_exit_with_their_code_and_leave_no_temp_file(tmp_path: Path, cvae_dir: Path, sig, code, word):
    out = tmp_path / "big.h5ad"
    proc = subprocess.Popen(
        [PYTHON, "-m", "vaexprs", "generate", str(cvae_dir), "-n", "3000000", "-o", str(out), "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not temp_files(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert temp_files(tmp_path), "the run never started writing"
    proc.send_signal(sig)
    returncode, err = proc.wait(timeout=60), proc.stderr.read()
    assert returncode == code, err  # stderr says what the signal became where it is not the signal's code
    assert err.strip().splitlines()[-1] == f"error: {word}"  # the one-line form of every failure
    assert list(tmp_path.iterdir()) == []


def test_sigterm_ends_a_tracked_training_killed_with_its_partial_checkpoint(tmp_path: Path, sim_file: Path):
    from mlflow import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.Popen(
        [PYTHON, "-m", "vaexprs", "train", str(sim_file), "--track", "--experiment", "sig", "--epochs", "100000",
         "--patience", "0", "--hidden", "16", "--likelihood", "bce"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("epoch 3/"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, "".join(lines) + proc.stderr.read()
    os.environ["MLFLOW_TRACKING_URI"], previous = env["MLFLOW_TRACKING_URI"], os.environ.get("MLFLOW_TRACKING_URI")
    try:
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        (run,) = client.search_runs([client.get_experiment_by_name("sig").experiment_id])
        assert run.info.status == "KILLED"
        assert "model_partial.pt" in [
            a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "checkpoint")
        ]
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


# ------------------------------------------------------------------------------------------ bundle integrity


def _mixture(folder: Path, **changes):
    data = json.loads((folder / "bundle.json").read_text())
    data["sampler"]["mixtures"][0].update(changes)
    (folder / "bundle.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda f: _mixture(f, means=[[float("nan"), 0.0]] * 2), "NaN, which JSON does not allow"),
        (lambda f: _mixture(f, covariances=[[[1.0, 0.5], [0.0, 1.0]]] * 2), "must be symmetric"),
        (lambda f: _mixture(f, covariances=[[[1.0, 2.0], [2.0, 1.0]]] * 2), "must be positive definite"),
        (lambda f: _mixture(f, weights=[0.2, 0.2]), "must be >= 0 and sum to 1; they sum to 0.4"),
        (lambda f: edit_bundle_json(f, likelihood="poisson"), "likelihood 'poisson' is not one this vaexprs knows"),
        (lambda f: edit_bundle_json(f, normalize="zscore"), "'normalize' must be one of lognorm, log, none"),
        (lambda f: edit_bundle_json(f, output_space="counts"), "'output_space' of a bce model must be one of"),
        (
            lambda f: edit_bundle_json(f, scaler={"folded_into_graph": "yes"}),
            "folded_into_graph' must be true or false",
        ),
        (lambda f: (f / "bundle.json").write_text("[" * 100000 + "]" * 100000), "nested too deeply"),
        (lambda f: (f / "bundle.json").write_text('{"a": ' + "[" * 20 + "1" + "]" * 20 + "}"), "more than 16 levels"),
        (lambda f: os.truncate(f / "bundle.json", 300 << 20), "a bundle.json is at most"),
    ],
)
def test_a_bundle_that_is_not_what_it_claims_is_refused_with_exit_2(tmp_path: Path, cvae_dir: Path, tamper, message):
    folder = copy_bundle(cvae_dir, tmp_path / "b")
    tamper(folder)
    code, _, err = cli("generate", folder, "-n", "5", "-o", tmp_path / "x.h5ad")
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "x.h5ad").exists()


def test_links_and_files_outside_the_bundle_are_refused(tmp_path: Path, cvae_dir: Path):
    outside = copy_bundle(cvae_dir, tmp_path / "outside")
    folder = copy_bundle(cvae_dir, tmp_path / "b")
    (folder / "decoder.onnx").unlink()
    (folder / "decoder.onnx").symlink_to(outside / "decoder.onnx")
    with pytest.raises(InputError, match="is a symbolic link"):
        load_bundle(folder)
    edit_bundle_json(
        folder,
        onnx={
            "decoder": {
                **json.loads((outside / "bundle.json").read_text())["onnx"]["decoder"],
                "file": "../outside/decoder.onnx",
            }
        },
    )
    with pytest.raises(InputError, match="must be a file name inside the bundle"):
        load_bundle(folder)
    with pytest.raises(InputError, match=r"has no bundle.json \(give the bundle folder itself\)"):
        from vaexprs.generate.pipeline import generate_array

        generate_array(tmp_path, n=5)  # a parent folder is never searched


def test_external_weights_and_a_changed_encoder_are_refused(tmp_path: Path, small_cvae):
    import onnx

    from vaexprs.files import file_sha256
    from vaexprs.generate.pipeline import generate_array
    from vaexprs.model.export import export_bundle

    folder = export_bundle(small_cvae, tmp_path / "b")
    model = onnx.load(str(folder / "decoder.onnx"))
    onnx.save_model(model, str(folder / "decoder.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="decoder.onnx.data", size_threshold=0)  # fmt: skip
    data = json.loads((folder / "bundle.json").read_text())
    data["onnx"]["decoder"]["sha256"] = file_sha256(folder / "decoder.onnx")
    (folder / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="external data"):
        generate_array(folder, n=5)
    other = export_bundle(small_cvae, tmp_path / "c")
    with open(other / "encoder.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputError, match=r"encoder\.onnx sha256 mismatch"):
        load_bundle(other)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(["sampler", "mixtures", 0, "weights", "means", "covariances", "onnx", "decoder",
                                      "inputs", "outputs", "shape", "labels", "genes", "library_size", "latent_dim",
                                      "label_proportions", "model_type", "value_cap", "name", 1]), min_size=1, max_size=5),
       value=JSON_VALUES)  # fmt: skip
def test_fuzzed_bundles_load_and_generate_or_are_refused_cleanly(cvae_dir: Path, tmp_path_factory, path, value):
    """Whatever a bundle.json holds, loading either refuses it with an InputError, or the bundle generates
    finite cells: never another exception, never NaN."""
    from vaexprs.generate.pipeline import generate_array

    folder = copy_bundle(cvae_dir, tmp_path_factory.mktemp("fuzz") / "b")
    data = json.loads((folder / "bundle.json").read_text())
    node = data
    for key in path[:-1]:
        if (isinstance(node, dict) and isinstance(key, str) and isinstance(node.get(key), (dict, list))) or (
            isinstance(node, list) and isinstance(key, int) and key < len(node) and isinstance(node[key], (dict, list))
        ):
            node = node[key]
    last = path[-1]
    if (isinstance(node, dict) and isinstance(last, str)) or (
        isinstance(node, list) and isinstance(last, int) and last < len(node)
    ):
        node[last] = value
    (folder / "bundle.json").write_text(json.dumps(data))
    try:
        bundle = load_bundle(folder)
    except InputError:
        return
    try:
        x, _ = generate_array(bundle, n=20, provider="cpu")
    except InputError:
        return
    assert np.isfinite(x).all()


# ------------------------------------------------------------------------------------------ clients and files


def test_registry_names_with_quotes_work_and_bad_names_are_refused_before_training(
    tmp_path: Path, monkeypatch, sim_file
):
    from mlflow import MlflowClient

    from vaexprs.registry.models import model_versions, promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    client = MlflowClient()
    client.create_registered_model("o'brien")
    client.create_model_version("o'brien", source=str(tmp_path))
    client.create_registered_model("o'brien-2")  # a name the quoted search must not also match
    assert model_versions("o'brien") == [1] and promote("o'brien", 1, "champion") is None
    started = time.monotonic()
    code, _, err = cli("train", sim_file, "--register", "team/model", "--epochs", "100000", cwd=tmp_path)
    assert code == 2 and "--register 'team/model' is not a usable model name" in one_error_line(err)
    assert time.monotonic() - started < 30  # refused before any training


def test_an_unreachable_tracking_server_fails_within_seconds(tmp_path: Path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        env.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
        env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        started = time.monotonic()
        code, _, err = cli("generate", "models:/m@champion", "-n", "5", "-o", tmp_path / "x.h5ad", env=env, timeout=90)
    assert time.monotonic() - started < 20
    assert code == 1 and "did not answer" in one_error_line(err)


def test_an_empty_checkpoint_is_a_clear_error(tmp_path: Path):
    (tmp_path / "model.pt").write_bytes(b"")
    code, _, err = cli("export", tmp_path / "model.pt", "-o", tmp_path / "b")
    assert code == 2 and "is not a vaexprs checkpoint" in one_error_line(err)


def test_nan_and_single_cell_labels_and_repeated_per_label_counts_are_refused(
    small_sim, cvae_dir: Path, tmp_path: Path
):
    import vaexprs

    bad = small_sim.copy()
    bad.obs["cell_type"] = bad.obs["cell_type"].astype(object)
    bad.obs.iloc[3, bad.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(InputError, match="1 cell\\(s\\) have no label"):
        vaexprs.fit_vae(bad, "cell_type", epochs=1)
    lonely = small_sim.copy()
    lonely.obs["cell_type"] = lonely.obs["cell_type"].astype(str)
    lonely.obs.iloc[:7, lonely.obs.columns.get_loc("cell_type")] = [f"rare{i}" for i in range(7)]
    with pytest.raises(InputError, match=r"single cell cannot be learnt: rare0, .*\(7 in all\); drop those cells"):
        vaexprs.fit_vae(lonely, "cell_type", epochs=1)
    code, _, err = cli("generate", cvae_dir, "--per-label", "group1=3,group1=4", "-o", tmp_path / "x.h5ad")
    assert code == 2 and "--per-label names label 'group1' twice" in one_error_line(err)


@pytest.mark.parametrize("conditional", [True, False], ids=["cvae", "vae"])
@pytest.mark.parametrize("suffix", [".h5ad", ".csv", ".npy"])
def test_evaluate_reads_every_format_generate_writes(tmp_path: Path, conditional: bool, suffix: str):
    """generate -> evaluate round trip: the labels come back from each format (obs, a column, .obs.csv)."""
    import anndata as ad

    bundle = make_bundle(tmp_path / "b", conditional=conditional)
    reference = tmp_path / "real.h5ad"
    assert cli("generate", bundle, "-n", "60", "--seed", "7", "-o", reference)[0] == 0
    out = tmp_path / f"gen{suffix}"
    assert cli("generate", bundle, "-n", "60", "-o", out)[0] == 0
    label_key = "cell_type" if conditional else ""
    code, stdout, err = cli("evaluate", reference, out, "--label-key", label_key, "-o", tmp_path / "m.json")
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_gen"] == 60 and (metrics["tstr_accuracy"] is not None) == conditional
    assert ad.read_h5ad(reference).n_obs == 60 and "auc_real_vs_gen" in stdout


def test_export_from_a_run_leaves_no_download_behind(tmp_path: Path, monkeypatch, sim_file):
    import tempfile

    from vaexprs.jobs import TrainJob, train_job

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None
    try:
        outcome = train_job(str(sim_file), TrainJob(track=True, experiment="e"), {"epochs": 1, "hidden": (8,)}, False)
        from vaexprs.cli import main

        assert main(["export", f"runs:/{outcome.run_id}", "-o", str(tmp_path / "b")]) == 0
        assert list((tmp_path / "tmp").iterdir()) == []
    finally:
        tempfile.tempdir = None
    assert load_bundle(tmp_path / "b").labels == ["group1", "group2", "group3"]


def test_usage_errors_exit_2_and_name_the_option():
    for args, fragment in (
        (["generate", "x", "-o", "y.h5ad", "--no-such"], "No such option: --no-such"),
        (["generate", "x", "-o", "y.h5ad", "-n", "lots"], "Invalid value for '-n' / '--n-cells'"),
        (["train", "--epochs", "many"], "--epochs must be a whole number or auto"),
        (["train", "--dropout", "some"], "--dropout must be a number or auto"),
        (["train", "--encoder-input", "zscore"], "Invalid value for '--encoder-input'"),
        (["promote", "m"], "Missing option '--version'"),
    ):
        code, _, err = cli(*args)
        assert code == 2 and fragment in one_error_line(err), err


def test_bare_command_prints_help_and_version_works():
    code, out, err = cli()
    assert code == 0 and "Usage: vaexprs" in out and err == ""
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("vaexprs ")
    with contextlib.suppress(FileNotFoundError):
        assert subprocess.run(["vaexprs", "--version"], capture_output=True, timeout=30).returncode == 0


def test_a_long_output_name_is_written_and_one_too_long_is_refused_up_front(
    tmp_path: Path, cvae_dir: Path, sim_file: Path
):
    """A valid 245-byte name failed (exit 1, "File name too long"): its temp name .NAME.tmp-XXXXXXXX was longer
    than a file name may be; a name over 255 bytes was found only when publishing."""
    longest = tmp_path / ("a" * 240 + ".h5ad")  # 245 bytes
    code, _, err = cli("generate", cvae_dir, "-n", "5", "-o", longest)
    assert code == 0, err
    assert longest.is_file() and temp_files(tmp_path) == []
    too_long = tmp_path / ("b" * 251 + ".h5ad")  # 256 bytes
    code, _, err = cli("generate", cvae_dir, "-n", "5", "-o", too_long)
    assert code == 2 and "is 256 bytes; a file name has at most 255" in one_error_line(err)
    for flag in ("-o", "--checkpoint"):  # before training
        code, _, err = cli("train", sim_file, "--epochs", "1", "--likelihood", "bce", flag, tmp_path / ("c" * 256))
        assert code == 2 and "is 256 bytes" in one_error_line(err), flag
