"""Generation into .zarr stores, alone and on Dask (a local cluster, a real scheduler over tcp), and the lazy AnnData:
the same cells as the .h5ad, one onnxruntime session per worker, one-line errors and no half-written store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("dask.distributed")

import anndata as ad

from tests.onnx_fixtures import N_GENES, make_bundle
from vaexprs.cli import main
from vaexprs.errors import InputError
from vaexprs.generate.distributed import MAX_LOCAL_WORKERS, generate_lazy, parse_address
from vaexprs.generate.engine import max_threads
from vaexprs.generate.pipeline import generate_array, generate_to_file

N, SEED, BATCH = 40, 2, 7  # 6 blocks, the last one short


@pytest.fixture(scope="module")
def cvae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("dask") / "cvae", conditional=True)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("dask") / "vae", conditional=False)


@pytest.fixture(scope="module")
def reference(cvae_dir, tmp_path_factory) -> ad.AnnData:
    """The single-process .h5ad for (SEED, BATCH): what every other path must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5ad"
    generate_to_file(cvae_dir, out, n=N, seed=SEED, batch_size=BATCH, provider="cpu")
    return ad.read_h5ad(out)


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_same_cells(store: Path, reference: ad.AnnData) -> ad.AnnData:
    got = ad.read_zarr(store)
    assert got.X.dtype == np.float32 and np.array_equal(got.X, reference.X)
    assert got.obs.equals(reference.obs) and list(got.obs_names) == list(reference.obs_names)
    assert list(got.var_names) == list(reference.var_names)
    return got


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """`dask scheduler` and `dask worker` as subprocesses (own process group each), stopped by their ids."""

    def __init__(self, workers: int, nanny: bool = True) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        exe = str(Path(sys.executable).parent / "dask")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
        self.scheduler = subprocess.Popen(
            [exe, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"], **quiet
        )
        worker = [exe, "worker", self.address, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard"]
        self.worker = subprocess.Popen(worker + ([] if nanny else ["--no-nanny"]), **quiet)
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)

    def kill_scheduler(self) -> None:
        _stop(self.scheduler, signal.SIGKILL)

    def stop(self) -> None:
        for proc in (self.worker, self.scheduler):
            _stop(proc, signal.SIGTERM)
        for proc in (self.worker, self.scheduler):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _stop(proc, signal.SIGKILL)
                proc.wait(timeout=10)


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # the group this test started (the nanny's worker processes are in it)


@pytest.fixture(scope="module")
def tcp_cluster():
    procs = DaskProcesses(workers=2)
    try:
        yield procs.address
    finally:
        procs.stop()


# ------------------------------------------------------------------------------------------ .zarr without Dask


def test_zarr_store_holds_the_h5ad_cells_chunked_by_block(cvae_dir, reference, tmp_path):
    import zarr

    out = tmp_path / "cells.zarr"
    summary = generate_to_file(cvae_dir, out, n=N, seed=SEED, batch_size=BATCH, provider="cpu")
    assert summary["n_cells"] == N and summary["out"] == str(out)
    got = assert_same_cells(out, reference)
    assert got.obs["cell_type"].dtype == "category" and (got.obs["origin"] == "generated").all()
    meta = got.uns["vaexprs"]
    assert meta["seed"] == SEED and meta["batch_size"] == BATCH and meta["model_uri"] == str(cvae_dir.resolve())
    assert meta["provider"] == "CPUExecutionProvider" and got.uns["log1p"]["base"] == 2.0
    root = zarr.open_group(str(out), mode="r")
    assert root["X"].chunks == (BATCH, N_GENES) and root["obs/_index"].chunks == (BATCH,)
    assert visible(tmp_path) == ["cells.zarr"]  # no temp folder left


def test_vae_store_has_no_cell_type_and_labels_follow_per_label(cvae_dir, vae_dir, tmp_path):
    generate_to_file(vae_dir, tmp_path / "vae.zarr", n=9, provider="cpu")
    vae = ad.read_zarr(tmp_path / "vae.zarr")
    assert vae.shape == (9, N_GENES) and list(vae.obs.columns) == ["origin"]
    generate_to_file(cvae_dir, tmp_path / "per.zarr", per_label="group1=3,group3=5", batch_size=4, provider="cpu")
    assert ad.read_zarr(tmp_path / "per.zarr").obs["cell_type"].tolist() == ["group1"] * 3 + ["group3"] * 5


def test_zarr_without_dask_imports_no_distributed(cvae_dir, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from vaexprs.cli import main
        assert main(["generate", {str(cvae_dir)!r}, "-n", "20", "-q", "-o", {str(tmp_path / "a.zarr")!r}]) == 0
        assert "distributed" not in sys.modules, "a .zarr without --dask imported dask.distributed"
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ad.read_zarr(tmp_path / "a.zarr").n_obs == 20


@pytest.mark.parametrize("dask", [[], ["--dask", "local:1"]])
def test_a_store_of_too_many_chunks_is_refused_before_any_work(cvae_dir, tmp_path, capsys, dask):
    """--batch-size 1 made a file set per cell (53,368 files for 20,000 cells): millions of cells could exhaust
    the disk's inodes while the byte check passed."""
    from vaexprs.cli import main

    out = tmp_path / "cells.zarr"
    args = ["generate", str(cvae_dir), "-n", "100001", "--batch-size", "1", "-o", str(out), "-q", *dask]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --batch-size of 1 cells makes 100,001 chunks in the .zarr store"), err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_store_and_keeps_the_old_one(cvae_dir, tmp_path, monkeypatch):
    import vaexprs.generate.loop as loop

    real, calls = loop.outputs_to_cells, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    out = tmp_path / "cells.zarr"
    generate_to_file(cvae_dir, out, n=5, provider="cpu")
    monkeypatch.setattr(loop, "outputs_to_cells", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        generate_to_file(cvae_dir, out, n=50, batch_size=10, provider="cpu", force=True)
    assert visible(tmp_path) == ["cells.zarr"] and ad.read_zarr(out).n_obs == 5


def test_existing_store_needs_force_and_force_replaces_only_a_vaexprs_store(capsys, cvae_dir, tmp_path):
    out = tmp_path / "cells.zarr"
    assert run_cli(capsys, "generate", cvae_dir, "-n", "5", "-q", "-o", out)[0] == 0
    code, err = run_cli(capsys, "generate", cvae_dir, "-n", "8", "-o", out)
    assert code == 2 and ad.read_zarr(out).n_obs == 5
    assert_one_line_error(err, "exists", "--force")
    assert run_cli(capsys, "generate", cvae_dir, "-n", "8", "-q", "-o", out, "--force")[0] == 0
    assert ad.read_zarr(out).n_obs == 8
    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    code, err = run_cli(capsys, "generate", cvae_dir, "-n", "5", "-o", foreign, "--force")
    assert code == 2 and (foreign / "notes.txt").read_text() == "precious"
    assert_one_line_error(err, "not a .zarr store vaexprs wrote")
    assert visible(tmp_path) == ["cells.zarr", "mine.zarr"]


def test_missing_extras_are_named_in_one_line(capsys, cvae_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, err = run_cli(capsys, "generate", cvae_dir, "-n", "5", "-o", tmp_path / "a.zarr", "--dask", "local")
    assert code == 2
    assert_one_line_error(err, "--dask needs dask.distributed", 'pip install "vaexprs[dask]"')
    monkeypatch.setitem(sys.modules, "zarr", None)
    code, err = run_cli(capsys, "generate", cvae_dir, "-n", "5", "-o", tmp_path / "a.zarr")
    assert code == 2
    assert_one_line_error(err, "needs zarr", 'pip install "vaexprs[dask]"')
    assert visible(tmp_path) == []


# ------------------------------------------------------------------------------------------ on Dask


def test_parse_address_forms_and_limits():
    cpus = max_threads()
    assert parse_address("local").workers == min(cpus, MAX_LOCAL_WORKERS)
    assert parse_address("local:1").workers == 1 and parse_address("local:1").is_local
    assert parse_address("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    for bad in ("", "local:", "local:0", "local:x", "tcp://", "tcp://host", "tcp://host:99999", "udp://h:1", "h:1"):
        with pytest.raises(InputError, match=r"must be local, local:W|needs a whole number"):
            parse_address(bad)
    with pytest.raises(InputError, match=rf"asks for {cpus + 1} local workers but this machine has {cpus} CPU"):
        parse_address(f"local:{cpus + 1}")


class FakeClient:
    """What `client.run` answers, per worker address (or the exception it raises)."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def run(self, fn, *args):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_workers_without_vaexprs_or_the_output_folder_are_refused_in_one_line(tmp_path):
    from vaexprs import __version__
    from vaexprs.errors import VaexprsRuntimeError
    from vaexprs.generate.distributed import _check_visible, _check_workers

    cluster = parse_address("tcp://sched:8786")
    with pytest.raises(VaexprsRuntimeError, match=r"cannot run vaexprs \(No module named 'vaexprs'\); install"):
        _check_workers(FakeClient(ModuleNotFoundError("No module named 'vaexprs'")), cluster)
    other = {"tcp://w1": {"vaexprs": __version__}, "tcp://w2": {"vaexprs": "0.0.1"}}
    with pytest.raises(VaexprsRuntimeError, match=r"tcp://w2 runs vaexprs 0.0.1, this client"):
        _check_workers(FakeClient(other), cluster)
    with pytest.raises(VaexprsRuntimeError, match=r"tcp://w2 cannot write into the output folder .* same path"):
        _check_visible(FakeClient({"tcp://w1": True, "tcp://w2": False}), tmp_path / "x.zarr", cluster)


def test_two_local_workers_give_the_same_cells_with_one_session_each(cvae_dir, reference, tmp_path):
    out = tmp_path / "cells.zarr"
    summary = generate_to_file(
        cvae_dir, out, n=N, seed=SEED, batch_size=BATCH, provider="cpu", dask="local:2", progress=False
    )
    assert summary["workers"] == 2 and summary["dask"] == "local:2"
    assert max(summary["sessions"].values()) == 1  # each worker process loaded onnxruntime once (or not at all)
    got = assert_same_cells(out, reference)
    assert got.uns["vaexprs"]["dask_workers"] == 2 and got.uns["vaexprs"]["seed"] == SEED
    assert visible(tmp_path) == ["cells.zarr"]


def test_a_running_scheduler_over_tcp_gives_the_same_cells(
    capsys, cvae_dir, reference, tcp_cluster, tmp_path, monkeypatch
):
    """Also with a relative -o: the workers run in another folder (the one pytest started in) and were told
    "cannot write into the output folder ." until the store's path was made absolute."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cells.zarr"
    code, err = run_cli(
        capsys, "generate", cvae_dir, "-n", N, "--seed", SEED, "--batch-size", BATCH, "--provider", "cpu",
        "-o", "cells.zarr", "--dask", tcp_cluster, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert_same_cells(out, reference)
    # again on the same workers: their cached sessions are reused, not started again
    summary = generate_to_file(
        cvae_dir, tmp_path / "again.zarr", n=N, seed=SEED, batch_size=BATCH, provider="cpu", dask=tcp_cluster
    )
    assert summary["workers"] == 2 and max(summary["sessions"].values()) == 1
    assert_same_cells(tmp_path / "again.zarr", reference)


@pytest.mark.filterwarnings("ignore:Writing zarr v2 data:UserWarning")
def test_lazy_anndata_is_the_same_cells_on_any_scheduler(cvae_dir, reference, tcp_cluster, tmp_path):
    import dask.array as da
    from distributed import Client

    adata = generate_lazy(cvae_dir, n=N, seed=SEED, batch_size=BATCH, provider="cpu")
    assert isinstance(adata.X, da.Array) and adata.X.chunks[0] == (7, 7, 7, 7, 7, 5)
    assert adata.obs.equals(reference.obs) and list(adata.var_names) == list(reference.var_names)
    assert adata.uns["vaexprs"]["seed"] == SEED
    assert np.array_equal(adata.X.compute(), reference.X)  # threads, in this process
    x, _ = generate_array(cvae_dir, n=N, seed=SEED, batch_size=BATCH, provider="cpu")
    assert np.array_equal(adata[14:30].X.compute(), x[14:30])
    with Client(tcp_cluster, timeout=10) as client:
        assert np.array_equal(client.compute(adata.X).result(), reference.X)  # two worker processes
    adata.write_zarr(tmp_path / "lazy.zarr")
    assert_same_cells(tmp_path / "lazy.zarr", reference)


def test_lazy_anndata_carries_the_temperature(cvae_dir, reference):
    """A tempered request on Dask: the cells of generate_array at the same temperature, recorded in uns."""
    adata = generate_lazy(cvae_dir, n=N, seed=SEED, batch_size=BATCH, provider="cpu", temperature=0.5)
    x, _ = generate_array(cvae_dir, n=N, seed=SEED, batch_size=BATCH, provider="cpu", temperature=0.5)
    lazy = adata.X.compute()
    assert np.array_equal(lazy, x) and not np.array_equal(lazy, reference.X)
    assert adata.uns["vaexprs"]["temperature"] == 0.5 and adata.obs.equals(reference.obs)  # labels: the same draws


def test_lazy_anndata_refuses_more_cells_than_its_obs_can_hold(cvae_dir):
    """generate_lazy keeps obs in memory (about 100 bytes a cell): n = 10**9 died in a bare MemoryError."""
    with pytest.raises(InputError, match=r"n of 1000000000 cells is more than generate_lazy holds"):
        generate_lazy(cvae_dir, n=10**9, provider="cpu")


@pytest.mark.parametrize(
    ("address", "suffix", "code", "fragments"),
    [
        ("tcp://127.0.0.1:1", ".zarr", 1, ["cannot connect to the Dask scheduler at tcp://127.0.0.1:1 within 5 s"]),
        ("bogus", ".zarr", 2, ["--dask must be local, local:W"]),
        ("local:0", ".zarr", 2, ["--dask local:W needs a whole number"]),
        ("local:100000", ".zarr", 2, ["--dask local:100000 asks for", "CPU"]),
        ("local", ".h5ad", 2, ["--dask writes a .zarr store"]),
    ],
)
def test_bad_addresses_fail_in_one_line_and_leave_nothing(capsys, cvae_dir, tmp_path, address, suffix, code, fragments):
    started = time.perf_counter()
    got, err = run_cli(capsys, "generate", cvae_dir, "-n", "10", "-o", tmp_path / f"out{suffix}", "--dask", address)
    assert got == code
    assert_one_line_error(err, *fragments)
    assert visible(tmp_path) == []
    assert time.perf_counter() - started < 30


def test_a_peer_that_accepts_but_never_answers_fails_within_the_connect_timeout(capsys, cvae_dir, tmp_path):
    """distributed.Client's own timeout covers the connection, not the handshake: a silent peer held the command
    for as long as it stayed up (30 s, 90 s), and the message still said 'within 5 s'."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"

    def hang_up() -> None:
        for conn in [*accepted, silent]:
            conn.close()

    stop = threading.Timer(25, hang_up)  # without the deadline the command waits until the peer hangs up
    stop.start()
    started = time.perf_counter()
    try:
        got, err = run_cli(capsys, "generate", cvae_dir, "-n", "10", "-o", tmp_path / "out.zarr", "--dask", address)
    finally:
        stop.cancel()
        hang_up()
    assert time.perf_counter() - started < 15
    assert got == 1
    assert_one_line_error(err, f"cannot connect to the Dask scheduler at {address} within 5 s", "did not answer")
    assert visible(tmp_path) == [] and accepted  # it did accept: the wait was the handshake's


def test_scheduler_dying_mid_run_fails_in_one_line_and_leaves_no_store(capsys, cvae_dir, tmp_path):
    procs = DaskProcesses(workers=1, nanny=False)
    out = tmp_path / "cells.zarr"
    killed = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(tmp_path.glob(".cells.zarr.tmp-*/X/1.0")):  # a block is written: the run is under way
                procs.kill_scheduler()
                killed.set()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_when_writing, daemon=True)
    try:
        watcher.start()
        started = time.perf_counter()
        code, err = run_cli(
            capsys, "generate", cvae_dir, "-n", "200000", "--batch-size", "20", "-o", out, "--dask", procs.address
        )
        assert killed.is_set(), "the run ended before the scheduler was killed"
        assert code == 1 and time.perf_counter() - started < 60
        assert_one_line_error(err, "Dask")
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    finally:
        watcher.join(timeout=5)
        procs.stop()
